//! HTTP/2 measurements (not a test): an h2c upstream whose `/hold` streams answer their
//! head and then stay open, and a client holding many such streams open through a Worker,
//! for the memory an idle HTTP/2 stream costs (`scripts/h2-measure.sh`).
//!
//! ```text
//! h2_bench upstream 127.0.0.1:19401                    # the upstream, until killed
//! h2_bench idle http://127.0.0.1:8080/api/hold 1000 30 # hold 1000 streams open 30 s
//! ```
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use switchyard_e2e::upstream::Held;
use tokio::net::{TcpListener, TcpStream};

/// Streams per client connection (below the Worker's limit of concurrent streams).
const STREAMS_PER_CONNECTION: usize = 100;

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    match arg(1).as_str() {
        "upstream" => upstream(&arg(2)).await,
        "idle" => idle(&arg(2), arg(3).parse().unwrap(), arg(4).parse().unwrap()).await,
        _ => eprintln!("usage: h2_bench upstream ADDR | idle URL N SECS"),
    }
}

async fn upstream(addr: &str) {
    let listener = TcpListener::bind(addr).await.unwrap();
    while let Ok((stream, _)) = listener.accept().await {
        let svc = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
            let body = if req.uri().path().ends_with("/hold") {
                http_body_util::Either::Left(Held)
            } else {
                http_body_util::Either::Right(http_body_util::Full::new(Bytes::from_static(b"ok")))
            };
            Ok::<_, Infallible>(Response::new(body))
        });
        tokio::spawn(
            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .max_concurrent_streams(1000)
                .serve_connection(TokioIo::new(stream), svc),
        );
    }
}

async fn idle(url: &str, n: usize, secs: u64) {
    let uri: http::Uri = url.parse().unwrap();
    let addr = uri.authority().unwrap().as_str().to_owned();
    let mut held = Vec::with_capacity(n);
    let mut connections = Vec::new();
    for i in 0..n {
        if i % STREAMS_PER_CONNECTION == 0 {
            let tcp = TcpStream::connect(&addr).await.unwrap();
            let (sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            connections.push(sender);
        }
        let sender = connections.last_mut().unwrap();
        let req = Request::get(&uri)
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        held.push(resp);
    }
    println!("{n} streams open on {} connections", connections.len());
    tokio::time::sleep(Duration::from_secs(secs)).await;
}
