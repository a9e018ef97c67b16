//! APIops against a real Manager process: one set of files for every environment
//! (`kind: Environment` variables), plan with field diffs, idempotent apply, prune scoped
//! by a selector, promotion dev → stage → prod with the audit trail of each step, the 409
//! of a stale plan, and the messages of bad input.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{Manager, get, upstream, wait_until};
use switchyard_api::admin::AuditParams;
use switchyard_api::records::Operation;
use switchyard_config::Kind;

const ENVIRONMENTS: &str = "\
apiVersion: switchyard.dev/v1
kind: Environment
metadata: { name: dev }
spec:
  variables:
    RELEASE: dev-build
    UPSTREAM: \"http://UPSTREAM_ADDR\"
---
apiVersion: switchyard.dev/v1
kind: Environment
metadata: { name: stage }
spec:
  variables:
    RELEASE: stage-build
    UPSTREAM: \"http://UPSTREAM_ADDR\"
";

const PROD_WITHOUT_RELEASE: &str = "\
apiVersion: switchyard.dev/v1
kind: Environment
metadata: { name: prod }
spec:
  variables:
    UPSTREAM: \"http://UPSTREAM_ADDR\"
";

const PAYMENTS: &str = "\
apiVersion: switchyard.dev/v1
kind: Proxy
metadata:
  name: payments
  labels: { owner: payments }
spec:
  routes: [{ pathPrefix: /payments }]
  upstream:
    targets:
      - url: \"${UPSTREAM}\"
  policies:
    - type: upstream-credential
      credential: payments-key
      header: x-upstream-key
    - type: headers
      response: { set: { x-release: \"${RELEASE}\" } }
";

const CREDENTIAL: &str = "\
apiVersion: switchyard.dev/v1
kind: Credential
metadata: { name: payments-key }
spec:
  type: secret
  value: \"${env:SWITCHYARD_PAYMENTS_KEY}\"
";

fn proxy(name: &str, owner: &str, prefix: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata:\n  name: {name}\n  labels: {{ owner: {owner} }}\nspec:\n  routes: [{{ pathPrefix: {prefix} }}]\n  upstream:\n    targets: [{{ url: \"${{UPSTREAM}}\" }}]\n"
    )
}

/// What these tests ask of the Manager (the shared fixture).
trait PromoteTests {
    /// `switchyard ARGS` as the admin, with the payments key in the environment: (exit
    /// code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.run_with(args, &[])
    }

    fn run_with(&self, args: &[&str], extra: &[(&str, &str)]) -> (i32, String, String);

    /// The manifest of proxy `name` as deployed in `env` (null when there is none).
    fn proxy_manifest(&self, env: &str, name: &str) -> serde_json::Value;
}

impl PromoteTests for Manager {
    fn run_with(&self, args: &[&str], extra: &[(&str, &str)]) -> (i32, String, String) {
        let mut env = vec![("SWITCHYARD_PAYMENTS_KEY", "key-one")];
        env.extend_from_slice(extra);
        self.code(args, &env)
    }

    fn proxy_manifest(&self, env: &str, name: &str) -> serde_json::Value {
        self.block_on(self.api.entities(env))
            .unwrap()
            .into_iter()
            .find(|e| e.kind == Kind::Proxy && e.name == name)
            .map(|e| e.manifest)
            .unwrap_or(serde_json::Value::Null)
    }
}

fn release_of(manifest: &serde_json::Value) -> String {
    manifest["spec"]["policies"][1]["response"]["set"]["x-release"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn one_set_of_files_is_planned_applied_pruned_and_promoted_dev_stage_prod() {
    let (_upstream, up) = upstream("a");
    let c = Manager::start();
    let dir = c.dir();
    for env in ["dev", "stage", "prod"] {
        let (code, out, err) = c.run(&["env", "create", env]);
        assert_eq!(code, 0, "{out}{err}");
    }
    let files = dir.join("payments");
    std::fs::create_dir(&files).unwrap();
    let environments = ENVIRONMENTS.replace("UPSTREAM_ADDR", &up.to_string());
    write(&files, "environments.yaml", &environments);
    write(&files, "payments.yaml", PAYMENTS);
    write(&files, "credential.yaml", CREDENTIAL);
    write(
        &files,
        "legacy.yaml",
        &proxy("legacy", "payments", "/legacy"),
    );
    let f = files.to_str().unwrap();

    // Plan: every entity a create, hot; exit 2.
    let (code, out, err) = c.run(&["plan", "--env", "dev", f]);
    assert_eq!(code, 2, "{out}{err}");
    for line in [
        "+ proxy/payments: create (hot)",
        "+ credential/payments-key: create (hot)",
        "+ environment/dev: create (hot)",
        "+ proxy/legacy: create (hot)",
    ] {
        assert!(out.contains(line), "{line:?} in {out}");
    }
    assert!(
        !out.contains("key-one"),
        "a plan never shows a secret: {out}"
    );
    assert!(
        !out.contains("stage"),
        "other environments' documents are not sent: {out}"
    );

    // Apply, then apply again: the second changes nothing.
    let (code, out, err) = c.run(&["apply", "--env", "dev", f]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("dev: revision 1 (was 0), 4 change(s)"),
        "{out}"
    );
    let (code, out, _) = c.run(&["apply", "--env", "dev", f]);
    assert_eq!(code, 0);
    assert!(out.contains("no changes"), "{out}");
    let (code, out, _) = c.run(&["plan", "--env", "dev", f]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("already matches, 4 unchanged"),
        "every entity is listed as unchanged: {out}"
    );
    assert_eq!(
        release_of(&c.proxy_manifest("dev", "payments")),
        "dev-build"
    );

    // A Manager-mode Worker serves dev with its variables (the Environment entity it
    // receives is not served, only used).
    let worker = c.worker("dev", "dev-1");
    let gw = worker.listen;
    wait_until("dev serves payments", || {
        get(gw, "/payments/1").1.contains("x-release: dev-build")
    });
    assert!(
        get(gw, "/payments/1").2.contains("key-one"),
        "credential injected"
    );

    // A new variable value alone re-resolves the deployed proxy in the same revision.
    write(
        &files,
        "environments.yaml",
        &environments.replace("dev-build", "dev-build-2"),
    );
    let envs_file = files.join("environments.yaml");
    let (code, out, err) = c.run(&["plan", "--env", "dev", envs_file.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("~ environment/dev: v1 -> v2"), "{out}");
    assert!(
        out.contains("~ proxy/payments: v1 -> v2")
            && out.contains("x-release: \"dev-build\" -> \"dev-build-2\""),
        "{out}"
    );
    let (code, _, err) = c.run(&["apply", "--env", "dev", envs_file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    wait_until("dev serves the new variable", || {
        get(gw, "/payments/1").1.contains("x-release: dev-build-2")
    });

    // Prune: only entities with the selector's labels that the files no longer hold.
    let other = dir.join("search.yaml");
    std::fs::write(&other, proxy("search", "search", "/search")).unwrap();
    let (code, _, err) = c.run(&[
        "apply",
        "--env",
        "dev",
        other.to_str().unwrap(),
        envs_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    std::fs::remove_file(files.join("legacy.yaml")).unwrap();
    let (code, out, err) = c.run(&[
        "plan",
        "--env",
        "dev",
        "--prune",
        "--selector",
        "owner=payments",
        f,
    ]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("- proxy/legacy: delete (v1)"), "{out}");
    assert!(!out.contains("search"), "{out}");
    let (code, out, err) = c.run(&[
        "apply",
        "--env",
        "dev",
        "--prune",
        "--selector",
        "owner=payments",
        f,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("- proxy/legacy: deleted (was v1)"), "{out}");
    assert_eq!(c.proxy_manifest("dev", "legacy"), serde_json::Value::Null);
    assert_ne!(c.proxy_manifest("dev", "search"), serde_json::Value::Null);
    let (code, out, _) = c.run(&[
        "plan",
        "--env",
        "dev",
        "--prune",
        "--selector",
        "owner=payments",
        f,
    ]);
    assert_eq!(code, 0, "pruned once, nothing left to prune: {out}");
    let (code, _, err) = c.run(&["apply", "--env", "dev", "--prune", f]);
    assert_ne!(code, 0);
    assert!(
        err.contains("--selector"),
        "--prune needs a selector: {err}"
    );

    // Dump keeps what uses variables as written, with the Environment document, so the
    // dump plans back to no changes.
    let dumped = dir.join("dumped");
    let (code, _, err) = c.run(&["dump", "--env", "dev", "--dir", dumped.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let payments = std::fs::read_to_string(dumped.join("proxies/payments.yaml")).unwrap();
    assert!(
        payments.contains("\"${UPSTREAM}\"") && payments.contains("${RELEASE}"),
        "{payments}"
    );
    assert!(dumped.join("environments/dev.yaml").exists());
    let (code, out, err) = c.run_with(
        &["plan", "--env", "dev", dumped.to_str().unwrap()],
        &[("SWITCHYARD_CREDENTIAL_PAYMENTS_KEY", "key-one")],
    );
    assert_eq!(code, 0, "{out}{err}");

    // Promote dev → stage: stage's variables and its own credential.
    let (code, _, err) = c.run(&[
        "apply",
        "--env",
        "stage",
        envs_file.to_str().unwrap(),
        files.join("credential.yaml").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = c.run(&[
        "promote",
        "--from",
        "dev",
        "--to",
        "stage",
        "--proxy",
        "payments",
        "--dry-run",
    ]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("+ proxy/payments: create (hot)"), "{out}");
    let (code, out, err) = c.run(&[
        "promote", "--from", "dev", "--to", "stage", "--proxy", "payments",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        release_of(&c.proxy_manifest("stage", "payments")),
        "stage-build"
    );
    // What was promoted is exactly what the files say for stage.
    let payments_file = files.join("payments.yaml");
    let (code, out, err) = c.run(&["plan", "--env", "stage", payments_file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");

    // stage → prod: refused while prod lacks a variable, then while it lacks the credential.
    let prod_envs = dir.join("prod.yaml");
    std::fs::write(
        &prod_envs,
        PROD_WITHOUT_RELEASE.replace("UPSTREAM_ADDR", &up.to_string()),
    )
    .unwrap();
    let (code, _, err) = c.run(&["apply", "--env", "prod", prod_envs.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = c.run(&["promote", "--from", "stage", "--to", "prod"]);
    assert_eq!(code, 1);
    assert!(err.contains("RELEASE is not defined in \"prod\""), "{err}");
    assert!(
        err.contains(
            "credential \"payments-key\" (used by proxy \"payments\") does not exist in \"prod\""
        ),
        "{err}"
    );
    std::fs::write(
        &prod_envs,
        PROD_WITHOUT_RELEASE.replace("UPSTREAM_ADDR", &up.to_string())
            + "    RELEASE: prod-build\n",
    )
    .unwrap();
    let (code, _, err) = c.run(&[
        "apply",
        "--env",
        "prod",
        prod_envs.to_str().unwrap(),
        files.join("credential.yaml").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = c.run(&[
        "promote", "--from", "stage", "--to", "prod", "--output", "json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let promoted: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(promoted["env"], "prod");
    assert_eq!(promoted["changes"][0]["name"], "payments");
    assert_eq!(promoted["changes"][0]["hot"]["hot"], true);
    assert_eq!(
        release_of(&c.proxy_manifest("prod", "payments")),
        "prod-build"
    );
    let (code, out, _) = c.run(&["promote", "--from", "stage", "--to", "prod"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("no changes"),
        "promoting again changes nothing: {out}"
    );

    // The audit trail shows each step: who, what, from where, to where.
    let query = AuditParams {
        entity: Some("proxy/payments".into()),
        limit: 50,
        ..AuditParams::default()
    };
    let audit = c.block_on(c.api.audit(&query)).unwrap();
    let promotions: Vec<(String, String)> = audit
        .iter()
        .filter(|a| a.operation == Operation::Promote)
        .map(|a| (a.env.clone().unwrap(), a.detail.clone().unwrap()))
        .collect();
    assert_eq!(promotions.len(), 2, "{audit:?}");
    assert_eq!(promotions[0].0, "prod", "newest first");
    assert!(
        promotions[0].1.starts_with("promoted from stage (revision"),
        "{promotions:?}"
    );
    assert_eq!(promotions[1].0, "stage");
    assert!(
        promotions[1].1.starts_with("promoted from dev (revision"),
        "{promotions:?}"
    );
    assert!(audit.iter().all(|a| !a.actor.is_empty()));

    drop(worker);
}

#[test]
fn a_stale_plan_conflicts_and_bad_input_is_named_on_one_line() {
    let c = Manager::start();
    let dir = c.dir();
    let (code, _, _) = c.run(&["env", "create", "dev"]);
    assert_eq!(code, 0);
    let files = dir.join("f");
    std::fs::create_dir(&files).unwrap();
    let environments = ENVIRONMENTS.replace("UPSTREAM_ADDR", "127.0.0.1:9");
    write(&files, "environments.yaml", &environments);
    write(&files, "a.yaml", &proxy("a", "t", "/a"));
    let f = files.to_str().unwrap();

    // Every command speaks JSON on request.
    let (code, out, _) = c.run(&["env", "create", "qa", "--output", "json"]);
    assert_eq!(code, 0);
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (created["name"].as_str(), created["revision"].as_u64()),
        (Some("qa"), Some(0))
    );

    // 409: a plan at revision R, someone else applies, an apply pinned to R is refused.
    let (code, out, _) = c.run(&["plan", "--env", "dev", "--output", "json", f]);
    assert_eq!(code, 2);
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    let planned_at = plan["revision"].as_u64().unwrap().to_string();
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["changes"].as_array().unwrap().len(), 2);
    let other = dir.join("b.yaml");
    std::fs::write(&other, proxy("b", "t", "/b") + "---\n" + &environments).unwrap();
    let (code, _, err) = c.run(&["apply", "--env", "dev", other.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = c.run(&[
        "apply",
        "--env",
        "dev",
        "--expected-revision",
        &planned_at,
        f,
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("is at revision") && err.contains("re-run `switchyard plan`"),
        "{err}"
    );
    assert!(c.proxy_manifest("dev", "a").is_null(), "nothing changed");
    let (code, out, _) = c.run(&["dump", "--env", "dev", "--output", "json"]);
    assert_eq!(code, 0);
    let dumped: serde_json::Value = serde_json::from_str(&out).unwrap();
    let b = dumped
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "b")
        .unwrap();
    assert!(b["yaml"].as_str().unwrap().contains("${UPSTREAM}"), "{b}");

    // Bad input: each a message naming the cause; nothing changed.
    let bad = |name: &str, text: &str| {
        let d = dir.join(name);
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("x.yaml"), text).unwrap();
        d.to_str().unwrap().to_string()
    };
    let undefined = bad(
        "undefined",
        &(proxy("c", "t", "/c").replace("UPSTREAM", "NOPE") + "---\n" + &environments),
    );
    let unknown_field = bad(
        "unknown",
        &proxy("c", "t", "/c").replace("pathPrefix", "pathPrefx"),
    );
    let yaml_error = bad("yaml", "apiVersion: switchyard.dev/v1\nkind: [Proxy\n");
    let bad_reference = bad(
        "reference",
        &(proxy("c", "t", "/c")
            + "  policies:\n    - type: upstream-credential\n      credential: nowhere\n---\n"
            + &environments),
    );
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "apply".into(),
                "--env".into(),
                "dev".into(),
                undefined.clone(),
            ],
            "x.yaml:9:23: document 1: targets: `${NOPE}`",
        ),
        (
            vec!["apply".into(), "--env".into(), "dev".into(), undefined],
            "NOPE is not defined in spec.variables",
        ),
        (
            vec!["apply".into(), "--env".into(), "dev".into(), unknown_field],
            "unknown field `pathPrefx`",
        ),
        (
            vec!["apply".into(), "--env".into(), "dev".into(), yaml_error],
            "x.yaml:2:",
        ),
        (
            vec![
                "apply".into(),
                "--env".into(),
                "dev".into(),
                dir.join("missing.yaml").to_str().unwrap().into(),
            ],
            "cannot read",
        ),
        (
            vec!["apply".into(), "--env".into(), "nope".into(), f.into()],
            "nope",
        ),
        (
            vec!["apply".into(), "--env".into(), "dev".into(), bad_reference],
            "credential: no Credential named \"nowhere\" in this environment",
        ),
        (
            vec![
                "promote".into(),
                "--from".into(),
                "dev".into(),
                "--to".into(),
                "dev".into(),
            ],
            "must differ",
        ),
        (
            vec![
                "promote".into(),
                "--from".into(),
                "dev".into(),
                "--to".into(),
                "nope".into(),
                "--proxy".into(),
                "a".into(),
            ],
            "nope",
        ),
    ];
    let before = c.revision("dev");
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = c.run(&args);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(err.contains(expected), "{args:?}: {expected:?} in {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
    }
    assert_eq!(c.revision("dev"), before, "nothing changed");
}

#[test]
fn introducing_a_variable_is_recorded_even_when_it_resolves_to_the_same_value() {
    let c = Manager::start();
    let dir = c.dir();
    for env in ["dev", "stage"] {
        let (code, _, err) = c.run(&["env", "create", env]);
        assert_eq!(code, 0, "{err}");
    }
    let environments = ENVIRONMENTS.replace("UPSTREAM_ADDR", "127.0.0.1:9");
    let envs = dir.join("environments.yaml");
    std::fs::write(&envs, &environments).unwrap();
    let files = dir.join("f");
    std::fs::create_dir(&files).unwrap();
    let literal = proxy("a", "t", "/a").replace("${UPSTREAM}", "http://127.0.0.1:9");
    std::fs::write(files.join("a.yaml"), literal).unwrap();
    let (code, _, err) = c.run(&[
        "apply",
        "--env",
        "dev",
        files.to_str().unwrap(),
        envs.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");

    // dev's UPSTREAM is the same literal: the manifest does not change, the template does.
    std::fs::write(files.join("a.yaml"), proxy("a", "t", "/a")).unwrap();
    let (code, out, _) = c.run(&["plan", "--env", "dev", files.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("~ proxy/a: v1 -> v2 (hot)") && out.contains("(template: "),
        "{out}"
    );
    let (code, _, err) = c.run(&["apply", "--env", "dev", files.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = c.run(&["apply", "--env", "dev", files.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("no changes"), "{out}");

    // So a promotion resolves the variable with the target's value, not dev's literal.
    let stage_envs = dir.join("stage.yaml");
    std::fs::write(
        &stage_envs,
        environments.replace(
            "RELEASE: stage-build\n    UPSTREAM: \"http://127.0.0.1:9\"",
            "RELEASE: stage-build\n    UPSTREAM: \"http://127.0.0.2:9\"",
        ),
    )
    .unwrap();
    let (code, _, err) = c.run(&["apply", "--env", "stage", stage_envs.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = c.run(&["promote", "--from", "dev", "--to", "stage"]);
    assert_eq!(code, 0, "{err}");
    let url = c.proxy_manifest("stage", "a")["spec"]["upstream"]["targets"][0]["url"].clone();
    assert_eq!(url, "http://127.0.0.2:9");
}
