//! `switchyard bench canary`: what a canary costs and what it saves, on this machine, with
//! a Manager and Worker processes under steady load.
//!
//! - **A bad change**: a proxy pointed at an upstream that refuses connections, applied as
//!   a canary (its share, the default limits): how long until the Manager rolled it back
//!   and every Worker served the stable content again, and how many requests failed. Then
//!   the same change applied without a canary, under the same load, left in place for the
//!   same time (as if someone noticed as fast as the judge) and rolled back: how many
//!   failed.
//! - **CPU**: the Workers' CPU time per request with one generation, and with a 50% canary
//!   live beside it (a response header changed), in alternating rounds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use switchyard_api::admin::{ApplyRequest, RollbackRequest};
use switchyard_api::canary::{CanarySpec, CanaryState, percent};
use switchyard_worker::sample_upstream::SampleUpstream;
use tokio::sync::watch;

use crate::BenchError;
use crate::load::{LoadPlan, Outcome, Sample};
use crate::procs::cpu_ms;
use crate::swap::ControlPlane;
use crate::swap::cluster::BenchCluster;

pub struct CanaryOptions {
    pub workers: usize,
    pub connections: usize,
    /// Each CPU round's length.
    pub duration: Duration,
    pub rounds: usize,
    /// The bad canary's share.
    pub share_ppm: u32,
    pub binary: PathBuf,
}

/// The requests that failed while a bad change was live, one way of applying it.
#[derive(Debug, Clone, Serialize)]
pub struct BadChange {
    /// From the apply to every Worker serving the stable content again.
    pub exposed_ms: u64,
    pub requests: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CanaryReport {
    pub workers: usize,
    pub connections: usize,
    pub share_ppm: u32,
    /// The Manager's reason for the rollback.
    pub reason: String,
    pub with_canary: BadChange,
    pub without_canary: BadChange,
    /// Workers' CPU microseconds per request, each round: one generation, a canary live.
    pub cpu_us_one_generation: Vec<f64>,
    pub cpu_us_with_canary: Vec<f64>,
}

impl CanaryReport {
    pub fn to_text(&self) -> String {
        let pct = |b: &BadChange| 100.0 * b.failed as f64 / b.requests.max(1) as f64;
        let median = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        let (one, two) = (
            median(&self.cpu_us_one_generation),
            median(&self.cpu_us_with_canary),
        );
        let list = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "{} Worker process(es), {} keep-alive connections\n\
             a bad change (a proxy pointed at a refusing upstream):\n\
             \x20 as a {} canary: rolled back by the Manager, every Worker on the stable content {} ms after the apply;\n\
             \x20   {} of {} requests failed ({:.2}%)\n\
             \x20   why: {}\n\
             \x20 without a canary, held as long, then rolled back: {} ms exposed;\n\
             \x20   {} of {} requests failed ({:.2}%)\n\
             Workers' CPU per request (µs), {} rounds each:\n\
             \x20 one generation:        {} (median {one:.1})\n\
             \x20 a 50% canary beside it: {} (median {two:.1}), ratio {:.3}\n",
            self.workers,
            self.connections,
            percent(self.share_ppm),
            self.with_canary.exposed_ms,
            self.with_canary.failed,
            self.with_canary.requests,
            pct(&self.with_canary),
            self.reason,
            self.without_canary.exposed_ms,
            self.without_canary.failed,
            self.without_canary.requests,
            pct(&self.without_canary),
            self.cpu_us_one_generation.len(),
            list(&self.cpu_us_one_generation),
            list(&self.cpu_us_with_canary),
            two / one
        )
    }
}

fn setup(e: impl std::fmt::Display) -> BenchError {
    BenchError::Setup(e.to_string())
}

/// The bench's proxy: `x-release: RELEASE`, to `target`.
fn proxy(release: u32, target: SocketAddr) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: canary-bench }}\nspec:\n  routes:\n    - pathPrefix: /bench\n  upstream:\n    targets:\n      - url: http://{target}\n  policies:\n    - type: headers\n      response:\n        set: {{ x-release: \"{release}\" }}\n"
    )
}

pub async fn run(o: CanaryOptions) -> Result<CanaryReport, BenchError> {
    if o.workers == 0 || o.connections == 0 || o.rounds == 0 {
        return Err(setup(
            "--workers, --connections and --rounds must be at least 1",
        ));
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let up = SampleUpstream::start(([127, 0, 0, 1], 0).into(), "a", stop_rx)
        .await
        .map_err(setup)?;
    // Bound, never listening: connections to it are refused, and no one else takes it.
    let dead = tokio::net::TcpSocket::new_v4().map_err(setup)?;
    dead.bind(([127, 0, 0, 1], 0).into()).map_err(setup)?;
    let dead_addr = dead.local_addr().map_err(setup)?;
    let mut cluster =
        BenchCluster::start(o.workers, &o.binary, None, &ControlPlane::default()).await?;
    let result = drive(&o, &mut cluster, up.addr, dead_addr).await;
    let finished = cluster.finish().await;
    let _ = stop_tx.send(true);
    let report = result?;
    finished?;
    Ok(report)
}

async fn drive(
    o: &CanaryOptions,
    cluster: &mut BenchCluster,
    good: SocketAddr,
    dead: SocketAddr,
) -> Result<CanaryReport, BenchError> {
    let mut release = 1;
    let r1 = cluster.apply(&[proxy(release, good)]).await?;
    cluster.start_workers().await?;
    wait_acked(cluster, r1).await?;

    // CPU per request: one generation, then a 50% canary beside it, alternately.
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for _ in 0..o.rounds {
        one.push(cpu_per_request(o, cluster).await?);
        release += 1;
        let spec = CanarySpec {
            step_secs: 86_400,
            ..CanarySpec::at(500_000)
        };
        let canary = apply_canary(cluster, proxy(release, good), spec).await?;
        wait_acked(cluster, canary).await?;
        two.push(cpu_per_request(o, cluster).await?);
        let aborted = cluster
            .client
            .canary_abort(&cluster.env, &Default::default())
            .await?;
        let back = aborted
            .rollback_revision
            .ok_or_else(|| setup("the aborted canary has no rollback revision"))?;
        wait_acked(cluster, back).await?;
    }

    // The bad change as a canary: the Manager rolls it back.
    let load = Load::start(o, cluster);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let applied_at = load.now();
    let spec = CanarySpec {
        step_secs: 86_400,
        ..CanarySpec::at(o.share_ppm)
    };
    apply_canary(cluster, proxy(release + 1, dead), spec).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let ended = loop {
        if let Some(c) = cluster.client.canary(&cluster.env).await?
            && c.state != CanaryState::Running
        {
            break c;
        }
        if Instant::now() > deadline {
            return Err(setup("the bad canary was not rolled back within 120 s"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let back = ended
        .rollback_revision
        .ok_or_else(|| setup(format!("the bad canary ended {:?}", ended.state)))?;
    wait_acked(cluster, back).await?;
    let recovered_at = load.now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let samples = load.finish().await;
    let with_canary = bad_change(&samples, applied_at, recovered_at);

    // The same change without a canary, live as long, then rolled back.
    let load = Load::start(o, cluster);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cluster.client.env(&cluster.env).await?.revision;
    let applied_at = load.now();
    let bad = cluster.apply(&[proxy(release + 1, dead)]).await?;
    let hold = Duration::from_secs_f64((with_canary.exposed_ms as f64 / 1000.0).max(0.0));
    tokio::time::sleep(hold.saturating_sub(Duration::from_secs_f64(load.now() - applied_at))).await;
    let rolled = cluster
        .client
        .rollback(
            &cluster.env,
            &RollbackRequest {
                to_revision: before,
                expected_revision: Some(bad),
                dry_run: false,
            },
        )
        .await?;
    wait_acked(cluster, rolled.revision).await?;
    let recovered_at = load.now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let samples = load.finish().await;
    let without_canary = bad_change(&samples, applied_at, recovered_at);

    Ok(CanaryReport {
        workers: o.workers,
        connections: o.connections,
        share_ppm: o.share_ppm,
        reason: ended.reason.unwrap_or_default(),
        with_canary,
        without_canary,
        cpu_us_one_generation: one,
        cpu_us_with_canary: two,
    })
}

async fn apply_canary(
    cluster: &BenchCluster,
    manifest: String,
    spec: CanarySpec,
) -> Result<u64, BenchError> {
    let r = cluster
        .client
        .apply(
            &cluster.env,
            &ApplyRequest {
                manifests: vec![manifest],
                canary: Some(spec),
                ..ApplyRequest::default()
            },
        )
        .await?;
    Ok(r.revision)
}

/// Waits until every Worker ACKed `revision`.
async fn wait_acked(cluster: &BenchCluster, revision: u64) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view = cluster.revision(revision).await?;
        if view.acks >= cluster.workers.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(setup(format!(
                "revision {revision}: {} of {} Workers ACKed within 60 s",
                view.acks,
                cluster.workers.len()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Load for `o.duration`: the Workers' CPU microseconds per request answered.
async fn cpu_per_request(o: &CanaryOptions, cluster: &BenchCluster) -> Result<f64, BenchError> {
    let cpu = || {
        cluster
            .workers
            .iter()
            .filter_map(|w| w.pid.and_then(cpu_ms))
            .sum::<u64>()
    };
    let load = Load::start(o, cluster);
    // Connections open and warm before the measured window.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (from, cpu_from) = (load.now(), cpu());
    tokio::time::sleep(o.duration).await;
    let (to, cpu_to) = (load.now(), cpu());
    let samples = load.finish().await;
    let window: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= from && s.at < to)
        .collect();
    let failed = window
        .iter()
        .filter(|s| !matches!(s.outcome, Outcome::Response { status: 200, .. }))
        .count();
    if failed > 0 {
        return Err(BenchError::Http(format!(
            "{failed} of {} requests failed during a CPU round: its numbers would not compare",
            window.len()
        )));
    }
    Ok((cpu_to - cpu_from) as f64 * 1000.0 / window.len().max(1) as f64)
}

/// The requests sent from `from` on (seconds into the load) that were answered before the
/// load stopped, and the failures among them; exposed from `from` to `to`.
fn bad_change(samples: &[Sample], from: f64, to: f64) -> BadChange {
    let after: Vec<&Sample> = samples.iter().filter(|s| s.at >= from).collect();
    BadChange {
        exposed_ms: ((to - from) * 1000.0).round() as u64,
        requests: after.len() as u64,
        failed: after
            .iter()
            .filter(|s| !matches!(s.outcome, Outcome::Response { status: 200, .. }))
            .count() as u64,
    }
}

/// The bench's load on every Worker until finished.
struct Load {
    start: Instant,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Sample>>,
}

impl Load {
    fn start(o: &CanaryOptions, cluster: &BenchCluster) -> Load {
        let plan = LoadPlan {
            targets: cluster.workers.iter().map(|w| w.listen).collect(),
            connections: o.connections,
            new_connections_per_sec: 0.0,
            paths: vec!["/bench".into()],
            host: "bench.test".into(),
            headers: Vec::new(),
        };
        let start = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(crate::load::run(plan, start, stop.clone()));
        Load { start, stop, task }
    }

    /// Seconds since the load started (the samples' clock).
    fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}
