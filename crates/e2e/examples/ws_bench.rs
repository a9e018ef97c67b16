//! WebSocket measurements (not a test): an echo server, idle WebSockets held open, and
//! echo round trips per second, for comparing a Worker with a direct connection.
//!
//! ```text
//! ws_bench echo 127.0.0.1:19001                       # the upstream, until killed
//! ws_bench idle ws://127.0.0.1:8080/ws/x 1000 30      # open 1000, hold them 30 s
//! ws_bench rate ws://127.0.0.1:8080/ws/x 50 10 64     # 50 sockets, 10 s, 64-byte messages
//! ```
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    match arg(1).as_str() {
        "echo" => echo(&arg(2)).await,
        "idle" => idle(&arg(2), arg(3).parse().unwrap(), arg(4).parse().unwrap()).await,
        "rate" => {
            let size = arg(5).parse().unwrap_or(64);
            rate(
                &arg(2),
                arg(3).parse().unwrap(),
                arg(4).parse().unwrap(),
                size,
            )
            .await;
        }
        _ => eprintln!("usage: ws_bench echo ADDR | idle URL N SECS | rate URL CONNS SECS [SIZE]"),
    }
}

async fn echo(addr: &str) {
    let listener = TcpListener::bind(addr).await.unwrap();
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            while let Some(Ok(m)) = ws.next().await {
                if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                    break;
                }
            }
        });
    }
}

async fn idle(url: &str, n: usize, secs: u64) {
    let mut open = Vec::with_capacity(n);
    for _ in 0..n {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        open.push(ws);
    }
    println!("{n} WebSockets open");
    tokio::time::sleep(Duration::from_secs(secs)).await;
    drop(open);
}

async fn rate(url: &str, conns: usize, secs: u64, size: usize) {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let payload = vec![b'x'; size];
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut rtts = Vec::new();
            while Instant::now() < until {
                let sent = Instant::now();
                ws.send(Message::Binary(payload.clone().into()))
                    .await
                    .unwrap();
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Binary(_))) => break,
                        Some(Ok(_)) => {}
                        other => panic!("ended: {other:?}"),
                    }
                }
                rtts.push(sent.elapsed());
                n += 1;
            }
            (n, rtts)
        }));
    }
    let mut total = 0;
    let mut all = Vec::new();
    for t in tasks {
        let (n, rtts) = t.await.unwrap();
        total += n;
        all.extend(rtts);
    }
    all.sort();
    let p = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    println!(
        "{conns} sockets, {size}-byte messages: {:.0} round trips/s ({} in {secs} s); rtt p50 {:?} p99 {:?}",
        total as f64 / secs as f64,
        total,
        p(0.5),
        p(0.99)
    );
}
