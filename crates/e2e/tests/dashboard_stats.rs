//! The dashboard's charts: Workers send their running totals, the Manager turns them into
//! rates per 10 s bucket (`GET /v1/envs/{env}/stats`), only for a token that may read the
//! environment, and takes totals only from a Worker connected with its own token.

#![allow(clippy::unwrap_used)]

use http::Method;
use switchyard_api::admin::EnvStats;
use switchyard_api::sync::{ServedFrom, StatsBody};
use switchyard_api::{AdminClient, SyncClient};
use switchyard_e2e::cluster::{ManagedWorker, RunningManager, api};
use switchyard_e2e::{Conn, DeadPort, Harness, payments_manifest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_totals_become_the_charts_rates() {
    let h = Harness::upstreams(&["a"]).await;
    let data = tempfile::tempdir().unwrap();
    let m = RunningManager::start_plain(&data.path().join("manager")).await;
    let token = m.env_with_worker_token("dev").await;
    let viewer = m.token("viewer", &["dev"]).await;
    let dead = DeadPort::new();
    let (s, b) = m
        .apply("dev", &[payments_manifest("blue", h.addr(0), "")])
        .await;
    assert_eq!(s, 200, "{b}");
    let cache = data.path().join("cache");
    let w = ManagedWorker::start(ManagedWorker::options(&m, "dev", &token, "w1", &cache))
        .await
        .unwrap();
    w.wait_for_revision(1).await;
    let mut conn = Conn::open(w.addr).await.unwrap();
    for _ in 0..20 {
        assert_eq!(conn.get("/payments/x", &[]).await.unwrap().status, 200);
    }
    // A gateway error: the target is a port nobody listens on.
    let (s, b) = m
        .apply("dev", &[payments_manifest("green", dead.addr, "")])
        .await;
    assert_eq!(s, 200, "{b}");
    w.wait_for_revision(2).await;
    assert_eq!(conn.get("/payments/x", &[]).await.unwrap().status, 502);

    // The revision's timeline: the Worker read it, then swapped it in, then its ACK
    // arrived (one host: one clock).
    let view = m.wait_reports("dev", 2, &["w1"]).await;
    let ack = &view.reports[0];
    let pulled = ack
        .pulled_at
        .expect("the ACK says when the revision was pulled");
    assert!(
        view.record.committed_at <= pulled
            && pulled <= ack.applied_at
            && ack.applied_at <= ack.received_at,
        "commit {} pull {pulled} swap {} ack {}",
        view.record.committed_at,
        ack.applied_at,
        ack.received_at
    );

    let viewer_client = AdminClient::with_tls(&m.url(), &viewer, &m.tls).unwrap();
    let deadline = tokio::time::Instant::now() + switchyard_e2e::DEADLINE;
    let stats: EnvStats = loop {
        let stats = viewer_client.stats("dev").await.unwrap();
        let requests: f64 = stats
            .points
            .iter()
            .map(|p| p.requests_per_second.success)
            .sum();
        let errors: f64 = stats
            .points
            .iter()
            .map(|p| p.gateway_errors_per_second)
            .sum();
        if requests > 0.0 && errors > 0.0 {
            break stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rates after the traffic: {stats:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(stats.interval_ms, 10_000);
    // Its statistics say it serves what the Manager gave it.
    let workers = viewer_client.workers("dev").await.unwrap();
    assert_eq!(
        workers[0].served_from,
        Some(ServedFrom::Manager),
        "{workers:?}"
    );
    let last = stats.points.last().unwrap();
    assert_eq!(last.workers.len(), 1, "{stats:?}");
    assert_eq!(last.workers[0].id, "w1");
    assert!(last.workers[0].resident_bytes > 1_000_000, "{stats:?}");
    assert!(last.workers[0].live_generations >= 1, "{stats:?}");

    // Read access is needed to see them; only a connected Worker's own token may send them.
    let (s, _) = m
        .call(
            Method::POST,
            "/v1/envs",
            Some(serde_json::json!({"name": "other"})),
        )
        .await;
    assert_eq!(s, 201);
    let outsider = m.token("viewer", &["other"]).await;
    let (s, b) = api(&m, &outsider, Method::GET, "/v1/envs/dev/stats", None).await;
    assert_eq!(s, 403, "{b}");
    let totals = serde_json::json!({
        "revision": 1,
        "requests": {"1xx": 0, "2xx": 1000000, "3xx": 0, "4xx": 0, "5xx": 0},
        "gateway_errors": 0, "resident_bytes": 1, "live_generations": 1
    });
    let (s, b) = api(
        &m,
        &viewer,
        Method::POST,
        "/v1/envs/dev/stats",
        Some(totals.clone()),
    )
    .await;
    assert_eq!(s, 403, "{b}");
    // Another worker token claiming w1 (whose stream is open with the first one).
    let other_worker = m.token("worker", &["dev"]).await;
    let impostor =
        SyncClient::for_process(&m.url(), &other_worker, "dev", "w1", None, None, &m.tls).unwrap();
    let body: StatsBody = serde_json::from_value(totals).unwrap();
    let refused = impostor.stats(&body).await.unwrap_err().to_string();
    assert!(refused.contains("no event stream open"), "{refused}");
    // Nothing of it was kept: no rate of a million requests.
    let stats = viewer_client.stats("dev").await.unwrap();
    assert!(
        stats
            .points
            .iter()
            .all(|p| p.requests_per_second.success < 1000.0),
        "{stats:?}"
    );
}
