//! The admin listener: `/healthz`, `/readyz`, `/status`, `/metrics`.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use switchyard_telemetry::exposition::Format;

use crate::WorkerHandle;

pub async fn serve(listener: TcpListener, handle: WorkerHandle, mut stop: watch::Receiver<bool>) {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let handle = handle.clone();
                let svc = service_fn(move |req| {
                    let handle = handle.clone();
                    async move {
                        let mut resp = route(&handle, &req);
                        // A draining Worker (handing over, say) ends its admin connections
                        // too: the next call reaches whoever serves the address then.
                        if handle.is_draining() {
                            resp.headers_mut().insert(
                                header::CONNECTION,
                                http::HeaderValue::from_static("close"),
                            );
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = crate::server::stopped(&mut stop) => break,
        }
    }
}

fn route(handle: &WorkerHandle, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() == "/upgrade" {
        return upgrade(handle, req);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if handle.is_draining() => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
        "/readyz" => text(StatusCode::OK, "ready\n"),
        "/status" => {
            let mut body = serde_json::to_vec_pretty(&handle.status()).unwrap_or_default();
            body.push(b'\n');
            with_type(StatusCode::OK, "application/json", body.into())
        }
        "/metrics" => {
            let format = Format::negotiate(
                req.headers()
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok()),
            );
            with_type(
                StatusCode::OK,
                format.content_type(),
                handle.metrics_in(format).into(),
            )
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /readyz, /status, /metrics or POST /upgrade\n",
        ),
    }
}

/// `POST /upgrade`: starts a handover to a successor process (the same binary path: a
/// package upgrade replaces the file). Answers at once; `/status` says how it went (on
/// success the successor answers on this address).
fn upgrade(handle: &WorkerHandle, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n");
    }
    match handle.upgrade() {
        None => text(
            StatusCode::CONFLICT,
            "this Worker cannot hand over (it runs inside another program)\n",
        ),
        Some(hook)
            if hook.request_binary(
                req.headers()
                    .get(crate::handover::UPGRADE_BINARY_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(std::path::PathBuf::from),
            ) =>
        {
            text(
                StatusCode::ACCEPTED,
                "handover started: see /status (upgrade)\n",
            )
        }
        Some(_) => text(StatusCode::CONFLICT, "a handover is already in progress\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    with_type(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

fn with_type(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    resp
}
