//! The request path: one snapshot load, route, pipeline, upstream, response.

mod attempts;
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
use switchyard_engine::runtime::policy::{Exchange, Reply, request_size};
use switchyard_engine::runtime::remove_hop_by_hop;

use self::body::ResponseBody;
use self::completion::Completion;
use self::error::GatewayError;
use crate::runtime::{Proxy, Runtime};

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
    let out = attempts::Outbound {
        proxy,
        ext,
        route,
        key: upstream.hash_key(&headers, ex.client_ip(remote.ip())),
        method,
        uri: &original_uri,
        headers,
        deadline,
    };
    match attempts::send(out, body, &mut done).await {
        attempts::Sent::Response(resp) => {
            let (mut parts, body) = resp.into_parts();
            remove_hop_by_hop(&mut parts.headers);
            proxy.pipeline.on_response(&ex, &mut parts.headers);
            done.status = parts.status.as_u16();
            Response::from_parts(parts, ResponseBody::upstream(body, done))
        }
        attempts::Sent::Failed(kind) => error_response(GatewayError::Upstream(kind), done),
        attempts::Sent::Overloaded => error_response(GatewayError::Overloaded, done),
        attempts::Sent::TooLarge(max) => {
            let reply = request_size::too_large(max);
            policy_reply(reply, RequestSizeSpec::TYPE, proxy, &ex, done)
        }
        attempts::Sent::Internal(what) => error_response(GatewayError::Internal(what), done),
    }
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
