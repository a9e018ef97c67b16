//! The hot-deployment contract under load: many keep-alive clients, hundreds of swaps,
//! zero failures, every response from exactly one configuration version.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use switchyard_e2e::{
    ConfigDir, Conn, Harness, RunningWorker, eventually, get_once, payments_manifest,
};

const CLIENTS: usize = 32;
const SWAPS: u64 = 200;

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    inconsistent: AtomicU64,
    blue: AtomicU64,
    green: AtomicU64,
}

/// Version A: `x-release: blue` from upstream "a"; version B: `green` from "b". A response
/// with blue from b (or green from a) would be half-old, half-new.
fn check(tally: &Tally, release: Option<&str>, upstream: Option<&str>) -> Result<(), String> {
    match (release, upstream) {
        (Some("blue"), Some("a")) => {
            tally.blue.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        (Some("green"), Some("b")) => {
            tally.green.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        other => Err(format!("mixed response: {other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_swaps_under_keep_alive_load_drop_nothing() {
    let h = Harness::upstreams(&["a", "b"]).await;
    let cfg = ConfigDir::new();
    let version = |i: u64| {
        if i.is_multiple_of(2) {
            payments_manifest("blue", h.addr(0), "")
        } else {
            payments_manifest("green", h.addr(1), "")
        }
    };
    cfg.write("payments.yaml", &version(0));
    let worker = RunningWorker::start(cfg.path()).await;
    let first = worker.handle.revision();

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (stop, tally, addr) = (stop.clone(), tally.clone(), worker.addr);
        clients.push(tokio::spawn(async move {
            // One connection per client for the whole test: it must survive every swap.
            let mut conn = Conn::open(addr).await.unwrap();
            let mut errors = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                match conn.get(&format!("/payments/{c}/{n}"), &[]).await {
                    Ok(a) if a.status == 200 => {
                        match check(&tally, a.header("x-release"), a.header("x-upstream-id")) {
                            Ok(()) => tally.ok.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                errors.push(e);
                                tally.inconsistent.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                    Ok(a) => {
                        errors.push(format!("status {}: {:?}", a.status, a.body));
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        errors.push(e);
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
            (errors, conn.is_closed())
        }));
    }

    // Wait until every client has had at least one answer before swapping.
    eventually("all clients answered once", || {
        tally.ok.load(Ordering::Relaxed) >= CLIENTS as u64
    })
    .await;
    let mut before_each_swap = Vec::new();
    for i in 1..=SWAPS {
        before_each_swap.push(tally.ok.load(Ordering::Relaxed));
        cfg.write("payments.yaml", &version(i));
        worker.wait_for_revision(first + i).await;
    }
    // Let traffic run on the last version for a moment, then stop the clients.
    let at_end = tally.ok.load(Ordering::Relaxed);
    eventually("traffic on the final version", || {
        tally.ok.load(Ordering::Relaxed) >= at_end + CLIENTS as u64
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut all_errors = Vec::new();
    for c in clients {
        let (errors, closed) = c.await.unwrap();
        assert!(!closed, "a keep-alive connection was closed by a swap");
        all_errors.extend(errors);
    }

    let ok = tally.ok.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    let inconsistent = tally.inconsistent.load(Ordering::Relaxed);
    let status = worker.handle.status();
    eprintln!(
        "e2e: {ok} ok responses ({} blue, {} green), {failed} failed, {inconsistent} mixed, \
         {} swaps, {CLIENTS} keep-alive clients",
        tally.blue.load(Ordering::Relaxed),
        tally.green.load(Ordering::Relaxed),
        status.swaps_total,
    );
    assert!(
        all_errors.is_empty(),
        "errors: {:?}",
        &all_errors[..all_errors.len().min(10)]
    );
    assert_eq!(failed, 0);
    assert_eq!(inconsistent, 0);
    assert!(
        status.swaps_total >= SWAPS,
        "only {} swaps",
        status.swaps_total
    );
    assert_eq!(worker.handle.revision(), first + SWAPS);
    assert!(tally.blue.load(Ordering::Relaxed) > 0 && tally.green.load(Ordering::Relaxed) > 0);
    // Traffic really flowed during the swaps, not only before and after.
    let grew = before_each_swap.windows(2).filter(|w| w[1] > w[0]).count();
    assert!(
        grew > (SWAPS as usize) / 2,
        "traffic advanced during only {grew} of {SWAPS} swaps"
    );

    // Old generations are freed once no request holds them.
    eventually("old snapshot generations freed", || {
        worker.handle.live_generations() == 1
    })
    .await;
    let metrics = get_once(worker.admin, "/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("switchyard_snapshot_generations_live 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_finishes_on_the_version_it_started_with() {
    let h = Harness::upstreams(&["a", "b"]).await;
    let cfg = ConfigDir::new();
    cfg.write("payments.yaml", &payments_manifest("blue", h.addr(0), ""));
    let worker = RunningWorker::start(cfg.path()).await;
    let first = worker.handle.revision();

    // A slow request reaches upstream "a" and is held there.
    let mut slow_conn = Conn::open(worker.addr).await.unwrap();
    let slow = tokio::spawn(async move {
        let a = slow_conn.get("/payments/slow", &[("x-hold", "1")]).await;
        (a, slow_conn)
    });
    let mut arrivals = h.upstreams[0].hold.arrivals();
    tokio::time::timeout(switchyard_e2e::DEADLINE, arrivals.wait_for(|n| *n >= 1))
        .await
        .unwrap()
        .unwrap();

    // Swap while it is in flight.
    cfg.write("payments.yaml", &payments_manifest("green", h.addr(1), ""));
    worker.wait_for_revision(first + 1).await;
    assert_eq!(
        worker.handle.live_generations(),
        2,
        "the in-flight request must pin the old generation"
    );

    // A request accepted after the swap runs the new version.
    let after = get_once(worker.addr, "/payments/fast").await;
    assert_eq!(after.status, 200);
    assert_eq!(after.header("x-release"), Some("green"));
    assert_eq!(after.header("x-upstream-id"), Some("b"));

    // The slow one completes with the old version's header and target.
    h.upstreams[0].hold.release();
    let (slow_answer, mut conn) = slow.await.unwrap();
    let slow_answer = slow_answer.unwrap();
    assert_eq!(slow_answer.status, 200);
    assert_eq!(slow_answer.header("x-release"), Some("blue"));
    assert_eq!(slow_answer.header("x-upstream-id"), Some("a"));

    // Its keep-alive connection is still open, and its next request sees the new version.
    let next = conn.get("/payments/next", &[]).await.unwrap();
    assert_eq!(next.header("x-release"), Some("green"));
    assert_eq!(next.header("x-upstream-id"), Some("b"));

    eventually("old generation freed after the slow request", || {
        worker.handle.live_generations() == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_mid_traffic_is_rejected_and_the_old_one_keeps_serving() {
    let h = Harness::upstreams(&["a", "b"]).await;
    let cfg = ConfigDir::new();
    cfg.write("payments.yaml", &payments_manifest("blue", h.addr(0), ""));
    let worker = RunningWorker::start(cfg.path()).await;
    let first = worker.handle.revision();

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, tally, addr) = (stop.clone(), tally.clone(), worker.addr);
        clients.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await.unwrap();
            while !stop.load(Ordering::Relaxed) {
                match conn.get("/payments/x", &[]).await {
                    Ok(a) if a.status == 200 && a.header("x-release") == Some("blue") => {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    eventually("traffic flowing", || tally.ok.load(Ordering::Relaxed) > 10).await;

    // A typo: "2 s" is not a duration. Also change the release, which must NOT go live.
    let bad = payments_manifest("green", h.addr(1), "    timeouts: { connect: 2 s }");
    cfg.write("payments.yaml", &bad);
    let admin = worker.admin;
    let mut rejected = None;
    let deadline = tokio::time::Instant::now() + switchyard_e2e::DEADLINE;
    while rejected.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "rejection never reported"
        );
        let status = get_once(admin, "/status").await.json();
        if status["last_reload"]["result"] == "rejected" {
            rejected = Some(status);
        } else {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
    let status = rejected.unwrap();
    let error = status["last_reload"]["error"].as_str().unwrap();
    assert!(
        error.contains("payments.yaml:")
            && error.contains("spec.upstream.timeouts.connect: invalid duration \"2 s\""),
        "{error}"
    );
    assert_eq!(status["revision"], first);
    assert_eq!(status["rejected_total"], 1);

    // Traffic keeps flowing on the old config.
    let now = tally.ok.load(Ordering::Relaxed);
    eventually("traffic after the rejection", || {
        tally.ok.load(Ordering::Relaxed) > now + 10
    })
    .await;
    let metrics = String::from_utf8_lossy(&get_once(admin, "/metrics").await.body).to_string();
    assert!(
        metrics.contains("switchyard_config_rejected_total 1"),
        "{metrics}"
    );

    // Fixing the file applies it.
    cfg.write(
        "payments.yaml",
        &payments_manifest("blue", h.addr(0), "    timeouts: { connect: 3s }"),
    );
    worker.wait_for_revision(first + 1).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(tally.failed.load(Ordering::Relaxed), 0);
}
