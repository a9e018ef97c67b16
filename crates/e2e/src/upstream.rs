//! Upstreams a test shapes itself: a hyper HTTP/1.1 server on port 0 answering each request
//! with what the test's function returns (a body that streams forever, one that stalls…).

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

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
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    addr
}
