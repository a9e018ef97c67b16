//! The Manager, `apply` and a Manager-mode Worker as separate processes, the way an
//! operator runs them: tokens from the CLI, one apply per change, idempotent re-apply,
//! a refused invalid file, and a live swap.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Proc, addr, get, run, wait_until};

fn manifest(release: &str, upstream: std::net::SocketAddr) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: payments }}\nspec:\n  routes: [{{ pathPrefix: /payments }}]\n  upstream:\n    targets: [{{ url: \"http://{upstream}\" }}]\n  policies:\n    - type: headers\n      response: {{ set: {{ x-release: {release} }} }}\n"
    )
}

#[test]
fn manager_apply_and_worker_processes_deploy_live() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let files = dir.path().join("payments");
    std::fs::create_dir(&files).unwrap();

    let upstream = Proc::spawn(&["upstream", "--listen", "127.0.0.1:0", "--id", "a"]);
    let up = addr(&upstream.wait_log("sample upstream listening"), "addr");
    let (manager, url, admin) = common::spawn_manager(&data);

    let (ok, out, err) = run(
        &["env", "create", "dev", "--manager", &url, "--token", &admin],
        &[],
    );
    assert!(ok, "{out}{err}");
    let (ok, worker_token, err) = run(
        &[
            "manager",
            "token",
            "create",
            "--data",
            data.to_str().unwrap(),
            "--role",
            "worker",
            "--env",
            "dev",
        ],
        &[],
    );
    assert!(ok, "{err}");
    let worker_token = worker_token.trim().to_string();
    assert!(worker_token.starts_with("sy_"), "{worker_token}");

    // Apply, then apply again: the second changes nothing.
    std::fs::write(files.join("payments.yaml"), manifest("blue", up)).unwrap();
    let env = [
        ("SWITCHYARD_MANAGER", url.as_str()),
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
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
        cmd.args(["plan", "--env", "dev", files.to_str().unwrap()]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
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

    let worker = Proc::spawn(&[
        "worker",
        "--manager",
        &url,
        "--env",
        "dev",
        "--token",
        &worker_token,
        "--worker-id",
        "proc-worker",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--cache-dir",
        dir.path().join("cache").to_str().unwrap(),
        "--access-log",
        "off",
    ]);
    let gw = addr(&worker.wait_log("worker listening"), "listen");
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

    let mut worker = worker;
    let mut manager = manager;
    worker.signal("TERM");
    assert!(worker.child.wait().unwrap().success());
    manager.signal("TERM");
    assert!(manager.child.wait().unwrap().success());
}
