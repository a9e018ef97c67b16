//! A benchmark, not a test (ignored; numbers, no timed assertion): how long a server-sent
//! event takes from the moment the upstream produces it to the moment the client has it,
//! through a Worker and, for comparison, straight from the upstream (#18: "SSE latency
//! through the Worker (event produced → received) p99 < 5 ms on loopback").
//!
//! ```sh
//! cargo test --release -p switchyard-e2e --test sse_latency -- --ignored --nocapture
//! ```
//!
//! Upstream, Worker and client run in this one process, so one clock (`Instant`) times both
//! ends: each event carries the time it was produced (nanoseconds since a shared origin,
//! taken just before the upstream's response body is handed the event) and the client reads
//! the clock when the event's last byte has arrived and been decoded. The upstream emits
//! `SSE_EVENTS` events (default 500) at 200 ms spacing, then at 1 ms spacing; each series is
//! measured through the Worker (one HTTP/1.1 connection, a plain proxy with a response-header
//! policy) and direct. The Worker serves on two data-plane threads of its own, as
//! `switchyard worker` does on this 2-vCPU machine.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use switchyard_e2e::upstream::{Fed, serve_fn};
use switchyard_e2e::{ConfigDir, DEADLINE, RunningWorker, payments_manifest};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// An upstream answering its next request with the events of the next stream handed to it.
async fn upstream() -> (SocketAddr, mpsc::UnboundedSender<mpsc::Receiver<Bytes>>) {
    let (streams_tx, streams_rx) = mpsc::unbounded_channel::<mpsc::Receiver<Bytes>>();
    let streams = Arc::new(Mutex::new(streams_rx));
    let addr = serve_fn(move |_req| {
        let events = streams
            .lock()
            .unwrap()
            .try_recv()
            .expect("a stream for each request");
        http::Response::builder()
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-cache")
            .body(Fed(Some(events)))
            .unwrap()
    })
    .await;
    (addr, streams_tx)
}

/// One series: `n` events `spacing` apart from the upstream to a client of `addr`; the
/// latency of each (produced → received).
async fn series(
    addr: SocketAddr,
    streams: &mpsc::UnboundedSender<mpsc::Receiver<Bytes>>,
    origin: Instant,
    n: usize,
    spacing: Duration,
) -> Vec<Duration> {
    let (events, rx) = mpsc::channel::<Bytes>(n);
    streams.send(rx).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (mut send, conn) = http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/payments/events")
        .header("host", "gateway.test")
        .header("accept", "text/event-stream")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(DEADLINE, send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();

    // The producer starts once the client has the response head.
    let producer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(spacing);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for i in 0..n {
            tick.tick().await;
            let produced = origin.elapsed().as_nanos();
            let event = format!("id: {i}\nevent: tick\ndata: {produced}\n\n");
            events.send(Bytes::from(event)).await.unwrap();
        }
    });

    let mut latencies = Vec::with_capacity(n);
    let mut pending = String::new();
    while latencies.len() < n {
        let frame = tokio::time::timeout(DEADLINE, body.frame())
            .await
            .expect("an event within the deadline")
            .expect("the stream ended early")
            .unwrap();
        let received = origin.elapsed();
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.push_str(std::str::from_utf8(&data).unwrap());
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            let produced: u64 = event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap()
                .parse()
                .unwrap();
            latencies.push(received.saturating_sub(Duration::from_nanos(produced)));
        }
    }
    producer.await.unwrap();
    latencies
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// p50, p99 (nearest rank) and max of `v`, sorted in place.
fn summary(v: &mut [Duration]) -> (Duration, Duration, Duration) {
    v.sort();
    let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    (rank(0.50), rank(0.99), v[v.len() - 1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: cargo test --release -p switchyard-e2e --test sse_latency -- --ignored --nocapture"]
async fn sse_latency_through_the_worker_and_direct() {
    let n: usize = std::env::var("SSE_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let origin = Instant::now();
    let (up, streams) = upstream().await;
    let cfg = ConfigDir::new();
    cfg.write("payments.yaml", &payments_manifest("blue", up, ""));
    let w = RunningWorker::start(cfg.path()).await;

    eprintln!(
        "SSE latency, event produced by the upstream → received by the client (ms), {n} events per row"
    );
    eprintln!(
        "{:<9} {:<14} {:>8} {:>8} {:>8} {:>8}",
        "spacing", "path", "p50", "p99", "max", "min"
    );
    for spacing in [Duration::from_millis(200), Duration::from_millis(1)] {
        for (path, addr) in [("via Worker", w.addr), ("direct", up)] {
            let mut v = series(addr, &streams, origin, n, spacing).await;
            let (p50, p99, max) = summary(&mut v);
            eprintln!(
                "{:<9} {:<14} {:>8} {:>8} {:>8} {:>8}",
                format!("{} ms", spacing.as_millis()),
                path,
                ms(p50),
                ms(p99),
                ms(max),
                ms(v[0])
            );
        }
    }
}
