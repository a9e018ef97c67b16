//! Peers that stall, through a real Worker with short traffic timeouts (set in the
//! Environment document): a client that stops reading its response (`send`), a request body
//! that stops arriving (`requestBodyIdle`: 408), an upstream body that stops arriving
//! (`upstreamBodyIdle`: the response is cut and counted as an upstream error). Each frees
//! the request's configuration generation.

#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame};
use switchyard_e2e::raw::read_to_close;
use switchyard_e2e::upstream::serve_fn;
use switchyard_e2e::{
    ConfigDir, DEADLINE, Harness, RunningWorker, environment_manifest, eventually, metric_value,
    metrics_text, payments_manifest, wait_metric,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];

/// A response body that never ends.
struct Endless;

impl Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK)))))
    }
}

/// A response body that sends one chunk, then nothing, ever.
struct Stalls(Option<Bytes>);

impl Body for Stalls {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut().0.take() {
            Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
            None => Poll::Pending,
        }
    }
}

const TIMEOUTS: &str =
    "    timeouts: { send: 300ms, requestBodyIdle: 300ms, upstreamBodyIdle: 300ms }";

async fn worker(upstream: SocketAddr) -> (ConfigDir, RunningWorker) {
    let cfg = ConfigDir::new();
    cfg.write("p.yaml", &payments_manifest("blue", upstream, ""));
    cfg.write("env.yaml", &environment_manifest(TIMEOUTS));
    let w = RunningWorker::start(cfg.path()).await;
    (cfg, w)
}

/// With a request in flight: swaps in a new generation, so the request pins the old one,
/// then waits until whatever stalls it frees it (back to one live generation).
async fn pinned_generation_is_freed(cfg: &ConfigDir, w: &RunningWorker, upstream: SocketAddr) {
    let before = w.handle.revision();
    cfg.write("p.yaml", &payments_manifest("green", upstream, ""));
    w.wait_for_revision(before + 1).await;
    eventually("the stalled request frees its generation", || {
        w.handle.live_generations() == 1
    })
    .await;
}

async fn wait_in_flight(w: &RunningWorker, n: f64) {
    wait_metric(w.admin, "switchyard_requests_in_flight", |v| v == n).await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_after_the_send_timeout() {
    let upstream = serve_fn(|_| Response::new(Endless)).await;
    let (cfg, w) = worker(upstream).await;
    // A small receive window, and the test never reads until the Worker gives up.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(w.addr).await.unwrap();
    s.write_all(b"GET /payments/big HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
        .await
        .unwrap();
    wait_in_flight(&w, 1.0).await;
    pinned_generation_is_freed(&cfg, &w, upstream).await;
    wait_in_flight(&w, 0.0).await;
    // What got through is a cut response, then the close.
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let read = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
    };
    tokio::time::timeout(DEADLINE, read).await.unwrap();
    assert!(got > 0 && got < 512 << 20, "{got} bytes");
}

#[tokio::test]
async fn a_request_body_that_stops_arriving_gets_408() {
    // The sample upstream reads the whole body before answering.
    let h = Harness::upstreams(&["a"]).await;
    let upstream = h.addr(0);
    let (cfg, w) = worker(upstream).await;
    let mut s = TcpStream::connect(w.addr).await.unwrap();
    s.write_all(
        b"POST /payments/upload HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    let a = read_to_close(&mut s).await;
    assert_eq!(a.status, 408, "{}", a.text);
    assert_eq!(a.json()["error"], "client_body_timeout");
    assert_eq!(a.json()["source"], "client");
    // Not the upstream's fault.
    let m = metrics_text(w.admin).await;
    assert!(
        !m.lines()
            .any(|l| l.starts_with("switchyard_upstream_errors_total{") && !l.ends_with(" 0")),
        "{m}"
    );
    pinned_generation_is_freed(&cfg, &w, upstream).await;
}

#[tokio::test]
async fn an_upstream_body_that_stops_arriving_is_cut_and_counted_as_an_upstream_error() {
    let upstream = serve_fn(|_| {
        let mut r = Response::new(Stalls(Some(Bytes::from_static(b"partial"))));
        r.headers_mut()
            .insert("content-length", http::HeaderValue::from_static("1000"));
        r
    })
    .await;
    let (cfg, w) = worker(upstream).await;
    let mut s = TcpStream::connect(w.addr).await.unwrap();
    s.write_all(b"GET /payments/stall HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
        .await
        .unwrap();
    wait_in_flight(&w, 1.0).await;
    pinned_generation_is_freed(&cfg, &w, upstream).await;
    // The head and the first bytes came through, then the connection was closed: the
    // client can tell the response is incomplete (1000 bytes announced).
    let a = read_to_close(&mut s).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.text.ends_with("partial"), "{}", a.text);
    let m = metrics_text(w.admin).await;
    assert_eq!(
        metric_value(
            &m,
            "switchyard_upstream_errors_total{proxy=\"payments\",kind=\"body_timeout\"}"
        ),
        Some(1.0),
        "{m}"
    );
}
