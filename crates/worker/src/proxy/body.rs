//! Bodies on both sides of the proxy, streamed frame by frame, never buffered.
//!
//! - [`ClientStream`] is the client's body as hyper reads it, with its errors tagged as the
//!   client's ([`ClientBodyError`]: an abort, a malformed chunked body, a stall longer than
//!   `requestBodyIdle`), so a failed upload is never blamed on the upstream.
//! - [`ClientBody`] is the client's body as policies left it: streamed, read whole
//!   (`prompt-firewall`), and/or cut off at a size limit (`request-size`).
//! - [`RequestBody`] lets a request be re-sent to another target after a connect failure:
//!   the client body is parked in a slot and only taken by the attempt that actually starts
//!   sending it, so "nothing was read yet" is known exactly.
//! - [`ResponseBody`] carries the request's [`Completion`]: the pinned runtime generation,
//!   metrics and access-log fields. They are released when the body ends or is dropped.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::age::StreamAge;
use super::completion::Completion;
use crate::idle::IdleTimer;
use crate::metrics::StreamKind;
use crate::pool::Lease;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body cut off by `request-size` at its limit.
#[derive(Debug)]
pub struct BodyTooLarge(pub u64);

impl std::fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "request body larger than {} bytes", self.0)
    }
}

impl std::error::Error for BodyTooLarge {}

/// How the client's request body failed: the client's fault, never the upstream's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientBodyError {
    /// The client went away mid-body.
    Aborted,
    /// Not a valid body (a bad chunk size, a body longer than its `Content-Length`…).
    Malformed,
    /// No byte for `requestBodyIdle`.
    IdleTimeout,
}

impl ClientBodyError {
    fn from_hyper(e: &hyper::Error) -> ClientBodyError {
        let io_gone = find::<std::io::Error>(e).is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            )
        });
        if e.is_incomplete_message() || e.is_canceled() || io_gone {
            ClientBodyError::Aborted
        } else {
            ClientBodyError::Malformed
        }
    }
}

impl std::fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientBodyError::Aborted => {
                "the client closed the connection before its request body ended"
            }
            ClientBodyError::Malformed => "the request body is malformed",
            ClientBodyError::IdleTimeout => {
                "the request body stalled (no byte within requestBodyIdle)"
            }
        })
    }
}

impl std::error::Error for ClientBodyError {}

/// The client's body as hyper reads it: each error tagged as a [`ClientBodyError`], and a
/// stall of `idle` between frames turned into one.
pub struct ClientStream {
    body: Incoming,
    idle: IdleTimer,
}

impl ClientStream {
    pub fn new(body: Incoming, idle: std::time::Duration) -> ClientStream {
        ClientStream {
            body,
            idle: IdleTimer::new(idle),
        }
    }
}

impl Body for ClientStream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if this.idle.stalled(cx, polled.is_ready()) {
            return Poll::Ready(Some(Err(Box::new(ClientBodyError::IdleTimeout))));
        }
        polled.map_err(|e| Box::new(ClientBodyError::from_hyper(&e)) as BoxError)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The client's body as it goes upstream: streamed as received, already read whole (a
/// policy inspected it), or partly read then streamed; optionally cut off at a size limit.
pub struct ClientBody {
    source: Source,
    limit: Option<Limit>,
}

enum Source {
    Incoming(ClientStream),
    Buffered(Option<Bytes>),
    Prefixed {
        prefix: Option<Bytes>,
        rest: ClientStream,
    },
}

struct Limit {
    max: u64,
    seen: u64,
}

impl ClientBody {
    pub fn streamed(body: ClientStream) -> ClientBody {
        ClientBody {
            source: Source::Incoming(body),
            limit: None,
        }
    }

    /// No body (what a retried bodyless request sends).
    pub fn empty() -> ClientBody {
        ClientBody {
            source: Source::Buffered(None),
            limit: None,
        }
    }

    pub fn buffered(bytes: Bytes) -> ClientBody {
        ClientBody {
            source: Source::Buffered(Some(bytes)),
            limit: None,
        }
    }

    /// `prefix` (already read) followed by the rest of the stream.
    pub fn prefixed(prefix: Bytes, rest: ClientStream) -> ClientBody {
        ClientBody {
            source: Source::Prefixed {
                prefix: Some(prefix),
                rest,
            },
            limit: None,
        }
    }

    /// Fails the body (with [`BodyTooLarge`]) once more than `max` bytes have passed.
    pub fn limit(mut self, max: u64) -> ClientBody {
        let max = self.limit.as_ref().map_or(max, |l| l.max.min(max));
        self.limit = Some(Limit { max, seen: 0 });
        self
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled: Poll<Option<Result<Frame<Bytes>, BoxError>>> = match &mut this.source {
            Source::Incoming(b) => Pin::new(b).poll_frame(cx),
            Source::Buffered(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Source::Prefixed { prefix, rest } => match prefix.take() {
                Some(p) => Poll::Ready(Some(Ok(Frame::data(p)))),
                None => Pin::new(rest).poll_frame(cx),
            },
        };
        if let (Some(limit), Poll::Ready(Some(Ok(frame)))) = (&mut this.limit, &polled)
            && let Some(data) = frame.data_ref()
        {
            limit.seen += data.len() as u64;
            if limit.seen > limit.max {
                return Poll::Ready(Some(Err(Box::new(BodyTooLarge(limit.max)))));
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Incoming(b) => b.is_end_stream(),
            Source::Buffered(b) => b.is_none(),
            Source::Prefixed { prefix, rest } => prefix.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Incoming(b) => b.size_hint(),
            Source::Buffered(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Source::Buffered(None) => SizeHint::with_exact(0),
            Source::Prefixed { prefix, rest } => {
                let mut h = rest.size_hint();
                let p = prefix.as_ref().map_or(0, |p| p.len() as u64);
                h.set_lower(h.lower() + p);
                if let Some(u) = h.upper() {
                    h.set_upper(u + p);
                }
                h
            }
        }
    }
}

/// The first error of type `T` in `e`'s source chain.
pub fn find<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    std::iter::successors(Some(e), |e| e.source()).find_map(|s| s.downcast_ref::<T>())
}

/// The limit, when an upstream request failed because `request-size` cut its body off.
pub fn too_large(e: &(dyn std::error::Error + 'static)) -> Option<u64> {
    find::<BodyTooLarge>(e).map(|b| b.0)
}

/// How the client's body failed, when an upstream request failed because of it.
pub fn client_body_error(e: &(dyn std::error::Error + 'static)) -> Option<ClientBodyError> {
    find::<ClientBodyError>(e).copied()
}

type Slot = Arc<Mutex<Option<ClientBody>>>;

/// The body sent upstream.
pub enum RequestBody {
    /// Not re-sendable: used when no retry is possible.
    Direct(ClientBody),
    /// Taken from the shared slot on first poll.
    Parked {
        slot: Slot,
        body: Option<ClientBody>,
    },
}

impl RequestBody {
    /// A body that a later attempt can take back as long as this one never polled it.
    pub fn parked(body: ClientBody) -> (RequestBody, Slot) {
        let slot = Arc::new(Mutex::new(Some(body)));
        (
            RequestBody::Parked {
                slot: slot.clone(),
                body: None,
            },
            slot,
        )
    }

    /// Another attempt with the same slot; `None` once the body has started to be sent.
    pub fn retry(slot: &Slot) -> Option<RequestBody> {
        let untouched = slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        untouched.then(|| RequestBody::Parked {
            slot: slot.clone(),
            body: None,
        })
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            RequestBody::Direct(b) => Pin::new(b).poll_frame(cx),
            RequestBody::Parked { slot, body } => {
                if body.is_none() {
                    *body = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
                }
                match body {
                    Some(b) => Pin::new(b).poll_frame(cx),
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Direct(b) => b.is_end_stream(),
            RequestBody::Parked { slot, body } => match body {
                Some(b) => b.is_end_stream(),
                None => slot
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_ref()
                    .is_none_or(Body::is_end_stream),
            },
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Direct(b) => b.size_hint(),
            RequestBody::Parked { slot, body } => match body {
                Some(b) => b.size_hint(),
                None => slot
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_ref()
                    .map_or_else(|| SizeHint::with_exact(0), Body::size_hint),
            },
        }
    }
}

/// The body sent to the client.
pub struct ResponseBody {
    inner: Inner,
    completion: Option<Completion>,
    /// Set the first time the upstream's body makes the client wait: from then on it is a
    /// long-lived stream, ended when its old generation outlives `maxStreamAge` or
    /// `--max-pinned-age` (`age.rs`).
    age: Option<Box<StreamAge>>,
}

enum Inner {
    /// The upstream's body, its stall timer, and the connection it comes on (driven as the
    /// body is read; back to its pool once the body has ended, closed if it never does).
    Upstream(Incoming, IdleTimer, Option<Lease>),
    Full(Option<Bytes>),
}

/// The trailers ending a gRPC stream closed for its age: `grpc-status: 14` (UNAVAILABLE).
fn closed_for_age_trailers() -> http::HeaderMap {
    let mut t = http::HeaderMap::with_capacity(2);
    t.insert("grpc-status", http::HeaderValue::from_static("14"));
    t.insert(
        "grpc-message",
        http::HeaderValue::from_static(
            "closed_for_age: the stream outlived maxStreamAge on an old configuration; call again",
        ),
    );
    t
}

/// An upstream response body cut because it sent nothing for `upstreamBodyIdle`.
#[derive(Debug)]
pub struct UpstreamBodyStalled;

impl std::fmt::Display for UpstreamBodyStalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the upstream response body stalled (no byte within upstreamBodyIdle)")
    }
}

impl std::error::Error for UpstreamBodyStalled {}

impl ResponseBody {
    /// The upstream's body, coming on `lease`'s connection, cut when it stalls for `idle`.
    pub fn upstream(
        body: Incoming,
        lease: Lease,
        idle: std::time::Duration,
        completion: Completion,
    ) -> Self {
        // A response without a body (HEAD, 204, 304) may never be polled: its connection
        // is free now.
        let lease = if body.is_end_stream() {
            lease.release();
            None
        } else {
            Some(lease)
        };
        ResponseBody {
            inner: Inner::Upstream(body, IdleTimer::new(idle), lease),
            completion: Some(completion),
            age: None,
        }
    }

    /// The upstream's body on a connection of its own that is driven elsewhere (an upgrade
    /// the upstream declined), cut when it stalls for `idle`.
    pub fn unpooled(body: Incoming, idle: std::time::Duration, completion: Completion) -> Self {
        ResponseBody {
            inner: Inner::Upstream(body, IdleTimer::new(idle), None),
            completion: Some(completion),
            age: None,
        }
    }

    /// `bytes` as the whole body (an empty one ends the stream with the response head).
    pub fn full(bytes: Bytes, completion: Option<Completion>) -> Self {
        ResponseBody {
            inner: Inner::Full((!bytes.is_empty()).then_some(bytes)),
            completion,
            age: None,
        }
    }

    /// Whether the stream must end now for its age; the age watch is made on the first
    /// call (the first time the body waits on the upstream).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.age.is_none() {
            let Some(c) = &self.completion else {
                return false;
            };
            self.age = Some(Box::new(c.stream_age()));
        }
        self.age
            .as_mut()
            .is_some_and(|a| a.poll_expired(cx).is_ready())
    }

    /// Ends the request's accounting now (dropping the completion records it).
    fn finish(&mut self) {
        self.completion.take();
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled: Poll<Option<Result<Frame<Bytes>, BoxError>>> = match &mut this.inner {
            Inner::Upstream(b, idle, lease) => {
                // The connection first: it reads what the body is about to yield.
                if let Some(l) = lease.as_mut() {
                    l.drive(cx);
                }
                let polled = Pin::new(&mut *b).poll_frame(cx);
                if b.is_end_stream()
                    && let Some(l) = lease.take()
                {
                    l.release();
                }
                if idle.stalled(cx, polled.is_ready()) {
                    if let Some(c) = this.completion.as_mut() {
                        c.upstream_body_stalled();
                    }
                    this.finish();
                    return Poll::Ready(Some(Err(Box::new(UpstreamBodyStalled))));
                }
                if polled.is_pending() && this.expired(cx) {
                    // Its old generation has been pinned long enough: the body ends here
                    // (HTTP/1 chunked: the last chunk; HTTP/2: END_STREAM). The upstream
                    // connection, mid-body, is closed rather than pooled.
                    this.inner = Inner::Full(None);
                    let mut grpc = false;
                    if let Some(c) = this.completion.as_mut() {
                        c.closed_for_age(StreamKind::Response);
                        grpc = c.grpc;
                    }
                    this.finish();
                    // A gRPC client reads the end of a call from its trailers: UNAVAILABLE,
                    // which gRPC clients treat as safe to retry (on the current generation).
                    if grpc {
                        return Poll::Ready(Some(Ok(Frame::trailers(closed_for_age_trailers()))));
                    }
                    return Poll::Ready(None);
                }
                polled.map_err(Into::into)
            }
            Inner::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(c), Some(data)) = (this.completion.as_mut(), frame.data_ref()) {
                    c.add_bytes(data.len());
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(c) = this.completion.as_mut() {
                    c.body_error();
                }
                this.finish();
            }
            Poll::Ready(None) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream(b, _, _) => b.is_end_stream(),
            Inner::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(b, _, _) => b.size_hint(),
            Inner::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Inner::Full(None) => SizeHint::with_exact(0),
        }
    }
}
