//! The operator's commands against a real Manager process (and, where it matters, a real
//! Manager-mode Worker and sample upstream): `status`, `audit`, `dump` (round trip through
//! `plan`), and `credential set|rotate`.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::{Manager, get, upstream, wait_until};

/// `manager token create` for `dev` with `role`, named `name`; returns the secret.
fn token(m: &Manager, role: &str, name: &str) -> String {
    m.token(&["--role", role, "--env", "dev", "--name", name])
}

/// Writes `text` to `rel` under the test's directory.
fn write(m: &Manager, rel: &str, text: &str) -> PathBuf {
    let path = m.dir().join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

fn proxy(name: &str, upstream: SocketAddr, extra: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: {name} }}\nspec:\n  routes: [{{ pathPrefix: /{name} }}]\n  upstream:\n    targets: [{{ url: \"http://{upstream}\" }}]\n{extra}"
    )
}

/// A proxy that sends the `provider` secret upstream in `x-upstream-key`.
fn keyed_proxy(upstream: SocketAddr) -> String {
    proxy(
        "llm",
        upstream,
        "  policies:\n    - type: upstream-credential\n      credential: provider\n      header: x-upstream-key\n      format: \"{}\"\n",
    )
}

/// The `x-upstream-key` the sample upstream received through the Worker.
fn upstream_key(gw: SocketAddr) -> String {
    let (status, _, body) = get(gw, "/llm/x");
    if status != 200 {
        return format!("status {status}");
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["headers"]["x-upstream-key"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn status_shows_an_acked_worker_its_lag_and_the_revisions_propagation() {
    let m = Manager::with_env("dev");
    let (_up, up) = upstream("up");
    let _worker = m.worker("dev", "w1");
    // The Worker is connected before the commit, so it is expected to ACK it.
    wait_until("the Worker is connected", || {
        m.json(&["status", "--env", "dev"])["workers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["id"] == "w1" && w["connected"] == true)
    });
    let file = write(&m, "files/a.yaml", &proxy("a", up, ""));
    m.ok(&["apply", "--env", "dev", file.to_str().unwrap()], &[]);
    wait_until("w1 ACKs revision 1", || {
        let s = m.json(&["status", "--env", "dev"]);
        s["workers"][0]["revision"] == 1 && s["revisions"][0]["propagation_ms"].is_i64()
    });
    // Its statistics (sent when it connects, then every 10 s) say where it serves from.
    wait_until("w1 says it serves what the Manager gave it", || {
        m.json(&["status", "--env", "dev"])["workers"][0]["served_from"] == "manager"
    });

    let s = m.json(&["status", "--env", "dev", "--revisions", "5"]);
    assert_eq!(s["env"], "dev");
    assert_eq!(s["revision"], 1);
    let w = &s["workers"][0];
    assert_eq!(w["id"], "w1");
    assert_eq!(w["connected"], true);
    assert!(
        w["manager"].is_string(),
        "the Manager holding its stream: {w}"
    );
    assert_eq!(w["lag"], 0);
    assert!(
        w["address"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{w}"
    );
    assert_eq!(w["last_report"]["status"], "ack");
    assert_eq!(w["last_report"]["revision"], 1);
    assert!(
        w["last_seen"].is_i64() && w["last_seen_ago_ms"].is_i64(),
        "{w}"
    );
    let revs = s["revisions"].as_array().unwrap();
    assert_eq!(revs.len(), 1, "{s}");
    let r = &revs[0];
    assert_eq!(r["revision"], 1);
    assert_eq!(r["operation"], "apply");
    assert!(r["actor"].as_str().unwrap().contains("admin"), "{r}");
    assert_eq!(r["changes"][0]["name"], "a");
    assert_eq!(r["expected_workers"], 1);
    assert_eq!(r["acked_expected"], 1);
    assert_eq!(r["audit_completeness"], 1.0);

    let text = m.ok(&["status", "--env", "dev"], &[]);
    assert!(
        text.starts_with("dev: revision 1, 1 Worker(s), 1 connected"),
        "{text}"
    );
    let header = text
        .lines()
        .find(|l| l.starts_with("WORKER"))
        .unwrap_or_else(|| panic!("{text}"));
    let row = text.lines().find(|l| l.starts_with("w1 ")).unwrap();
    // Aligned: each value starts under its column's header.
    // The Worker says which build it runs (the same workspace version as this test).
    for (column, value) in [
        ("VERSION", env!("CARGO_PKG_VERSION")),
        ("REVISION", "1"),
        ("LAG", "0"),
        ("LAST REPORT", "ACK r1"),
    ] {
        let at = header.find(column).unwrap();
        assert!(row[at..].starts_with(value), "{column}:\n{header}\n{row}");
    }
    assert!(row.contains("now (connected)"), "{row}");
    let rev_header = text.lines().find(|l| l.starts_with("REVISION")).unwrap();
    let rev_row = text.lines().find(|l| l.starts_with("1 ")).unwrap();
    for (column, value) in [("OPERATION", "apply"), ("CHANGES", "1"), ("AUDIT", "1/1")] {
        let at = rev_header.find(column).unwrap();
        assert!(
            rev_row[at..].starts_with(value),
            "{column}:\n{rev_header}\n{rev_row}"
        );
    }
    assert!(rev_row.contains("ms"), "{rev_row}");

    let err = m.fails(&["status", "--env", "nope"], &[]);
    assert!(err.contains("does not exist on the Manager"), "{err}");
}

#[test]
fn audit_filters_by_env_entity_actor_and_age_newest_first() {
    let m = Manager::with_env("dev");
    m.ok(&["env", "create", "stage"], &[]);
    let up: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let a = write(&m, "a/a.yaml", &proxy("a", up, ""));
    let b = write(&m, "b/b.yaml", &proxy("b", up, ""));
    m.ok(&["apply", "--env", "dev", a.to_str().unwrap()], &[]);
    m.ok(&["apply", "--env", "stage", a.to_str().unwrap()], &[]);
    let ci = token(&m, "deployer", "ci");
    let (ok, out, err) = m.cli_as(&ci, &["apply", "--env", "dev", b.to_str().unwrap()], &[]);
    assert!(ok, "{out}{err}");
    // A second version of a, by the admin.
    write(
        &m,
        "a/a.yaml",
        &proxy(
            "a",
            up,
            "  policies:\n    - type: headers\n      response: { set: { x-v: \"2\" } }\n",
        ),
    );
    m.ok(&["apply", "--env", "dev", a.to_str().unwrap()], &[]);

    let records = |args: &[&str]| -> Vec<serde_json::Value> {
        let mut all = vec!["audit"];
        all.extend_from_slice(args);
        m.json(&all).as_array().unwrap().clone()
    };
    let newest_first = |rs: &[serde_json::Value]| {
        rs.windows(2).all(|w| {
            w[0]["at"].as_i64() >= w[1]["at"].as_i64() && w[0]["id"].as_i64() > w[1]["id"].as_i64()
        })
    };

    let dev = records(&["--env", "dev"]);
    assert!(newest_first(&dev), "{dev:?}");
    assert!(dev.iter().all(|r| r["env"] == "dev"), "{dev:?}");
    let proxies: Vec<(&str, Option<u64>)> = dev
        .iter()
        .filter(|r| r["entity_kind"] == "Proxy")
        .map(|r| {
            (
                r["entity_name"].as_str().unwrap(),
                r["new_version"].as_u64(),
            )
        })
        .collect();
    assert_eq!(proxies, [("a", Some(2)), ("b", Some(1)), ("a", Some(1))]);

    // The kind is case-insensitive; the entity's records only, across environments.
    let a_records = records(&["--entity", "PROXY/a"]);
    assert_eq!(a_records.len(), 3, "{a_records:?}");
    assert!(a_records.iter().all(|r| r["entity_name"] == "a"));
    assert_eq!(records(&["--entity", "proxy/a", "--env", "stage"]).len(), 1);
    assert!(records(&["--entity", "proxy/none"]).is_empty());

    // By actor: the deployer's apply only.
    let ci_actor = dev.iter().find(|r| r["entity_name"] == "b").unwrap()["actor"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ci_actor.starts_with("ci ("), "{ci_actor}");
    let by_ci = records(&["--actor", &ci_actor]);
    assert_eq!(by_ci.len(), 1, "{by_ci:?}");
    assert_eq!(by_ci[0]["entity_name"], "b");

    // By age: a duration, unix milliseconds, an RFC 3339 time.
    assert_eq!(records(&["--env", "dev", "--since", "1h"]).len(), dev.len());
    let newest_at = dev[0]["at"].as_i64().unwrap();
    let recent = records(&["--env", "dev", "--since", &newest_at.to_string()]);
    assert!(
        !recent.is_empty()
            && recent
                .iter()
                .all(|r| r["at"].as_i64().unwrap() >= newest_at)
    );
    assert!(records(&["--since", "2999-01-01T00:00:00Z"]).is_empty());
    assert_eq!(records(&["--env", "dev", "--limit", "2"]).len(), 2);
    // A time range's end, and paging: the next page starts below the last id shown.
    let oldest_at = dev[dev.len() - 1]["at"].as_i64().unwrap();
    let until = records(&["--env", "dev", "--until", &oldest_at.to_string()]);
    assert!(
        !until.is_empty()
            && until.len() < dev.len()
            && until.iter().all(|r| r["at"].as_i64().unwrap() <= oldest_at),
        "{until:?}"
    );
    let page = records(&["--env", "dev", "--limit", "2"]);
    let last_id = page[1]["id"].as_i64().unwrap().to_string();
    let next = records(&["--env", "dev", "--limit", "2", "--before", &last_id]);
    assert_eq!(next[..], dev[2..4], "the next page follows the first");

    // Text: a table, newest first, times in UTC to the second.
    let text = m.ok(&["audit", "--env", "dev", "--entity", "proxy/a"], &[]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("ID")
            && lines[0].contains("TIME")
            && lines[0].contains("OPERATION")
            && lines[0].contains("DETAIL"),
        "{text}"
    );
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[1].contains("proxy/a") && lines[1].contains("v1 -> v2"),
        "{text}"
    );
    assert!(lines[2].contains("- -> v1"), "{text}");
    let time = lines[1].split_whitespace().nth(1).unwrap();
    assert!(
        time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{time}"
    );
    assert_eq!(
        m.ok(&["audit", "--entity", "proxy/none"], &[]).trim(),
        "no audit records match"
    );

    // Bad input: one line naming the expected form, nothing asked.
    for bad in ["proxy", "proxy/", "/a"] {
        let err = m.fails(&["audit", "--entity", bad], &[]);
        assert!(err.contains("KIND/NAME"), "{err}");
    }
    let err = m.fails(&["audit", "--since", "yesterday"], &[]);
    assert!(err.contains("duration"), "{err}");
    // A deployer must name its environment.
    let (ok, _, err) = m.cli_as(&ci, &["audit"], &[]);
    assert!(!ok && err.contains("env"), "{err}");
}

const SECRET: &str = "sk-very-secret-value-123";
const API_KEY: &str = "acme-key-0000001";

#[test]
fn dump_plans_back_to_no_changes_and_never_writes_a_secret() {
    let m = Manager::with_env("dev");
    let up: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let files = m.dir().join("src");
    write(
        &m,
        "src/credentials.yaml",
        "apiVersion: switchyard.dev/v1\nkind: Credential\nmetadata: { name: provider }\nspec:\n  type: secret\n  value: \"${env:SWITCHYARD_TEST_PROVIDER}\"\n---\napiVersion: switchyard.dev/v1\nkind: Credential\nmetadata: { name: acme-keys, labels: { team: \"yes\" } }\nspec:\n  type: api-keys\n  keys:\n    - { consumer: acme, key: \"${env:SWITCHYARD_TEST_ACME}\" }\n",
    );
    write(&m, "src/llm.yaml", &keyed_proxy(up));
    write(
        &m,
        "src/tricky.yaml",
        &proxy(
            "tricky",
            up,
            "  policies:\n    - type: api-key\n      credentials: [acme-keys]\n    - type: headers\n      response:\n        set: { x-flag: \"yes\", x-version: \"1.0\", x-hex: \"0x10\", x-null: \"null\", x-dollar: \"$${literal}\", x-colon: \"a: b\" }\n",
        ),
    );
    let secrets = [
        ("SWITCHYARD_TEST_PROVIDER", SECRET),
        ("SWITCHYARD_TEST_ACME", API_KEY),
    ];
    m.ok(
        &["apply", "--env", "dev", files.to_str().unwrap()],
        &secrets,
    );

    let dumped_vars = [
        ("SWITCHYARD_CREDENTIAL_PROVIDER", SECRET),
        ("SWITCHYARD_CREDENTIAL_ACME_KEYS_KEY_0", API_KEY),
    ];
    let plan = |path: &Path, env: &[(&str, &str)]| {
        let (ok, out, err) = m.cli_with(&["plan", "--env", "dev", path.to_str().unwrap()], env);
        (ok, out, err)
    };

    // One multi-document YAML on stdout.
    let (ok, yaml, err) = m.cli_with(&["dump", "--env", "dev"], &[]);
    assert!(ok, "{err}");
    assert!(
        !yaml.contains(SECRET) && !err.contains(SECRET),
        "{yaml}{err}"
    );
    assert!(
        !yaml.contains(API_KEY) && !err.contains(API_KEY),
        "{yaml}{err}"
    );
    assert!(!yaml.contains("<redacted>"), "{yaml}");
    assert!(
        yaml.contains("value: \"${env:SWITCHYARD_CREDENTIAL_PROVIDER}\""),
        "{yaml}"
    );
    assert_eq!(yaml.matches("\n---\n").count(), 3, "{yaml}");
    assert!(err.contains("4 entities at revision 1 dumped"), "{err}");
    for (var, _) in dumped_vars {
        assert!(err.contains(var), "{var} not listed:\n{err}");
    }
    let dump_file = write(&m, "dump.yaml", &yaml);
    let (ok, out, err) = plan(&dump_file, &dumped_vars);
    assert!(ok, "{out}{err}");
    assert!(out.contains("no changes"), "{out}");
    // Without the variables, the dump cannot be applied (and says which one is missing).
    let (ok, _, err) = plan(&dump_file, &[]);
    assert!(!ok && err.contains("SWITCHYARD_CREDENTIAL_"), "{err}");
    // Another value is a change: the reference really carries the secret.
    let (_, out, _) = plan(
        &dump_file,
        &[
            ("SWITCHYARD_CREDENTIAL_PROVIDER", "another-value"),
            dumped_vars[1],
        ],
    );
    assert!(
        out.contains("~ credential/provider: v1 -> v2 (hot)"),
        "{out}"
    );

    // One file per entity.
    let dir = m.dir().join("dump");
    let (ok, out, err) = m.cli_with(
        &["dump", "--env", "dev", "--dir", dir.to_str().unwrap()],
        &[],
    );
    assert!(ok, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    let written: Vec<String> = files_under(&dir)
        .iter()
        .map(|p| p.strip_prefix(&dir).unwrap().display().to_string())
        .collect();
    assert_eq!(
        written,
        [
            "credentials/acme-keys.yaml",
            "credentials/provider.yaml",
            "proxies/llm.yaml",
            "proxies/tricky.yaml"
        ]
    );
    for f in files_under(&dir) {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            !text.contains(SECRET) && !text.contains(API_KEY),
            "{}: {text}",
            f.display()
        );
    }
    let (ok, out, err) = plan(&dir, &dumped_vars);
    assert!(ok, "{out}{err}");
    assert!(out.contains("no changes"), "{out}");

    let err = m.fails(&["dump", "--env", "nope"], &[]);
    assert!(err.contains("does not exist on the Manager"), "{err}");
}

#[test]
fn credential_set_and_rotate_reach_the_worker_and_are_audited() {
    let m = Manager::with_env("dev");
    let (_up, up) = upstream("up");
    let value_file = write(&m, "secret.txt", "first-secret\n");
    let vf = value_file.to_str().unwrap();

    // Rotating what does not exist is refused; nothing changes.
    let err = m.fails(
        &[
            "credential",
            "rotate",
            "--env",
            "dev",
            "provider",
            "--from-file",
            vf,
        ],
        &[],
    );
    assert!(err.contains("unknown_credential"), "{err}");
    assert!(err.contains("credential set"), "{err}");
    assert_eq!(m.revision("dev"), 0);

    // set: creates a `type: secret` credential (the file's trailing newline dropped).
    let out = m.ok(
        &[
            "credential",
            "set",
            "--env",
            "dev",
            "provider",
            "--from-file",
            vf,
        ],
        &[],
    );
    assert_eq!(
        out.trim(),
        "dev: credential provider created (v1), revision 1"
    );
    // `apply` checks files locally, so the proxy goes with the credential's manifest (the
    // value from the environment): the same value as `set` gave, so the credential is
    // unchanged — `set` wrote exactly the manifest an operator would.
    write(&m, "files/llm.yaml", &keyed_proxy(up));
    let provider = "apiVersion: switchyard.dev/v1\nkind: Credential\nmetadata: { name: provider }\nspec: { type: secret, value: \"${env:SWITCHYARD_TEST_PROVIDER}\" }\n";
    let files = write(&m, "files/provider.yaml", provider)
        .parent()
        .unwrap()
        .to_path_buf();
    let out = m.ok(
        &["apply", "--env", "dev", files.to_str().unwrap()],
        &[("SWITCHYARD_TEST_PROVIDER", "first-secret")],
    );
    assert!(
        out.contains("proxy/llm: created v1") && !out.contains("credential/provider"),
        "{out}"
    );
    let w1 = m.worker("dev", "w1");
    let gw = w1.listen;
    wait_until("the Worker sends the first secret", || {
        upstream_key(gw) == "first-secret"
    });

    // set with the same value: nothing to do.
    let out = m.ok(
        &[
            "credential",
            "set",
            "--env",
            "dev",
            "provider",
            "--from-file",
            vf,
        ],
        &[],
    );
    assert_eq!(
        out.trim(),
        "dev: credential provider unchanged (v1): it already has this value, revision 2"
    );

    // set: replaces the value, from a variable of any name.
    let out = m.ok(
        &[
            "credential",
            "set",
            "--env",
            "dev",
            "provider",
            "--from-env",
            "MY_VALUE",
        ],
        &[("MY_VALUE", "second-secret")],
    );
    assert_eq!(
        out.trim(),
        "dev: credential provider set (v1 -> v2), revision 3"
    );

    // rotate: refuses the value it already has, then takes a new one.
    let err = m.fails(
        &[
            "credential",
            "rotate",
            "--env",
            "dev",
            "provider",
            "--from-env",
            "V",
        ],
        &[("V", "second-secret")],
    );
    assert!(
        err.contains("same_value") && err.contains("new value"),
        "{err}"
    );
    let (ok, out, err) = m.cli_with(
        &[
            "credential",
            "rotate",
            "--env",
            "dev",
            "provider",
            "--from-env",
            "V",
            "--output",
            "json",
        ],
        &[("V", "third-secret")],
    );
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            r["rotated"].clone(),
            r["old_version"].clone(),
            r["new_version"].clone(),
            r["revision"].clone()
        ),
        (true.into(), 2.into(), 3.into(), 4.into()),
        "{r}"
    );
    wait_until("the Worker sends the rotated secret", || {
        upstream_key(gw) == "third-secret"
    });

    // Other credential types change through manifests.
    let keys = write(
        &m,
        "files/keys.yaml",
        "apiVersion: switchyard.dev/v1\nkind: Credential\nmetadata: { name: keys }\nspec:\n  type: api-keys\n  keys: [{ consumer: a, key: k-aaaaaaaa }]\n",
    );
    m.ok(&["apply", "--env", "dev", keys.to_str().unwrap()], &[]);
    let before = m.revision("dev");
    for verb in ["set", "rotate"] {
        let err = m.fails(
            &[
                "credential",
                verb,
                "--env",
                "dev",
                "keys",
                "--from-env",
                "V",
            ],
            &[("V", "k-bbbbbbbb")],
        );
        assert!(
            err.contains("api-keys") && err.contains("manifest"),
            "{err}"
        );
    }

    // Bad input: one line naming the cause, nothing sent.
    let empty = write(&m, "empty.txt", "\n");
    let err = m.fails(
        &[
            "credential",
            "set",
            "--env",
            "dev",
            "provider",
            "--from-file",
            empty.to_str().unwrap(),
        ],
        &[],
    );
    assert!(err.contains("empty"), "{err}");
    let err = m.fails(
        &[
            "credential",
            "set",
            "--env",
            "dev",
            "provider",
            "--from-env",
            "SWITCHYARD_TEST_UNSET",
        ],
        &[],
    );
    assert!(
        err.contains("SWITCHYARD_TEST_UNSET") && err.contains("not set"),
        "{err}"
    );
    let err = m.fails(
        &[
            "credential",
            "set",
            "--env",
            "dev",
            "provider",
            "--from-file",
            "/nonexistent/x",
        ],
        &[],
    );
    assert!(err.contains("/nonexistent/x"), "{err}");
    let (ok, _, err) = m.cli_with(&["credential", "set", "--env", "dev", "provider"], &[]);
    assert!(!ok && err.contains("--from-file"), "{err}");
    let (ok, _, err) = m.cli_with(
        &[
            "credential",
            "set",
            "--env",
            "dev",
            "provider",
            "--from-file",
            vf,
            "--from-env",
            "V",
        ],
        &[("V", "x")],
    );
    assert!(!ok && err.contains("cannot be used with"), "{err}");
    let err = m.fails(
        &[
            "credential",
            "set",
            "--env",
            "nope",
            "provider",
            "--from-file",
            vf,
        ],
        &[],
    );
    assert!(err.contains("does not exist on the Manager"), "{err}");
    // A viewer may not change anything.
    let viewer = token(&m, "viewer", "watcher");
    let (ok, _, err) = m.cli_as(
        &viewer,
        &[
            "credential",
            "set",
            "--env",
            "dev",
            "provider",
            "--from-file",
            vf,
        ],
        &[],
    );
    assert!(!ok && err.contains("may not do this"), "{err}");
    assert_eq!(m.revision("dev"), before);

    // One audit record per change, newest first, with its operation.
    let trail = m.json(&["audit", "--env", "dev", "--entity", "credential/provider"]);
    let ops: Vec<(&str, Option<u64>, Option<u64>)> = trail
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["operation"].as_str().unwrap(),
                r["old_version"].as_u64(),
                r["new_version"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            ("rotate-credential", Some(2), Some(3)),
            ("set-credential", Some(1), Some(2)),
            ("set-credential", None, Some(1)),
        ]
    );

    // The values never appear in what the commands print, nor in the audit trail or a dump.
    let audit_text = m.ok(&["audit", "--env", "dev"], &[]);
    let (_, dump, dump_err) = m.cli_with(&["dump", "--env", "dev"], &[]);
    let status = m.ok(&["status", "--env", "dev"], &[]);
    for text in [&audit_text, &dump, &dump_err, &status, &trail.to_string()] {
        for secret in ["first-secret", "second-secret", "third-secret"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}

/// A self-signed ECDSA certificate for `host`: (certificate PEM, key PEM).
fn self_signed(host: &str) -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec![host.to_string()]).unwrap();
    (c.cert.pem(), c.signing_key.serialize_pem())
}

#[test]
fn certificate_set_creates_replaces_and_refuses_a_mismatched_key_without_showing_it() {
    let m = Manager::with_env("dev");
    let (cert, key) = self_signed("api.example.com");
    let cert_file = write(&m, "tls/api.crt", &cert);
    let key_file = write(&m, "tls/api.key", &key);
    let (c, k) = (cert_file.to_str().unwrap(), key_file.to_str().unwrap());
    let set = |c: &str, k: &str| {
        vec![
            "certificate".to_string(),
            "set".into(),
            "--env".into(),
            "dev".into(),
            "api".into(),
            "--cert".into(),
            c.into(),
            "--key-file".into(),
            k.into(),
        ]
    };
    let args = set(c, k);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = m.ok(&argv, &[]);
    assert!(out.contains("certificate/api: created v1"), "{out}");
    assert!(!out.contains(&key[40..80]), "the key was printed: {out}");
    assert_eq!(m.revision("dev"), 1);
    let out = m.ok(&argv, &[]);
    assert!(out.contains("no changes"), "{out}");

    // Another certificate's key: refused here, naming the field; nothing sent.
    let (_, other_key) = self_signed("api.example.com");
    let other = write(&m, "tls/other.key", &other_key);
    let args = set(c, other.to_str().unwrap());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = m.fails(&argv, &[]);
    assert!(
        err.contains("spec.privateKey") && err.contains("does not match"),
        "{err}"
    );
    assert!(
        !err.contains(&other_key[40..80]),
        "the key was printed: {err}"
    );
    assert_eq!(m.revision("dev"), 1);

    // The key is shown redacted, and a rotation is one more revision.
    let listed = m.ok(&["dump", "--env", "dev", "--output", "json"], &[]);
    assert!(!listed.contains(&key[40..80]), "{listed}");
    let (cert2, key2) = self_signed("api.example.com");
    let args = set(
        write(&m, "tls/api2.crt", &cert2).to_str().unwrap(),
        write(&m, "tls/api2.key", &key2).to_str().unwrap(),
    );
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = m.ok(&argv, &[]);
    assert!(out.contains("certificate/api: v1 -> v2 (hot)"), "{out}");
    assert_eq!(m.revision("dev"), 2);
}
