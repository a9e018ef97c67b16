//! Graceful shutdown: in-flight requests finish, keep-alive clients are told to close,
//! no new connections are accepted.

#![allow(clippy::unwrap_used)]

use switchyard_e2e::{
    ConfigDir, Conn, DEADLINE, Harness, RunningWorker, get_once, payments_manifest,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests_and_closes_keep_alive() {
    let h = Harness::upstreams(&["a"]).await;
    let cfg = ConfigDir::new();
    cfg.write("p.yaml", &payments_manifest("blue", h.addr(0), ""));
    let mut w = RunningWorker::start(cfg.path()).await;
    assert_eq!(get_once(w.admin, "/readyz").await.status, 200);

    let mut conn = Conn::open(w.addr).await.unwrap();
    let first = conn.get("/payments/1", &[]).await.unwrap();
    assert_eq!(first.status, 200);
    let in_flight = tokio::spawn(async move {
        let a = conn.get("/payments/held", &[("x-hold", "1")]).await;
        (a, conn)
    });
    let mut arrivals = h.upstreams[0].hold.arrivals();
    tokio::time::timeout(DEADLINE, arrivals.wait_for(|n| *n >= 1))
        .await
        .unwrap()
        .unwrap();

    w.begin_shutdown();
    // Draining: readiness turns off while the held request is still running.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !w.handle.is_draining() {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::task::yield_now().await;
    }
    h.upstreams[0].hold.release();
    let (answer, conn) = in_flight.await.unwrap();
    let answer = answer.unwrap();
    assert_eq!(answer.status, 200, "the in-flight request completes");
    assert_eq!(answer.header("x-release"), Some("blue"));
    assert_eq!(
        answer.header("connection"),
        Some("close"),
        "keep-alive client told to close"
    );

    tokio::time::timeout(DEADLINE, w.task)
        .await
        .unwrap()
        .unwrap();
    drop(conn);
    assert!(
        tokio::net::TcpStream::connect(w.addr).await.is_err(),
        "listener is closed"
    );
}
