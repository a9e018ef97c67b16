//! Proxying behaviour through a real Worker: errors with their status and source, retries,
//! header handling, HTTP/2 cleartext.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use switchyard_e2e::{ConfigDir, Conn, Harness, RunningWorker, get_once, payments_manifest};

/// An address nothing listens on: bind port 0, note it, close it.
async fn dead_addr() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

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
    let dead = dead_addr().await;
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
    let dead = dead_addr().await;
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
