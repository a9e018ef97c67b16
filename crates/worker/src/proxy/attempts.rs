//! The upstream attempts of one request: pick a target (claiming an in-flight slot on it),
//! send, and on a failure try another target when that is safe and the retry budget
//! allows. Each attempt's slot is given back when it fails, or held by the request's
//! [`Completion`] until the response is over.

use std::time::Instant;

use http::{HeaderMap, Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use switchyard_engine::runtime::upstream::is_idempotent;
use switchyard_engine::runtime::{Pick, Route, Target, Tried};

use super::body::{self, ClientBody, RequestBody};
use super::completion::Completion;
use super::error::UpstreamErrorKind;
use super::forward;
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
}

/// How the attempts of a request ended.
pub enum Sent {
    /// An upstream answer (its target's slot is held by the completion).
    Response(Response<Incoming>),
    /// No answer: how the last attempt failed.
    Failed(UpstreamErrorKind),
    /// No attempt: every target that could take the request is at its limit.
    Overloaded,
    /// The body went over `request-size`'s limit (this many bytes) on its way upstream.
    TooLarge(u64),
    /// The request could not be built.
    Internal(&'static str),
}

/// Sends `out` upstream, retrying on another target when it is safe. `done` learns the
/// target of each attempt and holds its slot.
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
    let (mut next_body, parked) = if may_retry {
        upstream.budget.deposit();
        let (b, parked) = RequestBody::parked(body);
        (Some(b), Some(parked))
    } else {
        (Some(RequestBody::Direct(body)), None)
    };
    async move {
        let upstream = &out.proxy.upstream;
        // A reset may be retried only for methods that can safely be sent twice.
        let idempotent = is_idempotent(&out.method);
        let mut tried = Tried::default();
        let mut attempt = 0u32;
        let mut last_error = None::<UpstreamErrorKind>;
        loop {
            // A retry needs a token from the budget (taken before picking, so a refused retry
            // does not move the load balancer on).
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
                    return Sent::Failed(last_error.unwrap_or(UpstreamErrorKind::ConnectFailed));
                }
            };
            let t = slot.target();
            tried.insert(t);
            done.target = Some(t);
            done.in_flight = Some(slot);
            let target = &upstream.targets[t];
            let Some(uri) = forward::upstream_uri(target, out.route, out.uri) else {
                return Sent::Internal("cannot build upstream URI");
            };
            let Some(body) = next_body.take() else {
                return Sent::Failed(last_error.unwrap_or(UpstreamErrorKind::ConnectFailed));
            };
            // Keep a copy of the headers only while another attempt is still possible.
            let last_chance = attempt >= upstream.retry_attempts || !may_retry;
            let headers = if last_chance {
                std::mem::take(&mut out.headers)
            } else {
                out.headers.clone()
            };
            let kind = match attempt_once(&out, uri, headers, body, target, t).await {
                Ok(resp) => return Sent::Response(resp),
                Err(Failure::TooLarge(max)) => {
                    done.in_flight = None;
                    return Sent::TooLarge(max);
                }
                Err(Failure::Upstream(kind)) => kind,
            };
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
            let safe = kind.is_connect() || (kind == UpstreamErrorKind::Reset && idempotent);
            if !safe || last_chance {
                return Sent::Failed(kind);
            }
            next_body = parked.as_ref().and_then(RequestBody::retry);
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
    Upstream(UpstreamErrorKind),
}

/// One attempt on target `t`, within the request's deadline. An answer is reported to
/// passive health checking here (a 5xx counts as a failure of the target). The request
/// is handed to the client before the future is made, so the future holds only the
/// client's.
fn attempt_once<'a>(
    out: &'a Outbound<'_>,
    uri: Uri,
    headers: HeaderMap,
    body: RequestBody,
    target: &'a Target,
    t: usize,
) -> impl Future<Output = Result<Response<Incoming>, Failure>> + 'a {
    let mut req = Request::new(body);
    *req.method_mut() = out.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    let sent = tokio::time::timeout_at(out.deadline, out.ext.client.request(req));
    let proxy = out.proxy;
    async move {
        match sent.await {
            Ok(Ok(resp)) => {
                let ok = !resp.status().is_server_error();
                if proxy.upstream.report(t, ok, Instant::now()) {
                    ejected(proxy, target);
                }
                Ok(resp)
            }
            Ok(Err(e)) => Err(match body::too_large(&e) {
                Some(max) => Failure::TooLarge(max),
                None => Failure::Upstream(UpstreamErrorKind::classify(&e)),
            }),
            Err(_) => Err(Failure::Upstream(UpstreamErrorKind::Timeout)),
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
