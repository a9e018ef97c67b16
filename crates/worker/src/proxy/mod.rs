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
use switchyard_model::runtime::Tried;

use self::body::{RequestBody, ResponseBody};
use self::completion::Completion;
use self::error::{GatewayError, UpstreamErrorKind};
use crate::runtime::Runtime;
use switchyard_model::runtime::policy::{Exchange, Reply};

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
    done.proxy = Some(m.proxy);
    done.route = Some(m.route);
    let ext = &rt.proxies[m.proxy];
    let upstream = &proxy.upstream;

    let (parts, body) = req.into_parts();
    let method = parts.method;
    let mut original_uri = parts.uri;
    let mut headers = parts.headers;
    forward::remove_hop_by_hop(&mut headers);
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
        let (b, slot) = RequestBody::parked(body);
        (Some(b), Some(slot))
    } else {
        (Some(RequestBody::Direct(body)), None)
    };
    let mut tried = Tried::default();
    let mut attempt = 0u32;
    let result = loop {
        let Some(t) = upstream.pick(tried) else {
            break Err(UpstreamErrorKind::ConnectFailed);
        };
        tried.insert(t);
        let target = &upstream.targets[t];
        let Some(uri) = forward::upstream_uri(target, route, &original_uri) else {
            return error_response(GatewayError::Internal("cannot build upstream URI"), done);
        };
        let Some(body) = next_body.take() else {
            break Err(UpstreamErrorKind::ConnectFailed);
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
        target.in_flight.fetch_add(1, Ordering::Relaxed);
        done.target = Some(t);
        done.in_flight = true;
        let outcome = tokio::time::timeout_at(deadline, ext.client.request(up_req)).await;
        let kind = match outcome {
            Ok(Ok(resp)) => break Ok(resp),
            Ok(Err(e)) => {
                if let Some(max) = body::too_large(&e) {
                    target.in_flight.fetch_sub(1, Ordering::Relaxed);
                    done.in_flight = false;
                    let reply = switchyard_model::runtime::policy::request_size::too_large(max);
                    return policy_reply(reply, "request-size", proxy, &ex, done);
                }
                UpstreamErrorKind::classify(&e)
            }
            Err(_) => UpstreamErrorKind::Timeout,
        };
        target.in_flight.fetch_sub(1, Ordering::Relaxed);
        done.in_flight = false;
        ext.metrics.upstream_errors[kind.index()].inc();
        tracing::debug!(proxy = %proxy.name, target = %target.url, error = kind.as_str(), "upstream attempt failed");
        attempt += 1;
        if !kind.is_connect() || last_chance {
            break Err(kind);
        }
        next_body = slot.as_ref().and_then(RequestBody::retry);
        if next_body.is_none() {
            break Err(kind);
        }
    };
    match result {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            forward::remove_hop_by_hop(&mut parts.headers);
            proxy.pipeline.on_response(&ex, &mut parts.headers);
            done.status = parts.status.as_u16();
            Response::from_parts(parts, ResponseBody::upstream(body, done))
        }
        Err(kind) => error_response(GatewayError::Upstream(kind), done),
    }
}

/// An answer given by a policy (a denial, a CORS preflight, a mock), with the response
/// phase applied (CORS and `RateLimit-*` headers reach denials too).
fn policy_reply(
    reply: Reply,
    policy: &'static str,
    proxy: &switchyard_model::runtime::Proxy,
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
    let mut resp = Response::new(ResponseBody::full(reply.body, None));
    *resp.status_mut() = reply.status;
    let headers = resp.headers_mut();
    for (name, value) in reply.headers {
        headers.append(name, value);
    }
    proxy.pipeline.on_response(ex, headers);
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, body.with_completion(done))
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
