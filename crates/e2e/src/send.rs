//! One request with any method, headers and body (whole, or chunked without a length) on a
//! fresh connection: what the policy tests need beyond keep-alive GETs.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};

use crate::Answer;

/// A request body: whole (with `Content-Length`) or in chunks (chunked encoding).
pub enum TestBody {
    Empty,
    Whole(Bytes),
    Chunked(Vec<Bytes>),
}

struct Chunks {
    chunks: VecDeque<Bytes>,
    exact: Option<u64>,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(
            self.get_mut()
                .chunks
                .pop_front()
                .map(|c| Ok(Frame::data(c))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// Sends one request on a new connection and reads the whole answer.
pub async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: TestBody,
) -> Result<Answer, String> {
    send_from(None, addr, method, path, headers, body).await
}

/// [`send`] from a chosen local address (e.g. `127.0.0.2`: another peer to the server).
pub async fn send_from(
    from: Option<IpAddr>,
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: TestBody,
) -> Result<Answer, String> {
    let stream = match from {
        None => TcpStream::connect(addr).await,
        Some(ip) => {
            let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(|e| e.to_string())?;
            socket.connect(addr).await
        }
    }
    .map_err(|e| e.to_string())?;
    let (mut sender, conn) = http1::handshake::<_, Chunks>(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let body = match body {
        TestBody::Empty => Chunks {
            chunks: VecDeque::new(),
            exact: Some(0),
        },
        TestBody::Whole(b) => Chunks {
            exact: Some(b.len() as u64),
            chunks: VecDeque::from([b]),
        },
        TestBody::Chunked(c) => Chunks {
            chunks: c.into(),
            exact: None,
        },
    };
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "gateway.test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(req.body(body).map_err(|e| e.to_string())?)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("body failed: {e}"))?
        .to_bytes();
    Ok(Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}
