//! The request path: one snapshot load, route, pipeline, upstream, response.

pub mod body;
pub mod completion;
pub mod error;
pub mod forward;
pub mod policies;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use http::{Request, Response, Version, header};
use hyper::body::Incoming;
use switchyard_config::manifest::RequestSizeSpec;
use switchyard_engine::runtime::upstream::is_idempotent;
use switchyard_engine::runtime::{Pick, Target, Tried, remove_hop_by_hop};

use self::body::{RequestBody, ResponseBody};
use self::completion::Completion;
use self::error::{GatewayError, UpstreamErrorKind};
use crate::runtime::{Proxy, Runtime};
use switchyard_engine::runtime::policy::{Exchange, Reply};

/// Handles one request. The configuration generation is loaded once, here, and everything
/// the request does (route, policies, targets, timeouts, retries) comes from it; the
/// response body keeps it alive until the last byte is sent. Once the Worker is draining,
/// HTTP/1 responses carry `Connection: close`, so keep-alive clients move elsewhere.
pub async fn handle(
    current: &ArcSwap<Runtime>,
    draining: &AtomicBool,
    remote: SocketAddr,
    client: &http::HeaderValue,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let http1 = req.version() < Version::HTTP_2;
    let mut resp = proxy(current, remote, client, req).await;
    if http1 && draining.load(Ordering::Relaxed) {
        resp.headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    Ok(resp)
}

async fn proxy(
    current: &ArcSwap<Runtime>,
    remote: SocketAddr,
    client: &http::HeaderValue,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let runtime = current.load_full();
    let host = req.headers().get(header::HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
    });
    let mut done = Completion::start(
        runtime,
        started,
        remote.ip(),
        req.method().clone(),
        req.uri().clone(),
        host,
    );
    let rt = done.runtime.clone();
    let host_str = done.host.as_ref().and_then(|h| h.to_str().ok());
    let Some((m, proxy, route)) = rt.snapshot.route(host_str, req.uri().path(), req.method())
    else {
        return error_response(GatewayError::NoRoute, done);
    };
    done.proxy = Some(proxy.clone());
    done.route = Some(m.route);
    let ext = rt.ext(proxy);
    let upstream = &proxy.upstream;

    let (parts, body) = req.into_parts();
    let method = parts.method;
    let mut original_uri = parts.uri;
    let mut headers = parts.headers;
    remove_hop_by_hop(&mut headers);
    forward::set_forwarded(&mut headers, client, done.host.as_ref());

    // Timeouts are bounded when compiled; `checked_add` keeps even a bad value from panicking.
    let now = tokio::time::Instant::now();
    let deadline = now
        .checked_add(upstream.request_timeout)
        .unwrap_or(now + std::time::Duration::from_secs(86_400));

    let mut ex = Exchange::default();
    let phase = policies::request_phase(
        &proxy.pipeline,
        policies::RequestParts {
            method: &method,
            uri: &mut original_uri,
            headers: &mut headers,
            peer: remote.ip(),
        },
        body,
        &mut ex,
        deadline,
    )
    .await;
    done.consumer = ex.consumer.clone();
    let body = match phase {
        policies::Outcome::Forward(body) => body,
        policies::Outcome::Reply { reply, policy } => {
            return policy_reply(reply, policy, proxy, &ex, done);
        }
    };
    let may_retry = upstream.retry_attempts > 0 && upstream.targets.len() > 1;
    let (mut next_body, slot) = if may_retry {
        upstream.budget.deposit();
        let (b, slot) = RequestBody::parked(body);
        (Some(b), Some(slot))
    } else {
        (Some(RequestBody::Direct(body)), None)
    };
    // A reset may be retried only for methods that can safely be sent twice.
    let idempotent = is_idempotent(&method);
    let key = upstream.hash_key(&headers, ex.client_ip(remote.ip()));
    let mut tried = Tried::default();
    let mut attempt = 0u32;
    let mut last_error = None::<UpstreamErrorKind>;
    let result = loop {
        // `pick` claims an in-flight slot on the target; every path below gives it back
        // (`release`, or the completion when the response is over).
        // A retry needs a token from the budget (taken before picking, so a refused retry
        // does not move the load balancer on).
        if let Some(kind) = last_error
            && !upstream.budget.withdraw(Instant::now())
        {
            tracing::debug!(proxy = %proxy.name, "retry budget exhausted; not retrying");
            break Err(kind);
        }
        let t = match upstream.pick(tried, key, Instant::now()) {
            Pick::Target(t) => t,
            Pick::Overloaded if last_error.is_none() => {
                return error_response(GatewayError::Overloaded, done);
            }
            Pick::Overloaded | Pick::Exhausted => {
                if last_error.is_some() {
                    upstream.budget.refund();
                }
                break Err(last_error.unwrap_or(UpstreamErrorKind::ConnectFailed));
            }
        };
        tried.insert(t);
        done.target = Some(t);
        done.in_flight = true;
        let target = &upstream.targets[t];
        let Some(uri) = forward::upstream_uri(target, route, &original_uri) else {
            return error_response(GatewayError::Internal("cannot build upstream URI"), done);
        };
        let Some(body) = next_body.take() else {
            break Err(last_error.unwrap_or(UpstreamErrorKind::ConnectFailed));
        };
        // Keep a copy of the headers only while another attempt is still possible.
        let last_chance = attempt >= upstream.retry_attempts || !may_retry;
        let attempt_headers = if last_chance {
            std::mem::take(&mut headers)
        } else {
            headers.clone()
        };
        let mut up_req = Request::new(body);
        *up_req.method_mut() = method.clone();
        *up_req.uri_mut() = uri;
        *up_req.version_mut() = Version::HTTP_11;
        *up_req.headers_mut() = attempt_headers;
        let outcome = tokio::time::timeout_at(deadline, ext.client.request(up_req)).await;
        let kind = match outcome {
            Ok(Ok(resp)) => {
                let ok = !resp.status().is_server_error();
                if upstream.report(t, ok, Instant::now()) {
                    ejected(proxy, target);
                }
                break Ok(resp);
            }
            Ok(Err(e)) => {
                if let Some(max) = body::too_large(&e) {
                    upstream.release(t);
                    done.in_flight = false;
                    let reply = switchyard_engine::runtime::policy::request_size::too_large(max);
                    return policy_reply(reply, RequestSizeSpec::TYPE, proxy, &ex, done);
                }
                UpstreamErrorKind::classify(&e)
            }
            Err(_) => UpstreamErrorKind::Timeout,
        };
        upstream.release(t);
        done.in_flight = false;
        if upstream.report(t, false, Instant::now()) {
            ejected(proxy, target);
        }
        ext.metrics.upstream_errors[kind.index()].inc();
        tracing::debug!(proxy = %proxy.name, target = %target.url, error = kind.as_str(), "upstream attempt failed");
        attempt += 1;
        // Safe to send again: nothing was sent (connect failure), or an idempotent request
        // was reset before any response byte and its body was never started (below).
        let safe = kind.is_connect() || (kind == UpstreamErrorKind::Reset && idempotent);
        if !safe || last_chance {
            break Err(kind);
        }
        next_body = slot.as_ref().and_then(RequestBody::retry);
        if next_body.is_none() {
            break Err(kind);
        }
        last_error = Some(kind);
    };
    match result {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            remove_hop_by_hop(&mut parts.headers);
            proxy.pipeline.on_response(&ex, &mut parts.headers);
            done.status = parts.status.as_u16();
            Response::from_parts(parts, ResponseBody::upstream(body, done))
        }
        Err(kind) => error_response(GatewayError::Upstream(kind), done),
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

/// An answer given by a policy (a denial, a CORS preflight, a mock), with the response
/// phase applied (CORS and `RateLimit-*` headers reach denials too).
fn policy_reply(
    reply: Reply,
    policy: &'static str,
    proxy: &Proxy,
    ex: &Exchange,
    mut done: Completion,
) -> Response<ResponseBody> {
    done.status = reply.status.as_u16();
    if reply.status.as_u16() >= 400 {
        done.error = Some(reply.code);
        done.runtime.obs.metrics.policy_denial(
            &proxy.name,
            policy,
            reply.code,
            reply.detail.as_deref(),
        );
    }
    let mut resp = Response::new(ResponseBody::full(reply.body, Some(done)));
    *resp.status_mut() = reply.status;
    let headers = resp.headers_mut();
    for (name, value) in reply.headers {
        headers.append(name, value);
    }
    proxy.pipeline.on_response(ex, headers);
    resp
}

fn error_response(err: GatewayError, mut done: Completion) -> Response<ResponseBody> {
    done.status = err.status().as_u16();
    done.error = Some(err.code());
    let body = err.body();
    let mut resp = Response::new(ResponseBody::full(body, Some(done)));
    *resp.status_mut() = err.status();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}
