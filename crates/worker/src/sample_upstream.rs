//! A small upstream for demos and tests: answers every request with its own id, so a
//! client can see which target served it.
//!
//! - `x-upstream-id: <id>` header and a JSON body with id, method, path, received headers
//!   and the number of request-body bytes read.
//! - A request carrying `x-hold: 1` is held until [`Hold::release`] is called (tests use
//!   this to keep a request in flight across a configuration swap, without sleeping).
//! - `?delay_ms=N` delays the answer by N milliseconds (at most 60 s), for demos.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

/// Keeps `x-hold` requests waiting until released.
#[derive(Default)]
pub struct Hold {
    arrived: watch::Sender<usize>,
    release: Notify,
}

impl Hold {
    /// Number of held requests that have arrived so far (a receiver to wait on).
    pub fn arrivals(&self) -> watch::Receiver<usize> {
        self.arrived.subscribe()
    }

    /// Lets every currently held request answer.
    pub fn release(&self) {
        self.release.notify_waiters();
    }
}

/// A running sample upstream.
pub struct SampleUpstream {
    pub addr: SocketAddr,
    pub hold: Arc<Hold>,
}

impl SampleUpstream {
    /// Binds `addr` (use port 0 in tests) and serves in a background task until `stop`
    /// turns true.
    pub async fn start(
        addr: SocketAddr,
        id: &str,
        stop: watch::Receiver<bool>,
    ) -> std::io::Result<SampleUpstream> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let hold = Arc::new(Hold::default());
        tokio::spawn(serve(listener, id.to_string(), hold.clone(), stop));
        Ok(SampleUpstream { addr, hold })
    }
}

async fn serve(
    listener: TcpListener,
    id: String,
    hold: Arc<Hold>,
    mut stop: watch::Receiver<bool>,
) {
    let id: Arc<str> = id.into();
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let (id, hold) = (id.clone(), hold.clone());
                let svc = service_fn(move |req| answer(id.clone(), hold.clone(), req));
                let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = crate::server::stopped(&mut stop) => break,
        }
    }
}

async fn answer(
    id: Arc<str>,
    hold: Arc<Hold>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body_bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    if parts.headers.contains_key("x-hold") {
        let released = hold.release.notified();
        tokio::pin!(released);
        released.as_mut().enable();
        hold.arrived.send_modify(|n| *n += 1);
        released.await;
    }
    let delay = parts
        .uri
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("delay_ms=")))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|ms| Duration::from_millis(ms.min(60_000)));
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    let body = serde_json::json!({
        "upstream": &*id,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body_bytes": body_bytes,
    });
    let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
    bytes.push(b'\n');
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-upstream-id", v);
    }
    // Shows which upstream credential the gateway sent (benches check rotations with it).
    if let Some(auth) = parts.headers.get(http::header::AUTHORIZATION) {
        resp.headers_mut()
            .insert("x-seen-authorization", auth.clone());
    }
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}
