//! A streamed response (server-sent events) goes through the Worker as the upstream emits
//! it, event by event, never buffered; a swap while it streams neither closes it nor changes
//! what it runs on: its generation stays pinned until it ends, then is freed.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use switchyard_e2e::upstream::{Fed, read_until, serve_fn};
use switchyard_e2e::{ConfigDir, RunningWorker, eventually, payments_manifest};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_stream_through_the_worker_and_across_a_swap() {
    let (events, rx) = mpsc::channel::<Bytes>(16);
    let rx = Arc::new(Mutex::new(Some(rx)));
    let upstream = serve_fn(move |_req| {
        let body = Fed(rx.lock().unwrap().take());
        http::Response::builder()
            .header("content-type", "text/event-stream")
            .body(body)
            .unwrap()
    })
    .await;
    let cfg = ConfigDir::new();
    cfg.write("payments.yaml", &payments_manifest("blue", upstream, ""));
    let worker = RunningWorker::start(cfg.path()).await;
    let first = worker.handle.revision();

    let mut conn = TcpStream::connect(worker.addr).await.unwrap();
    conn.write_all(
        b"GET /payments/events HTTP/1.1\r\nhost: test\r\naccept: text/event-stream\r\n\r\n",
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    read_until(&mut conn, &mut seen, "\r\n\r\n").await;
    let head = String::from_utf8_lossy(&seen).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("x-release: blue"), "{head}");

    // Each event is sent only once the previous one was received: a Worker that buffered
    // the body would hold the first back and fail the test.
    let mut latencies = Vec::new();
    for i in 0..10 {
        if i == 5 {
            // A swap while the stream is open: it stays open, on its generation.
            cfg.write("payments.yaml", &payments_manifest("green", upstream, ""));
            worker.wait_for_revision(first + 1).await;
            assert_eq!(
                worker.handle.live_generations(),
                2,
                "the open stream pins the generation it started on"
            );
        }
        let event = format!("id: {i}\ndata: event {i}\n\n");
        let sent = Instant::now();
        events.send(Bytes::from(event)).await.unwrap();
        read_until(&mut conn, &mut seen, &format!("data: event {i}\n\n")).await;
        latencies.push(sent.elapsed());
    }
    // The upstream ends the stream: the response ends (the last chunk), the connection
    // stays open, and the old generation is freed.
    drop(events);
    seen.clear();
    read_until(&mut conn, &mut seen, "0\r\n\r\n").await;
    eventually("the old generation is freed once the stream ends", || {
        worker.handle.live_generations() == 1
    })
    .await;
    conn.write_all(b"GET /payments/next HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut next = Vec::new();
    read_until(&mut conn, &mut next, "\r\n\r\n").await;
    let next = String::from_utf8_lossy(&next).to_lowercase();
    assert!(next.contains("x-release: green"), "{next}");

    latencies.sort();
    eprintln!(
        "event sent by the upstream → received by the client: min {:?}, median {:?}, max {:?} (n={})",
        latencies[0],
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
        latencies.len()
    );
}
