//! `switchyard bench fanout`: a Manager process and many lightweight simulated Workers
//! (real SSE streams, real pulls, real ACKs, no proxying). Propagation versus subscriber
//! count, and the Manager's CPU and bytes sent per change.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use serde::Serialize;
use switchyard_api::admin::{ApplyRequest, CreateToken};
use switchyard_api::records::{ReportStatus, now_millis};
use switchyard_api::sync::ReportBody;
use switchyard_api::{AdminClient, SyncClient};

use crate::BenchError;
use crate::procs::ManagerProcess;
use crate::stats::{Percentiles, percentiles};

#[derive(Debug, Clone)]
pub struct FanoutOptions {
    /// The largest subscriber count; the bench runs 1, 10, 100, … up to it.
    pub subscribers: usize,
    /// Changes measured at each step.
    pub changes: usize,
    pub binary: PathBuf,
    /// The Manager serves plain HTTP (`--insecure-http`) instead of HTTPS: to compare.
    pub insecure_http: bool,
    /// The Manager processes: one on SQLite, or several sharing a database; subscribers
    /// are spread over them and changes applied through the first, so most notifications
    /// cross Managers.
    pub control_plane: crate::ControlPlane,
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
            "propagation: commit → the last subscriber's ACK; p99 is shown from 100 changes on (- below)\n\
             subscribers  changes  propagation p50 / p99 / max (ms)  manager CPU/change  bytes/change  audit\n",
        );
        for st in &self.steps {
            s.push_str(&format!(
                "{:>11}  {:>7}  {:>9.1} / {:>7} / {:>7.1}       {:>10.2} ms  {:>12.0}  {:>5.1}%\n",
                st.subscribers,
                st.changes,
                st.propagation_ms.p50,
                st.propagation_ms.p99_cell(1),
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
    let managers = spawn_managers(&o, dir.path())?;
    let (base, tls) = managers[0].client_settings()?;
    let bases = managers
        .iter()
        .map(|m| m.client_settings().map(|(b, _)| b))
        .collect::<Result<Vec<_>, _>>()?;
    let admin = AdminClient::with_tls(&base, &managers[0].admin_token()?, &tls)?;
    admin.create_env(ENV).await?;
    let created = admin
        .create_token(&CreateToken {
            name: "fanout".into(),
            role: "worker".into(),
            envs: vec![ENV.into()],
            ..CreateToken::default()
        })
        .await?;
    let token: Arc<str> = created.token.into();
    let mut revision = apply(&admin, 0).await?;

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
            let to = &bases[i % bases.len()];
            let client = SyncClient::new(to, &token, ENV, &format!("sim-{step}-{i}"), None, &tls)?;
            let (bytes, stop) = (bytes.clone(), stop.clone());
            subs.push(tokio::spawn(async move {
                tokio::select! {
                    r = subscriber(client, revision, bytes) => r,
                    _ = stop.notified() => Ok(()),
                }
            }));
        }
        wait_connected(&admin, n).await?;
        let cpu_ms = || managers.iter().map(ManagerProcess::cpu_ms).sum::<u64>();
        let cpu_before = cpu_ms();
        let bytes_before = bytes.load(Ordering::Relaxed);
        let mut propagation = Vec::new();
        let mut acked = 0usize;
        for _ in 0..o.changes {
            revision = apply(&admin, revision).await?;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let v = admin.revision(ENV, revision).await?;
                if v.acks >= n || Instant::now() > deadline {
                    acked += v.acks.min(n);
                    if let Some(ms) = v.propagation_ms {
                        propagation.push(ms as f64);
                    }
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let cpu = cpu_ms().saturating_sub(cpu_before);
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
        wait_connected_at_most(&admin, 0).await?;
    }
    drop(managers);
    Ok(FanoutReport { steps })
}

/// The Manager processes: one over SQLite, or `o.managers` on `o.database`, sealing with
/// one key and serving certificates from the first one's CA (so one client setting
/// verifies all).
fn spawn_managers(
    o: &FanoutOptions,
    dir: &std::path::Path,
) -> Result<Vec<ManagerProcess>, BenchError> {
    let Some(url) = &o.control_plane.database else {
        let m = ManagerProcess::spawn(&o.binary, &dir.join("manager"), o.insecure_http)?;
        return Ok(vec![m]);
    };
    let key = "44".repeat(32);
    let flags = ["--database", url.as_str(), "--secret-key", key.as_str()];
    let mut out: Vec<ManagerProcess> = Vec::new();
    for i in 0..o.control_plane.managers.max(1) {
        let data = dir.join(format!("manager-{i}"));
        if let Some(first) = out.first() {
            std::fs::create_dir_all(&data).map_err(|e| BenchError::Setup(e.to_string()))?;
            for f in ["ca.pem", "ca.key", "admin.token"] {
                let from = first.data().join(f);
                if from.exists() {
                    std::fs::copy(&from, data.join(f))
                        .map_err(|e| BenchError::Setup(format!("{}: {e}", from.display())))?;
                }
            }
        }
        let name = format!("bench-{i}");
        let mut extra = flags.to_vec();
        extra.extend(["--name", name.as_str()]);
        out.push(ManagerProcess::spawn_with(
            &o.binary,
            &data,
            o.insecure_http,
            &extra,
        )?);
    }
    Ok(out)
}

/// One simulated Worker: an SSE stream, and on each event a pull and an ACK on its own
/// keep-alive connection (the Worker's own client).
async fn subscriber(
    client: SyncClient,
    mut revision: u64,
    bytes: Arc<AtomicU64>,
) -> Result<(), BenchError> {
    let fail = |e: String| BenchError::Http(format!("subscriber: {e}"));
    let mut body = client.events(revision).await?;
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
        // Pull what changed, then ACK it. (The pull is counted as the JSON it came as.)
        let pulled = client.pull(revision).await?;
        let size = serde_json::to_vec(&pulled).map_or(0, |b| b.len());
        bytes.fetch_add(size as u64, Ordering::Relaxed);
        revision = latest;
        client
            .report(&ReportBody {
                revision,
                status: ReportStatus::Ack,
                error: None,
                applied_at: now_millis(),
                pulled_at: None,
                address: None,
                store_id: None,
                detail: None,
                caught_up_to: None,
            })
            .await?;
    }
    Ok(())
}

async fn apply(admin: &AdminClient, n: u64) -> Result<u64, BenchError> {
    let manifest = format!(
        "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: fanout }}\nspec:\n  routes: [{{ pathPrefix: /fanout }}]\n  upstream:\n    targets: [{{ url: \"http://127.0.0.1:9\" }}]\n  policies:\n    - type: headers\n      response: {{ set: {{ x-release: r{} }} }}\n",
        n + 1
    );
    let applied = admin
        .apply(
            ENV,
            &ApplyRequest {
                manifests: vec![manifest],
                ..ApplyRequest::default()
            },
        )
        .await?;
    Ok(applied.revision)
}

async fn connected(admin: &AdminClient) -> Result<usize, BenchError> {
    Ok(admin
        .workers(ENV)
        .await?
        .iter()
        .filter(|w| w.connected)
        .count())
}

async fn wait_connected(admin: &AdminClient, n: usize) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while connected(admin).await? < n {
        if Instant::now() > deadline {
            return Err(BenchError::Setup(format!(
                "{n} subscribers did not all connect"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn wait_connected_at_most(admin: &AdminClient, n: usize) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while connected(admin).await? > n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
