//! The Manager, `apply` and a Manager-mode Worker as separate processes, the way an
//! operator runs them: tokens from the CLI, one apply per change, idempotent re-apply,
//! a refused invalid file, and a live swap.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Manager, get, run, run_code, upstream, wait_until};

fn manifest(release: &str, upstream: std::net::SocketAddr) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: payments }}\nspec:\n  routes: [{{ pathPrefix: /payments }}]\n  upstream:\n    targets: [{{ url: \"http://{upstream}\" }}]\n  policies:\n    - type: headers\n      response: {{ set: {{ x-release: {release} }} }}\n"
    )
}

#[test]
fn manager_apply_and_worker_processes_deploy_live() {
    let (_upstream, up) = upstream("a");
    let m = Manager::start();
    let (url, admin) = (m.url.clone(), m.admin.clone());
    let files = m.dir().join("payments");
    std::fs::create_dir(&files).unwrap();

    let (ok, out, err) = run(
        &["env", "create", "dev", "--manager", &url, "--token", &admin],
        &[("SWITCHYARD_CA", m.ca.as_str())],
    );
    assert!(ok, "{out}{err}");
    let worker_token = m.token(&["--role", "worker", "--env", "dev"]);
    assert!(worker_token.starts_with("sy_"), "{worker_token}");

    // Apply, then apply again: the second changes nothing.
    std::fs::write(files.join("payments.yaml"), manifest("blue", up)).unwrap();
    let env = [
        ("SWITCHYARD_MANAGER", url.as_str()),
        ("SWITCHYARD_CA", m.ca.as_str()),
        ("SWITCHYARD_TOKEN", admin.as_str()),
    ];
    let (ok, out, err) = run(&["apply", "--env", "dev", files.to_str().unwrap()], &env);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("dev: revision 1 (was 0)") && out.contains("proxy/payments: created v1"),
        "{out}"
    );
    let (ok, out, _) = run(&["apply", "--env", "dev", files.to_str().unwrap()], &env);
    assert!(ok);
    assert!(out.contains("no changes"), "{out}");

    // `plan`: exit 0 when nothing would change, 2 when something would; it writes nothing.
    let plan = |env: &[(&str, &str)]| {
        let (code, out, _) = run_code(&["plan", "--env", "dev", files.to_str().unwrap()], env);
        (Some(code), out)
    };
    let (code, out) = plan(&env);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("no changes"), "{out}");
    std::fs::write(files.join("payments.yaml"), manifest("planned", up)).unwrap();
    let (code, out) = plan(&env);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("~ proxy/payments: v1 -> v2 (hot)"), "{out}");
    assert!(
        out.contains("spec.policies[0].response.set.x-release: \"blue\" -> \"planned\""),
        "the plan names the field that changes: {out}"
    );
    let (code, _) = plan(&env);
    assert_eq!(
        code,
        Some(2),
        "a plan changes nothing, so it says the same again"
    );
    std::fs::write(files.join("payments.yaml"), manifest("blue", up)).unwrap();

    // An invalid file is refused locally, naming the place; nothing is sent.
    std::fs::write(
        files.join("bad.yaml"),
        manifest("blue", up).replace("pathPrefix", "pathPrefx"),
    )
    .unwrap();
    let (ok, _, err) = run(&["apply", "--env", "dev", files.to_str().unwrap()], &env);
    assert!(!ok);
    assert!(
        err.contains("bad.yaml:5:") && err.contains("unknown field `pathPrefx`"),
        "{err}"
    );
    std::fs::remove_file(files.join("bad.yaml")).unwrap();

    let worker = m.spawn_worker("dev", &worker_token, Some("proc-worker"));
    let gw = worker.listen;
    assert!(get(gw, "/payments/1").1.contains("x-release: blue"));

    std::fs::write(files.join("payments.yaml"), manifest("green", up)).unwrap();
    let (ok, out, err) = run(&["apply", "--env", "dev", files.to_str().unwrap()], &env);
    assert!(ok, "{out}{err}");
    assert!(out.contains("proxy/payments: v1 -> v2"), "{out}");
    wait_until("the worker serves green", || {
        get(gw, "/payments/2").1.contains("x-release: green")
    });

    let (ok, _, err) = run(&["apply", "--env", "prod", files.to_str().unwrap()], &env);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "environment prod does not exist on the Manager at {url}; create it with `switchyard env create prod`"
        )),
        "{err}"
    );

    let (mut worker, mut m) = (worker, m);
    worker.proc.signal("TERM");
    assert!(worker.proc.child.wait().unwrap().success());
    m.proc.signal("TERM");
    assert!(m.proc.child.wait().unwrap().success());
}
