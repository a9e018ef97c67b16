//! HTTP/2 upstream connections (`spec.upstream.protocol: http2 | auto`).
//!
//! An HTTP/2 connection carries many requests at once, so unlike an HTTP/1.1 connection it
//! cannot be lent to one request: it is shared by the requests of its lane (data-plane
//! core) and driven by a task of its own on that core. A request takes the lane's first
//! connection with fewer streams open than the upstream allows on it (its
//! `SETTINGS_MAX_CONCURRENT_STREAMS`, read by the connection's task) and than
//! [`MAX_STREAMS`], or makes a new one: long-lived streams (gRPC, server-sent events) never
//! make other requests queue behind an upstream's limit, and a connection nobody can send
//! on any more closes once its last stream has ended. The stream is counted until the response
//! body has ended or was dropped ([`StreamGuard`], carried by the response's lease).
//!
//! A lane's connection with no stream open and unused for [`super::IDLE_TIMEOUT`] is let go
//! like an idle HTTP/1.1 one; one the upstream closed (GOAWAY, reset) is noticed when a
//! request next looks at the lane, and dropped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
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

/// Streams the Worker opens at once on one upstream connection before it opens another:
/// below the concurrent-stream limits servers commonly announce (nginx 128, Go's gRPC and
/// Node.js 100 or more), so a request never waits for a stream to end elsewhere.
pub const MAX_STREAMS: usize = 100;

/// The sender of one HTTP/2 connection.
pub type Sender = http2::SendRequest<RequestBody>;

/// One of a lane's HTTP/2 connections: its sender, its streams open, the streams the
/// upstream allows on it, and when a request last took it.
pub struct Shared {
    sender: Sender,
    streams: Arc<AtomicUsize>,
    allowed: Arc<AtomicUsize>,
    used: Instant,
}

/// A new connection: its sender, and the streams the upstream allows on it (kept up to
/// date by the connection's task).
pub struct Connected {
    pub sender: Sender,
    allowed: Arc<AtomicUsize>,
}

/// One lane's connections.
pub type Slot = Mutex<Vec<Shared>>;

/// One stream counted on its connection until dropped.
#[derive(Debug)]
pub struct StreamGuard(Arc<AtomicUsize>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection of the lane with room for one more stream (closed ones are dropped on the
/// way), its stream counted.
pub fn take(slot: &Slot) -> Option<(Sender, StreamGuard)> {
    let mut lane = slot.lock().unwrap_or_else(PoisonError::into_inner);
    lane.retain(|c| !c.sender.is_closed());
    let c = lane.iter_mut().find(|c| {
        let allowed = c.allowed.load(Ordering::Relaxed).clamp(1, MAX_STREAMS);
        c.streams.load(Ordering::Relaxed) < allowed
    })?;
    c.used = Instant::now();
    c.streams.fetch_add(1, Ordering::Relaxed);
    Some((c.sender.clone(), StreamGuard(c.streams.clone())))
}

/// Adds the new connection to the lane, with the stream about to be sent on it.
pub fn keep(slot: &Slot, new: &Connected) -> StreamGuard {
    let streams = Arc::new(AtomicUsize::new(1));
    slot.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Shared {
            sender: new.sender.clone(),
            streams: streams.clone(),
            allowed: new.allowed.clone(),
            used: Instant::now(),
        });
    StreamGuard(streams)
}

/// Lets go of the lane's connections that are closed, or have no stream open and were not
/// taken since `idle_before`.
pub fn expire(slot: &Slot, idle_before: Instant) {
    let expired: Vec<Shared> = {
        let mut lane = slot.lock().unwrap_or_else(PoisonError::into_inner);
        let (gone, kept) = std::mem::take(&mut *lane).into_iter().partition(|c| {
            c.sender.is_closed() || (c.used < idle_before && c.streams.load(Ordering::Relaxed) == 0)
        });
        *lane = kept;
        gone
    };
    // Dropped outside the lock.
    drop(expired);
}

/// The HTTP/2 handshake on `io`; the connection then runs as a task on the current core,
/// which also notes the streams the upstream allows each time it runs.
pub async fn handshake(io: UpstreamIo, target: &str) -> std::io::Result<Connected> {
    let (sender, connection) = builder()
        .handshake(TokioIo::new(io))
        .await
        .map_err(std::io::Error::other)?;
    let allowed = Arc::new(AtomicUsize::new(connection.current_max_send_streams()));
    let noted = allowed.clone();
    let target = target.to_owned();
    tokio::spawn(async move {
        let mut connection = std::pin::pin!(connection);
        let ended = std::future::poll_fn(|cx| {
            let polled = connection.as_mut().poll(cx);
            noted.store(connection.current_max_send_streams(), Ordering::Relaxed);
            polled
        })
        .await;
        if let Err(e) = ended {
            tracing::debug!(%target, error = %e, "upstream HTTP/2 connection ended");
        }
    });
    Ok(Connected { sender, allowed })
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
