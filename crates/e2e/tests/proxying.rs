//! Proxying behaviour through a real Worker: errors with their status and source, retries,
//! header handling, HTTP/2 cleartext.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use switchyard_e2e::{ConfigDir, Conn, Harness, RunningWorker, get_once, payments_manifest};

/// An address nothing listens on: bind port 0, note it, close it.
#[tokio::test]
async fn unknown_route_is_a_json_404_from_the_client_side() {
    let h = Harness::upstreams(&["a"]).await;
    let cfg = ConfigDir::new();
    cfg.write("p.yaml", &payments_manifest("blue", h.addr(0), ""));
    let w = RunningWorker::start(cfg.path()).await;
    let a = get_once(w.addr, "/nothing-here").await;
    assert_eq!(a.status, 404);
    assert_eq!(a.header("content-type"), Some("application/json"));
    let body = a.json();
    assert_eq!(body["error"], "no_route");
    assert_eq!(body["source"], "client");
}

#[tokio::test]
async fn refused_upstream_is_a_502_and_a_timeout_is_a_504() {
    let h = Harness::upstreams(&["a"]).await;
    let dead_port = switchyard_e2e::DeadPort::new();
    let dead = dead_port.addr;
    let cfg = ConfigDir::new();
    cfg.write("p.yaml", &payments_manifest("blue", dead, ""));
    cfg.write(
        "slow.yaml",
        &format!(
            r#"apiVersion: switchyard.dev/v1
kind: Proxy
metadata: {{ name: slow }}
spec:
  routes: [{{ pathPrefix: /slow }}]
  upstream:
    targets: [{{ url: "http://{}" }}]
    timeouts: {{ request: 200ms }}
"#,
            h.addr(0)
        ),
    );
    let w = RunningWorker::start(cfg.path()).await;
    let refused = get_once(w.addr, "/payments/1").await;
    assert_eq!(refused.status, 502);
    assert_eq!(refused.json()["error"], "upstream_connect_failed");
    assert_eq!(refused.json()["source"], "upstream");

    // The upstream holds the request until released: the gateway gives up first.
    let mut c = Conn::open(w.addr).await.unwrap();
    let timed_out = c.get("/slow", &[("x-hold", "1")]).await.unwrap();
    h.upstreams[0].hold.release();
    assert_eq!(timed_out.status, 504);
    assert_eq!(timed_out.json()["error"], "upstream_timeout");

    let metrics = String::from_utf8_lossy(&get_once(w.admin, "/metrics").await.body).to_string();
    assert!(
        metrics.contains(
            r#"switchyard_upstream_errors_total{proxy="payments",kind="connect_failed"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"switchyard_upstream_errors_total{proxy="slow",kind="timeout"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_connect_failure_is_retried_on_another_target() {
    let h = Harness::upstreams(&["a"]).await;
    let dead_port = switchyard_e2e::DeadPort::new();
    let dead = dead_port.addr;
    let cfg = ConfigDir::new();
    // First target dead, second alive; round-robin starts on the dead one every other time.
    let extra = format!(
        "      - url: http://{}\n    retries: {{ attempts: 1 }}",
        h.addr(0)
    );
    cfg.write("p.yaml", &payments_manifest("blue", dead, &extra));
    let w = RunningWorker::start(cfg.path()).await;
    let mut c = Conn::open(w.addr).await.unwrap();
    for i in 0..10 {
        let a = c.get(&format!("/payments/{i}"), &[]).await.unwrap();
        assert_eq!(a.status, 200, "request {i}");
        assert_eq!(a.header("x-upstream-id"), Some("a"));
    }
}

#[tokio::test]
async fn headers_are_rewritten_and_forwarded() {
    let h = Harness::upstreams(&["a"]).await;
    let cfg = ConfigDir::new();
    cfg.write(
        "p.yaml",
        &format!(
            r#"apiVersion: switchyard.dev/v1
kind: Proxy
metadata: {{ name: api }}
spec:
  routes: [{{ pathPrefix: /api, stripPrefix: true }}]
  upstream:
    targets: [{{ url: "http://{}/base" }}]
  policies:
    - type: headers
      request:
        set: {{ x-from-gateway: "yes" }}
        remove: [x-internal]
      response:
        set: {{ x-release: blue }}
"#,
            h.addr(0)
        ),
    );
    let w = RunningWorker::start(cfg.path()).await;
    let mut c = Conn::open(w.addr).await.unwrap();
    let a = c
        .get(
            "/api/items/7?q=1",
            &[
                ("x-internal", "secret"),
                ("x-forwarded-for", "203.0.113.9"),
                ("connection", "keep-alive, x-drop-me"),
                ("x-drop-me", "1"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-release"), Some("blue"));
    let seen = a.json();
    assert_eq!(seen["path"], "/base/items/7");
    assert_eq!(seen["query"], "q=1");
    let hdrs = &seen["headers"];
    assert_eq!(hdrs["x-from-gateway"], "yes");
    assert!(hdrs.get("x-internal").is_none());
    assert!(
        hdrs.get("x-drop-me").is_none(),
        "header named in Connection must not be forwarded"
    );
    assert_eq!(hdrs["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(hdrs["x-forwarded-proto"], "http");
    assert_eq!(hdrs["x-forwarded-host"], "gateway.test");
    assert_eq!(hdrs["host"], h.addr(0).to_string());
}

#[tokio::test]
async fn http2_cleartext_clients_are_served() {
    let h = Harness::upstreams(&["a"]).await;
    let cfg = ConfigDir::new();
    cfg.write("p.yaml", &payments_manifest("blue", h.addr(0), ""));
    let w = RunningWorker::start(cfg.path()).await;
    let stream = tokio::net::TcpStream::connect(w.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for i in 0..3 {
        let req = http::Request::get(format!("http://gateway.test/payments/{i}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(resp.headers()["x-release"], "blue");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(!body.is_empty());
    }
}

/// Bodies are streamed both ways: the upstream sees the first request chunk before the
/// client has sent the second, and the client gets the first response chunk before the
/// upstream has written the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_in_both_directions_without_buffering() {
    use hyper::body::Frame;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // A raw upstream, so the test controls every byte and its timing.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = upstream.local_addr().unwrap();
    let (saw_first_tx, saw_first_rx) = tokio::sync::oneshot::channel::<()>();
    let (send_rest_tx, send_rest_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (mut s, _) = upstream.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("first-chunk") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "gateway closed early");
            seen.extend_from_slice(&buf[..n]);
        }
        saw_first_tx.send(()).unwrap();
        while !String::from_utf8_lossy(&seen).contains("second-chunk") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "gateway closed early");
            seen.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
            .await
            .unwrap();
        send_rest_rx.await.unwrap();
        s.write_all(b"6\r\n world\r\n0\r\n\r\n").await.unwrap();
        String::from_utf8_lossy(&seen).to_string()
    });

    let cfg = ConfigDir::new();
    cfg.write("p.yaml", &payments_manifest("blue", up_addr, ""));
    let w = RunningWorker::start(cfg.path()).await;

    let (body_tx, body_rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
    let tcp = tokio::net::TcpStream::connect(w.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::post("/payments/upload")
        .header("host", "gateway.test")
        .body(ChannelBody(body_rx))
        .unwrap();
    let response = tokio::spawn(async move { send.send_request(req).await });

    body_tx
        .send(Ok(Frame::data(Bytes::from_static(b"first-chunk;"))))
        .await
        .unwrap();
    saw_first_rx.await.unwrap(); // the upstream has it while the client still holds the rest
    body_tx
        .send(Ok(Frame::data(Bytes::from_static(b"second-chunk"))))
        .await
        .unwrap();
    drop(body_tx);

    let resp = response.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-release"], "blue");
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(
        &first[..],
        b"hello",
        "first response chunk arrives before the rest is written"
    );
    send_rest_tx.send(()).unwrap();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b" world");
    let seen = server.await.unwrap();
    assert!(seen.contains("transfer-encoding: chunked"), "{seen}");
}

/// A request body fed frame by frame from a channel.
struct ChannelBody(tokio::sync::mpsc::Receiver<Result<hyper::body::Frame<Bytes>, std::io::Error>>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx)
    }
}
