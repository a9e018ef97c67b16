//! Two Manager processes on one PostgreSQL database, a Worker following each: a change
//! applied through either Manager reaches both Workers (the other Manager hears of the
//! commit by `LISTEN`/`NOTIFY`, or finds it when it polls), and each Worker ACKs it to
//! its own Manager, where the revision's reports are read through either.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Manager, wait_until};
use switchyard_api::admin::ApplyRequest;

fn proxy(up: std::net::SocketAddr, release: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: p }}\nspec:\n  routes: [{{ pathPrefix: /p }}]\n  upstream: {{ targets: [{{ url: \"http://{up}\" }}] }}\n  policies:\n    - type: headers\n      response: {{ set: {{ x-release: {release} }} }}\n"
    )
}

#[test]
fn a_change_through_either_manager_reaches_the_workers_of_both() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db =
        runtime.block_on(async { switchyard_store::testing::Postgres::get().database().await });
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("secret.key");
    std::fs::write(&key, "22".repeat(32)).unwrap();
    let a = Manager::on_database(&db.url, &key, None);
    let b = Manager::on_database(&db.url, &key, Some(&a.admin));
    a.ok(&["env", "create", "dev"], &[]);
    let (_up, up) = common::upstream("u1");
    let apply = |m: &Manager, release: &str| {
        let body = ApplyRequest {
            manifests: vec![proxy(up, release)],
            ..Default::default()
        };
        m.block_on(m.api.apply("dev", &body)).unwrap().revision
    };
    assert_eq!(apply(&a, "blue"), 1);
    let wa = a.worker("dev", "edge-a");
    let wb = b.worker("dev", "edge-b");
    let release = |w: &common::Worker| {
        let mut s = std::net::TcpStream::connect(w.listen).unwrap();
        common::exchange(&mut s, "GET", "/p/x", &["connection: close"], "")
            .1
            .lines()
            .find_map(|l| l.strip_prefix("x-release: ").map(str::to_string))
    };
    assert_eq!(release(&wa).as_deref(), Some("blue"));
    assert_eq!(release(&wb).as_deref(), Some("blue"));

    for (through, colour) in [(&a, "green"), (&b, "red")] {
        let revision = apply(through, colour);
        for w in [&wa, &wb] {
            wait_until("both Workers serve the change", || {
                release(w).as_deref() == Some(colour)
            });
        }
        // Each Worker ACKed to its own Manager; either Manager shows both reports.
        for m in [&a, &b] {
            wait_until("both ACKs are stored", || {
                let reports = m.block_on(m.api.revision("dev", revision)).unwrap().reports;
                ["edge-a", "edge-b"].iter().all(|id| {
                    reports
                        .iter()
                        .any(|r| r.worker_id == *id && r.error.is_none())
                })
            });
        }
    }
}

/// A Worker given both Managers (`--manager A,B`) follows A; when A goes away it follows B
/// at once, from the revision it serves (no resynchronisation), takes the next change
/// applied through B, and ACKs it there; traffic is served throughout.
#[test]
fn a_worker_fails_over_to_another_manager_and_keeps_receiving_changes() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db =
        runtime.block_on(async { switchyard_store::testing::Postgres::get().database().await });
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("secret.key");
    std::fs::write(&key, "33".repeat(32)).unwrap();
    // Both Managers are verified against A's CA: B serves a certificate from it.
    let a = Manager::on_database(&db.url, &key, None);
    let b_data = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(b_data.path().join("data")).unwrap();
    for f in ["ca.pem", "ca.key"] {
        std::fs::copy(a.data().join(f), b_data.path().join("data").join(f)).unwrap();
    }
    let b = Manager::on_database_in(b_data, &db.url, &key, Some(&a.admin));
    a.ok(&["env", "create", "dev"], &[]);
    let (_up, up) = common::upstream("u1");
    let apply = |m: &Manager, release: &str| {
        let body = ApplyRequest {
            manifests: vec![proxy(up, release)],
            ..Default::default()
        };
        m.block_on(m.api.apply("dev", &body)).unwrap().revision
    };
    assert_eq!(apply(&a, "blue"), 1);
    let token = a.token(&["--role", "worker", "--env", "dev", "--name", "edge-1"]);
    let both = format!("{},{}", a.url, b.url);
    let w = a.spawn_worker_with("dev", &token, Some("edge-1"), &["--manager", &both]);
    let served = |w: &common::Worker| common::traffic::status(w.admin);
    wait_until("the Worker follows A", || {
        served(&w)["sync"]["connected"] == true && served(&w)["revision"] == 1
    });
    let load = common::traffic::Load::start(w.listen, 2);
    wait_until("the load is running", || load.answered() > 100);

    let mut a = a;
    a.proc.child.kill().unwrap();
    a.proc.child.wait().unwrap();
    wait_until("the Worker follows B", || {
        let s = served(&w);
        s["sync"]["connected"] == true && s["sync"]["manager"] == b.url.as_str()
    });
    let revision = apply(&b, "green");
    wait_until("the Worker serves the change applied through B", || {
        served(&w)["revision"].as_u64() == Some(revision)
    });
    wait_until("its ACK is stored", || {
        b.block_on(b.api.revision("dev", revision))
            .unwrap()
            .reports
            .iter()
            .any(|r| r.worker_id == "edge-1" && r.error.is_none())
    });
    assert!(
        served(&w)["sync"]["last_resync"].is_null(),
        "resumed, not resynchronised: {}",
        served(&w)["sync"]
    );
    load.finish_without_failure();
}
