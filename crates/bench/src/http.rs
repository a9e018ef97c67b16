//! Small HTTP helpers: JSON calls to the Manager, text from a Worker's admin port.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::BenchError;

/// One request on a fresh connection: (status, body bytes).
pub async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Result<(u16, Bytes), BenchError> {
    let fail = |e: String| BenchError::Http(format!("{method} http://{addr}{path}: {e}"));
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let (mut send, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| fail(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let bytes = match body {
        Some(b) => Bytes::from(serde_json::to_vec(b).map_err(|e| fail(e.to_string()))?),
        None => Bytes::new(),
    };
    let mut req = Request::builder()
        .method(method.clone())
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req
        .body(Full::new(bytes))
        .map_err(|e| fail(e.to_string()))?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| fail(e.to_string()))?
        .to_bytes();
    Ok((status, body))
}

/// A JSON call that must succeed.
pub async fn json(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: &str,
    body: Option<&serde_json::Value>,
) -> Result<serde_json::Value, BenchError> {
    let (status, bytes) = call(addr, method.clone(), path, Some(token), body).await?;
    if !(200..300).contains(&status) {
        return Err(BenchError::Http(format!(
            "{method} {path}: {status}: {}",
            String::from_utf8_lossy(&bytes)
        )));
    }
    serde_json::from_slice(&bytes).map_err(|e| BenchError::Http(format!("{path}: {e}")))
}

/// Reads one unlabelled gauge from a Worker's `/metrics`.
pub async fn gauge(admin: SocketAddr, name: &str) -> Option<f64> {
    let (status, body) = call(admin, Method::GET, "/metrics", None, None)
        .await
        .ok()?;
    if status != 200 {
        return None;
    }
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}
