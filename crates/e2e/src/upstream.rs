//! Upstreams a test shapes itself: a hyper server on port 0 (HTTP/1.1, and HTTP/2 with prior
//! knowledge) answering each request with what the test's function returns (a body that
//! streams forever, one that stalls, trailers…).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::DEADLINE;

/// Serves `answer` on a new port-0 listener, for as long as the test runs.
pub async fn serve_fn<F, B>(answer: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Response<B> + Clone + Send + Sync + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            let svc = service_fn(move |req| {
                let resp = answer(req);
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A response body the test feeds chunk by chunk (an event, a message…), sent as each
/// arrives; `None`: an empty body.
pub struct Fed(pub Option<mpsc::Receiver<Bytes>>);

impl Body for Fed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.0 {
            Some(rx) => rx.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b)))),
            None => Poll::Ready(None),
        }
    }
}

/// A response body that never yields: the stream stays open after its head.
pub struct Held;

impl Body for Held {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Pending
    }
}

/// Reads from `conn` into `seen` until `seen` contains `what`; fails after [`DEADLINE`].
pub async fn read_until(conn: &mut TcpStream, seen: &mut Vec<u8>, what: &str) {
    let found = |s: &[u8]| String::from_utf8_lossy(s).contains(what);
    tokio::time::timeout(DEADLINE, async {
        let mut buf = [0u8; 4096];
        while !found(seen) {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "the stream closed before {what:?}");
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what:?} not received: the Worker held it back"));
}

/// An HTTP/2 client connection to `addr` with prior knowledge (h2c), its driver running as
/// a task: for requests whose frames a test shapes itself (trailers, raw gRPC).
pub async fn h2c_client<B>(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}
