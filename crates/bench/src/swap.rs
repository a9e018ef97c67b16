//! `switchyard bench swap`: a Manager, N Worker processes and two local upstreams; steady
//! load through every Worker while changes are applied through the real admin API; then
//! the four numbers: dropped requests, propagation, memory, audit completeness.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::Method;
use switchyard_manager::{Manager, ManagerOptions};
use switchyard_worker::sample_upstream::SampleUpstream;
use tokio::sync::watch;

use crate::BenchError;
use crate::http::{gauge, json};
use crate::load::{self, LoadPlan, Outcome, Sample};
use crate::procs::{WorkerProcess, WorkerSpec, rss_kb};
use crate::report::{ConnectionErrors, LatencyReport, StatusClasses, SwapReport, WorkerReport};
use crate::stats::percentiles;

#[derive(Debug, Clone)]
pub struct SwapOptions {
    pub workers: usize,
    pub duration: Duration,
    pub changes_per_sec: f64,
    pub connections: usize,
    pub new_connections_per_sec: f64,
    /// The `switchyard` binary to run Workers with.
    pub binary: PathBuf,
}

const ENV: &str = "bench";

/// The kinds of hot change the bench cycles through. Every change also moves the
/// `x-release` header to the new revision, so each response names its revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChangeKind {
    Header,
    UpstreamSwitch,
    RouteAdd,
    RouteRemove,
    CredentialRotation,
}

impl ChangeKind {
    const CYCLE: [ChangeKind; 5] = [
        ChangeKind::Header,
        ChangeKind::UpstreamSwitch,
        ChangeKind::RouteAdd,
        ChangeKind::RouteRemove,
        ChangeKind::CredentialRotation,
    ];

    fn name(self) -> &'static str {
        match self {
            ChangeKind::Header => "response header",
            ChangeKind::UpstreamSwitch => "upstream target switch",
            ChangeKind::RouteAdd => "route addition",
            ChangeKind::RouteRemove => "route removal",
            ChangeKind::CredentialRotation => "credential rotation",
        }
    }
}

/// The bench proxy at one revision.
#[derive(Debug, Clone, Copy)]
struct Shape {
    revision: u64,
    /// 0 → upstream "a", 1 → upstream "b".
    upstream: usize,
    extra_route: bool,
    /// Bumped by each credential rotation.
    credential: u64,
}

/// The bench's manifests at one revision: the proxy and the credential it rotates.
fn manifests(shape: Shape, upstreams: &[SocketAddr; 2]) -> [String; 2] {
    [
        proxy_manifest(shape, upstreams),
        format!(
            "apiVersion: switchyard.dev/v1\nkind: Credential\nmetadata: {{ name: bench-upstream-key }}\nspec:\n  type: secret\n  value: \"bench-secret-{}\"\n",
            shape.credential
        ),
    ]
}

fn proxy_manifest(shape: Shape, upstreams: &[SocketAddr; 2]) -> String {
    let extra = if shape.extra_route {
        "\n    - pathPrefix: /extra"
    } else {
        ""
    };
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: bench, labels: {{ owner: bench }} }}\nspec:\n  routes:\n    - pathPrefix: /bench{extra}\n  upstream:\n    targets:\n      - url: http://{}\n  policies:\n    - type: headers\n      response:\n        set: {{ x-release: r{} }}\n",
        upstreams[shape.upstream], shape.revision
    )
}

struct Change {
    revision: u64,
    kind: ChangeKind,
    /// Seconds since start when the change was sent.
    sent_at: f64,
}

pub async fn run(o: SwapOptions) -> Result<SwapReport, BenchError> {
    if o.workers == 0 || o.connections == 0 {
        return Err(BenchError::Setup(
            "--workers and --connections must be at least 1".into(),
        ));
    }
    let dir = tempfile::tempdir().map_err(|e| BenchError::Setup(e.to_string()))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let up_a = SampleUpstream::start(local0(), "a", stop_rx.clone())
        .await
        .map_err(setup)?;
    let up_b = SampleUpstream::start(local0(), "b", stop_rx.clone())
        .await
        .map_err(setup)?;
    let upstreams = [up_a.addr, up_b.addr];

    // The Manager, in this process, with its embedded store.
    let manager = Manager::open(ManagerOptions::new(dir.path().join("manager")))
        .await
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let admin_token =
        std::fs::read_to_string(dir.path().join("manager/admin.token")).map_err(setup)?;
    let admin_token = admin_token.trim().to_string();
    let listener = tokio::net::TcpListener::bind(local0())
        .await
        .map_err(setup)?;
    let maddr = listener.local_addr().map_err(setup)?;
    let mut mstop = stop_rx.clone();
    let manager_task = tokio::spawn(manager.serve(listener, async move {
        let _ = mstop.wait_for(|s| *s).await;
    }));
    json(
        maddr,
        Method::POST,
        "/v1/envs",
        &admin_token,
        Some(&serde_json::json!({ "name": ENV })),
    )
    .await?;
    let token = json(
        maddr,
        Method::POST,
        "/v1/tokens",
        &admin_token,
        Some(&serde_json::json!({ "name": "bench-workers", "role": "worker", "envs": [ENV] })),
    )
    .await?;
    let worker_token = token["token"].as_str().unwrap_or_default().to_string();

    let mut shape = Shape {
        revision: 1,
        upstream: 0,
        extra_route: false,
        credential: 1,
    };
    let first = apply(maddr, &admin_token, shape, &upstreams).await?;
    if first != 1 {
        return Err(BenchError::Setup(format!(
            "expected revision 1, got {first}"
        )));
    }

    let manager_url = format!("http://{maddr}");
    let mut workers = Vec::new();
    for i in 0..o.workers {
        let cache = dir.path().join(format!("worker-{}", i + 1));
        workers.push(WorkerProcess::spawn(WorkerSpec {
            binary: &o.binary,
            manager: &manager_url,
            env: ENV,
            token: &worker_token,
            id: format!("bench-w{}", i + 1),
            cache_dir: &cache,
        })?);
    }
    wait_connected(maddr, &admin_token, o.workers).await?;

    let rss_start: Vec<u64> = workers.iter().map(|w| w.rss_kb().unwrap_or(0)).collect();
    let pids: Vec<u32> = workers.iter().map(|w| w.child.id()).collect();
    let peaks = Arc::new(std::sync::Mutex::new(rss_start.clone()));
    let sampling = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peaks, sampling, pids) = (peaks.clone(), sampling.clone(), pids.clone());
        tokio::spawn(async move {
            while !sampling.load(Ordering::Relaxed) {
                for (i, pid) in pids.iter().enumerate() {
                    if let Some(kb) = rss_kb(*pid) {
                        let mut p = peaks
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        p[i] = p[i].max(kb);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // Load through every Worker.
    let start = Instant::now();
    let stop_load = Arc::new(AtomicBool::new(false));
    let plan = LoadPlan {
        targets: workers.iter().map(|w| w.listen).collect(),
        connections: o.connections,
        new_connections_per_sec: o.new_connections_per_sec,
        path: "/bench/item".into(),
        host: "bench.test".into(),
    };
    let load_task = tokio::spawn(load::run(plan, start, stop_load.clone()));

    // Changes at the requested rate, leaving a quiet second at both ends.
    let mut changes = Vec::new();
    let mut rss_after_100: Vec<Option<u64>> = vec![None; workers.len()];
    let interval = Duration::from_secs_f64(1.0 / o.changes_per_sec.max(0.01));
    let quiet = Duration::from_secs(1).min(o.duration / 4);
    tokio::time::sleep(quiet).await;
    let mut next = Instant::now();
    let mut k = 0usize;
    while start.elapsed() + quiet < o.duration {
        tokio::time::sleep_until(next.into()).await;
        next += interval;
        let kind = ChangeKind::CYCLE[k % ChangeKind::CYCLE.len()];
        k += 1;
        shape.revision += 1;
        match kind {
            ChangeKind::Header => {}
            ChangeKind::UpstreamSwitch => shape.upstream ^= 1,
            ChangeKind::RouteAdd => shape.extra_route = true,
            ChangeKind::RouteRemove => shape.extra_route = false,
            ChangeKind::CredentialRotation => shape.credential += 1,
        }
        let sent_at = start.elapsed().as_secs_f64();
        let got = apply(maddr, &admin_token, shape, &upstreams).await?;
        if got != shape.revision {
            return Err(BenchError::Setup(format!(
                "the environment moved under the bench (expected revision {}, got {got}); is something else writing to it?",
                shape.revision
            )));
        }
        changes.push((
            Change {
                revision: shape.revision,
                kind,
                sent_at,
            },
            shape.upstream,
        ));
        if changes.len() == 100 {
            rss_after_100 = workers.iter().map(WorkerProcess::rss_kb).collect();
        }
    }
    tokio::time::sleep_until((start + o.duration).into()).await;
    stop_load.store(true, Ordering::Relaxed);
    let samples = load_task
        .await
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let duration_s = start.elapsed().as_secs_f64();

    // Let the last ACKs arrive, then read propagation and completeness from the Manager.
    let last = shape.revision;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = json(
            maddr,
            Method::GET,
            &format!("/v1/envs/{ENV}/revisions/{last}"),
            &admin_token,
            None,
        )
        .await?;
        if v["acks"].as_u64().unwrap_or(0) >= o.workers as u64 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut propagation = Vec::new();
    let mut acked = 0u64;
    for (c, _) in &changes {
        let v = json(
            maddr,
            Method::GET,
            &format!("/v1/envs/{ENV}/revisions/{}", c.revision),
            &admin_token,
            None,
        )
        .await?;
        let acks = v["reports"]
            .as_array()
            .map(|r| r.iter().filter(|r| r["status"] == "ack").count())
            .unwrap_or(0);
        acked += (acks as u64).min(o.workers as u64);
        if let Some(ms) = v["propagation_ms"].as_f64() {
            propagation.push(ms);
        }
    }

    // Generations return to 1 once traffic has drained.
    let mut generations = Vec::new();
    for w in &workers {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut g = gauge(w.admin, "switchyard_snapshot_generations_live").await;
        while g.is_some_and(|g| g > 1.0) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            g = gauge(w.admin, "switchyard_snapshot_generations_live").await;
        }
        generations.push(g);
    }
    let mut alloc = Vec::new();
    for w in &workers {
        let sum = gauge(w.admin, "switchyard_swap_allocated_bytes_sum").await;
        let count = gauge(w.admin, "switchyard_swap_allocated_bytes_count").await;
        alloc.push(match (sum, count) {
            (Some(s), Some(c)) if c > 0.0 => Some(s / c),
            _ => None,
        });
    }
    sampling.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let peaks = peaks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let rss_end: Vec<u64> = workers.iter().map(|w| w.rss_kb().unwrap_or(0)).collect();

    let report = analyse(
        &samples,
        &changes,
        &o,
        Analysis {
            propagation,
            acked,
            duration_s,
            workers: workers
                .iter()
                .enumerate()
                .map(|(i, w)| WorkerReport {
                    id: w.id.clone(),
                    rss_start_kb: rss_start[i],
                    rss_peak_kb: peaks[i].max(rss_end[i]),
                    rss_end_kb: rss_end[i],
                    rss_after_100_swaps_kb: rss_after_100[i],
                    live_generations_end: generations[i],
                    alloc_bytes_per_swap: alloc[i],
                    requests: 0,
                })
                .collect(),
        },
    );

    for w in &mut workers {
        w.stop();
    }
    let _ = stop_tx.send(true);
    let _ = manager_task.await;
    Ok(report)
}

struct Analysis {
    propagation: Vec<f64>,
    acked: u64,
    duration_s: f64,
    workers: Vec<WorkerReport>,
}

fn analyse(
    samples: &[Sample],
    changes: &[(Change, usize)],
    o: &SwapOptions,
    a: Analysis,
) -> SwapReport {
    let mut classes = StatusClasses::default();
    let mut errors = ConnectionErrors::default();
    let mut dropped = 0u64;
    let mut mixed = 0u64;
    let mut workers = a.workers;
    // revision → expected upstream id byte
    let mut expected: HashMap<u64, u8> = HashMap::new();
    expected.insert(1, b'a');
    for (c, up) in changes {
        expected.insert(c.revision, if *up == 0 { b'a' } else { b'b' });
    }
    // (revision, worker) → first time seen
    let mut first_seen: HashMap<(u64, u16), f64> = HashMap::new();
    let mut around = Vec::new();
    let mut between = Vec::new();
    let sends: Vec<f64> = changes.iter().map(|(c, _)| c.sent_at).collect();
    for s in samples {
        if let Some(w) = workers.get_mut(usize::from(s.worker)) {
            w.requests += 1;
        }
        match s.outcome {
            Outcome::Response {
                status,
                revision,
                upstream,
            } => {
                match status / 100 {
                    2 => classes.s2xx += 1,
                    3 => classes.s3xx += 1,
                    4 => classes.s4xx += 1,
                    _ => classes.s5xx += 1,
                }
                if status != 200 || revision == 0 {
                    dropped += 1;
                } else if expected.get(&revision) != Some(&upstream) {
                    mixed += 1;
                } else {
                    let e = first_seen.entry((revision, s.worker)).or_insert(f64::MAX);
                    *e = e.min(s.at + f64::from(s.latency_ms) / 1000.0);
                }
            }
            Outcome::Refused => {
                errors.refused += 1;
                dropped += 1;
            }
            Outcome::Reset => {
                errors.reset += 1;
                dropped += 1;
            }
            Outcome::Timeout => {
                errors.timeout += 1;
                dropped += 1;
            }
            Outcome::Other => {
                errors.other += 1;
                dropped += 1;
            }
        }
        let near = sends
            .partition_point(|t| *t <= s.at)
            .checked_sub(1)
            .is_some_and(|i| s.at - sends[i] <= 1.0);
        if near {
            around.push(f64::from(s.latency_ms));
        } else {
            between.push(f64::from(s.latency_ms));
        }
    }
    let mut first_response = Vec::new();
    for (c, _) in changes {
        for w in 0..o.workers {
            if let Some(t) = first_seen.get(&(c.revision, u16::try_from(w).unwrap_or(u16::MAX))) {
                first_response.push(((t - c.sent_at) * 1000.0).max(0.0));
            }
        }
    }
    let mut by_kind: Vec<(String, u64)> = ChangeKind::CYCLE
        .iter()
        .map(|k| {
            (
                k.name().to_string(),
                changes.iter().filter(|(c, _)| c.kind == *k).count() as u64,
            )
        })
        .collect();
    by_kind.retain(|(_, n)| *n > 0);
    let expected_acks = (changes.len() * o.workers) as u64;
    let audit_completeness = if expected_acks == 0 {
        1.0
    } else {
        a.acked as f64 / expected_acks as f64
    };
    let mut propagation = a.propagation;
    let passed = dropped == 0
        && mixed == 0
        && (audit_completeness - 1.0).abs() < f64::EPSILON
        && workers.iter().all(|w| w.live_generations_end == Some(1.0));
    SwapReport {
        requests: samples.len() as u64,
        responses: classes,
        connection_errors: errors,
        dropped_requests: dropped,
        mixed_version_responses: mixed,
        audit_completeness,
        propagation_ms: percentiles(&mut propagation),
        first_response_ms: percentiles(&mut first_response),
        swaps: changes.len() as u64,
        changes_by_kind: by_kind,
        workers,
        latency_ms: LatencyReport {
            around_swaps: percentiles(&mut around),
            between_swaps: percentiles(&mut between),
        },
        duration_s: a.duration_s,
        passed,
    }
}

async fn apply(
    manager: SocketAddr,
    token: &str,
    shape: Shape,
    upstreams: &[SocketAddr; 2],
) -> Result<u64, BenchError> {
    let v = json(
        manager,
        Method::POST,
        &format!("/v1/envs/{ENV}/apply"),
        token,
        Some(&serde_json::json!({ "manifests": manifests(shape, upstreams) })),
    )
    .await?;
    v["revision"]
        .as_u64()
        .ok_or_else(|| BenchError::Http(format!("apply answered without a revision: {v}")))
}

async fn wait_connected(manager: SocketAddr, token: &str, n: usize) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = json(
            manager,
            Method::GET,
            &format!("/v1/envs/{ENV}/workers"),
            token,
            None,
        )
        .await?;
        let connected = v
            .as_array()
            .map(|a| a.iter().filter(|w| w["connected"] == true).count())
            .unwrap_or(0);
        if connected >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(BenchError::Setup(format!(
                "only {connected} of {n} Workers connected"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn local0() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn setup(e: impl std::fmt::Display) -> BenchError {
    BenchError::Setup(e.to_string())
}
