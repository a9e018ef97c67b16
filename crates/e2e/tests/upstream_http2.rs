//! `spec.upstream.protocol`: HTTP/2 to upstreams, by prior knowledge in clear (h2c) and by
//! ALPN over TLS; `auto` takes what the target chose; trailers pass both ways; a swap from
//! HTTP/1.1 to HTTP/2 is hot (the client's keep-alive connection carries on).
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use switchyard_e2e::tls::{TestCa, TlsUpstream};
use switchyard_e2e::upstream::{Held, serve_fn};
use switchyard_e2e::{ConfigDir, Conn, RunningWorker};

fn proxy(target: &str, upstream: &str, release: &str) -> String {
    format!(
        r#"apiVersion: switchyard.dev/v1
kind: Proxy
metadata: {{ name: api }}
spec:
  routes:
    - pathPrefix: /api
  upstream:
    targets:
      - url: {target}
{upstream}
  policies:
    - type: headers
      response:
        set: {{ x-release: {release} }}
"#
    )
}

fn ca_credential(pem: &str) -> String {
    let indented: String = pem.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Credential\nmetadata: {{ name: internal-ca }}\nspec:\n  type: secret\n  value: |\n{indented}"
    )
}

/// A cleartext upstream answering with the HTTP version it was asked in, counting the
/// connections it accepted (HTTP/2 multiplexes: one is enough for many requests).
async fn version_upstream() -> SocketAddr {
    serve_fn(|req: Request<hyper::body::Incoming>| {
        Response::builder()
            .header("x-upstream-version", format!("{:?}", req.version()))
            .body(http_body_util::Full::new(Bytes::from_static(b"ok")))
            .unwrap()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_in_clear_is_spoken_with_prior_knowledge_and_a_swap_to_it_is_hot() {
    let up = version_upstream().await;
    let target = format!("http://{up}");
    let dir = ConfigDir::new();
    dir.write("api.yaml", &proxy(&target, "", "blue"));
    let w = RunningWorker::start(dir.path()).await;
    let mut c = Conn::open(w.addr).await.unwrap();
    let a = c.get("/api/1", &[]).await.unwrap();
    assert_eq!(
        a.header("x-upstream-version"),
        Some("HTTP/1.1"),
        "the default"
    );

    dir.write("api.yaml", &proxy(&target, "    protocol: http2", "green"));
    w.wait_for_revision(2).await;
    for i in 0..20 {
        // The client's keep-alive connection carries on across the swap.
        let a = c.get(&format!("/api/{i}"), &[]).await.unwrap();
        assert_eq!(a.status, 200, "{:?}", a.body);
        assert_eq!(a.header("x-release"), Some("green"));
        assert_eq!(a.header("x-upstream-version"), Some("HTTP/2.0"));
    }

    // `auto` in clear is HTTP/1.1: there is no handshake to choose in.
    dir.write("api.yaml", &proxy(&target, "    protocol: auto", "auto"));
    w.wait_for_revision(3).await;
    let a = c.get("/api/auto", &[]).await.unwrap();
    assert_eq!(a.header("x-upstream-version"), Some("HTTP/1.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_http2_is_chosen_by_alpn() {
    let ca = TestCa::new();
    let cert = ca.issue(&["127.0.0.1"]);
    let both = TlsUpstream::start_alpn(&cert, "both", &["h2", "http/1.1"]).await;
    let h1_only = TlsUpstream::start_alpn(&cert, "h1", &["http/1.1"]).await;
    let dir = ConfigDir::new();
    dir.write("ca.yaml", &ca_credential(&ca.root_pem));
    let cases = [
        (&both, "http1", "HTTP/1.1"),
        (&both, "auto", "HTTP/2.0"),
        (&both, "http2", "HTTP/2.0"),
        (&h1_only, "auto", "HTTP/1.1"),
    ];
    let w = {
        let (up, protocol, _) = cases[0];
        let upstream = format!("    protocol: {protocol}\n    tls: {{ ca: internal-ca }}");
        dir.write(
            "api.yaml",
            &proxy(&format!("https://{}", up.addr), &upstream, "0"),
        );
        RunningWorker::start(dir.path()).await
    };
    let mut c = Conn::open(w.addr).await.unwrap();
    for (i, (up, protocol, expected)) in cases.into_iter().enumerate() {
        if i > 0 {
            let upstream = format!("    protocol: {protocol}\n    tls: {{ ca: internal-ca }}");
            let release = i.to_string();
            dir.write(
                "api.yaml",
                &proxy(&format!("https://{}", up.addr), &upstream, &release),
            );
            w.wait_for_revision(1 + i as u64).await;
        }
        for _ in 0..3 {
            let a = c.get("/api/x", &[]).await.unwrap();
            assert_eq!(a.status, 200, "{protocol}: {:?}", a.body);
            assert_eq!(
                a.header("x-upstream-version"),
                Some(expected),
                "{protocol} to {}",
                a.header("x-upstream-id").unwrap_or("?")
            );
        }
    }
    assert_eq!(
        both.accepted.load(Ordering::SeqCst),
        3,
        "one connection per protocol setting (auto and http2 pool apart), each reused"
    );
}

/// A body of the given frames, then the trailers.
struct Frames(VecDeque<Frame<Bytes>>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
}

fn trailers(name: &'static str, value: &'static str) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert(name, http::HeaderValue::from_static(value));
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_pass_both_ways_over_http2() {
    // The upstream reads the request to its end and answers its request trailer back in
    // a response trailer.
    let seen = Arc::new(Mutex::new(None::<HeaderMap>));
    let connections = Arc::new(AtomicUsize::new(0));
    let up = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (seen, connections) = (seen.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                let seen = seen.clone();
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let body = req.into_body().collect().await.unwrap();
                        let t = body.trailers().cloned();
                        *seen.lock().unwrap() = t;
                        let frames = VecDeque::from([
                            Frame::data(body.to_bytes()),
                            Frame::trailers(trailers("x-checksum", "upstream-42")),
                        ]);
                        Ok::<_, Infallible>(Response::new(Frames(frames)))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc),
                );
            }
        });
        addr
    };
    let dir = ConfigDir::new();
    dir.write(
        "api.yaml",
        &proxy(&format!("http://{up}"), "    protocol: http2", "blue"),
    );
    let w = RunningWorker::start(dir.path()).await;

    let mut sender = switchyard_e2e::upstream::h2c_client(w.addr).await;
    for i in 0..5 {
        let body = Frames(VecDeque::from([
            Frame::data(Bytes::from(format!("payload {i}"))),
            Frame::trailers(trailers("x-client-sum", "client-7")),
        ]));
        let req = Request::post(format!("http://{}/api/t", w.addr))
            .header("te", "trailers")
            .body(body)
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-release"], "blue");
        let body = resp.into_body().collect().await.unwrap();
        let back = body.trailers().cloned();
        assert_eq!(body.to_bytes(), format!("payload {i}"));
        assert_eq!(
            back.as_ref().and_then(|t| t.get("x-checksum")).unwrap(),
            "upstream-42",
            "the response trailer reached the client"
        );
        let got = seen.lock().unwrap().take();
        assert_eq!(
            got.as_ref().and_then(|t| t.get("x-client-sum")).unwrap(),
            "client-7",
            "the request trailer reached the upstream"
        );
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "one multiplexed upstream connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_held_open_never_make_other_requests_wait_for_the_upstreams_stream_limit() {
    // An upstream allowing 4 concurrent streams per connection; `/api/hold` answers its
    // head and then holds the stream open.
    let connections = Arc::new(AtomicUsize::new(0));
    let up = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = connections.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                let svc = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| {
                    let hold = req.uri().path() == "/api/hold";
                    async move {
                        let body = if hold {
                            http_body_util::Either::Left(Held)
                        } else {
                            http_body_util::Either::Right(http_body_util::Full::new(
                                Bytes::from_static(b"ok"),
                            ))
                        };
                        Ok::<_, Infallible>(Response::new(body))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .max_concurrent_streams(4)
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc),
                );
            }
        });
        addr
    };
    let dir = ConfigDir::new();
    dir.write(
        "api.yaml",
        &proxy(&format!("http://{up}"), "    protocol: http2", "blue"),
    );
    let w = RunningWorker::start(dir.path()).await;

    // Ten streams held open, each from its own client connection: every one gets its head.
    let mut held = Vec::new();
    for _ in 0..10 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = tokio::net::TcpStream::connect(w.addr).await.unwrap();
        c.write_all(b"GET /api/hold HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
            .unwrap();
        let mut head = Vec::new();
        tokio::time::timeout(switchyard_e2e::DEADLINE, async {
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = c.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed before the head");
                head.extend_from_slice(&buf[..n]);
            }
        })
        .await
        .expect("a held stream waited for another to end");
        assert!(
            head.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        held.push(c);
    }
    // And a plain request still goes through at once.
    let mut c = Conn::open(w.addr).await.unwrap();
    let a = tokio::time::timeout(switchyard_e2e::DEADLINE, c.get("/api/plain", &[]))
        .await
        .expect("the request queued behind the held streams")
        .unwrap();
    assert_eq!(a.status, 200);
    assert!(
        connections.load(Ordering::SeqCst) >= 3,
        "11 streams at 4 per connection need at least 3 connections, got {}",
        connections.load(Ordering::SeqCst)
    );
}
