//! The notification path on its own. Workers here check the Manager's revision every hour
//! and take the notification stream for dead only after an hour of silence, so a change
//! can reach them only through the Manager's notifications (SSE). Every other e2e Worker
//! also checks every 300 ms and would converge without them: a broken notification path
//! fails here.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use switchyard_e2e::cluster::{ManagedWorker, RunningManager};
use switchyard_e2e::{Conn, Harness, eventually, payments_manifest};

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_every_worker_through_notifications_alone() {
    let h = Harness::upstreams(&["a"]).await;
    let data = tempfile::tempdir().unwrap();
    let m = RunningManager::start(&data.path().join("manager")).await;
    let token = m.env_with_worker_token("dev").await;
    let (s, b) = m
        .apply("dev", &[payments_manifest("r1", h.addr(0), "")])
        .await;
    assert_eq!(s, 200, "{b}");

    let mut workers = Vec::new();
    for i in 1..=2 {
        let cache = data.path().join(format!("cache-{i}"));
        let mut opts = ManagedWorker::options(&m, "dev", &token, &format!("w{i}"), &cache);
        opts.check_interval = HOUR;
        opts.stream_timeout = HOUR;
        workers.push(ManagedWorker::start(opts).await.unwrap());
    }
    for w in &workers {
        w.wait_for_revision(1).await;
        eventually("the notification stream open", || {
            w.handle.status().sync.is_some_and(|s| s.connected)
        })
        .await;
    }

    // The first change could still meet a Worker's catch-up right after it connected;
    // the later ones can only arrive as notifications.
    for revision in 2..=4u64 {
        let release = format!("r{revision}");
        let (s, b) = m
            .apply("dev", &[payments_manifest(&release, h.addr(0), "")])
            .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["revision"], revision, "{b}");
        for w in &workers {
            w.wait_for_revision(revision).await;
            let a = Conn::open(w.addr)
                .await
                .unwrap()
                .get("/payments/x", &[])
                .await
                .unwrap();
            assert_eq!(a.header("x-release"), Some(release.as_str()), "{}", w.id);
        }
    }
}
