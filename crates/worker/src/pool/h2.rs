//! HTTP/2 upstream connections (`spec.upstream.protocol: http2 | auto`).
//!
//! An HTTP/2 connection carries many requests at once, so unlike an HTTP/1.1 connection it
//! cannot be lent to one request: it is shared by every request of its lane (data-plane
//! core) and driven by a task of its own on that core. The lane keeps one: the connection
//! most recently made. A request clones its sender, sends, and holds nothing of the pool
//! afterwards; its response body is fed by the connection's task, and the stream keeps the
//! connection open until it ends, even when the lane has moved on to a newer connection
//! (a connection nobody can send on any more closes once its last stream has ended).
//!
//! A lane's connection unused for [`super::IDLE_TIMEOUT`] is forgotten like an idle
//! HTTP/1.1 one; one the upstream closed (GOAWAY, reset) is noticed when it is next taken
//! and replaced.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::SendError;
use crate::proxy::body::RequestBody;
use crate::upstream_tls::UpstreamIo;

/// How an HTTP/2 connection is set up: hyper's defaults (2 MiB stream and 5 MiB connection
/// windows, so a stream flows without waiting on each frame, while a slow reader holds back
/// its own stream only), plus pings every 20 s while streams are open, so a dead upstream
/// is noticed on a long stream with nothing to say.
fn builder() -> http2::Builder<TokioExecutor> {
    let mut b = http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .keep_alive_interval(std::time::Duration::from_secs(20))
        .keep_alive_timeout(std::time::Duration::from_secs(20));
    b
}

/// The sender of one HTTP/2 connection.
pub type Sender = http2::SendRequest<RequestBody>;

/// A lane's shared HTTP/2 connection, and when a request last took it.
pub struct Shared {
    sender: Sender,
    used: Instant,
}

/// One lane's slot.
pub type Slot = Mutex<Option<Shared>>;

/// The lane's connection, when it has one still open.
pub fn take(slot: &Slot) -> Option<Sender> {
    let mut s = slot.lock().unwrap_or_else(PoisonError::into_inner);
    match s.as_mut() {
        Some(shared) if !shared.sender.is_closed() => {
            shared.used = Instant::now();
            Some(shared.sender.clone())
        }
        Some(_) => {
            *s = None;
            None
        }
        None => None,
    }
}

/// Makes `sender` the lane's connection (the newest replaces an older one, whose running
/// streams finish on it).
pub fn keep(slot: &Slot, sender: &Sender) {
    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(Shared {
        sender: sender.clone(),
        used: Instant::now(),
    });
}

/// Forgets the lane's connection if no request took it since `idle_before`.
pub fn expire(slot: &Slot, idle_before: Instant) {
    let expired = {
        let mut s = slot.lock().unwrap_or_else(PoisonError::into_inner);
        match s.as_ref() {
            Some(shared) if shared.used < idle_before || shared.sender.is_closed() => s.take(),
            _ => None,
        }
    };
    // Dropped outside the lock.
    drop(expired);
}

/// The HTTP/2 handshake on `io`; the connection then runs as a task on the current core.
pub async fn handshake(io: UpstreamIo, target: &str) -> std::io::Result<Sender> {
    let (sender, connection) = builder()
        .handshake(TokioIo::new(io))
        .await
        .map_err(std::io::Error::other)?;
    let target = target.to_owned();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(%target, error = %e, "upstream HTTP/2 connection ended");
        }
    });
    Ok(sender)
}

/// Sends `req` (origin-form URI) on `sender`: the URI is made absolute (`:scheme` and
/// `:authority`, which HTTP/2 carries instead of `Host`), and a gRPC request says it
/// accepts trailers (`te: trailers`, which gRPC servers expect; the client's own `TE` was
/// removed with the other hop-by-hop headers).
pub async fn send(
    mut sender: Sender,
    mut req: Request<RequestBody>,
    scheme: &Scheme,
    authority: &Authority,
) -> Result<Response<Incoming>, SendError> {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(scheme.clone());
    parts.authority = Some(authority.clone());
    parts.path_and_query = req.uri().path_and_query().cloned();
    match Uri::from_parts(parts) {
        Ok(uri) => *req.uri_mut() = uri,
        Err(e) => {
            let e = std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
            return Err(SendError::Connect(e));
        }
    }
    *req.version_mut() = Version::HTTP_2;
    let headers = req.headers_mut();
    headers.remove(header::HOST);
    if headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|c| c.as_bytes().starts_with(b"application/grpc"))
    {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    match sender.try_send_request(req).await {
        Ok(resp) => Ok(resp),
        Err(mut e) => match e.take_message() {
            Some(req) => Err(SendError::NotSent(Box::new(req), e.into_error())),
            None => Err(SendError::Failed(e.into_error())),
        },
    }
}
