//! Upstream resilience through a real Worker: passive ejection, active health checks that
//! survive configuration swaps, the concurrency limit, and which failures are retried.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use switchyard_e2e::{
    ConfigDir, Conn, DEADLINE, Harness, RunningWorker, get_once, payments_manifest,
};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// An address nothing listens on: bind port 0, note it, close it.
/// `/status` as JSON.
async fn status(w: &RunningWorker) -> serde_json::Value {
    get_once(w.admin, "/status").await.json()
}

/// The health `/status` reports for `url` in `proxy`.
async fn health_of(w: &RunningWorker, proxy: &str, url: &str) -> String {
    let s = status(w).await;
    let p = s["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == proxy)
        .unwrap_or_else(|| panic!("no proxy {proxy} in {s}"))
        .clone();
    let t = p["target_health"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["url"] == url)
        .unwrap_or_else(|| panic!("no target {url} in {p}"))
        .clone();
    t["health"].as_str().unwrap().to_string()
}

/// Polls `/status` until `url` in `proxy` has `health`, failing after [`DEADLINE`].
async fn wait_health(w: &RunningWorker, proxy: &str, url: &str, health: &str) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let now = health_of(w, proxy, url).await;
        if now == health {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{proxy} {url} still {now}, expected {health}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn metrics(w: &RunningWorker) -> String {
    String::from_utf8_lossy(&get_once(w.admin, "/metrics").await.body).to_string()
}

#[tokio::test]
async fn a_dead_target_is_ejected_after_consecutive_failures_then_no_more_errors() {
    let h = Harness::upstreams(&["a"]).await;
    let dead_port = switchyard_e2e::DeadPort::new();
    let dead = dead_port.addr;
    let cfg = ConfigDir::new();
    let extra = format!(
        "      - url: http://{dead}\n    retries: {{ attempts: 0 }}\n    healthCheck:\n      passive: {{ consecutiveFailures: 2, coolOff: 1h }}"
    );
    cfg.write("p.yaml", &payments_manifest("blue", h.addr(0), &extra));
    let w = RunningWorker::start(cfg.path()).await;
    let dead_url = format!("http://{dead}");
    assert_eq!(health_of(&w, "payments", &dead_url).await, "healthy");

    // Round-robin sends every other request to the dead target (no retries): two failures.
    let mut c = Conn::open(w.addr).await.unwrap();
    let mut errors = 0;
    for i in 0..20 {
        let a = c.get(&format!("/payments/{i}"), &[]).await.unwrap();
        if a.status == 502 {
            assert_eq!(a.json()["error"], "upstream_connect_failed");
            errors += 1;
            if errors == 2 {
                break;
            }
        }
    }
    assert_eq!(errors, 2, "the dead target should have failed twice");
    assert_eq!(health_of(&w, "payments", &dead_url).await, "ejected");

    // Ejected: every request goes to the live target.
    for i in 0..20 {
        let a = c.get(&format!("/payments/after/{i}"), &[]).await.unwrap();
        assert_eq!(a.status, 200, "request {i} after ejection");
        assert_eq!(a.header("x-upstream-id"), Some("a"));
    }
    let m = metrics(&w).await;
    assert!(
        m.contains(&format!(
            "switchyard_upstream_target_healthy{{proxy=\"payments\",target=\"{dead_url}\"}} 0"
        )),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "switchyard_upstream_target_healthy{{proxy=\"payments\",target=\"http://{}\"}} 1",
            h.addr(0)
        )),
        "{m}"
    );
}

/// An upstream whose `/healthz` answers 503 while `down` is set; everything else is 200
/// with `x-upstream-id: b`.
struct Controlled {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    checks: Arc<AtomicUsize>,
}

impl Controlled {
    async fn start() -> Controlled {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(true));
        let checks = Arc::new(AtomicUsize::new(0));
        let (d, n) = (down.clone(), checks.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (d, n) = (d.clone(), n.clone());
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (d, n) = (d.clone(), n.clone());
                    async move {
                        let mut resp = Response::new(Full::new(Bytes::from_static(b"{}")));
                        if req.uri().path() == "/healthz" {
                            n.fetch_add(1, Ordering::SeqCst);
                            if d.load(Ordering::SeqCst) {
                                *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                            }
                        } else {
                            resp.headers_mut()
                                .insert("x-upstream-id", http::HeaderValue::from_static("b"));
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc),
                );
            }
        });
        Controlled { addr, down, checks }
    }
}

#[tokio::test]
async fn active_checks_take_a_target_out_and_its_health_survives_swaps() {
    let h = Harness::upstreams(&["a", "orders"]).await;
    let b = Controlled::start().await;
    let cfg = ConfigDir::new();
    // One check right away, then not for an hour: whatever /status says after a swap is
    // the state kept from before it, not a new check.
    let extra = format!(
        "      - url: http://{}\n    healthCheck:\n      active: {{ path: /healthz, interval: 1h, unhealthyThreshold: 1, healthyThreshold: 1 }}",
        b.addr
    );
    cfg.write("p.yaml", &payments_manifest("blue", h.addr(0), &extra));
    let w = RunningWorker::start(cfg.path()).await;
    let b_url = format!("http://{}", b.addr);
    wait_health(&w, "payments", &b_url, "unhealthy").await;
    assert_eq!(b.checks.load(Ordering::SeqCst), 1);
    // From now on a check would pass, so a reset state would show as healthy.
    b.down.store(false, Ordering::SeqCst);

    let mut c = Conn::open(w.addr).await.unwrap();
    for i in 0..20 {
        let a = c.get(&format!("/payments/{i}"), &[]).await.unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.header("x-upstream-id"), Some("a"), "request {i}");
    }

    // An unrelated proxy is added: payments is shared as is.
    cfg.write(
        "orders.yaml",
        &format!(
            "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: orders }}\nspec:\n  routes: [{{ pathPrefix: /orders }}]\n  upstream:\n    targets: [{{ url: \"http://{}\" }}]\n",
            h.addr(1)
        ),
    );
    w.wait_for_revision(2).await;
    assert_eq!(health_of(&w, "payments", &b_url).await, "unhealthy");

    // payments itself is edited (a new version, recompiled) without touching its targets:
    // the target's state comes from the registry, not from the old snapshot.
    cfg.write(
        "p.yaml",
        &payments_manifest("green", h.addr(0), &extra).replace("payments-team", "billing"),
    );
    w.wait_for_revision(3).await;
    let s = status(&w).await;
    let payments = s["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "payments")
        .unwrap()
        .clone();
    assert_eq!(payments["version"], 2, "{payments}");
    assert_eq!(health_of(&w, "payments", &b_url).await, "unhealthy");
    let a = c.get("/payments/x", &[]).await.unwrap();
    assert_eq!(a.header("x-release"), Some("green"));
    assert_eq!(a.header("x-upstream-id"), Some("a"));
    assert_eq!(
        b.checks.load(Ordering::SeqCst),
        1,
        "no new check was needed"
    );
    let m = metrics(&w).await;
    assert!(
        m.contains(&format!(
            "switchyard_upstream_target_healthy{{proxy=\"payments\",target=\"{b_url}\"}} 0"
        )),
        "{m}"
    );
}

#[tokio::test]
async fn a_target_recovers_when_active_checks_pass_again() {
    let h = Harness::upstreams(&["a"]).await;
    let b = Controlled::start().await;
    let cfg = ConfigDir::new();
    let extra = format!(
        "      - url: http://{}\n    healthCheck:\n      active: {{ path: /healthz, interval: 100ms, unhealthyThreshold: 2, healthyThreshold: 2 }}",
        b.addr
    );
    cfg.write("p.yaml", &payments_manifest("blue", h.addr(0), &extra));
    let w = RunningWorker::start(cfg.path()).await;
    let b_url = format!("http://{}", b.addr);
    wait_health(&w, "payments", &b_url, "unhealthy").await;
    b.down.store(false, Ordering::SeqCst);
    wait_health(&w, "payments", &b_url, "healthy").await;
    // Back in rotation.
    let mut c = Conn::open(w.addr).await.unwrap();
    let mut seen_b = false;
    for i in 0..4 {
        let a = c.get(&format!("/payments/{i}"), &[]).await.unwrap();
        seen_b |= a.header("x-upstream-id") == Some("b");
    }
    assert!(seen_b);
}

#[tokio::test]
async fn the_concurrency_limit_answers_503_upstream_overloaded() {
    let h = Harness::upstreams(&["a"]).await;
    let cfg = ConfigDir::new();
    cfg.write(
        "p.yaml",
        &payments_manifest("blue", h.addr(0), "    maxConcurrentRequests: 1"),
    );
    let w = RunningWorker::start(cfg.path()).await;

    // One request held by the upstream takes the target's only slot.
    let mut arrivals = h.upstreams[0].hold.arrivals();
    let addr = w.addr;
    let held = tokio::spawn(async move {
        let mut c = Conn::open(addr).await.unwrap();
        c.get("/payments/held", &[("x-hold", "1")]).await.unwrap()
    });
    tokio::time::timeout(DEADLINE, arrivals.wait_for(|n| *n >= 1))
        .await
        .unwrap()
        .unwrap();

    let refused = get_once(w.addr, "/payments/next").await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("content-type"), Some("application/json"));
    let body = refused.json();
    assert_eq!(body["error"], "upstream_overloaded");
    assert_eq!(body["source"], "upstream");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("concurrent-request limit"),
        "{body}"
    );

    h.upstreams[0].hold.release();
    assert_eq!(held.await.unwrap().status, 200);
    // The slot is free again once the held response is over.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let a = get_once(w.addr, "/payments/again").await;
        if a.status == 200 {
            break;
        }
        assert_eq!(a.status, 503);
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A target that reads a request head and closes the connection without answering.
async fn resetter() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let n = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let n = n.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
                n.fetch_add(1, Ordering::SeqCst);
                drop(s);
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn a_reset_is_retried_for_idempotent_requests_only_and_within_the_budget() {
    let h = Harness::upstreams(&["a"]).await;
    let (reset_addr, resets) = resetter().await;
    let cfg = ConfigDir::new();
    let extra = format!(
        "      - url: http://{}\n    retries: {{ attempts: 1 }}",
        h.addr(0)
    );
    cfg.write("p.yaml", &payments_manifest("blue", reset_addr, &extra));
    cfg.write(
        "nb.yaml",
        &format!(
            "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: no-budget }}\nspec:\n  routes: [{{ pathPrefix: /nb }}]\n  upstream:\n    targets: [{{ url: \"http://{reset_addr}\" }}, {{ url: \"http://{}\" }}]\n    retries: {{ attempts: 1, budget: {{ ratio: 0, minPerSecond: 0 }} }}\n",
            h.addr(0)
        ),
    );
    let w = RunningWorker::start(cfg.path()).await;
    let mut c = Conn::open(w.addr).await.unwrap();

    // GET, HEAD, PUT, DELETE: a reset before any answer is retried on the other target.
    for (i, method) in [Method::GET, Method::HEAD, Method::PUT, Method::DELETE]
        .into_iter()
        .cycle()
        .take(8)
        .enumerate()
    {
        let a = c
            .request(method.clone(), &format!("/payments/{i}"), &[])
            .await
            .unwrap();
        assert_eq!(a.status, 200, "{method} {i}");
        assert_eq!(a.header("x-upstream-id"), Some("a"));
    }
    let reset_gets = resets.load(Ordering::SeqCst);
    assert!(
        reset_gets >= 2,
        "the resetting target got {reset_gets} requests"
    );

    // POST is not idempotent: the reset is the answer. Round-robin alternates, so half of
    // the POSTs go to the resetting target first.
    let mut codes = Vec::new();
    for i in 0..6 {
        let a = c
            .request(Method::POST, &format!("/payments/{i}"), &[])
            .await
            .unwrap();
        if a.status != 200 {
            assert_eq!(a.status, 502);
            codes.push(a.json()["error"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(codes, ["upstream_reset"; 3]);

    // With an empty budget, not even a GET is retried.
    let mut failed = 0;
    for i in 0..4 {
        let a = c.get(&format!("/nb/{i}"), &[]).await.unwrap();
        if a.status == 502 {
            assert_eq!(a.json()["error"], "upstream_reset");
            failed += 1;
        }
    }
    assert_eq!(failed, 2);
    let m = metrics(&w).await;
    assert!(
        m.contains(r#"switchyard_upstream_errors_total{proxy="payments",kind="reset"}"#),
        "{m}"
    );
}
