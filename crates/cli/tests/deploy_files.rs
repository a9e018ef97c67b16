//! The deployment files in docs/deploy/ (issue #19) against the code they deploy: every flag
//! and environment variable they give `switchyard` is one `switchyard … --help` lists,
//! the Kubernetes manifests hold together (selectors, ports, probes, Secrets and
//! ConfigMaps they name), the systemd units pass `systemd-analyze verify` and its offline
//! security review, the Dockerfile is multi-stage, locked and non-root and passes
//! hadolint, and every metric the Grafana dashboard queries is one a real Manager or Worker
//! exposes. None of this builds an image or runs a cluster (see docs/deploy/README.md).
//!
//! The tools: `systemd-analyze` (package systemd) and hadolint (`SWITCHYARD_HADOLINT` =
//! its path, or `hadolint` on PATH; .ci/run installs it from PyPI). Where one is missing
//! the checks that need it are skipped with a message — unless
//! `SWITCHYARD_REQUIRE_DEPLOY_TOOLS=1` (set by .ci/run), which makes a missing tool fail.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn deploy() -> PathBuf {
    repo().join("docs/deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Files in `dir` whose names end with `suffix`, sorted.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    out.sort();
    out
}

/// Whether a missing tool fails the test (CI) rather than skipping what needs it.
fn tools_required() -> bool {
    std::env::var_os("SWITCHYARD_REQUIRE_DEPLOY_TOOLS").is_some_and(|v| v != "0" && !v.is_empty())
}

fn missing_tool(tool: &str, what: &str) {
    assert!(
        !tools_required(),
        "{tool} is not installed and SWITCHYARD_REQUIRE_DEPLOY_TOOLS is set: {what} cannot be checked"
    );
    eprintln!(
        "SKIPPED: {what} ({tool} is not installed; SWITCHYARD_REQUIRE_DEPLOY_TOOLS=1 makes this fail)"
    );
}

// ---------------------------------------------------------------------------------------
// What the binary accepts

/// `switchyard SUBCOMMAND… --help`: its long flags and the environment variables it reads.
#[derive(Debug)]
struct Help {
    flags: BTreeSet<String>,
    env: BTreeSet<String>,
}

/// Read by `main.rs` (the log level), not by a flag: documented in README ("--log-format").
const ENV_WITHOUT_FLAG: &[&str] = &["SWITCHYARD_LOG"];

fn help(path: &[&str]) -> Help {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(path)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "switchyard {path:?} --help failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut flags = BTreeSet::new();
    let mut env = BTreeSet::new();
    for line in text.lines() {
        let t = line.trim_start();
        let t = t
            .strip_prefix("-h, ")
            .or_else(|| t.strip_prefix("-V, "))
            .unwrap_or(t);
        if let Some(rest) = t.strip_prefix("--") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            flags.insert(format!("--{name}"));
        }
        let mut rest = line;
        while let Some(at) = rest.find("[env: ") {
            rest = &rest[at + 6..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            env.insert(name);
        }
    }
    assert!(
        flags.len() > 3,
        "no flags read from switchyard {path:?} --help:\n{text}"
    );
    Help { flags, env }
}

/// The `switchyard` subcommand path an argument list runs (`["worker"]`, `["worker",
/// "upgrade"]`, `["manager"]`) and its flags (`--name`, without `=value`).
fn command_of(args: &[String]) -> (Vec<String>, Vec<String>) {
    let mut path = Vec::new();
    let mut flags = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if let Some(flag) = a.strip_prefix("--") {
            let flag = flag.split('=').next().unwrap();
            flags.push(format!("--{flag}"));
            // The global flag's value is not a subcommand.
            if flag == "log-format" && !a.contains('=') {
                i += 1;
            }
        } else if (path.is_empty() && matches!(a.as_str(), "worker" | "manager"))
            || (path.len() == 1 && flags.is_empty() && a == "upgrade")
            || (path.len() == 1 && flags.is_empty() && path[0] == "manager" && a == "token")
            || (path.len() == 2 && flags.is_empty() && path[1] == "token" && a == "create")
        {
            path.push(a.clone());
        }
        i += 1;
    }
    (path, flags)
}

/// Every flag in `args` is one `switchyard PATH --help` lists; returns the path.
fn check_flags(
    what: &str,
    args: &[String],
    helps: &mut BTreeMap<Vec<String>, Help>,
) -> Vec<String> {
    let (path, flags) = command_of(args);
    assert!(
        !path.is_empty(),
        "{what}: runs neither `switchyard worker` nor `switchyard manager`: {args:?}"
    );
    let h = helps
        .entry(path.clone())
        .or_insert_with(|| help(&path.iter().map(String::as_str).collect::<Vec<_>>()));
    let unknown: Vec<&String> = flags.iter().filter(|f| !h.flags.contains(*f)).collect();
    assert!(
        unknown.is_empty(),
        "{what}: `switchyard {}` has no flag {unknown:?} (its flags: {:?})",
        path.join(" "),
        h.flags
    );
    path
}

/// A `SWITCHYARD_*` variable given to `switchyard PATH` is one it reads.
fn check_env(what: &str, name: &str, path: &[String], helps: &mut BTreeMap<Vec<String>, Help>) {
    if !name.starts_with("SWITCHYARD_") || ENV_WITHOUT_FLAG.contains(&name) {
        return;
    }
    let h = helps
        .entry(path.to_vec())
        .or_insert_with(|| help(&path.iter().map(String::as_str).collect::<Vec<_>>()));
    assert!(
        h.env.contains(name),
        "{what}: `switchyard {}` reads no {name} (it reads {:?} and {ENV_WITHOUT_FLAG:?})",
        path.join(" "),
        h.env
    );
}

/// The value following `flag` in `args` (`--flag V` or `--flag=V`).
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().enumerate().find_map(|(i, a)| {
        if a == flag {
            args.get(i + 1).map(String::as_str)
        } else {
            a.strip_prefix(flag).and_then(|r| r.strip_prefix('='))
        }
    })
}

#[test]
fn command_of_finds_the_subcommand_and_its_flags() {
    let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
    assert_eq!(
        command_of(&args(
            "--log-format json worker --env prod --listen=0.0.0.0:80"
        )),
        (
            vec!["worker".into()],
            vec!["--log-format".into(), "--env".into(), "--listen".into()]
        )
    );
    assert_eq!(
        command_of(&args("worker upgrade --admin-listen 127.0.0.1:9901")).0,
        vec!["worker".to_string(), "upgrade".to_string()]
    );
    // A flag's value named like a subcommand is not one.
    assert_eq!(
        command_of(&args("manager --name worker")).0,
        vec!["manager".to_string()]
    );
    // What check_flags compares with: the real flags, and nothing else.
    let worker = help(&["worker"]);
    assert!(worker.flags.contains("--drain-timeout") && worker.flags.contains("--admin-listen"));
    assert!(!worker.flags.contains("--no-such-flag"));
    assert!(worker.env.contains("SWITCHYARD_TOKEN_FILE"));
}

// ---------------------------------------------------------------------------------------
// Kubernetes

fn s<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

fn arr<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn labels(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A workload's pod template, as the checks below need it.
struct Pod {
    what: String,
    labels: BTreeMap<String, String>,
    /// Container ports: name → number.
    ports: BTreeMap<String, u64>,
    spec: Value,
}

/// A port number, or the name of a container port.
fn port_of(v: &Value, ports: &BTreeMap<String, u64>) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().filter(|n| ports.values().any(|p| p == n)),
        Value::String(name) => ports.get(name).copied(),
        _ => None,
    }
}

/// A duration flag's value (`30s`) in seconds.
fn seconds(v: &str) -> u64 {
    humantime::parse_duration(v)
        .unwrap_or_else(|e| panic!("{v:?}: {e}"))
        .as_secs()
}

fn check_container(
    what: &str,
    c: &Value,
    pod: &Pod,
    config_maps: &BTreeMap<String, BTreeSet<String>>,
    helps: &mut BTreeMap<Vec<String>, Help>,
) -> Vec<String> {
    let name = s(c, "/name").unwrap_or("?");
    let what = format!("{what} container {name}");
    assert!(
        s(c, "/image").is_some_and(|i| !i.is_empty()),
        "{what}: no image"
    );
    let args: Vec<String> = arr(c, "/args")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert!(
        arr(c, "/command").is_empty(),
        "{what}: the image's ENTRYPOINT is `switchyard`; give args, not command"
    );
    let path = check_flags(&what, &args, helps);
    // Environment: SWITCHYARD_* are read by the binary; $(VAR) in args are defined;
    // ConfigMap keys exist.
    let mut defined = BTreeSet::new();
    for e in arr(c, "/env") {
        let n = s(e, "/name").unwrap();
        defined.insert(n.to_string());
        check_env(&what, n, &path, helps);
        if let Some(r) = e.pointer("/valueFrom/configMapKeyRef") {
            let (map, key) = (s(r, "/name").unwrap(), s(r, "/key").unwrap());
            assert!(
                config_maps.get(map).is_some_and(|keys| keys.contains(key)),
                "{what}: env {n} names ConfigMap {map} key {key}, which no manifest defines"
            );
        }
    }
    for a in &args {
        let mut rest = a.as_str();
        while let Some(at) = rest.find("$(") {
            rest = &rest[at + 2..];
            let var = &rest[..rest.find(')').unwrap()];
            assert!(
                defined.contains(var),
                "{what}: argument {a:?} uses $({var}), not defined in env"
            );
        }
    }
    // Hardened: no root, no privilege escalation, no capability, read-only root.
    let sc = c.get("securityContext").unwrap_or(&Value::Null);
    assert_eq!(
        sc.pointer("/readOnlyRootFilesystem"),
        Some(&Value::Bool(true)),
        "{what}: readOnlyRootFilesystem"
    );
    assert_eq!(
        sc.pointer("/allowPrivilegeEscalation"),
        Some(&Value::Bool(false)),
        "{what}: allowPrivilegeEscalation: false"
    );
    assert!(
        arr(sc, "/capabilities/drop").iter().any(|d| d == "ALL"),
        "{what}: capabilities.drop [ALL]"
    );
    for r in ["requests", "limits"] {
        for k in ["cpu", "memory"] {
            assert!(
                c.pointer(&format!("/resources/{r}/{k}")).is_some(),
                "{what}: resources.{r}.{k}"
            );
        }
    }
    // Probes reach a container port, and mounts name volumes of the pod.
    for probe in ["readinessProbe", "livenessProbe"] {
        let port = c
            .pointer(&format!("/{probe}/httpGet/port"))
            .unwrap_or_else(|| panic!("{what}: no {probe}.httpGet"));
        assert!(
            port_of(port, &pod.ports).is_some(),
            "{what}: {probe} port {port} is not a container port"
        );
    }
    let volumes: BTreeSet<&str> = arr(&pod.spec, "/volumes")
        .iter()
        .chain(arr(&pod.spec, "/volumeClaimTemplates"))
        .filter_map(|v| s(v, "/name").or_else(|| s(v, "/metadata/name")))
        .collect();
    for m in arr(c, "/volumeMounts") {
        let v = s(m, "/name").unwrap();
        assert!(
            volumes.contains(v),
            "{what}: mounts {v}, which is no volume"
        );
    }
    args
}

#[test]
fn kubernetes_manifests_hold_together_and_use_real_flags() {
    let dir = deploy().join("kubernetes");
    let mut docs: Vec<(String, Value)> = Vec::new();
    for f in files(&dir, ".yaml") {
        let text = read(&f);
        let parsed: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: not YAML: {e}", f.display()));
        let file = f.file_name().unwrap().to_string_lossy().into_owned();
        for (i, d) in parsed.into_iter().enumerate() {
            if !d.is_null() {
                docs.push((format!("{file}#{i}"), d));
            }
        }
    }
    assert!(docs.len() >= 10, "too few manifests: {}", docs.len());

    // kustomization.yaml: its resources exist, one Manager variant.
    let (_, kust) = docs
        .iter()
        .find(|(_, d)| s(d, "/kind") == Some("Kustomization"))
        .expect("a kustomization.yaml");
    let resources: Vec<&str> = arr(kust, "/resources")
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    for r in &resources {
        assert!(
            dir.join(r).is_file(),
            "kustomization.yaml lists {r}, which is no file"
        );
    }
    assert!(resources.contains(&"manager-sqlite.yaml") && resources.contains(&"worker.yaml"));
    assert!(
        !resources.contains(&"manager-postgres.yaml"),
        "both Manager variants in kustomization.yaml (they share a Service)"
    );

    let mut config_maps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pods = Vec::new();
    for (what, d) in &docs {
        let kind = s(d, "/kind").unwrap_or_else(|| panic!("{what}: no kind"));
        if kind == "Kustomization" {
            continue;
        }
        assert!(s(d, "/apiVersion").is_some(), "{what}: no apiVersion");
        let name = s(d, "/metadata/name").unwrap_or_else(|| panic!("{what}: no metadata.name"));
        if kind != "Namespace" {
            assert_eq!(
                s(d, "/metadata/namespace"),
                Some("switchyard"),
                "{what} {kind}/{name}: namespace"
            );
        }
        match kind {
            "ConfigMap" => {
                let keys = d
                    .get("data")
                    .and_then(Value::as_object)
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                config_maps.insert(name.to_string(), keys);
            }
            "Deployment" | "StatefulSet" => {
                let what = format!("{what} {kind}/{name}");
                let selector = labels(d.pointer("/spec/selector/matchLabels"));
                let template = labels(d.pointer("/spec/template/metadata/labels"));
                assert!(
                    selects(&selector, &template),
                    "{what}: selector {selector:?} does not match the template's labels {template:?}"
                );
                let spec = d.pointer("/spec/template/spec").unwrap().clone();
                let containers = arr(&spec, "/containers");
                assert!(!containers.is_empty(), "{what}: no containers");
                let mut ports = BTreeMap::new();
                for c in containers {
                    for p in arr(c, "/ports") {
                        ports.insert(
                            s(p, "/name").unwrap_or_default().to_string(),
                            p.pointer("/containerPort").and_then(Value::as_u64).unwrap(),
                        );
                    }
                }
                let mut spec = spec;
                if let Some(t) = d.pointer("/spec/volumeClaimTemplates") {
                    spec["volumeClaimTemplates"] = t.clone();
                }
                pods.push(Pod {
                    what,
                    labels: template,
                    ports,
                    spec,
                });
                if kind == "StatefulSet" {
                    let svc = s(d, "/spec/serviceName").expect("a StatefulSet's serviceName");
                    assert!(
                        docs.iter().any(|(_, o)| s(o, "/kind") == Some("Service")
                            && s(o, "/metadata/name") == Some(svc)),
                        "StatefulSet {name}: serviceName {svc} is no Service"
                    );
                    assert!(
                        !arr(d, "/spec/volumeClaimTemplates").is_empty(),
                        "StatefulSet {name}: its data on a PersistentVolume (volumeClaimTemplates)"
                    );
                }
            }
            _ => {}
        }
    }

    let mut helps = BTreeMap::new();
    let mut workers = 0;
    let mut managers = 0;
    for pod in &pods {
        let spec = &pod.spec;
        assert_eq!(
            spec.pointer("/securityContext/runAsNonRoot"),
            Some(&Value::Bool(true)),
            "{}: runAsNonRoot",
            pod.what
        );
        assert_eq!(
            s(spec, "/securityContext/seccompProfile/type"),
            Some("RuntimeDefault"),
            "{}: seccompProfile RuntimeDefault",
            pod.what
        );
        for c in arr(spec, "/containers") {
            let args = check_container(&pod.what, c, pod, &config_maps, &mut helps);
            let (path, _) = command_of(&args);
            let what = &pod.what;
            match path[0].as_str() {
                "worker" => {
                    workers += 1;
                    let admin = flag_value(&args, "--admin-listen")
                        .expect("a Worker in a pod needs --admin-listen on 0.0.0.0");
                    let admin_port: u64 = admin.rsplit(':').next().unwrap().parse().unwrap();
                    assert!(
                        admin.starts_with("0.0.0.0:") || admin.starts_with("[::]:"),
                        "{what}: --admin-listen {admin} is not reachable by the kubelet's probes"
                    );
                    assert_eq!(
                        s(c, "/readinessProbe/httpGet/path"),
                        Some("/readyz"),
                        "{what}: readinessProbe /readyz"
                    );
                    assert_eq!(s(c, "/livenessProbe/httpGet/path"), Some("/healthz"));
                    for probe in ["readinessProbe", "livenessProbe"] {
                        let port = c.pointer(&format!("/{probe}/httpGet/port")).unwrap();
                        assert_eq!(
                            port_of(port, &pod.ports),
                            Some(admin_port),
                            "{what}: {probe} must reach the admin listener ({admin})"
                        );
                    }
                    assert!(
                        c.pointer("/lifecycle/preStop").is_some(),
                        "{what}: a preStop hook"
                    );
                    let pre_stop = arr(c, "/lifecycle/preStop/exec/command")
                        .iter()
                        .find_map(|a| a.as_str().and_then(|a| a.parse::<u64>().ok()))
                        .or_else(|| {
                            c.pointer("/lifecycle/preStop/sleep/seconds")
                                .and_then(Value::as_u64)
                        })
                        .unwrap_or(0);
                    let drain = seconds(flag_value(&args, "--drain-timeout").unwrap_or("30s"));
                    let grace = spec
                        .pointer("/terminationGracePeriodSeconds")
                        .and_then(Value::as_u64)
                        .expect("terminationGracePeriodSeconds");
                    // The preStop wait, then the drain, then the second idle connections get.
                    assert!(
                        grace > pre_stop + drain + 1,
                        "{what}: terminationGracePeriodSeconds {grace} <= preStop {pre_stop} s + \
                         --drain-timeout {drain} s + 1 s"
                    );
                    let listen = flag_value(&args, "--listen").expect("--listen");
                    let port: u64 = listen.rsplit(':').next().unwrap().parse().unwrap();
                    assert!(
                        pod.ports.values().any(|p| *p == port),
                        "{what}: --listen {listen} is not a container port"
                    );
                }
                "manager" => {
                    managers += 1;
                    assert_eq!(s(c, "/readinessProbe/httpGet/path"), Some("/readyz"));
                    // The Manager serves HTTPS unless told otherwise.
                    if !args.iter().any(|a| a == "--insecure-http") {
                        assert_eq!(
                            s(c, "/readinessProbe/httpGet/scheme"),
                            Some("HTTPS"),
                            "{what}: the Manager serves HTTPS"
                        );
                    }
                    let listen = flag_value(&args, "--listen").expect("--listen");
                    let port: u64 = listen.rsplit(':').next().unwrap().parse().unwrap();
                    assert!(
                        pod.ports.values().any(|p| *p == port),
                        "{what}: --listen {listen} is not a container port"
                    );
                }
                other => panic!("{what}: runs switchyard {other}"),
            }
        }
    }
    assert!(
        workers >= 1 && managers >= 2,
        "a Worker and both Manager variants"
    );

    // Prometheus scrape annotations name a container port.
    for (what, d) in &docs {
        if let Some(a) = d.pointer("/spec/template/metadata/annotations") {
            let pod = pods.iter().find(|p| p.what.starts_with(what)).unwrap();
            assert_eq!(
                s(a, "/prometheus.io~1scrape"),
                Some("true"),
                "{what}: scrape annotation"
            );
            let port: u64 = s(a, "/prometheus.io~1port").unwrap().parse().unwrap();
            assert!(
                pod.ports.values().any(|p| *p == port),
                "{what}: prometheus.io/port {port} is not a container port"
            );
        } else if matches!(s(d, "/kind"), Some("Deployment" | "StatefulSet")) {
            panic!("{what}: no Prometheus scrape annotations");
        }
    }

    // Services select pods, and their targetPorts are those pods' ports; PDBs select pods.
    let mut worker_pdb = false;
    for (what, d) in &docs {
        match s(d, "/kind") {
            Some("Service") => {
                let selector = labels(d.pointer("/spec/selector"));
                let selected: Vec<&Pod> = pods
                    .iter()
                    .filter(|p| selects(&selector, &p.labels))
                    .collect();
                assert!(
                    !selected.is_empty(),
                    "{what}: Service selector {selector:?} matches no pod template"
                );
                for port in arr(d, "/spec/ports") {
                    let target = port.get("targetPort").or(port.get("port")).unwrap();
                    for p in &selected {
                        assert!(
                            port_of(target, &p.ports).is_some(),
                            "{what}: targetPort {target} is not a port of {}",
                            p.what
                        );
                    }
                }
            }
            Some("PodDisruptionBudget") => {
                let selector = labels(d.pointer("/spec/selector/matchLabels"));
                let selected: Vec<&Pod> = pods
                    .iter()
                    .filter(|p| selects(&selector, &p.labels))
                    .collect();
                assert!(!selected.is_empty(), "{what}: PDB selects no pod template");
                worker_pdb |= selected.iter().any(|p| {
                    arr(&p.spec, "/containers")
                        .iter()
                        .any(|c| arr(c, "/args").iter().any(|a| a == "worker"))
                });
            }
            _ => {}
        }
    }
    assert!(worker_pdb, "no PodDisruptionBudget selects the Workers");
}

// ---------------------------------------------------------------------------------------
// systemd

/// `key=value` lines of a unit or environment file, continuation lines joined.
fn unit_lines(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if cur.is_empty() && (line.starts_with('#') || line.starts_with(';')) {
            continue;
        }
        let (part, more) = match line.strip_suffix('\\') {
            Some(p) => (p, true),
            None => (line, false),
        };
        cur.push_str(part.trim());
        cur.push(' ');
        if !more {
            if let Some((k, v)) = cur.trim().split_once('=') {
                out.push((k.trim().to_string(), v.trim().to_string()));
            }
            cur.clear();
        }
    }
    out
}

fn unit_value<'a>(lines: &'a [(String, String)], key: &str) -> Option<&'a str> {
    lines
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

const INSTALLED_BINARY: &str = "/usr/local/bin/switchyard";

fn systemd_analyze() -> Option<PathBuf> {
    ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// `systemd-analyze verify UNIT` (in `dir`): the lines it printed about our units.
/// It also loads the units ours are ordered against (network-online.target, …) from this
/// host, and whatever it says about those is the host's business, not these files': only
/// lines naming one of our units or `dir` count.
fn verify(tool: &Path, dir: &Path, unit: &str, ours: &[&str]) -> (bool, Vec<String>) {
    let out = Command::new(tool)
        .current_dir(dir)
        .args(["verify", &format!("./{unit}")])
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = dir.to_string_lossy();
    let mut mine = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let stem = |u: &&str| {
            u.trim_end_matches(".service")
                .trim_end_matches('@')
                .to_string()
        };
        if line.contains(dir.as_ref()) || ours.iter().map(stem).any(|u| line.contains(&u)) {
            mine.push(line.to_string());
        } else {
            eprintln!("systemd-analyze verify {unit}, about another unit (ignored): {line}");
        }
    }
    (out.status.success(), mine)
}

#[test]
fn systemd_units_verify_and_use_real_flags() {
    let dir = deploy().join("systemd");
    let units = files(&dir, ".service");
    let names: Vec<String> = units
        .iter()
        .map(|u| u.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["switchyard-manager.service", "switchyard-worker@.service"],
        "the units in docs/deploy/systemd"
    );
    let mut helps = BTreeMap::new();

    // The example environment files: SWITCHYARD_* variables the binary reads, and the
    // flags in *_ARGS (spliced into ExecStart as $WORKER_ARGS / $MANAGER_ARGS).
    let mut env_args: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in files(&dir, ".env.example") {
        let sub = if f.to_string_lossy().contains("worker") {
            "worker"
        } else {
            "manager"
        };
        // Assignments, commented-out ones (alternatives to uncomment) included.
        for line in read(&f).lines() {
            let line = line.trim_start_matches('#');
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            if k.is_empty()
                || !k
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                continue; // prose
            }
            let v = v.split(" #").next().unwrap();
            check_env(&f.display().to_string(), k, &[sub.to_string()], &mut helps);
            if k.ends_with("_ARGS") {
                let mut args = vec![sub.to_string()];
                args.extend(v.split_whitespace().map(String::from));
                check_flags(&format!("{} {k}", f.display()), &args, &mut helps);
                env_args.insert(format!("${k}"), Vec::new());
            }
        }
    }

    let tmp = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_switchyard");
    for (unit, name) in units.iter().zip(&names) {
        let text = read(unit);
        let lines = unit_lines(&text);
        for key in ["ExecStart", "ExecReload"] {
            let Some(cmd) = unit_value(&lines, key) else {
                continue;
            };
            let words: Vec<String> = cmd.split_whitespace().map(String::from).collect();
            assert_eq!(
                words[0], INSTALLED_BINARY,
                "{name}: {key} runs {INSTALLED_BINARY}"
            );
            for w in &words {
                if w.starts_with('$') && !w.starts_with("${") {
                    assert!(
                        env_args.contains_key(w.as_str()),
                        "{name}: {key} splices {w}, which no example environment file defines"
                    );
                }
            }
            let path = check_flags(&format!("{name} {key}"), &words[1..], &mut helps);
            // Environment= is for the service's process (ExecReload's command reads what
            // it needs from its flags).
            if key == "ExecStart" {
                for (_, v) in lines.iter().filter(|(k, _)| k == "Environment") {
                    let var = v.split('=').next().unwrap();
                    check_env(name, var, &path, &mut helps);
                }
            }
        }
        if name.starts_with("switchyard-worker") {
            // The handover (README: "Replacing the Worker process").
            assert_eq!(unit_value(&lines, "Type"), Some("notify"), "{name}");
            assert_eq!(unit_value(&lines, "NotifyAccess"), Some("all"), "{name}");
            assert_eq!(unit_value(&lines, "KillMode"), Some("mixed"), "{name}");
            let reload = unit_value(&lines, "ExecReload").expect("ExecReload");
            assert!(
                reload.contains(" worker upgrade "),
                "{name}: ExecReload hands over"
            );
            let start: Vec<String> = unit_value(&lines, "ExecStart")
                .unwrap()
                .split_whitespace()
                .map(String::from)
                .collect();
            let drain = seconds(flag_value(&start, "--drain-timeout").unwrap_or("30s"));
            let stop: u64 = unit_value(&lines, "TimeoutStopSec")
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                stop > drain + 1,
                "{name}: TimeoutStopSec {stop} must exceed --drain-timeout {drain} s + 1 s"
            );
        }
        for key in [
            "NoNewPrivileges",
            "ProtectSystem",
            "ProtectHome",
            "PrivateTmp",
            "PrivateDevices",
            "ProtectKernelTunables",
            "ProtectKernelModules",
            "RestrictAddressFamilies",
            "LockPersonality",
            "MemoryDenyWriteExecute",
            "SystemCallFilter",
            "CapabilityBoundingSet",
            "User",
        ] {
            assert!(unit_value(&lines, key).is_some(), "{name}: no {key}=");
        }
        // The copy systemd-analyze reads runs the binary built for this test.
        let copy = text.replace(INSTALLED_BINARY, bin);
        std::fs::write(tmp.path().join(name), copy).unwrap();
    }

    let Some(tool) = systemd_analyze() else {
        missing_tool("systemd-analyze", "the systemd units' verification");
        return;
    };
    let ours: Vec<&str> = names.iter().map(String::as_str).collect();
    // The check can fail: a misspelt key and a bad value are reported.
    let bad = read(&tmp.path().join("switchyard-manager.service"))
        .replace("LockPersonality=yes", "LockPersonalty=yes")
        .replace("Type=exec", "Type=bogus");
    std::fs::write(tmp.path().join("switchyard-bad.service"), bad).unwrap();
    let (_, said) = verify(
        &tool,
        tmp.path(),
        "switchyard-bad.service",
        &["switchyard-bad.service"],
    );
    assert!(
        said.iter().any(|l| l.contains("LockPersonalty"))
            && said.iter().any(|l| l.contains("bogus")),
        "systemd-analyze verify did not report a broken unit: {said:?}"
    );
    std::fs::remove_file(tmp.path().join("switchyard-bad.service")).unwrap();

    for name in &names {
        // A template is verified as an instance of it.
        let unit = name.replace("@.", "@prod.");
        let (ok, said) = verify(&tool, tmp.path(), &unit, &ours);
        assert!(
            ok && said.is_empty(),
            "systemd-analyze verify {unit} (ExecStart rewritten to {bin}):\n{}",
            said.join("\n")
        );
        // Hardening, as systemd scores it (0 = most locked down, 10 = not at all).
        let out = Command::new(&tool)
            .current_dir(tmp.path())
            .args(["security", "--offline=true", &format!("./{unit}")])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let score: f64 = text
            .lines()
            .find_map(|l| l.split_once("Overall exposure level for ").map(|(_, r)| r))
            .and_then(|r| r.split(": ").nth(1))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no exposure level from systemd-analyze security {unit}:\n{text}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        assert!(
            score <= 2.5,
            "{unit}: systemd-analyze security exposure {score} > 2.5:\n{text}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Docker

/// Dockerfile instructions: (INSTRUCTION, rest), continuation lines joined, comments out.
fn dockerfile(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        let (part, more) = match t.strip_suffix('\\') {
            Some(p) => (p, true),
            None => (t, false),
        };
        cur.push_str(part.trim());
        cur.push(' ');
        if !more {
            let c = cur.trim().to_string();
            let (i, rest) = c.split_once(' ').unwrap_or((c.as_str(), ""));
            out.push((i.to_uppercase(), rest.trim().to_string()));
            cur.clear();
        }
    }
    out
}

fn hadolint() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SWITCHYARD_HADOLINT") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("hadolint"))
        .find(|p| p.is_file())
}

#[test]
fn dockerfile_is_multi_stage_locked_and_non_root() {
    let path = deploy().join("Dockerfile");
    let steps = dockerfile(&read(&path));
    let froms: Vec<usize> = steps
        .iter()
        .enumerate()
        .filter(|(_, (i, _))| i == "FROM")
        .map(|(n, _)| n)
        .collect();
    assert!(
        froms.len() >= 2,
        "a multi-stage build: {} FROM",
        froms.len()
    );
    let build = &steps[froms[0]..*froms.last().unwrap()];
    let last = &steps[*froms.last().unwrap()..];
    assert!(
        build.iter().any(|(i, r)| i == "RUN"
            && r.contains("cargo build --release --locked -p switchyard-cli --bin switchyard")),
        "the build stage runs cargo build --release --locked -p switchyard-cli --bin switchyard"
    );
    let user = last
        .iter()
        .rev()
        .find(|(i, _)| i == "USER")
        .map(|(_, u)| u.clone())
        .expect("the final stage sets USER");
    let who = user.split(':').next().unwrap();
    assert!(
        !matches!(who, "root" | "0" | ""),
        "the final stage runs as {user}"
    );
    assert!(
        last.iter()
            .any(|(i, r)| i == "COPY" && r.starts_with("--from=") && r.contains("switchyard")),
        "the final stage copies the binary from the build stage"
    );
    assert!(
        last.iter()
            .any(|(i, r)| i == "ENTRYPOINT" && r.replace(' ', "") == r#"["switchyard"]"#),
        "ENTRYPOINT [\"switchyard\"]"
    );
    assert!(
        !steps.iter().any(|(i, _)| i == "HEALTHCHECK"),
        "no HEALTHCHECK: the orchestrator probes /readyz"
    );
    let exposed: BTreeSet<&str> = last
        .iter()
        .filter(|(i, _)| i == "EXPOSE")
        .flat_map(|(_, r)| r.split_whitespace())
        .collect();
    for port in ["9000", "8080", "9901"] {
        assert!(exposed.contains(port), "EXPOSE {port}");
    }
    let ignore = read(&repo().join(".dockerignore"));
    for p in ["target", ".git"] {
        assert!(
            ignore
                .lines()
                .any(|l| l.trim().trim_end_matches('/').trim_start_matches('/') == p),
            ".dockerignore (the build context is the repository root) leaves out {p}"
        );
    }

    let Some(lint) = hadolint() else {
        missing_tool("hadolint", "the Dockerfile's lint");
        return;
    };
    let run = |file: &Path| {
        let out = Command::new(&lint)
            .arg("--no-color")
            .arg(file)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", lint.display()));
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    // The lint can fail: an unpinned base image and apt-get without cleanup are reported.
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("Dockerfile");
    std::fs::write(
        &bad,
        "FROM debian\nRUN apt-get update && apt-get install curl\n",
    )
    .unwrap();
    let (ok, said) = run(&bad);
    assert!(
        !ok && said.contains("DL3006"),
        "hadolint passed a bad Dockerfile: {said}"
    );
    let (ok, said) = run(&path);
    assert!(
        ok && said.trim().is_empty(),
        "hadolint {}:\n{said}",
        path.display()
    );
}

// ---------------------------------------------------------------------------------------
// Grafana

/// The names a Prometheus text exposition lets a query use: every sample's name, and for
/// each `# TYPE` the series that type has (a counter's `_total`, a histogram's `_bucket`,
/// `_sum`, `_count`), so a metric with no sample yet (a family no request has touched)
/// counts.
fn exposed_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (name, kind) = (it.next().unwrap(), it.next().unwrap_or("unknown"));
            let suffixes: &[&str] = match kind {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                "summary" => &["", "_sum", "_count", "_created"],
                "info" => &["_info"],
                _ => &[""],
            };
            for s in suffixes {
                names.insert(format!("{name}{s}"));
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

/// Metric names (`switchyard_*`, `process_*`) in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut in_string = None;
    while i < bytes.len() {
        let c = bytes[i];
        if let Some(q) = in_string {
            if c == '\\' {
                i += 1;
            } else if c == q {
                in_string = None;
            }
            i += 1;
            continue;
        }
        if c == '"' || c == '\'' {
            in_string = Some(c);
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == '_' || bytes[i] == ':')
            {
                i += 1;
            }
            let word: String = bytes[start..i].iter().collect();
            if word.starts_with("switchyard_") || word.starts_with("process_") {
                out.insert(word);
            }
            continue;
        }
        i += 1;
    }
    out
}

#[test]
fn metric_names_are_read_from_queries_and_expositions() {
    assert_eq!(
        metric_names(
            r#"sum by (class) (label_replace(rate(switchyard_requests_total{job=~"switchyard_x"}[1m]), "class", "${1}xx", "code", "([0-9]).."))"#
        ),
        BTreeSet::from(["switchyard_requests_total".to_string()])
    );
    let names = exposed_names(
        "# TYPE switchyard_swaps counter\n# TYPE switchyard_d histogram\nswitchyard_g{a=\"b\"} 1\n# EOF\n",
    );
    for n in [
        "switchyard_swaps_total",
        "switchyard_d_bucket",
        "switchyard_d_count",
        "switchyard_g",
    ] {
        assert!(names.contains(n), "{n} in {names:?}");
    }
    assert!(!names.contains("switchyard_swaps"));
}

/// Every query of the dashboard (panels, annotations, template variables), with where.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = deploy().join("grafana-dashboard.json");
    let d: Value = serde_json::from_str(&read(&path)).unwrap();
    assert!(
        d["schemaVersion"].as_u64().unwrap() >= 39,
        "schemaVersion {} < 39",
        d["schemaVersion"]
    );
    assert!(
        arr(&d, "/__inputs")
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS"),
        "an input DS_PROMETHEUS"
    );
    let vars: Vec<&str> = arr(&d, "/templating/list")
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    for v in ["DS_PROMETHEUS", "job", "instance"] {
        assert!(vars.contains(&v), "template variable {v} (have {vars:?})");
    }
    let ds_ok = |ds: &Value| ds["uid"] == "${DS_PROMETHEUS}" && ds["type"] == "prometheus";
    let mut queries = Vec::new();
    let mut rows = Vec::new();
    for p in arr(&d, "/panels") {
        let title = p["title"].as_str().unwrap_or("?").to_string();
        if p["type"] == "row" {
            rows.push(title);
            continue;
        }
        assert!(
            ds_ok(&p["datasource"]),
            "panel {title:?}: datasource ${{DS_PROMETHEUS}}"
        );
        let targets = arr(p, "/targets");
        assert!(!targets.is_empty(), "panel {title:?}: no targets");
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(
                !expr.trim().is_empty(),
                "panel {title:?}: a target without expr"
            );
            assert!(
                ds_ok(&t["datasource"]),
                "panel {title:?}: target datasource"
            );
            queries.push((format!("panel {title:?}"), expr.to_string()));
        }
    }
    assert_eq!(
        rows,
        ["The four numbers", "Traffic", "Workers"],
        "the rows, in order"
    );
    for a in arr(&d, "/annotations/list") {
        if let Some(expr) = a["expr"].as_str() {
            assert!(
                ds_ok(&a["datasource"]),
                "annotation {}: datasource",
                a["name"]
            );
            queries.push((format!("annotation {}", a["name"]), expr.to_string()));
        }
    }
    for v in arr(&d, "/templating/list") {
        if let Some(q) = v.pointer("/query/query").and_then(Value::as_str) {
            queries.push((format!("variable {}", v["name"]), q.to_string()));
        }
    }
    // The four numbers are there.
    let all: String = queries.iter().map(|(_, q)| q.as_str()).collect();
    for m in [
        "switchyard_manager_propagation_seconds_bucket",
        "switchyard_generation_errors_total",
        "switchyard_config_swaps_total",
        "process_resident_memory_bytes",
        "switchyard_swap_allocated_bytes_bucket",
        "switchyard_snapshot_generations_live",
        "switchyard_manager_audit_completeness",
    ] {
        assert!(all.contains(m), "the dashboard does not show {m}");
    }
    queries
}

/// A proxy behind an API key, so that a request without one is a policy denial.
const GUARDED: &str = r#"apiVersion: switchyard.dev/v1
kind: Credential
metadata: { name: clients }
spec:
  type: api-keys
  keys:
    - { consumer: acme, key: "deploy-files-key-0001" }
---
apiVersion: switchyard.dev/v1
kind: Proxy
metadata: { name: guarded }
spec:
  routes: [{ pathPrefix: /guarded }]
  upstream:
    targets: [{ url: "http://127.0.0.1:9" }]
  policies:
    - type: api-key
      header: x-api-key
      credentials: [clients]
"#;

/// The `/metrics` of a real Manager and of a real Worker following it, once each has
/// something to count: a metric family with no sample is not exposed at all (not even its
/// `# TYPE`), so the Manager gets a commit its Worker ACKs (commits, reports,
/// propagation, completeness, connected Workers) and a refused token, and the Worker a
/// request a policy denies.
fn exposed_by_both() -> BTreeSet<String> {
    let m = common::Manager::with_env("dev");
    let w = m.worker("dev", "w1");
    let file = m.dir().join("guarded.yaml");
    std::fs::write(&file, GUARDED).unwrap();
    m.ok(
        &[
            "apply",
            "--env",
            "dev",
            "--wait",
            "--timeout",
            "20s",
            file.to_str().unwrap(),
        ],
        &[],
    );
    let (status, _, _) = common::get(w.listen, "/guarded/x");
    assert_eq!(status, 401, "a request without an API key");
    let refused = m
        .block_on(m.api.transport().with_token("not-a-token").unwrap().send(
            http::Method::GET,
            "/v1/envs",
            None::<&()>,
        ))
        .unwrap();
    assert_eq!(refused.status, 401);
    let manager = || {
        let reply = m
            .block_on(
                m.api
                    .transport()
                    .send(http::Method::GET, "/metrics", None::<&()>),
            )
            .unwrap();
        assert_eq!(reply.status, 200, "the Manager's /metrics");
        exposed_names(&String::from_utf8_lossy(&reply.body))
    };
    let worker = || {
        let (status, _, body) = common::get(w.admin, "/metrics");
        assert_eq!(status, 200, "the Worker's /metrics");
        exposed_names(&body)
    };
    // What the commit's ACK, the refused token and the denial produce (counted as they are
    // processed: wait for them, not for a time).
    let seen = |names: &BTreeSet<String>| {
        [
            "switchyard_manager_commits_total",
            "switchyard_manager_propagation_seconds_bucket",
            "switchyard_manager_audit_completeness",
            "switchyard_manager_auth_failures_total",
            "switchyard_policy_denials_total",
            "switchyard_config_swaps_total",
        ]
        .iter()
        .all(|n| names.contains(*n))
    };
    let mut names = BTreeSet::new();
    common::wait_until("the Manager's and the Worker's metrics", || {
        names = manager();
        names.extend(worker());
        seen(&names)
    });
    names
}

/// The dashboard's metric names that neither process exposes, with where they are used.
fn missing_metrics() -> Vec<String> {
    let queries = dashboard_queries();
    let exposed = exposed_by_both();
    let mut missing: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (where_, q) in &queries {
        for n in metric_names(q) {
            if !exposed.contains(&n) {
                missing.entry(n).or_default().insert(where_.clone());
            }
        }
    }
    missing
        .into_iter()
        .map(|(n, w)| format!("{n} (in {})", w.into_iter().collect::<Vec<_>>().join(", ")))
        .collect()
}

#[test]
fn grafana_dashboard_queries_metrics_that_exist() {
    let missing = missing_metrics();
    assert!(
        missing.is_empty(),
        "metrics the dashboard queries that neither a Manager nor a Worker exposes:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn the_deploy_readme_runs_real_flags() {
    // Every `switchyard worker|manager …` command line in docs/deploy/README.md's shell
    // blocks (continuation lines joined).
    let text = read(&deploy().join("README.md"));
    let mut helps = BTreeMap::new();
    let mut checked = 0;
    let mut in_sh = false;
    let mut cur = String::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let line = line.split(" #").next().unwrap();
        match line.strip_suffix('\\') {
            Some(part) => {
                cur.push_str(part);
                continue;
            }
            None => cur.push_str(line),
        }
        let words: Vec<String> = cur.split_whitespace().map(String::from).collect();
        cur.clear();
        for (i, w) in words.iter().enumerate() {
            // The binary, or the image (its ENTRYPOINT is the binary).
            let runs =
                w == "switchyard" || w.ends_with("/switchyard") || w.starts_with("switchyard:");
            if runs
                && matches!(
                    words.get(i + 1).map(String::as_str),
                    Some("worker" | "manager")
                )
            {
                let end = words[i + 1..]
                    .iter()
                    .position(|w| matches!(w.as_str(), ">" | "&&" | "|" | "&"))
                    .map_or(words.len(), |p| i + 1 + p);
                check_flags("docs/deploy/README.md", &words[i + 1..end], &mut helps);
                checked += 1;
            }
        }
    }
    assert!(checked >= 3, "only {checked} command lines found");
}
