//! The request path: one snapshot load, route, pipeline, upstream, response.

mod age;
mod attempts;
pub mod body;
pub mod completion;
pub mod error;
pub mod forward;
pub mod policies;
mod target;
mod upgrade;

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;
use switchyard_config::manifest::RequestSizeSpec;
use switchyard_engine::runtime::error_format::{grpc_message, grpc_status, grpc_timeout, is_grpc};
use switchyard_engine::runtime::path::normalize;
use switchyard_engine::runtime::policy::{Exchange, Reply, request_size};
use switchyard_engine::runtime::{ErrorBody, ErrorFormat, remove_hop_by_hop};

use self::body::{ClientStream, ResponseBody};
use self::completion::Completion;
use self::error::{ErrorSource, GatewayError};
use crate::connections::ActiveRequest;
use crate::runtime::Proxy;
use crate::server::ConnCtx;
use switchyard_telemetry::trace_context::{self, request_id};

/// Handles one request. The configuration generation is loaded once, here, and everything
/// the request does (route, policies, targets, timeouts, retries) comes from it; the
/// response body keeps it alive until the last byte is sent, and `active` keeps the
/// connection counted as busy until then. Once the Worker is draining, HTTP/1 responses
/// carry `Connection: close`, so keep-alive clients move elsewhere.
pub(crate) async fn handle(
    conn: &ConnCtx,
    active: ActiveRequest,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let http1 = req.version() < Version::HTTP_2;
    // Kept when the client's is well-formed (no copy), generated otherwise; every response
    // carries it, the gateway's own answers included.
    let request_id = request_id(req.headers());
    // The one load of the current generation; a canary beside it is chosen or not here,
    // once: the request runs wholly on the generation it is given.
    let runtime = conn
        .current
        .load_full()
        .assign(req.headers(), conn.remote.ip());
    // `spec.gateway.revisionHeader`: which revision answered (the canary's or the stable's).
    let revision = runtime
        .snapshot
        .gateway()
        .revision_header
        .clone()
        .map(|name| (name, http::HeaderValue::from(runtime.snapshot.revision)));
    let mut resp = proxy(conn, runtime, active, req, request_id.clone()).await;
    resp.headers_mut().insert(X_REQUEST_ID, request_id);
    if let Some((name, value)) = revision {
        resp.headers_mut().insert(name, value);
    }
    if http1
        && conn.draining.load(Ordering::Relaxed)
        && resp.status() != StatusCode::SWITCHING_PROTOCOLS
    {
        resp.headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    Ok(resp)
}

/// The request id header.
const X_REQUEST_ID: header::HeaderName =
    header::HeaderName::from_static(trace_context::X_REQUEST_ID);
const TRACEPARENT: header::HeaderName = header::HeaderName::from_static(trace_context::TRACEPARENT);
const TRACESTATE: header::HeaderName = header::HeaderName::from_static(trace_context::TRACESTATE);

async fn proxy(
    conn: &ConnCtx,
    runtime: std::sync::Arc<crate::runtime::Runtime>,
    active: ActiveRequest,
    req: Request<Incoming>,
    request_id: http::HeaderValue,
) -> Response<ResponseBody> {
    let ConnCtx {
        remote,
        client,
        lane,
        tls,
        client_cert,
        ..
    } = conn;
    let remote = *remote;
    let started = Instant::now();
    let trace = runtime.obs.tracing.as_ref().map(|t| t.begin(req.headers()));
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
        active,
        request_id,
        trace,
    );
    let rt = done.runtime.clone();
    let gateway = rt.snapshot.gateway();
    let (mut parts, body) = req.into_parts();
    done.grpc = is_grpc(parts.headers.get(header::CONTENT_TYPE));
    let (normal, redirect_to) = match normalize(parts.uri.path(), gateway.paths) {
        Ok(n) => match n.path {
            Cow::Owned(p) => (Some(p), n.redirect),
            Cow::Borrowed(_) => (None, false),
        },
        Err(e) => {
            let e = GatewayError::BadRequest {
                code: e.code(),
                message: e.message(),
            };
            return error_response(e, None, done);
        }
    };
    if let Some(p) = normal {
        let Some(uri) = target::with_path(&parts.uri, &p) else {
            return error_response(GatewayError::Internal("cannot rebuild the URI"), None, done);
        };
        parts.uri = uri;
    }
    let host = match target::request_host(&parts) {
        Ok(h) => h,
        Err(e) => return error_response(e, None, done),
    };
    if redirect_to {
        return redirect(&parts.uri, done);
    }
    let Some((m, proxy, route)) = rt.snapshot.route(host, parts.uri.path(), &parts.method) else {
        return error_response(GatewayError::NoRoute, None, done);
    };
    done.proxy = Some(proxy.clone());
    done.route = Some(m.route);
    if proxy.https_redirect && !*tls {
        return https_redirect(host, &parts.uri, done);
    }
    let ext = rt.ext(proxy);
    let upstream = &proxy.upstream;

    let websocket = upgrade::take(&mut parts);
    let method = parts.method;
    let mut original_uri = parts.uri;
    let mut headers = parts.headers;
    remove_hop_by_hop(&mut headers);
    forward::set_forwarded(&mut headers, client, *tls, done.host.as_ref());
    headers.insert(X_REQUEST_ID, done.request_id.clone());
    // Tracing on: the upstream's parent is this request's span. A trace started here (no
    // valid `traceparent` came) does not carry the caller's `tracestate` on; a continued
    // one carries it unchanged. Tracing off: both go through untouched.
    if let Some(t) = &done.trace {
        headers.insert(TRACEPARENT, t.traceparent().header_value());
        if t.parent.is_none() {
            headers.remove(TRACESTATE);
        }
    }

    // Timeouts are bounded when compiled; `checked_add` keeps even a bad value from panicking.
    let now = tokio::time::Instant::now();
    let mut deadline = now
        .checked_add(upstream.request_timeout)
        .unwrap_or(now + std::time::Duration::from_secs(86_400));
    // A gRPC call's own deadline, when sooner than the route's timeout.
    if done.grpc
        && let Some(t) = grpc_timeout(headers.get("grpc-timeout"))
        && let Some(d) = now.checked_add(t)
    {
        deadline = deadline.min(d);
    }

    let mut ex = Exchange::default();
    let phase = policies::request_phase(
        &proxy.pipeline,
        policies::RequestParts {
            method: &method,
            uri: &mut original_uri,
            headers: &mut headers,
            peer: remote.ip(),
            client_cert: client_cert.as_ref(),
        },
        ClientStream::new(
            body,
            conn.request_body_idle
                .unwrap_or(gateway.timeouts.request_body_idle),
        ),
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
    if let Some(client) = websocket {
        let key = upstream.hash_key(&headers, ex.client_ip(remote.ip()));
        let up = upgrade::Upgrade {
            proxy,
            ext,
            route,
            uri: &original_uri,
            headers,
            key,
            deadline,
            client,
            conn: conn.state.clone(),
        };
        return upgrade::forward(up, &ex, done).await;
    }
    let out = attempts::Outbound {
        proxy,
        ext,
        route,
        key: upstream.hash_key(&headers, ex.client_ip(remote.ip())),
        method,
        uri: &original_uri,
        headers,
        deadline,
        lane: *lane,
    };
    let failed = match attempts::send(out, body, &mut done).await {
        attempts::Sent::Response(resp, lease) => {
            let (mut parts, body) = resp.into_parts();
            remove_hop_by_hop(&mut parts.headers);
            proxy.pipeline.on_response(&ex, &mut parts.headers);
            done.status = parts.status.as_u16();
            let idle = gateway.timeouts.upstream_body_idle;
            let body = ResponseBody::upstream(body, lease, idle, done);
            return Response::from_parts(parts, body);
        }
        attempts::Sent::Failed(kind) => GatewayError::Upstream(kind),
        attempts::Sent::Overloaded => GatewayError::Overloaded,
        attempts::Sent::TooLarge(max) => {
            let reply = request_size::too_large(max);
            return policy_reply(reply, RequestSizeSpec::TYPE, proxy, &ex, done);
        }
        attempts::Sent::Internal(what) => GatewayError::Internal(what),
        attempts::Sent::ClientBody(e) => GatewayError::ClientBody(e),
    };
    error_response(failed, Some((proxy, &ex)), done)
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
    let mut body = reply.body;
    let denied = reply.status.as_u16() >= 400;
    if denied {
        done.failed(reply.status.as_u16(), reply.code, ErrorSource::Policy);
        done.runtime.obs.metrics.policy_denial(
            &proxy.name,
            policy,
            reply.code,
            reply.detail.as_deref(),
        );
    }
    let mut resp = if denied && done.grpc {
        let message = reply.message.as_deref().unwrap_or("denied by a policy");
        grpc_error(reply.status, reply.code, message, done)
    } else {
        if let (true, ErrorFormat::OpenAi, Some(message)) = (denied, proxy.errors, &reply.message) {
            body = ErrorBody {
                status: reply.status,
                code: reply.code,
                message,
                source: ErrorSource::Policy.as_str(),
                policy: Some(policy),
            }
            .render(proxy.errors);
        }
        let mut resp = Response::new(ResponseBody::full(body, Some(done)));
        *resp.status_mut() = reply.status;
        resp
    };
    let headers = resp.headers_mut();
    for (name, value) in reply.headers {
        headers.append(name, value);
    }
    proxy.pipeline.on_response(ex, headers);
    resp
}

/// A gateway error; on a proxy's route (`Some`), in the proxy's error format and with its
/// response phase applied.
fn error_response(
    err: GatewayError,
    on: Option<(&Proxy, &Exchange)>,
    mut done: Completion,
) -> Response<ResponseBody> {
    done.failed(err.status().as_u16(), err.code(), err.source());
    if done.grpc {
        let mut resp = grpc_error(err.status(), err.code(), &err.to_string(), done);
        if let Some((proxy, ex)) = on {
            proxy.pipeline.on_response(ex, resp.headers_mut());
        }
        return resp;
    }
    let format = on.map_or(ErrorFormat::Switchyard, |(p, _)| p.errors);
    let body = err.body(format);
    let mut resp = Response::new(ResponseBody::full(body, Some(done)));
    *resp.status_mut() = err.status();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Some((proxy, ex)) = on {
        proxy.pipeline.on_response(ex, headers);
    }
    resp
}

/// A gateway error or denial answered to a gRPC client: HTTP 200 with `grpc-status` and
/// `grpc-message` in a trailers-only response (the headers end the stream), what every gRPC
/// client reads. (`done` has already recorded the HTTP status for logs and metrics.)
fn grpc_error(
    status: StatusCode,
    code: &str,
    message: &str,
    done: Completion,
) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full(Bytes::new(), Some(done)));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    headers.insert(
        "grpc-status",
        http::HeaderValue::from(u16::from(grpc_status(status))),
    );
    headers.insert("grpc-message", grpc_message(code, message));
    resp
}

/// `encodedSlashes: decode-and-redirect`: the client is sent to the normalised path.
/// `308` to the same path and query over `https://` on the default port: the host's name
/// without the port the plain listener had (`spec.httpsRedirect`).
fn https_redirect(
    host: Option<&str>,
    uri: &http::Uri,
    mut done: Completion,
) -> Response<ResponseBody> {
    let Some(host) = host else {
        let e = GatewayError::BadRequest {
            code: "missing_host",
            message: "an https redirect needs the request's Host",
        };
        return error_response(e, None, done);
    };
    let name = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    };
    let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let location = http::HeaderValue::from_str(&format!("https://{name}{pq}")).ok();
    done.status = StatusCode::PERMANENT_REDIRECT.as_u16();
    let mut resp = Response::new(ResponseBody::full(Bytes::new(), Some(done)));
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Some(l) = location {
        resp.headers_mut().insert(header::LOCATION, l);
    }
    resp
}

fn redirect(uri: &http::Uri, mut done: Completion) -> Response<ResponseBody> {
    done.status = StatusCode::TEMPORARY_REDIRECT.as_u16();
    let location = uri
        .path_and_query()
        .and_then(|pq| http::HeaderValue::from_str(pq.as_str()).ok());
    let mut resp = Response::new(ResponseBody::full(Bytes::new(), Some(done)));
    *resp.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    if let Some(l) = location {
        resp.headers_mut().insert(header::LOCATION, l);
    }
    resp
}
