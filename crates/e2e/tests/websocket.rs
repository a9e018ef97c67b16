//! WebSockets through the Worker (a real tokio-tungstenite server upstream, real clients):
//! messages both ways, the close handshake, auth on the upgrade; 200 WebSockets kept open
//! and on their generation across 50 swaps, then closed with 1001 once their old generation
//! outlives `maxStreamAge`; and a streamed response on an old generation ended cleanly for
//! its age, while one on the current generation is not.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use switchyard_e2e::upstream::{Fed, read_until, serve_fn};
use switchyard_e2e::{ConfigDir, DEADLINE, RunningWorker, eventually, metric_value};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket echo server on port 0: text comes back prefixed with the `x-release` header
/// the gateway set on the upgrade request (so a reply says which generation the WebSocket
/// was opened on), binary comes back as is; pings are answered by tungstenite.
struct EchoServer {
    addr: SocketAddr,
    /// Upgrades accepted.
    accepted: Arc<AtomicUsize>,
    /// The close frames received from the gateway: (code, reason).
    closes: Arc<Mutex<Vec<(u16, String)>>>,
}

async fn echo_server() -> EchoServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let closes = Arc::new(Mutex::new(Vec::new()));
    let (a, c) = (accepted.clone(), closes.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (accepted, closes) = (a.clone(), c.clone());
            tokio::spawn(async move {
                let release = Arc::new(Mutex::new(String::new()));
                let r = release.clone();
                #[allow(clippy::result_large_err)] // tungstenite's callback signature
                let callback = move |req: &Request, resp: Response| {
                    let v = req.headers().get("x-release").and_then(|v| v.to_str().ok());
                    *r.lock().unwrap() = v.unwrap_or("none").to_string();
                    assert!(
                        req.headers().get("sec-websocket-extensions").is_none(),
                        "the gateway must not let extensions through"
                    );
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let release = release.lock().unwrap().clone();
                while let Some(Ok(m)) = ws.next().await {
                    let reply = match m {
                        Message::Text(t) => Message::text(format!("{release}:{t}")),
                        Message::Binary(b) => Message::Binary(b),
                        Message::Close(f) => {
                            let f = f.map(|f| (u16::from(f.code), f.reason.to_string()));
                            closes
                                .lock()
                                .unwrap()
                                .push(f.unwrap_or((1005, String::new())));
                            continue;
                        }
                        _ => continue,
                    };
                    if ws.send(reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    EchoServer {
        addr,
        accepted,
        closes,
    }
}

/// A proxy `chat` routing `/ws` to `target`, setting `x-release` on requests and responses;
/// `route` and `policies` are extra YAML under the route and the policy list.
fn manifest(release: &str, target: SocketAddr, route: &str, policies: &str) -> String {
    format!(
        r#"apiVersion: switchyard.dev/v1
kind: Proxy
metadata:
  name: chat
spec:
  routes:
    - pathPrefix: /ws
{route}
  upstream:
    targets:
      - url: http://{target}
  policies:
{policies}
    - type: headers
      request:
        set: {{ x-release: {release} }}
      response:
        set: {{ x-release: {release} }}
"#
    )
}

async fn connect(worker: SocketAddr) -> Client {
    let (ws, resp) = tokio::time::timeout(
        DEADLINE,
        tokio_tungstenite::connect_async(format!("ws://{worker}/ws/chat")),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

/// The next text or binary message (pings and pongs skipped), within [`DEADLINE`].
async fn next_data(ws: &mut Client) -> Message {
    tokio::time::timeout(DEADLINE, async {
        loop {
            match ws.next().await {
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_) | Message::Close(_)))) => {
                    return m;
                }
                Some(Ok(_)) => {}
                other => panic!("the WebSocket ended: {other:?}"),
            }
        }
    })
    .await
    .expect("no message within the deadline")
}

async fn echo(ws: &mut Client, text: &str) -> String {
    ws.send(Message::text(text)).await.unwrap();
    match next_data(ws).await {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// The close frame the gateway sends (data still in flight skipped), within [`DEADLINE`].
async fn closed_with(ws: &mut Client) -> Option<CloseFrame> {
    tokio::time::timeout(DEADLINE, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(f))) => return f,
                Some(Ok(_)) => {}
                other => panic!("the WebSocket ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("no close frame within the deadline")
}

fn metric(worker: &RunningWorker, series: &str) -> f64 {
    metric_value(&worker.handle.metrics_text(), series).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_flow_both_ways_and_the_close_handshake_passes_through() {
    let upstream = echo_server().await;
    let cfg = ConfigDir::new();
    cfg.write("chat.yaml", &manifest("blue", upstream.addr, "", ""));
    let worker = RunningWorker::start(cfg.path()).await;

    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/ws/chat", worker.addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    assert_eq!(
        resp.headers()["x-release"],
        "blue",
        "response policies apply"
    );
    assert_eq!(metric(&worker, "switchyard_websockets_open"), 1.0);

    assert_eq!(echo(&mut ws, "hello").await, "blue:hello");
    let blob: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    ws.send(Message::Binary(blob.clone().into())).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Message::Binary(blob.into()));
    // A ping gets its pong.
    ws.send(Message::Ping(Bytes::from_static(b"are you there")))
        .await
        .unwrap();
    tokio::time::timeout(DEADLINE, async {
        loop {
            if let Some(Ok(Message::Pong(p))) = ws.next().await {
                assert_eq!(&p[..], b"are you there");
                return;
            }
        }
    })
    .await
    .unwrap();

    // The client closes: its code and reason reach the upstream, the close is answered.
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    let answer = closed_with(&mut ws).await.unwrap();
    assert_eq!(answer.code, CloseCode::Normal);
    eventually("the upstream sees the client's close", || {
        upstream.closes.lock().unwrap().as_slice() == [(1000, "bye".to_string())]
    })
    .await;
    eventually("the WebSocket is over in the gateway", || {
        metric(&worker, "switchyard_websockets_open") == 0.0
    })
    .await;

    assert_eq!(worker.handle.live_generations(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_16_mib_closes_the_websocket_with_1009() {
    let upstream = echo_server().await;
    let cfg = ConfigDir::new();
    cfg.write("chat.yaml", &manifest("blue", upstream.addr, "", ""));
    let worker = RunningWorker::start(cfg.path()).await;
    let mut ws = connect(worker.addr).await;
    // Up to the cap is carried.
    let at_cap = vec![7u8; 16 << 20];
    ws.send(Message::Binary(at_cap.into())).await.unwrap();
    assert!(matches!(next_data(&mut ws).await, Message::Binary(b) if b.len() == 16 << 20));
    // Over it, the WebSocket is closed with 1009 (message too big). The gateway stops
    // reading at the frame's header, so a sender still writing the rest may see a reset
    // instead of the close frame.
    let over = vec![7u8; (16 << 20) + 1];
    if ws.send(Message::Binary(over.into())).await.is_ok() {
        let ended = tokio::time::timeout(DEADLINE, async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(f))) => return f.map(|f| f.code),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return None,
                }
            }
        })
        .await
        .unwrap();
        assert!(matches!(ended, Some(CloseCode::Size) | None), "{ended:?}");
    }
    eventually("the upstream is told 1009 too", || {
        upstream.closes.lock().unwrap().first().map(|c| c.0) == Some(1009)
    })
    .await;
    eventually("the WebSocket is over in the gateway", || {
        metric(&worker, "switchyard_websockets_open") == 0.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_closes_open_websockets_with_1001_and_waits_for_them() {
    let upstream = echo_server().await;
    let cfg = ConfigDir::new();
    cfg.write("chat.yaml", &manifest("blue", upstream.addr, "", ""));
    let mut worker = RunningWorker::start(cfg.path()).await;
    let mut ws = connect(worker.addr).await;
    assert_eq!(echo(&mut ws, "before").await, "blue:before");

    // The WebSocket keeps its connection in the table: the drain sees it, asks it to close
    // (1001 to both sides) and ends once it has, well before the 30 s drain timeout.
    worker.begin_shutdown();
    let frame = closed_with(&mut ws).await.unwrap();
    assert_eq!(frame.code, CloseCode::Away);
    eventually("the upstream gets 1001 too", || {
        upstream.closes.lock().unwrap().first().map(|c| c.0) == Some(1001)
    })
    .await;
    tokio::time::timeout(DEADLINE, &mut worker.task)
        .await
        .expect("the drain ends once the WebSocket is closed")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_denied_by_auth_never_reaches_the_upstream() {
    let upstream = echo_server().await;
    let cfg = ConfigDir::new();
    let credential = r#"apiVersion: switchyard.dev/v1
kind: Credential
metadata: { name: chat-clients }
spec:
  type: api-keys
  keys:
    - { consumer: acme, key: "acme-key-0001" }
"#;
    cfg.write("credential.yaml", credential);
    let policies =
        "    - type: api-key\n      header: x-api-key\n      credentials: [chat-clients]";
    cfg.write("chat.yaml", &manifest("blue", upstream.addr, "", policies));
    let worker = RunningWorker::start(cfg.path()).await;

    let url = format!("ws://{}/ws/chat", worker.addr);
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(WsError::Http(resp)) => {
            assert_eq!(resp.status(), 401);
            let body =
                String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned();
            assert!(body.contains("missing_api_key"), "{body}");
        }
        other => panic!("expected a 401, got {other:?}"),
    }
    let mut wrong = url.as_str().into_client_request().unwrap();
    wrong
        .headers_mut()
        .insert("x-api-key", "nope".parse().unwrap());
    match tokio_tungstenite::connect_async(wrong).await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected a 401, got {other:?}"),
    }
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 0);

    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("x-api-key", "acme-key-0001".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(echo(&mut ws, "with a key").await, "blue:with a key");
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_stay_open_across_50_swaps_then_close_1001_past_max_stream_age() {
    const SOCKETS: usize = 200;
    const SWAPS: u64 = 50;
    let upstream = echo_server().await;
    let cfg = ConfigDir::new();
    cfg.write("chat.yaml", &manifest("r0", upstream.addr, "", ""));
    let worker = RunningWorker::start(cfg.path()).await;
    let first = worker.handle.revision();

    let mut sockets = Vec::with_capacity(SOCKETS);
    for _ in 0..SOCKETS {
        sockets.push(connect(worker.addr).await);
    }
    for (i, ws) in sockets.iter_mut().enumerate() {
        assert_eq!(echo(ws, &format!("m{i}")).await, format!("r0:m{i}"));
    }
    assert_eq!(
        metric(&worker, "switchyard_websockets_open"),
        SOCKETS as f64
    );

    for s in 1..=SWAPS {
        cfg.write(
            "chat.yaml",
            &manifest(&format!("r{s}"), upstream.addr, "", ""),
        );
        worker.wait_for_revision(first + s).await;
        // Traffic on a few of them while the swaps go on.
        let i = usize::try_from(s).unwrap() % SOCKETS;
        assert_eq!(echo(&mut sockets[i], "during").await, "r0:during");
    }
    // None closed; every one still carries messages both ways, on the generation it was
    // opened on (its upgrade carried r0's header; only r0 and the current one are alive).
    for (i, ws) in sockets.iter_mut().enumerate() {
        assert_eq!(echo(ws, &format!("after{i}")).await, format!("r0:after{i}"));
        ws.send(Message::Binary(
            vec![u8::try_from(i % 256).unwrap(); 64].into(),
        ))
        .await
        .unwrap();
        assert!(matches!(next_data(ws).await, Message::Binary(b) if b.len() == 64));
    }
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), SOCKETS);
    assert!(upstream.closes.lock().unwrap().is_empty());
    eventually("r0 pinned, and the current one: nothing else", || {
        worker.handle.live_generations() == 2
    })
    .await;
    assert_eq!(
        metric(&worker, "switchyard_websockets_open"),
        SOCKETS as f64
    );
    assert!(metric(&worker, "switchyard_pinned_generation_oldest_age_seconds") > 0.0);

    // The last swap sets maxStreamAge: 1s on the route; it applies to the streams of old
    // generations too. Every WebSocket is on r0 and older than that: each is closed with
    // 1001 (going away), both toward the client and toward the upstream.
    let route = "      maxStreamAge: 1s";
    cfg.write("chat.yaml", &manifest("last", upstream.addr, route, ""));
    worker.wait_for_revision(first + SWAPS + 1).await;
    for ws in &mut sockets {
        let frame = closed_with(ws).await.expect("a close frame with a code");
        assert_eq!(frame.code, CloseCode::Away);
    }
    eventually("the upstream side of each is closed with 1001", || {
        let closes = upstream.closes.lock().unwrap();
        closes.len() == SOCKETS && closes.iter().all(|(code, _)| *code == 1001)
    })
    .await;
    eventually("r0 is freed", || worker.handle.live_generations() == 1).await;
    assert_eq!(
        metric(
            &worker,
            "switchyard_streams_closed_for_age_total{kind=\"websocket\"}"
        ),
        SOCKETS as f64
    );
    assert_eq!(metric(&worker, "switchyard_websockets_open"), 0.0);
    assert_eq!(
        metric(&worker, "switchyard_pinned_generation_oldest_age_seconds"),
        0.0
    );

    // A WebSocket on the current generation is never closed for its age.
    let mut fresh = connect(worker.addr).await;
    assert_eq!(echo(&mut fresh, "new").await, "last:new");
    // Waiting for time to pass is the point here: past its maxStreamAge, it stays open.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(echo(&mut fresh, "still").await, "last:still");
}

async fn open_events(worker: SocketAddr) -> (TcpStream, Vec<u8>) {
    let mut conn = TcpStream::connect(worker).await.unwrap();
    conn.write_all(b"GET /ws/events HTTP/1.1\r\nhost: test\r\naccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    read_until(&mut conn, &mut seen, "\r\n\r\n").await;
    let head = String::from_utf8_lossy(&seen).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    (conn, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_response_on_an_old_generation_ends_cleanly_past_max_stream_age() {
    // Each request to the upstream streams the events of the next channel.
    let bodies: Arc<Mutex<VecDeque<mpsc::Receiver<Bytes>>>> = Arc::default();
    let (old_tx, rx) = mpsc::channel::<Bytes>(16);
    bodies.lock().unwrap().push_back(rx);
    let (h2_tx, rx) = mpsc::channel::<Bytes>(16);
    bodies.lock().unwrap().push_back(rx);
    let (current_tx, rx) = mpsc::channel::<Bytes>(16);
    bodies.lock().unwrap().push_back(rx);
    let (_third_tx, rx) = mpsc::channel::<Bytes>(16);
    bodies.lock().unwrap().push_back(rx);
    let b = bodies.clone();
    let upstream = serve_fn(move |_req| {
        let rx = b.lock().unwrap().pop_front().unwrap();
        http::Response::builder()
            .header("content-type", "text/event-stream")
            .body(Fed(Some(rx)))
            .unwrap()
    })
    .await;
    let cfg = ConfigDir::new();
    let route = "      maxStreamAge: 1s";
    cfg.write("chat.yaml", &manifest("blue", upstream, route, ""));
    let worker = RunningWorker::start(cfg.path()).await;
    let first = worker.handle.revision();

    let (mut old, mut seen) = open_events(worker.addr).await;
    old_tx.send(Bytes::from("data: one\n\n")).await.unwrap();
    read_until(&mut old, &mut seen, "data: one\n\n").await;
    // The same over HTTP/2 (h2c, prior knowledge).
    let stream = TcpStream::connect(worker.addr).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("http://test/ws/events")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = h2.send_request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let mut h2_body = resp.into_body();
    h2_tx.send(Bytes::from("data: h2\n\n")).await.unwrap();
    let frame = tokio::time::timeout(DEADLINE, h2_body.frame())
        .await
        .unwrap();
    assert_eq!(frame.unwrap().unwrap().into_data().unwrap(), "data: h2\n\n");
    let counted = "switchyard_streams_closed_for_age_total{kind=\"response\"}";
    assert_eq!(metric(&worker, counted), 0.0);

    // A swap: the stream is now on an old generation; past 1 s of age it ends, with the
    // last chunk (a clean end), and its generation is freed.
    cfg.write("chat.yaml", &manifest("green", upstream, route, ""));
    worker.wait_for_revision(first + 1).await;
    let (mut current, mut current_seen) = open_events(worker.addr).await;
    let opened = tokio::time::Instant::now();
    assert!(String::from_utf8_lossy(&current_seen).contains("x-release: green"));
    seen.clear();
    read_until(&mut old, &mut seen, "0\r\n\r\n").await;
    // HTTP/2: the stream ends cleanly (END_STREAM, no reset): the body ends without error.
    let rest = tokio::time::timeout(DEADLINE, h2_body.collect())
        .await
        .unwrap();
    assert!(rest.unwrap().to_bytes().is_empty());
    eventually("the old generation is freed", || {
        worker.handle.live_generations() == 1
    })
    .await;
    assert_eq!(metric(&worker, counted), 2.0);
    // The connection is kept: the next request on it is served.
    old.write_all(b"GET /ws/events HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    seen.clear();
    read_until(&mut old, &mut seen, "\r\n\r\n").await;
    let head = String::from_utf8_lossy(&seen).to_lowercase();
    assert!(
        head.starts_with("http/1.1 200") && head.contains("x-release: green"),
        "{head}"
    );

    // The stream on the current generation outlives its maxStreamAge and stays open.
    tokio::time::sleep_until(opened + Duration::from_millis(1500)).await;
    current_tx.send(Bytes::from("data: two\n\n")).await.unwrap();
    read_until(&mut current, &mut current_seen, "data: two\n\n").await;
    assert_eq!(metric(&worker, counted), 2.0);
    drop((old_tx, h2_tx));
}
