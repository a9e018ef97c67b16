//! The real `switchyard` binary as an operator runs it: separate processes, real signals.
//! SIGHUP reloads, SIGTERM drains an in-flight request and exits 0, the access log records
//! the configuration version each request ran under.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{DEADLINE, Proc, addr, exchange, get, upstream, wait_until};

fn manifest(release: &str, upstream: SocketAddr) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: payments }}\nspec:\n  routes: [{{ pathPrefix: /payments }}]\n  upstream:\n    targets: [{{ url: \"http://{upstream}\" }}]\n  policies:\n    - type: headers\n      response: {{ set: {{ x-release: {release} }} }}\n"
    )
}

#[test]
fn sighup_reloads_sigterm_drains_and_the_access_log_records_versions() {
    let (_upstream, up) = upstream("a");

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    std::fs::create_dir(&cfg).unwrap();
    std::fs::write(cfg.join("payments.yaml"), manifest("blue", up)).unwrap();
    let access_log = dir.path().join("access.log");
    let worker = Proc::spawn(&[
        "worker",
        "--config",
        cfg.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--no-watch",
        "--access-log",
        access_log.to_str().unwrap(),
    ]);
    let listening = worker.wait_log("worker listening");
    let (gw, admin) = (addr(&listening, "listen"), addr(&listening, "admin"));

    let (status, head, _) = get(gw, "/payments/1");
    assert_eq!(status, 200);
    assert!(head.contains("x-release: blue"), "{head}");

    // With --no-watch a file change alone does nothing; SIGHUP applies it.
    std::fs::write(cfg.join("payments.yaml"), manifest("green", up)).unwrap();
    assert!(get(gw, "/payments/2").1.contains("x-release: blue"));
    worker.signal("HUP");
    wait_until("revision 2 after SIGHUP", || {
        get(admin, "/status").2.contains("\"revision\": 2")
    });
    assert!(get(gw, "/payments/3").1.contains("x-release: green"));

    // SIGTERM while a request is in flight (the upstream answers it after 2 s): it
    // completes with `Connection: close`, then the process exits 0.
    let mut slow = TcpStream::connect(gw).unwrap();
    let slow_thread = std::thread::spawn(move || {
        exchange(&mut slow, "GET", "/payments/slow?delay_ms=2000", &[], "")
    });
    wait_until("the slow request is in flight", || {
        get(admin, "/metrics")
            .2
            .contains("switchyard_requests_in_flight 1")
    });
    worker.signal("TERM");
    let (status, head, body) = slow_thread.join().unwrap();
    assert_eq!(status, 200, "{head}{body}");
    assert!(head.contains("x-release: green"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    let mut worker = worker;
    let deadline = Instant::now() + DEADLINE;
    let exit = loop {
        if let Some(s) = worker.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "worker did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(exit.success(), "worker exit status {exit}");

    let log = std::fs::read_to_string(&access_log).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= 3, "{log}");
    assert_eq!(lines[0]["proxy"], "payments");
    assert_eq!(lines[0]["path"], "/payments/1");
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[0]["version"], 1);
    assert_eq!(lines[0]["revision"], 1);
    assert_eq!(lines[0]["upstream"], format!("http://{up}"));
    assert_eq!(
        lines[2]["version"], 2,
        "request after SIGHUP ran under version 2"
    );
    for l in &lines {
        for field in ["time", "method", "route", "duration_ms", "bytes", "client"] {
            assert!(l.get(field).is_some(), "missing {field} in {l}");
        }
    }
}

/// `${env:SWITCHYARD_…}` references are filled in from the environment of the process that
/// reads the files; a missing one is an error naming the file and place.
#[test]
fn env_references_come_from_the_applying_process() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.yaml");
    std::fs::write(
        &file,
        "apiVersion: switchyard.dev/v1\nkind: Credential\nmetadata: { name: chat-clients }\nspec:\n  type: api-keys\n  keys:\n    - { consumer: acme, key: \"${env:SWITCHYARD_ACME_KEY}\" }\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let (ok, out, err) = common::run(&["validate", path], &[]);
    assert!(!ok, "{out}");
    assert!(
        err.contains(
            "keys.yaml:7:31: `${env:SWITCHYARD_ACME_KEY}`: SWITCHYARD_ACME_KEY is not set"
        ),
        "{err}"
    );
    let (ok, out, err) = common::run(
        &["validate", path],
        &[("SWITCHYARD_ACME_KEY", "acme-key-123456")],
    );
    assert!(ok, "{out}{err}");
    assert!(!out.contains("acme-key-123456") && !err.contains("acme-key-123456"));
    // Other variables of the process are not reachable.
    std::fs::write(&file, "apiVersion: switchyard.dev/v1\nkind: Credential\nmetadata: { name: k }\nspec: { type: secret, value: \"${env:HOME}\" }\n").unwrap();
    let (ok, _, err) = common::run(&["validate", path], &[]);
    assert!(!ok);
    assert!(err.contains("start with SWITCHYARD_"), "{err}");
}
