//! Bodies on both sides of the proxy, streamed frame by frame, never buffered.
//!
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

use super::completion::Completion;

type Slot = Arc<Mutex<Option<Incoming>>>;

/// The body sent upstream.
pub enum RequestBody {
    /// Not re-sendable: used when no retry is possible.
    Direct(Incoming),
    /// Taken from the shared slot on first poll.
    Parked { slot: Slot, body: Option<Incoming> },
}

impl RequestBody {
    /// A body that a later attempt can take back as long as this one never polled it.
    pub fn parked(body: Incoming) -> (RequestBody, Slot) {
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
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
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
}

enum Inner {
    Upstream(Incoming),
    Full(Option<Bytes>),
}

impl ResponseBody {
    pub fn upstream(body: Incoming, completion: Completion) -> Self {
        ResponseBody {
            inner: Inner::Upstream(body),
            completion: Some(completion),
        }
    }

    pub fn full(bytes: Bytes, completion: Option<Completion>) -> Self {
        ResponseBody {
            inner: Inner::Full(Some(bytes)),
            completion,
        }
    }

    /// Ends the request's accounting now (dropping the completion records it).
    fn finish(&mut self) {
        self.completion.take();
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = match &mut this.inner {
            Inner::Upstream(b) => Pin::new(b).poll_frame(cx),
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
            Inner::Upstream(b) => b.is_end_stream(),
            Inner::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(b) => b.size_hint(),
            Inner::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Inner::Full(None) => SizeHint::with_exact(0),
        }
    }
}
