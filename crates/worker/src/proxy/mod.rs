//! The request path: one snapshot load, route, pipeline, upstream, response.

pub mod body;
pub mod completion;
pub mod error;
pub mod forward;

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
    let Some(ext) = rt.ext(proxy) else {
        return error_response(GatewayError::Internal("proxy without its attachment"), done);
    };
    let upstream = &proxy.upstream;

    let (parts, body) = req.into_parts();
    let method = parts.method;
    let original_uri = parts.uri;
    let mut headers = parts.headers;
    forward::remove_hop_by_hop(&mut headers);
    forward::set_forwarded(&mut headers, client, done.host.as_ref());
    proxy.pipeline.on_request(&mut headers);

    // Timeouts are bounded when compiled; `checked_add` keeps even a bad value from panicking.
    let now = tokio::time::Instant::now();
    let deadline = now
        .checked_add(upstream.request_timeout)
        .unwrap_or(now + std::time::Duration::from_secs(86_400));
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
            Ok(Err(e)) => UpstreamErrorKind::classify(&e),
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
            proxy.pipeline.on_response(&mut parts.headers);
            done.status = parts.status.as_u16();
            Response::from_parts(parts, ResponseBody::upstream(body, done))
        }
        Err(kind) => error_response(GatewayError::Upstream(kind), done),
    }
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
