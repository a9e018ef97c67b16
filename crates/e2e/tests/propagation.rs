//! Propagation end to end: a Manager, three Workers, real traffic; changes fan out, every
//! Worker swaps and ACKs, the Manager shows propagation time and audit completeness.
//! Workers survive Manager outages, restart from their cache, and converge after missing
//! notifications.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use http::Method;
use switchyard_api::records::ReportStatus;
use switchyard_api::sync::ServedFrom;
use switchyard_e2e::cluster::{ManagedWorker, RunningManager};
use switchyard_e2e::forwarder::Forwarder;
use switchyard_e2e::{Conn, Harness, eventually, payments_manifest};

#[derive(Default)]
struct Load {
    ok: AtomicU64,
    failed: AtomicU64,
    mixed: AtomicU64,
}

/// Keep-alive clients on every Worker; each response must be blue-from-a or green-from-b.
fn start_load(
    addrs: &[std::net::SocketAddr],
    per_worker: usize,
    stop: &Arc<AtomicBool>,
    load: &Arc<Load>,
) -> Vec<tokio::task::JoinHandle<Vec<String>>> {
    let mut tasks = Vec::new();
    for addr in addrs {
        for _ in 0..per_worker {
            let (addr, stop, load) = (*addr, stop.clone(), load.clone());
            tasks.push(tokio::spawn(async move {
                let mut errors = Vec::new();
                let mut conn = Conn::open(addr).await.unwrap();
                while !stop.load(Ordering::Relaxed) {
                    match conn.get("/payments/x", &[]).await {
                        Ok(a) if a.status == 200 => {
                            match (a.header("x-release"), a.header("x-upstream-id")) {
                                (Some("blue"), Some("a")) | (Some("green"), Some("b")) => {
                                    load.ok.fetch_add(1, Ordering::Relaxed);
                                }
                                other => {
                                    errors.push(format!("mixed {other:?}"));
                                    load.mixed.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        Ok(a) => {
                            errors.push(format!("status {}", a.status));
                            load.failed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            errors.push(e);
                            load.failed.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
                errors
            }));
        }
    }
    tasks
}

fn version(h: &Harness, i: u64) -> String {
    if i.is_multiple_of(2) {
        payments_manifest("blue", h.addr(0), "")
    } else {
        payments_manifest("green", h.addr(1), "")
    }
}

async fn connected_workers(m: &RunningManager, env: &str) -> usize {
    let (_, w) = m
        .call(Method::GET, &format!("/v1/envs/{env}/workers"), None)
        .await;
    w.as_array()
        .map(|a| a.iter().filter(|w| w["connected"] == true).count())
        .unwrap_or(0)
}

/// Waits (bounded) until the number of Workers connected to `env` is as `want` says.
async fn wait_connected(m: &RunningManager, env: &str, what: &str, want: impl Fn(usize) -> bool) {
    let deadline = tokio::time::Instant::now() + switchyard_e2e::DEADLINE;
    while !want(connected_workers(m, env).await) {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_under_load_reach_three_workers_with_acks_and_complete_audit() {
    // More with SWITCHYARD_E2E_CHANGES=100 (used for the numbers in BENCHMARKS.md).
    let changes = std::env::var("SWITCHYARD_E2E_CHANGES")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(10);
    let h = Harness::upstreams(&["a", "b"]).await;
    let data = tempfile::tempdir().unwrap();
    let m = RunningManager::start(&data.path().join("manager")).await;
    let token = m.env_with_worker_token("dev").await;
    let (s, b) = m.apply("dev", &[version(&h, 0)]).await;
    assert_eq!(s, 200, "{b}");

    let mut workers = Vec::new();
    for i in 1..=3 {
        let cache = data.path().join(format!("cache-{i}"));
        let opts = ManagedWorker::options(&m, "dev", &token, &format!("w{i}"), &cache);
        workers.push(ManagedWorker::start(opts).await.unwrap());
    }
    for w in &workers {
        w.wait_for_revision(1).await;
    }
    wait_connected(&m, "dev", "three Workers connected", |n| n >= 3).await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = Arc::new(Load::default());
    let addrs: Vec<_> = workers.iter().map(|w| w.addr).collect();
    let clients = start_load(&addrs, 6, &stop, &load);
    eventually("load running", || load.ok.load(Ordering::Relaxed) > 100).await;

    for i in 1..=changes {
        let (s, b) = m.apply("dev", &[version(&h, i)]).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["revision"], i + 1);
        for w in &workers {
            w.wait_for_revision(i + 1).await;
        }
    }
    let now = load.ok.load(Ordering::Relaxed);
    eventually("traffic after the last change", || {
        load.ok.load(Ordering::Relaxed) > now + 100
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for c in clients {
        errors.extend(c.await.unwrap());
    }
    assert!(errors.is_empty(), "{:?}", &errors[..errors.len().min(5)]);
    assert_eq!(load.failed.load(Ordering::Relaxed), 0);
    assert_eq!(load.mixed.load(Ordering::Relaxed), 0);

    // Every revision: three ACKs recorded, complete audit, a propagation time.
    let mut propagation = Vec::new();
    for rev in 2..=changes + 1 {
        let deadline = tokio::time::Instant::now() + switchyard_e2e::DEADLINE;
        let view = loop {
            let (s, v) = m
                .call(Method::GET, &format!("/v1/envs/dev/revisions/{rev}"), None)
                .await;
            assert_eq!(s, 200, "{v}");
            if v["acks"] == 3 {
                break v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "revision {rev}: {v}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        assert_eq!(view["nacks"], 0);
        assert_eq!(view["audit_completeness"], 1.0, "{view}");
        assert_eq!(view["expected_workers"].as_array().unwrap().len(), 3);
        propagation.push(view["propagation_ms"].as_i64().unwrap());
    }
    propagation.sort_unstable();
    let pct = |p: usize| propagation[(propagation.len() * p / 100).min(propagation.len() - 1)];
    eprintln!(
        "propagation over {changes} changes, 3 workers: p50 {} ms, p99 {} ms, max {} ms; {} requests, 0 failed",
        pct(50),
        pct(99),
        propagation[propagation.len() - 1],
        load.ok.load(Ordering::Relaxed)
    );

    // The audit trail has an ACK record per Worker and revision.
    let (_, audit) = m
        .call(
            Method::GET,
            "/v1/audit?env=dev&entity=worker&limit=1000",
            None,
        )
        .await;
    let acks = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["detail"] == "ack")
        .count();
    assert!(acks >= 3 * (changes as usize + 1), "{acks} ack records");

    // Manager metrics expose propagation and completeness.
    let (_, metrics) = m.call(Method::GET, "/metrics", None).await;
    let text = metrics.as_str().unwrap_or_default().to_string();
    assert!(
        text.contains("switchyard_manager_propagation_seconds_count{env=\"dev\"}"),
        "{text}"
    );
    assert!(
        text.contains("switchyard_manager_audit_completeness{env=\"dev\"} 1.0"),
        "{text}"
    );
}

/// A revision that passes the Manager but not a Worker (here: written straight into the
/// store, as an older Manager without today's validation would have) is NACKed with the
/// error, and the Workers keep serving the previous revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_workers_reject_is_nacked_and_the_old_one_keeps_serving() {
    let h = Harness::upstreams(&["a", "b"]).await;
    let data = tempfile::tempdir().unwrap();
    let m = RunningManager::start(&data.path().join("manager")).await;
    let token = m.env_with_worker_token("dev").await;
    m.apply("dev", &[version(&h, 0)]).await;
    let mut workers = Vec::new();
    for i in 1..=2 {
        let opts = ManagedWorker::options(
            &m,
            "dev",
            &token,
            &format!("w{i}"),
            &data.path().join(format!("c{i}")),
        );
        workers.push(ManagedWorker::start(opts).await.unwrap());
    }

    m.commit_rejected_by_workers("dev", 1).await;

    // No notification was sent (the store was written directly): the periodic check finds it.
    let deadline = tokio::time::Instant::now() + switchyard_e2e::DEADLINE;
    let view = loop {
        let (_, v) = m.call(Method::GET, "/v1/envs/dev/revisions/2", None).await;
        if v["nacks"] == 2 {
            break v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let error = view["reports"][0]["error"].as_str().unwrap();
    assert!(error.contains("invalid duration \"2 s\""), "{error}");
    for w in &workers {
        assert_eq!(w.handle.revision(), 1);
        assert_eq!(w.handle.status().sync.unwrap().rejected_revision, Some(2));
        let a = switchyard_e2e::get_once(w.addr, "/payments/1").await;
        assert_eq!((a.status, a.header("x-release")), (200, Some("blue")));
    }
    let (_, list) = m.call(Method::GET, "/v1/envs/dev/workers", None).await;
    for w in list.as_array().unwrap() {
        assert_eq!(w["last_report"]["status"], "nack", "{w}");
        assert_eq!(
            w["revision"], 1,
            "a NACK keeps it on its last good revision: {w}"
        );
    }

    // A fixed revision moves everyone on.
    let (s, b) = m.apply("dev", &[version(&h, 1)]).await;
    assert_eq!((s, b["revision"].as_u64()), (200, Some(3)), "{b}");
    for w in &workers {
        w.wait_for_revision(3).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_ride_out_a_manager_outage_and_restart_from_cache() {
    let h = Harness::upstreams(&["a", "b"]).await;
    let data = tempfile::tempdir().unwrap();
    let mdata = data.path().join("manager");
    let mut m = RunningManager::start(&mdata).await;
    let addr = m.addr;
    let token = m.env_with_worker_token("dev").await;
    m.apply("dev", &[version(&h, 0)]).await;
    let opts = |i: u32| {
        ManagedWorker::options(
            &m,
            "dev",
            &token,
            &format!("w{i}"),
            &data.path().join(format!("c{i}")),
        )
    };
    let w1 = ManagedWorker::start(opts(1)).await.unwrap();
    let mut w2 = ManagedWorker::start(opts(2)).await.unwrap();
    let o2 = opts(2);
    w1.wait_for_revision(1).await;
    w2.wait_for_revision(1).await;

    m.stop().await;
    // Running Workers keep serving.
    let mut c = Conn::open(w1.addr).await.unwrap();
    for _ in 0..20 {
        let a = c.get("/payments/1", &[]).await.unwrap();
        assert_eq!((a.status, a.header("x-release")), (200, Some("blue")));
    }
    eventually("w1 notices the Manager is gone", || {
        !w1.handle.status().sync.unwrap().connected
    })
    .await;

    // A Worker restarted while the Manager is down serves its cache, and says so.
    w2.stop().await;
    let w2 = ManagedWorker::start(o2).await.unwrap();
    let sync = w2.handle.status().sync.unwrap();
    assert_eq!(sync.served_from, ServedFrom::Cache);
    assert!(sync.last_error.is_some());
    let a = switchyard_e2e::get_once(w2.addr, "/payments/1").await;
    assert_eq!((a.status, a.header("x-release")), (200, Some("blue")));

    // The Manager comes back (same address, same data) and a revision is committed: both
    // Workers catch up.
    let m = RunningManager::start_on(&mdata, addr).await;
    let (s, b) = m.apply("dev", &[version(&h, 1)]).await;
    assert_eq!((s, b["revision"].as_u64()), (200, Some(2)), "{b}");
    w1.wait_for_revision(2).await;
    w2.wait_for_revision(2).await;
    eventually("w2 now follows the Manager", || {
        w2.handle.status().sync.unwrap().served_from == ServedFrom::Manager
    })
    .await;
    let a = switchyard_e2e::get_once(w2.addr, "/payments/1").await;
    assert_eq!((a.status, a.header("x-release")), (200, Some("green")));
}

/// Cut off while revisions 2 to 4 are committed, the Worker jumps from 1 to 4: it ACKs 2 and
/// 3 as caught up to 4 and 4 as swapped in; not connected when they were committed, it is
/// listed as having joined after each commit (and after revision 1's, which it started
/// after).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_missed_notifications_converges_and_never_goes_backwards() {
    let h = Harness::upstreams(&["a", "b"]).await;
    let data = tempfile::tempdir().unwrap();
    let m = RunningManager::start(&data.path().join("manager")).await;
    let token = m.env_with_worker_token("dev").await;
    m.apply("dev", &[version(&h, 0)]).await;
    let link = Forwarder::start(m.addr).await;
    let opts = ManagedWorker::options_at(
        &m,
        &format!("https://{}", link.addr),
        "dev",
        &token,
        "w1",
        &data.path().join("c1"),
    );
    let w = ManagedWorker::start(opts).await.unwrap();
    w.wait_for_revision(1).await;

    // Watch every revision the Worker serves: it must only ever go up.
    let mut revisions = w.handle.subscribe();
    let seen = tokio::spawn(async move {
        let mut seen = vec![*revisions.borrow()];
        while revisions.changed().await.is_ok() {
            seen.push(*revisions.borrow());
            if seen.last() == Some(&4) {
                break;
            }
        }
        seen
    });

    link.cut();
    // The Manager notices the Worker gone (its next heartbeat fails): it is not expected to
    // pick up what follows.
    wait_connected(
        &m,
        "dev",
        "the Manager no longer sees the cut Worker",
        |n| n == 0,
    )
    .await;
    for i in 1..=3 {
        let (s, _) = m.apply("dev", &[version(&h, i)]).await;
        assert_eq!(s, 200);
    }
    assert_eq!(
        w.handle.revision(),
        1,
        "the cut Worker cannot have seen anything"
    );
    link.restore();
    w.wait_for_revision(4).await;
    let seen = seen.await.unwrap();
    assert!(
        seen.windows(2).all(|p| p[0] < p[1]),
        "went backwards: {seen:?}"
    );
    let a = switchyard_e2e::get_once(w.addr, "/payments/1").await;
    assert_eq!((a.status, a.header("x-release")), (200, Some("green")));

    // Its ACKs say how it came to serve each revision, and that it joined after the commit.
    for (revision, caught_up_to) in [(1, None), (2, Some(4)), (3, Some(4)), (4, None)] {
        let view = m.wait_reports("dev", revision, &["w1"]).await;
        let ack = &view.reports[0];
        assert_eq!(
            (ack.status, ack.caught_up_to),
            (ReportStatus::Ack, caught_up_to),
            "revision {revision}: {ack:?}"
        );
        let caught_up = usize::from(caught_up_to.is_some());
        assert_eq!(
            (view.acks, view.applied, view.caught_up),
            (1, 1 - caught_up, caught_up),
            "revision {revision}"
        );
        assert_eq!(view.expected_workers, Some(vec![]), "revision {revision}");
        assert_eq!(view.joined_after, ["w1"], "revision {revision}");
    }
}
