//! `switchyard bench fanout`: a Manager process and many lightweight simulated Workers
//! (real SSE streams, real pulls, real ACKs, no proxying). Propagation versus subscriber
//! count, and the Manager's CPU and bytes sent per change.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

use crate::BenchError;
use crate::http::json;
use crate::procs::ManagerProcess;
use crate::stats::{Percentiles, percentiles};

#[derive(Debug, Clone)]
pub struct FanoutOptions {
    /// The largest subscriber count; the bench runs 1, 10, 100, … up to it.
    pub subscribers: usize,
    /// Changes measured at each step.
    pub changes: usize,
    pub binary: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct FanoutStep {
    pub subscribers: usize,
    pub changes: usize,
    /// Commit → the last subscriber's ACK-reported swap.
    pub propagation_ms: Percentiles,
    /// Manager CPU time (user + system) per change.
    pub manager_cpu_ms_per_change: f64,
    /// Bytes the subscribers received from the Manager per change (events, pulls, acks).
    pub bytes_per_change: f64,
    pub audit_completeness: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    pub steps: Vec<FanoutStep>,
}

impl FanoutReport {
    pub fn to_text(&self) -> String {
        let mut s = String::from(
            "subscribers  changes  propagation p50 / p99 / max (ms)  manager CPU/change  bytes/change  audit\n",
        );
        for st in &self.steps {
            s.push_str(&format!(
                "{:>11}  {:>7}  {:>9.1} / {:>7.1} / {:>7.1}       {:>10.2} ms  {:>12.0}  {:>5.1}%\n",
                st.subscribers,
                st.changes,
                st.propagation_ms.p50,
                st.propagation_ms.p99,
                st.propagation_ms.max,
                st.manager_cpu_ms_per_change,
                st.bytes_per_change,
                st.audit_completeness * 100.0
            ));
        }
        s
    }
}

const ENV: &str = "fanout";

pub async fn run(o: FanoutOptions) -> Result<FanoutReport, BenchError> {
    let dir = tempfile::tempdir().map_err(|e| BenchError::Setup(e.to_string()))?;
    let manager = ManagerProcess::spawn(&o.binary, &dir.path().join("manager"))?;
    let addr = manager.listen;
    let admin = manager.admin_token()?;
    json(
        addr,
        Method::POST,
        "/v1/envs",
        &admin,
        Some(&serde_json::json!({ "name": ENV })),
    )
    .await?;
    let created = json(
        addr,
        Method::POST,
        "/v1/tokens",
        &admin,
        Some(&serde_json::json!({ "name": "fanout", "role": "worker", "envs": [ENV] })),
    )
    .await?;
    let token: Arc<str> = created["token"].as_str().unwrap_or_default().into();
    let mut revision = apply(addr, &admin, 0).await?;

    let mut steps = Vec::new();
    let mut counts = vec![1usize];
    while counts.last().is_some_and(|&n| n * 10 <= o.subscribers) {
        let n = counts.last().copied().unwrap_or(1) * 10;
        counts.push(n);
    }
    if counts.last() != Some(&o.subscribers) && o.subscribers > 0 {
        counts.push(o.subscribers);
    }
    let bytes = Arc::new(AtomicU64::new(0));
    for (step, &n) in counts.iter().enumerate() {
        let stop = Arc::new(tokio::sync::Notify::new());
        let mut subs = Vec::with_capacity(n);
        for i in 0..n {
            let (token, bytes, stop) = (token.clone(), bytes.clone(), stop.clone());
            let id = format!("sim-{step}-{i}");
            subs.push(tokio::spawn(async move {
                tokio::select! {
                    r = subscriber(addr, id, token, revision, bytes) => r,
                    _ = stop.notified() => Ok(()),
                }
            }));
        }
        wait_connected(addr, &admin, n).await?;
        let cpu_before = manager.cpu_ms();
        let bytes_before = bytes.load(Ordering::Relaxed);
        let mut propagation = Vec::new();
        let mut acked = 0usize;
        for _ in 0..o.changes {
            revision = apply(addr, &admin, revision).await?;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let v = json(
                    addr,
                    Method::GET,
                    &format!("/v1/envs/{ENV}/revisions/{revision}"),
                    &admin,
                    None,
                )
                .await?;
                let acks = v["acks"].as_u64().unwrap_or(0) as usize;
                if acks >= n || Instant::now() > deadline {
                    acked += acks.min(n);
                    if let Some(ms) = v["propagation_ms"].as_f64() {
                        propagation.push(ms);
                    }
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let cpu = manager.cpu_ms().saturating_sub(cpu_before);
        let sent = bytes.load(Ordering::Relaxed) - bytes_before;
        stop.notify_waiters();
        for s in subs {
            let _ = s.await;
        }
        let changes = o.changes.max(1);
        steps.push(FanoutStep {
            subscribers: n,
            changes: o.changes,
            propagation_ms: percentiles(&mut propagation),
            manager_cpu_ms_per_change: cpu as f64 / changes as f64,
            bytes_per_change: sent as f64 / changes as f64,
            audit_completeness: acked as f64 / (changes * n) as f64,
        });
        wait_connected_at_most(addr, &admin, 0).await?;
    }
    drop(manager);
    Ok(FanoutReport { steps })
}

/// One simulated Worker: an SSE stream, and on each event a pull and an ACK on its own
/// keep-alive connection.
async fn subscriber(
    addr: SocketAddr,
    id: String,
    token: Arc<str>,
    mut revision: u64,
    bytes: Arc<AtomicU64>,
) -> Result<(), BenchError> {
    let fail = |e: String| BenchError::Http(format!("subscriber: {e}"));
    let mut events = connect(addr).await?;
    let req = request(
        Method::GET,
        &format!("/v1/envs/{ENV}/events"),
        &token,
        &id,
        Bytes::new(),
    )
    .map_err(|e| fail(e.to_string()))?;
    let resp = events
        .send_request(req)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut body = resp.into_body();
    let mut api = connect(addr).await?;
    let mut parser = switchyard_worker::sync::sse::SseParser::default();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        let items = parser.push(&data).map_err(|e| fail(e.to_string()))?;
        let latest = items
            .iter()
            .filter_map(|i| match i {
                switchyard_worker::sync::sse::SseItem::Event(e) => {
                    e.id.as_deref()?.parse::<u64>().ok()
                }
                _ => None,
            })
            .max();
        let Some(latest) = latest.filter(|r| *r > revision) else {
            continue;
        };
        // Pull what changed, then ACK it.
        let req = request(
            Method::GET,
            &format!("/v1/envs/{ENV}/sync?since={revision}"),
            &token,
            &id,
            Bytes::new(),
        )
        .map_err(|e| fail(e.to_string()))?;
        api.ready().await.map_err(|e| fail(e.to_string()))?;
        let resp = api
            .send_request(req)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let pulled = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| fail(e.to_string()))?
            .to_bytes();
        bytes.fetch_add(pulled.len() as u64, Ordering::Relaxed);
        revision = latest;
        let report = serde_json::json!({
            "revision": revision, "status": "ack", "error": null,
            "applied_at": now_millis(), "address": null,
        });
        let req = request(
            Method::POST,
            &format!("/v1/envs/{ENV}/reports"),
            &token,
            &id,
            Bytes::from(report.to_string()),
        )
        .map_err(|e| fail(e.to_string()))?;
        api.ready().await.map_err(|e| fail(e.to_string()))?;
        let resp = api
            .send_request(req)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let _ = resp.into_body().collect().await;
    }
    Ok(())
}

fn request(
    method: Method,
    path: &str,
    token: &str,
    id: &str,
    body: Bytes,
) -> http::Result<Request<Full<Bytes>>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", "manager")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header(switchyard_api::sync::WORKER_ID_HEADER, id)
        .body(Full::new(body))
}

async fn connect(addr: SocketAddr) -> Result<http1::SendRequest<Full<Bytes>>, BenchError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| BenchError::Http(format!("connect {addr}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let (send, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| BenchError::Http(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

async fn apply(addr: SocketAddr, admin: &str, n: u64) -> Result<u64, BenchError> {
    let manifest = format!(
        "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: fanout }}\nspec:\n  routes: [{{ pathPrefix: /fanout }}]\n  upstream:\n    targets: [{{ url: \"http://127.0.0.1:9\" }}]\n  policies:\n    - type: headers\n      response: {{ set: {{ x-release: r{} }} }}\n",
        n + 1
    );
    let v = json(
        addr,
        Method::POST,
        &format!("/v1/envs/{ENV}/apply"),
        admin,
        Some(&serde_json::json!({ "manifests": [manifest] })),
    )
    .await?;
    v["revision"]
        .as_u64()
        .ok_or_else(|| BenchError::Http(format!("apply answered without a revision: {v}")))
}

async fn connected(addr: SocketAddr, admin: &str) -> Result<usize, BenchError> {
    let v = json(
        addr,
        Method::GET,
        &format!("/v1/envs/{ENV}/workers"),
        admin,
        None,
    )
    .await?;
    Ok(v.as_array()
        .map(|a| a.iter().filter(|w| w["connected"] == true).count())
        .unwrap_or(0))
}

async fn wait_connected(addr: SocketAddr, admin: &str, n: usize) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while connected(addr, admin).await? < n {
        if Instant::now() > deadline {
            return Err(BenchError::Setup(format!(
                "{n} subscribers did not all connect"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn wait_connected_at_most(addr: SocketAddr, admin: &str, n: usize) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while connected(addr, admin).await? > n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
