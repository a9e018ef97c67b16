//! Blame goes where it belongs, through a real Worker: a client that aborts its upload or
//! sends a malformed chunked body is a client error (400, or 499 when it went away;
//! `source: client` in the access log) and never counts against the upstream's health; an
//! upstream that closes an idle keep-alive connection just as it is reused costs the client
//! nothing (one retry on a fresh connection, not counted against the target).

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use switchyard_e2e::raw::exchange;
use switchyard_e2e::{
    ConfigDir, Conn, Harness, RunningWorker, eventually, get_once, metrics_text, payments_manifest,
};
use switchyard_worker::{AccessLogTarget, WorkerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every `switchyard_upstream_errors_total` series that is not zero.
fn upstream_errors(metrics: &str) -> Vec<&str> {
    metrics
        .lines()
        .filter(|l| l.starts_with("switchyard_upstream_errors_total{") && !l.ends_with(" 0"))
        .collect()
}

async fn health(w: &RunningWorker) -> Vec<String> {
    let s = get_once(w.admin, "/status").await.json();
    s["proxies"][0]["target_health"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["health"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn aborted_and_malformed_uploads_are_the_clients_and_leave_every_target_healthy() {
    let h = Harness::upstreams(&["a", "b"]).await;
    let cfg = ConfigDir::new();
    // Two failures in a row would eject a target: six bad requests would eject both.
    let extra = format!(
        "      - url: http://{}\n    retries: {{ attempts: 0 }}\n    healthCheck:\n      passive: {{ consecutiveFailures: 2, coolOff: 1h }}",
        h.addr(1)
    );
    cfg.write("p.yaml", &payments_manifest("blue", h.addr(0), &extra));
    let log = cfg.path().join("access.log");
    let mut options = WorkerOptions::new(cfg.path());
    options.access_log = AccessLogTarget::File(log.clone());
    let w = RunningWorker::start_with(options).await;

    for i in 0..6 {
        // Announces 1000 bytes, sends 10, goes away.
        let mut s = TcpStream::connect(w.addr).await.unwrap();
        let head = format!(
            "POST /payments/upload/{i} HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 1000\r\n\r\n0123456789"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        // The body reached the upstream before the client left: the Worker was mid-upload.
        drop(s);
        // A bad chunk size.
        let malformed = format!(
            "POST /payments/chunked/{i} HTTP/1.1\r\nHost: gateway.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\nzz\r\n"
        );
        let a = exchange(w.addr, malformed.as_bytes()).await;
        assert_eq!(a.status, 400, "{}", a.text);
        assert_eq!(a.json()["error"], "client_body_malformed");
        assert_eq!(a.json()["source"], "client");
    }
    // Every bad request is logged as the client's.
    eventually("12 access-log lines", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() >= 12)
    })
    .await;
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for l in &lines {
        assert_eq!(l["source"], "client", "{l}");
        let status = l["status"].as_u64().unwrap();
        assert!(status == 400 || status == 499, "{l}");
    }
    assert_eq!(lines.iter().filter(|l| l["status"] == 499).count(), 6);
    assert_eq!(health(&w).await, ["healthy", "healthy"]);
    let m = metrics_text(w.admin).await;
    assert!(upstream_errors(&m).is_empty(), "{m}");
    // Both targets still take traffic.
    let mut c = Conn::open(w.addr).await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..4 {
        let a = c.get(&format!("/payments/ok/{i}"), &[]).await.unwrap();
        assert_eq!(a.status, 200);
        seen.insert(a.header("x-upstream-id").unwrap().to_string());
    }
    assert_eq!(seen.len(), 2);
}

/// A raw upstream on port 0: each accepted connection is handed to `serve` with the count
/// of requests answered.
async fn raw_upstream<F, Fut>(serve: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(TcpStream, Arc<AtomicUsize>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let n = answered.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve(s, n.clone()));
        }
    });
    (addr, answered)
}

/// Reads one request (head and `Content-Length` body) from `s`, keeping what follows it in
/// `pending`; `false` when the connection ends first, or (with `idle`) when no byte of it
/// arrives within `idle`.
async fn read_request(
    s: &mut TcpStream,
    pending: &mut Vec<u8>,
    idle: Option<std::time::Duration>,
) -> bool {
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let read = match idle {
            Some(idle) if pending.is_empty() => {
                match tokio::time::timeout(idle, s.read(&mut buf)).await {
                    Ok(r) => r,
                    Err(_) => return false,
                }
            }
            _ => s.read(&mut buf).await,
        };
        match read {
            Ok(0) | Err(_) => return false,
            Ok(k) => pending.extend_from_slice(&buf[..k]),
        }
    };
    let length = String::from_utf8_lossy(&pending[..head_end])
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .and_then(|v| v.trim().parse::<usize>().ok())
        })
        .unwrap_or(0);
    while pending.len() < head_end + length {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(k) => pending.extend_from_slice(&buf[..k]),
        }
    }
    pending.drain(..head_end + length);
    true
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// A raw upstream that answers the first request of each connection with keep-alive, and
/// closes the connection as soon as a second request starts arriving on it: the upstream
/// side of "closed an idle keep-alive connection just as the gateway reused it".
async fn closes_on_reuse() -> (SocketAddr, Arc<AtomicUsize>) {
    raw_upstream(|mut s, n| async move {
        let mut pending = Vec::new();
        if !read_request(&mut s, &mut pending, None).await {
            return;
        }
        n.fetch_add(1, Ordering::SeqCst);
        let _ = s.write_all(OK).await;
        // The next request's first bytes: close without answering.
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf).await;
    })
    .await
}

#[tokio::test]
async fn an_upstream_closing_a_reused_keep_alive_connection_costs_idempotent_requests_nothing() {
    let (up, answered) = closes_on_reuse().await;
    let cfg = ConfigDir::new();
    // One target (so no retry elsewhere), and one counted failure would eject it.
    let extra = "    healthCheck:\n      passive: { consecutiveFailures: 1, coolOff: 1h }";
    cfg.write("p.yaml", &payments_manifest("blue", up, extra));
    let w = RunningWorker::start(cfg.path()).await;
    let mut c = Conn::open(w.addr).await.unwrap();
    for i in 0..40 {
        let method = if i % 2 == 0 {
            http::Method::GET
        } else {
            http::Method::DELETE
        };
        let a = c
            .request(method, &format!("/payments/{i}"), &[])
            .await
            .unwrap();
        assert_eq!(a.status, 200, "request {i}: {:?}", a.body);
    }
    assert_eq!(answered.load(Ordering::SeqCst), 40);
    assert_eq!(health(&w).await, ["healthy"]);
    let m = metrics_text(w.admin).await;
    assert!(upstream_errors(&m).is_empty(), "{m}");

    // A POST written whole on a reused connection before it closed: the upstream may have
    // acted on it, so it is not sent again. (The connection that answered the last request
    // above went back to the pool, and the upstream closes it on its next request. Sent on
    // the same client connection: a Worker's cores each keep their own upstream
    // connections, and this one is served by the core that holds it.)
    let a = c
        .request(http::Method::POST, "/payments/p", &[])
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&a.body);
    assert_eq!(a.status, 502, "{body}");
    assert!(body.contains("upstream_reset"), "{body}");
}

/// A raw upstream that closes a keep-alive connection once it has been idle for `idle`,
/// as Node.js (`keepAliveTimeout`) and most servers do. Answers every request with 200.
async fn closes_when_idle(idle: std::time::Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    raw_upstream(move |mut s, n| async move {
        let mut pending = Vec::new();
        while read_request(&mut s, &mut pending, Some(idle)).await {
            n.fetch_add(1, Ordering::SeqCst);
            if s.write_all(OK).await.is_err() {
                return;
            }
        }
    })
    .await
}

/// The keep-alive race, as a load shows it: an upstream that closes connections idle for
/// 1 s, and bursts of requests separated by idle gaps around that second (so pooled
/// connections are closed before, during and just after the gateway takes them again).
/// 20,000 requests, every one answered 200, none counted against the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_closing_idle_connections_after_a_second_costs_no_request_across_bursts() {
    let (up, answered) = closes_when_idle(std::time::Duration::from_secs(1)).await;
    let cfg = ConfigDir::new();
    let extra = "    healthCheck:\n      passive: { consecutiveFailures: 1, coolOff: 1h }";
    cfg.write("p.yaml", &payments_manifest("blue", up, extra));
    let w = RunningWorker::start(cfg.path()).await;
    const CLIENTS: usize = 16;
    const BURSTS: usize = 10;
    const PER_CLIENT: usize = 20_000 / CLIENTS / BURSTS;
    let mut conns = Vec::new();
    for _ in 0..CLIENTS {
        conns.push(Conn::open(w.addr).await.unwrap());
    }
    let mut failures = Vec::new();
    for burst in 0..BURSTS {
        let mut tasks = Vec::new();
        for mut c in conns.drain(..) {
            tasks.push(tokio::spawn(async move {
                let mut bad = Vec::new();
                for i in 0..PER_CLIENT {
                    match c.get(&format!("/payments/{burst}/{i}"), &[]).await {
                        Ok(a) if a.status == 200 => {}
                        Ok(a) => bad.push(format!("status {}: {:?}", a.status, a.body)),
                        Err(e) => bad.push(e),
                    }
                }
                (c, bad)
            }));
        }
        for t in tasks {
            let (c, bad) = t.await.unwrap();
            conns.push(c);
            failures.extend(bad);
        }
        // Idle gaps from just under to just over the upstream's idle timeout.
        let gap = [950, 1000, 1010, 1030, 1100][burst % 5];
        tokio::time::sleep(std::time::Duration::from_millis(gap)).await;
    }
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(answered.load(Ordering::SeqCst), 20_000);
    assert_eq!(health(&w).await, ["healthy"]);
    let m = metrics_text(w.admin).await;
    assert!(upstream_errors(&m).is_empty(), "{m}");
}
