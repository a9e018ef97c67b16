//! The control plane's TLS flags on the real binary: `manager worker-cert create` issues a
//! Worker's certificate, `--require-worker-certificates` needs it, `--manager-ca` and
//! `--client-cert/--client-key` give it; plain HTTP off loopback is refused; the CLI without
//! the Manager's CA refuses to talk to it and says what to give.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Proc, addr, run, run_code, wait_until};

#[test]
fn a_worker_with_its_certificate_follows_a_manager_that_requires_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let manager = Proc::spawn(&[
        "manager",
        "--data",
        &s(&data),
        "--listen",
        "127.0.0.1:0",
        "--require-worker-certificates",
    ]);
    let url = format!(
        "https://{}",
        addr(&manager.wait_log("manager listening"), "listen")
    );
    let ca = s(&data.join("ca.pem"));
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let env = [
        ("SWITCHYARD_MANAGER", url.as_str()),
        ("SWITCHYARD_CA", ca.as_str()),
        ("SWITCHYARD_TOKEN", admin.trim()),
    ];
    let (ok, out, err) = run(&["env", "create", "dev"], &env);
    assert!(ok, "{out}{err}");

    // Without the CA the CLI refuses before sending anything, and says what to give.
    let (code, _, err) = run_code(&["status", "--env", "dev"], &[env[0], env[2]]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("nothing was sent") && err.contains("SWITCHYARD_CA"),
        "{err}"
    );

    let certs = dir.path().join("certs");
    let (ok, _, err) = run(
        &[
            "manager",
            "worker-cert",
            "create",
            "--data",
            &s(&data),
            "--env",
            "dev",
            "edge-1",
            "--out",
            &s(&certs),
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert!(err.contains("--client-cert"), "{err}");
    let key = certs.join("edge-1.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "edge-1.key mode {mode:o}");

    let token = {
        let (ok, out, err) = run(
            &[
                "manager",
                "token",
                "create",
                "--data",
                &s(&data),
                "--role",
                "worker",
                "--env",
                "dev",
            ],
            &[],
        );
        assert!(ok, "{err}");
        out.trim().to_string()
    };
    let worker = Proc::spawn(&[
        "worker",
        "--manager",
        &url,
        "--manager-ca",
        &ca,
        "--client-cert",
        &s(&certs.join("edge-1.pem")),
        "--client-key",
        &s(&key),
        "--env",
        "dev",
        "--token",
        &token,
        "--worker-id",
        "edge-1",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--cache-dir",
        &s(&dir.path().join("cache")),
        "--access-log",
        "off",
    ]);
    worker.wait_log("worker listening");
    wait_until("edge-1 is connected", || {
        let (ok, out, _) = run(&["status", "--env", "dev", "--output", "json"], &env);
        ok && out.contains("\"edge-1\"")
    });
}

#[test]
fn plain_http_off_loopback_is_refused_without_the_second_flag() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, _, err) = run_code(
        &[
            "manager",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            "0.0.0.0:0",
            "--insecure-http",
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("refusing to serve plain HTTP") && err.contains("--allow-insecure-remote"),
        "{err}"
    );
}
