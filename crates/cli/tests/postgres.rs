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
