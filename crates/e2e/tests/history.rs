//! Histories that go backwards, and ACKs that mean what they say: a Manager whose store is
//! restored from an older backup is followed to exactly its content (a new store id, a
//! full pull, the ACK only once the served state is verified); a Manager behind its
//! Workers, or with other content at their revision, likewise. The last-known-good cache
//! is authenticated and never hangs a start; data files are private; reports are bound to
//! the Worker that sends them and to revisions the environment has.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Method;
use switchyard_api::records::ReportStatus;
use switchyard_api::sync::ReportBody;
use switchyard_api::{ErrorCode, SyncClient};
use switchyard_e2e::cluster::{ManagedWorker, RunningManager};
use switchyard_e2e::forwarder::Forwarder;
use switchyard_e2e::{DEADLINE, Harness, get_once, payments_manifest};
use switchyard_store::{SqlStore, Store};

fn orders(target: SocketAddr) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: orders }}\nspec:\n  routes: [{{ pathPrefix: /orders }}]\n  upstream:\n    targets: [{{ url: \"http://{target}\" }}]\n"
    )
}

/// A Manager over `DIR/manager` with environment `dev` at revision 1 (payments, blue), and
/// a worker token for `dev`.
async fn manager_at_blue(h: &Harness, dir: &Path) -> (RunningManager, String) {
    let m = RunningManager::start(&dir.join("manager")).await;
    let token = m.env_with_worker_token("dev").await;
    let (s, b) = m
        .apply("dev", &[payments_manifest("blue", h.addr(0), "")])
        .await;
    assert_eq!((s, b["revision"].as_u64()), (200, Some(1)), "{b}");
    (m, token)
}

/// [`manager_at_blue`], and a backup of its database at revision 1 (`DIR/backup.db`).
async fn backed_up_at_blue(h: &Harness, dir: &Path) -> (RunningManager, String, PathBuf) {
    let (m, token) = manager_at_blue(h, dir).await;
    let copy = dir.join("backup.db");
    m.store.backup_to(&copy).await.unwrap();
    (m, token, copy)
}

/// Puts the backup in the (stopped) Manager's place, as an operator restoring it does.
fn restore(backup: &Path, data: &Path) {
    SqlStore::restore(backup, &data.join("switchyard.db")).unwrap();
}

/// What the Worker answers on `path`: status and `x-release`.
async fn served(w: &ManagedWorker, path: &str) -> (u16, Option<String>) {
    let a = get_once(w.addr, path).await;
    (a.status, a.header("x-release").map(str::to_string))
}

/// Waits until the Worker serves `revision` of store `store_id` (either way: a Worker may
/// be taken back), failing after [`DEADLINE`].
async fn wait_serving(w: &ManagedWorker, store_id: &str, revision: u64) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let status = w.handle.status();
        let sync = status.sync.clone().unwrap();
        if status.revision == revision && sync.store_id.as_deref() == Some(store_id) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "worker {} serves revision {} of {:?}, not {revision} of {store_id}: {sync:?}",
            w.id,
            status.revision,
            sync.store_id
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The Worker's last resynchronisation, once it is the one to `revision` (the sync task
/// records it just after the swap), failing after [`DEADLINE`].
async fn resync_to(w: &ManagedWorker, revision: u64) -> switchyard_worker::status::Resync {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let sync = w.handle.status().sync.unwrap();
        if let Some(r) = sync
            .last_resync
            .clone()
            .filter(|r| r.to_revision == revision)
        {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "worker {} did not resynchronise to {revision}: {sync:?}",
            w.id
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_follow_a_manager_restored_from_an_older_backup_to_exactly_its_content() {
    let h = Harness::upstreams(&["a", "b"]).await;
    let data = tempfile::tempdir().unwrap();
    let (mut m, token, copy) = backed_up_at_blue(&h, data.path()).await;
    let (mdata, addr) = (m.data.clone(), m.addr);
    // After the backup: payments v2 (green) at revision 2, orders at revision 3.
    m.apply("dev", &[payments_manifest("green", h.addr(1), "")])
        .await;
    let (s, b) = m
        .apply(
            "dev",
            &[payments_manifest("green", h.addr(1), ""), orders(h.addr(0))],
        )
        .await;
    assert_eq!((s, b["revision"].as_u64()), (200, Some(3)), "{b}");
    let old_store = m.store.store_id();
    let mut workers = Vec::new();
    for id in ["w1", "w2"] {
        let cache = data.path().join(format!("cache-{id}"));
        let opts = ManagedWorker::options(&m, "dev", &token, id, &cache);
        workers.push(ManagedWorker::start(opts).await.unwrap());
    }
    for w in &workers {
        wait_serving(w, &old_store, 3).await;
        assert_eq!(served(w, "/payments/1").await, (200, Some("green".into())));
        assert_eq!(served(w, "/orders/1").await.0, 200);
    }

    // The Manager's store is restored from the backup (revision 1) and it starts again.
    m.stop().await;
    restore(&copy, &mdata);
    let m = RunningManager::start_on(&mdata, addr).await;
    let new_store = m.store.store_id();
    assert_ne!(new_store, old_store, "a restored store gets a new id");
    assert_eq!(m.client.env("dev").await.unwrap().revision, 1);

    // With nothing applied, each Worker goes back to exactly the Manager's content.
    for w in &workers {
        wait_serving(w, &new_store, 1).await;
        assert_eq!(served(w, "/payments/1").await, (200, Some("blue".into())));
        assert_eq!(
            served(w, "/orders/1").await.0,
            404,
            "orders is not in revision 1"
        );
        let resync = resync_to(w, 1).await;
        assert_eq!((resync.from_revision, resync.to_revision), (3, 1));
        assert!(
            resync
                .reason
                .starts_with("the Manager's store is another one")
                && resync.reason.contains(&new_store)
                && resync.reason.contains(&old_store),
            "{}",
            resync.reason
        );
    }
    // Each ACKs revision 1 of the new store, saying it resynchronised.
    let reports = m.wait_reports("dev", 1, &["w1", "w2"]).await.reports;
    for r in &reports {
        assert_eq!(r.status, ReportStatus::Ack, "{r:?}");
        let detail = r.detail.as_deref().unwrap_or_default();
        assert!(
            detail.starts_with("resynchronised: the Manager's store is another one"),
            "{detail}"
        );
    }
    let audit = m
        .client
        .raw(Method::GET, "/v1/audit?entity=Store", None)
        .await
        .unwrap()
        .json();
    let renewed = &audit[0];
    assert_eq!(renewed["operation"], "renew-store-id", "{audit}");
    assert_eq!(renewed["entity_name"], new_store.as_str());

    // The new history goes on: a plain incremental swap, a plain ACK.
    let (s, b) = m
        .apply("dev", &[payments_manifest("red", h.addr(0), "")])
        .await;
    assert_eq!((s, b["revision"].as_u64()), (200, Some(2)), "{b}");
    for w in &workers {
        wait_serving(w, &new_store, 2).await;
        assert_eq!(served(w, "/payments/1").await, (200, Some("red".into())));
        let resync = w.handle.status().sync.unwrap().last_resync.unwrap();
        assert_eq!(resync.to_revision, 1, "no second resync");
    }
    for r in m.wait_reports("dev", 2, &["w1", "w2"]).await.reports {
        assert_eq!((r.status, r.detail.as_deref()), (ReportStatus::Ack, None));
    }

    // Data files are readable by their owner only.
    let witness = format!("{}.witness", mdata.join("switchyard.db").display());
    for f in [
        mdata.join("switchyard.db"),
        mdata.join("switchyard.db-wal"),
        mdata.join("switchyard.db-shm"),
        witness.into(),
        mdata.join("admin.token"),
        mdata.join("secret.key"),
    ] {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    for w in &workers {
        for f in [w.cache.join("dev.lkg.json"), w.cache.join("cache.key")] {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
    }
}

/// The whole data directory restored (database and witness together): the store keeps
/// its id, but a Manager behind a Worker is followed back, and a Manager at the Worker's
/// revision with other content is noticed by its state digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_behind_or_with_other_content_at_the_same_revision_is_followed() {
    let h = Harness::upstreams(&["a", "b"]).await;
    let data = tempfile::tempdir().unwrap();
    let (mut m, token, copy) = backed_up_at_blue(&h, data.path()).await;
    let (mdata, addr) = (m.data.clone(), m.addr);
    let witness = m.store.witness_path().unwrap().to_path_buf();
    let witness_copy = data.path().join("backup.witness");
    std::fs::copy(&witness, &witness_copy).unwrap();
    m.apply("dev", &[payments_manifest("green", h.addr(1), "")])
        .await;
    let store = m.store.store_id();
    let link = Forwarder::start(addr).await;
    let opts = ManagedWorker::options_at(
        &m,
        &format!("https://{}", link.addr),
        "dev",
        &token,
        "w1",
        &data.path().join("cache"),
    );
    let w = ManagedWorker::start(opts).await.unwrap();
    wait_serving(&w, &store, 2).await;

    // Restored whole: same id, revision 1. The Worker is taken back to it.
    m.stop().await;
    restore(&copy, &mdata);
    std::fs::copy(&witness_copy, &witness).unwrap();
    let mut m = RunningManager::start_on(&mdata, addr).await;
    assert_eq!(m.store.store_id(), store);
    wait_serving(&w, &store, 1).await;
    assert_eq!(served(&w, "/payments/1").await, (200, Some("blue".into())));
    let resync = resync_to(&w, 1).await;
    assert!(
        resync
            .reason
            .starts_with("the Manager is at revision 1, behind the revision 2"),
        "{}",
        resync.reason
    );

    // The Worker follows this history to revision 2 (red) …
    let (s, b) = m
        .apply("dev", &[payments_manifest("red", h.addr(0), "")])
        .await;
    assert_eq!((s, b["revision"].as_u64()), (200, Some(2)), "{b}");
    wait_serving(&w, &store, 2).await;
    assert_eq!(served(&w, "/payments/1").await, (200, Some("red".into())));

    // … then, cut off from it, misses the Manager being restored once more and brought to
    // revision 2 with other content: same store, same revision, another state.
    link.cut();
    m.stop().await;
    restore(&copy, &mdata);
    std::fs::copy(&witness_copy, &witness).unwrap();
    let m = RunningManager::start_on(&mdata, addr).await;
    assert_eq!(m.store.store_id(), store);
    let (s, b) = m
        .apply("dev", &[payments_manifest("green", h.addr(1), "")])
        .await;
    assert_eq!((s, b["revision"].as_u64()), (200, Some(2)), "{b}");
    link.restore();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while served(&w, "/payments/1").await != (200, Some("green".into())) {
        assert!(tokio::time::Instant::now() < deadline, "still not green");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let resync = resync_to(&w, 2).await;
    assert_eq!(
        resync.reason,
        "the Manager's state at revision 2 is not the one this Worker serves"
    );
    let reports = m.wait_reports("dev", 2, &["w1"]).await.reports;
    assert_eq!(reports[0].status, ReportStatus::Ack);
}

/// A cache edited without the key (its revision pushed to 99999) is corrupt and never
/// served; a FIFO in the cache's place is refused at once instead of hanging the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_cache_is_refused_and_a_fifo_does_not_hang_the_start() {
    let h = Harness::upstreams(&["a"]).await;
    let data = tempfile::tempdir().unwrap();
    let (mut m, token) = manager_at_blue(&h, data.path()).await;
    let cache = data.path().join("cache");
    let opts = ManagedWorker::options(&m, "dev", &token, "w1", &cache);
    let mut w = ManagedWorker::start(opts.clone()).await.unwrap();
    w.wait_for_revision(1).await;
    w.stop().await;
    m.stop().await;

    let file = cache.join("dev.lkg.json");
    let text = std::fs::read_to_string(&file).unwrap();
    let edited = text.replace("\"revision\":1,", "\"revision\":99999,");
    assert_ne!(edited, text);
    std::fs::write(&file, edited).unwrap();
    let refused = ManagedWorker::start(opts.clone()).await.err().unwrap();
    let message = refused.to_string();
    assert!(
        message.contains("is corrupt (its MAC does not match")
            && message.contains("not serving it"),
        "{message}"
    );

    std::fs::remove_file(&file).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&file)
        .status()
        .unwrap();
    assert!(made.success());
    let started = tokio::time::timeout(DEADLINE, ManagedWorker::start(opts))
        .await
        .expect("a FIFO in the cache's place must not hang the start");
    let message = started.err().unwrap().to_string();
    assert!(message.contains("not a regular file (a FIFO)"), "{message}");
}

/// A report is accepted only for the Worker bound to the token it comes with (an open
/// event stream of that id with that token), for a revision the environment has, of the
/// Manager's store (and, for a catch-up ACK, caught up to a later one it has).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_bound_to_the_worker_and_to_revisions_the_environment_has() {
    let h = Harness::upstreams(&["a"]).await;
    let data = tempfile::tempdir().unwrap();
    let (m, token) = manager_at_blue(&h, data.path()).await;
    let other_token = m.token("worker", &["dev"]).await;
    let opts = ManagedWorker::options(&m, "dev", &token, "w1", &data.path().join("c"));
    let w = ManagedWorker::start(opts).await.unwrap();
    w.wait_for_revision(1).await;
    m.wait_reports("dev", 1, &["w1"]).await;

    let client =
        |token: &str, id: &str| SyncClient::new(&m.url(), token, "dev", id, None, &m.tls).unwrap();
    let ack = |revision: u64, store_id: Option<&str>| ReportBody {
        revision,
        status: ReportStatus::Ack,
        error: None,
        applied_at: 0,
        pulled_at: None,
        address: None,
        store_id: store_id.map(str::to_string),
        detail: None,
        caught_up_to: None,
    };
    let elsewhere = Some("st_elsewhere");
    // (who sends, as which Worker, what) → status, code, the message's telling part.
    let refused = [
        // Another token cannot speak for w1 …
        (
            &other_token,
            "w1",
            ack(1, None),
            403,
            ErrorCode::WorkerMismatch,
            "connected to \"dev\" with another token",
        ),
        // … and w1's own token cannot invent a Worker that is not connected.
        (
            &token,
            "ghost",
            ack(1, None),
            403,
            ErrorCode::WorkerMismatch,
            "\"ghost\" has no event stream open",
        ),
        // Bound, but a revision the environment does not have, or of another store.
        (
            &token,
            "w1",
            ack(999_999, None),
            422,
            ErrorCode::UnknownRevision,
            "environment \"dev\" has no revision 999999: it is at revision 1",
        ),
        (
            &token,
            "w1",
            ack(1, elsewhere),
            409,
            ErrorCode::StoreMismatch,
            "revision 1 of store st_elsewhere",
        ),
        // A catch-up ACK names a later revision the environment has; a NACK is never one.
        (
            &token,
            "w1",
            ReportBody {
                caught_up_to: Some(1),
                ..ack(1, None)
            },
            422,
            ErrorCode::InvalidBody,
            "caught_up_to 1 must be a revision after the ACKed revision 1",
        ),
        (
            &token,
            "w1",
            ReportBody {
                status: ReportStatus::Nack,
                error: Some("boom".into()),
                caught_up_to: Some(1),
                ..ack(0, None)
            },
            422,
            ErrorCode::InvalidBody,
            "a NACK is never caught up",
        ),
        (
            &token,
            "w1",
            ReportBody {
                caught_up_to: Some(2),
                ..ack(0, None)
            },
            422,
            ErrorCode::UnknownRevision,
            "environment \"dev\" has no revision 2 (caught_up_to): it is at revision 1",
        ),
    ];
    for (token, id, body, status, code, says) in refused {
        match client(token, id).report(&body).await.unwrap_err() {
            switchyard_api::ClientError::Api(f) => {
                let m = &f.body.message;
                assert_eq!((f.status, &f.body.code), (status, &code), "{id}: {m}");
                assert!(m.contains(says), "{id}: {m}");
            }
            other => panic!("{other}"),
        }
    }
    // Nor may another token claim w1's id for a stream while w1's is open.
    match client(&other_token, "w1").events(0).await.unwrap_err() {
        switchyard_api::ClientError::Api(f) => assert_eq!(f.body.code, ErrorCode::WorkerMismatch),
        other => panic!("{other}"),
    }
    // What the Worker itself sends is accepted.
    let own = ack(1, Some(&m.store.store_id()));
    client(&token, "w1").report(&own).await.unwrap();

    // Nothing refused was recorded: status still shows w1 at revision 1, lag 0.
    let workers = m.client.workers("dev").await.unwrap();
    assert_eq!(workers.len(), 1, "{workers:?}");
    assert_eq!(
        (workers[0].id.as_str(), workers[0].revision, workers[0].lag),
        ("w1", Some(1), Some(0))
    );
    let reports = m.client.revision("dev", 1).await.unwrap().reports;
    assert!(reports.iter().all(|r| r.worker_id == "w1"), "{reports:?}");
}
