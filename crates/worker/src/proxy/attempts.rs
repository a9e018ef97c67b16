//! The upstream attempts of one request: pick a target (claiming an in-flight slot on it),
//! send, and on a failure try another target when that is safe and the retry budget
//! allows. Each attempt's slot is given back when it fails, or held by the request's
//! [`Completion`] until the response is over.

use std::time::Instant;

use std::sync::Arc;

use http::{HeaderMap, Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use switchyard_engine::runtime::upstream::is_idempotent;
use switchyard_engine::runtime::{Pick, Route, Target, Tried};

use http_body::Body;

use super::body::{self, ClientBody, ClientBodyError, RequestBody};
use super::completion::Completion;
use super::error::UpstreamErrorKind;
use super::forward;
use crate::pool::{HostPool, Lease, SendError};
use crate::runtime::{Proxy, ProxyExt};

/// One request as its attempts send it: where to, what, and until when.
pub struct Outbound<'a> {
    pub proxy: &'a Proxy,
    pub ext: &'a ProxyExt,
    pub route: &'a Route,
    pub method: Method,
    /// The request's URI as policies left it.
    pub uri: &'a Uri,
    pub headers: HeaderMap,
    /// The request's `consistent-hash` key.
    pub key: u64,
    pub deadline: tokio::time::Instant,
    /// The pool lane of the core serving the request.
    pub lane: usize,
}

/// How the attempts of a request ended.
pub enum Sent {
    /// An upstream answer (its target's slot is held by the completion), and the
    /// connection its body comes on.
    Response(Response<Incoming>, Lease),
    /// No answer: how the last attempt failed.
    Failed(UpstreamErrorKind),
    /// No attempt: every target that could take the request is at its limit.
    Overloaded,
    /// The body went over `request-size`'s limit (this many bytes) on its way upstream.
    TooLarge(u64),
    /// The request could not be built.
    Internal(&'static str),
    /// The client's body failed (abort, malformed, stalled).
    ClientBody(ClientBodyError),
}

/// Sends `out` upstream, retrying when it is safe. `done` learns the target of each attempt
/// and holds its slot.
///
/// Two kinds of retry:
/// - **Stale connection**: the first attempt that fails before anything was sent (hyper
///   gave the request back, body untouched: any method), or an idempotent request reset
///   before any response byte, is sent once more to the same target on a fresh connection —
///   the upstream may have closed an idle keep-alive connection just as it was reused.
///   That failure is not the target's: it is not counted against its health, nor in the
///   upstream errors, nor in the retry budget (it happens at most once per request).
/// - **Another target**: after a connect failure, or an idempotent reset, within
///   `retries.attempts` and the retry budget.
///
/// (The body is set up before the future is made, so the future does not keep the
/// `ClientBody` beside the `RequestBody` made from it: the request path's futures are
/// moved as they are polled, and every byte of them is copied.)
pub fn send<'a>(
    mut out: Outbound<'a>,
    body: ClientBody,
    done: &'a mut Completion,
) -> impl Future<Output = Sent> + 'a {
    let upstream = &out.proxy.upstream;
    let may_retry = upstream.retry_attempts > 0 && upstream.targets.len() > 1;
    // A request without a body can always be sent again (with an empty one); one with a
    // body only if it is parked, which costs an allocation: done when a retry may follow.
    let bodyless = body.is_end_stream();
    let idempotent = is_idempotent(&out.method);
    let (mut next_body, parked) = if !bodyless && (may_retry || idempotent) {
        let (b, parked) = RequestBody::parked(body);
        (Some(b), Some(parked))
    } else {
        (Some(RequestBody::Direct(body)), None)
    };
    if may_retry {
        upstream.budget.deposit();
    }
    async move {
        let upstream = &out.proxy.upstream;
        let mut tried = Tried::default();
        let mut attempt = 0u32;
        let mut last_error = None::<UpstreamErrorKind>;
        // Set while the next attempt is the stale-connection retry: the same target, a
        // fresh connection.
        let mut fresh = None::<usize>;
        let mut stale_retried = false;
        loop {
            let t = match fresh {
                // The slot of the failed attempt is still held.
                Some(t) => t,
                None => {
                    // A retry needs a token from the budget (taken before picking, so a
                    // refused retry does not move the load balancer on).
                    if let Some(kind) = last_error
                        && !upstream.budget.withdraw(Instant::now())
                    {
                        tracing::debug!(proxy = %out.proxy.name, "retry budget exhausted; not retrying");
                        return Sent::Failed(kind);
                    }
                    let slot = match upstream.pick(tried, out.key, Instant::now()) {
                        Pick::Target(slot) => slot,
                        Pick::Overloaded if last_error.is_none() => return Sent::Overloaded,
                        Pick::Overloaded | Pick::Exhausted => {
                            if last_error.is_some() {
                                upstream.budget.refund();
                            }
                            return Sent::Failed(
                                last_error.unwrap_or(UpstreamErrorKind::ConnectFailed),
                            );
                        }
                    };
                    let t = slot.target();
                    tried.insert(t);
                    done.target = Some(t);
                    done.in_flight = Some(slot);
                    t
                }
            };
            let target = &upstream.targets[t];
            let Some(uri) = forward::upstream_path(target, out.route, out.uri) else {
                return Sent::Internal("cannot build upstream URI");
            };
            let Some(body) = next_body.take() else {
                return Sent::Failed(last_error.unwrap_or(UpstreamErrorKind::ConnectFailed));
            };
            // Keep a copy of the headers only while another attempt is still possible.
            let last_chance = stale_retried && (attempt >= upstream.retry_attempts || !may_retry);
            let headers = if last_chance {
                std::mem::take(&mut out.headers)
            } else {
                out.headers.clone()
            };
            let Some(pool) = out.ext.pools.get(t) else {
                return Sent::Internal("no connection pool for the target");
            };
            let fresh_connection = fresh.take().is_some();
            let sending = attempt_once(&out, pool, fresh_connection, uri, headers, body, target, t);
            let began = done.records_attempts().then(Instant::now);
            let result = sending.await;
            if let Some(started) = began {
                done.attempts.push(crate::trace::AttemptRecord {
                    target: t,
                    started,
                    ended: Instant::now(),
                    outcome: match &result {
                        Ok((resp, _)) => Ok(resp.status().as_u16()),
                        Err(Failure::TooLarge(_)) => Err("request_too_large"),
                        Err(Failure::Client(_)) => Err("client_body_error"),
                        Err(Failure::Upstream(f)) => Err(f.kind.as_str()),
                    },
                });
            }
            let failure = match result {
                Ok((resp, lease)) => return Sent::Response(resp, lease),
                Err(Failure::TooLarge(max)) => {
                    done.in_flight = None;
                    return Sent::TooLarge(max);
                }
                Err(Failure::Client(e)) => {
                    done.in_flight = None;
                    return Sent::ClientBody(e);
                }
                Err(Failure::Upstream(f)) => f,
            };
            let kind = failure.kind;
            // A request given back unsent keeps its body (and its headers) for the next
            // attempt, whatever its method.
            let mut returned = failure.returned.map(|req| {
                let (parts, body) = req.into_parts();
                out.headers = parts.headers;
                body
            });
            let mut again = || {
                returned.take().or_else(|| {
                    if bodyless {
                        Some(RequestBody::Direct(ClientBody::empty()))
                    } else {
                        parked.as_ref().and_then(RequestBody::retry)
                    }
                })
            };
            let stale = failure.not_sent || (kind == UpstreamErrorKind::Reset && idempotent);
            if stale && !stale_retried {
                stale_retried = true;
                if let Some(b) = again() {
                    tracing::debug!(proxy = %out.proxy.name, target = %target.url, error = kind.as_str(), "retrying on a fresh connection");
                    next_body = Some(b);
                    fresh = Some(t);
                    continue;
                }
            }
            stale_retried = true;
            // The attempt is over: its slot goes back before the failure is counted.
            done.in_flight = None;
            if upstream.report(t, false, Instant::now()) {
                ejected(out.proxy, target);
            }
            out.ext.metrics.upstream_errors[kind.index()].inc();
            tracing::debug!(proxy = %out.proxy.name, target = %target.url, error = kind.as_str(), "upstream attempt failed");
            attempt += 1;
            // Safe to send again: nothing was sent (connect failure), or an idempotent request
            // was reset before any response byte and its body was never started (below).
            let safe = kind.is_connect() || stale;
            if !safe || !may_retry || attempt > upstream.retry_attempts {
                return Sent::Failed(kind);
            }
            next_body = again();
            if next_body.is_none() {
                return Sent::Failed(kind);
            }
            last_error = Some(kind);
        }
    }
}

/// Why one attempt got no answer.
enum Failure {
    TooLarge(u64),
    /// The client's body failed: the client's fault, not the target's.
    Client(ClientBodyError),
    Upstream(UpstreamFailure),
}

/// An upstream attempt's failure.
struct UpstreamFailure {
    kind: UpstreamErrorKind,
    /// Nothing was sent (the connection closed before the request was written).
    not_sent: bool,
    /// The request itself, when it came back unsent.
    returned: Option<Box<Request<RequestBody>>>,
}

impl UpstreamFailure {
    fn new(kind: UpstreamErrorKind) -> UpstreamFailure {
        UpstreamFailure {
            kind,
            not_sent: false,
            returned: None,
        }
    }
}

/// One attempt on target `t` through its `pool` (on a fresh connection when `fresh`),
/// within the request's deadline. An answer is reported to passive health checking here
/// (a 5xx counts as a failure of the target). The request is made before the future, so
/// the future holds only what the pool's does.
#[allow(clippy::too_many_arguments)]
fn attempt_once<'a>(
    out: &'a Outbound<'_>,
    pool: &'a Arc<HostPool>,
    fresh: bool,
    uri: Uri,
    headers: HeaderMap,
    body: RequestBody,
    target: &'a Target,
    t: usize,
) -> impl Future<Output = Result<(Response<Incoming>, Lease), Failure>> + 'a {
    let mut req = Request::new(body);
    *req.method_mut() = out.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    // Boxed: the connection's future is polled many times per request; boxed, the
    // layers above it move a pointer rather than its state.
    let sent = tokio::time::timeout_at(out.deadline, Box::pin(pool.send(req, fresh, out.lane)));
    let proxy = out.proxy;
    async move {
        match sent.await {
            Ok(Ok((resp, lease))) => {
                let ok = !resp.status().is_server_error();
                if proxy.upstream.report(t, ok, Instant::now()) {
                    ejected(proxy, target);
                }
                Ok((resp, lease))
            }
            Ok(Err(SendError::Connect(e))) => Err(Failure::Upstream(UpstreamFailure::new(
                UpstreamErrorKind::from_connect(&e),
            ))),
            Ok(Err(SendError::NotSent(req, e))) => Err(Failure::Upstream(UpstreamFailure {
                kind: UpstreamErrorKind::classify(&e),
                not_sent: true,
                returned: Some(req),
            })),
            Ok(Err(SendError::Closed)) => Err(Failure::Upstream(UpstreamFailure::new(
                UpstreamErrorKind::Reset,
            ))),
            Ok(Err(SendError::Failed(e))) => Err(if let Some(max) = body::too_large(&e) {
                Failure::TooLarge(max)
            } else if let Some(c) = body::client_body_error(&e) {
                Failure::Client(c)
            } else {
                Failure::Upstream(UpstreamFailure::new(UpstreamErrorKind::classify(&e)))
            }),
            Err(_) => Err(Failure::Upstream(UpstreamFailure::new(
                UpstreamErrorKind::Timeout,
            ))),
        }
    }
}

/// Passive health checking just took `target` out of rotation.
fn ejected(proxy: &Proxy, target: &Target) {
    let cool_off = proxy.upstream.health.passive.map(|p| p.cool_off);
    tracing::warn!(
        proxy = %proxy.name,
        target = %target.url,
        cool_off = ?cool_off,
        "upstream target ejected after consecutive failures"
    );
}
