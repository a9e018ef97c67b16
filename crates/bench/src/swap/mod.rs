//! `switchyard bench swap`: steady load through every Worker while changes are applied
//! through the real admin API; then the four numbers (dropped requests, propagation,
//! memory, audit completeness) and the checks behind PASS: what each Worker was seen to
//! serve, each kind of change seen in responses, each Worker's ACKs and swap counter (see
//! `analyse`). Against a cluster of its own (a Manager in this process, N Worker processes)
//! or an existing one (`--manager URL --env E --targets URL,…`). `--cut-worker N` cuts one
//! of its own Workers off the Manager halfway, to show that the verdict then fails.

mod analyse;
mod changes;
pub(crate) mod cluster;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use switchyard_api::records::ReportStatus;

use switchyard_worker::sample_upstream::SampleUpstream;
use tokio::sync::watch;

use crate::BenchError;
use crate::http::gauge;
use crate::load::{self, LoadPlan};
use crate::report::{SwapReport, WorkerReport};
use analyse::{Analysis, Change, RevisionAcks, analyse};
use changes::{ChangeKind, Shape, authority, manifests};
use cluster::{BenchCluster, BenchWorker};
pub use cluster::{ControlPlane, ExistingCluster};

#[derive(Debug, Clone)]
pub struct SwapOptions {
    /// Workers to start (ignored with `existing`).
    pub workers: usize,
    pub duration: Duration,
    pub changes_per_sec: f64,
    pub connections: usize,
    pub new_connections_per_sec: f64,
    /// The `switchyard` binary to run Workers with.
    pub binary: PathBuf,
    /// Measure this cluster instead of starting one.
    pub existing: Option<ExistingCluster>,
    /// Fault injection (own cluster only): cut this Worker (1-based) off the Manager
    /// halfway through the run. The run must then FAIL, naming it.
    pub cut_worker: Option<usize>,
    /// The bench's own Managers: one on SQLite, or several sharing a database.
    pub control_plane: cluster::ControlPlane,
}

pub async fn run(o: SwapOptions) -> Result<SwapReport, BenchError> {
    if o.connections == 0 || (o.existing.is_none() && o.workers == 0) {
        return Err(BenchError::Setup(
            "--workers and --connections must be at least 1".into(),
        ));
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let (bind, advertised) = match &o.existing {
        Some(x) => {
            let host = match &x.upstream_host {
                Some(h) => h.clone(),
                None if x.upstream_bind.is_unspecified() => {
                    return Err(BenchError::Setup(
                        "--upstream-bind is a wildcard address: name the address Workers reach this machine by with --upstream-host".into(),
                    ));
                }
                None => x.upstream_bind.to_string(),
            };
            (x.upstream_bind, host)
        }
        None => ([127, 0, 0, 1].into(), "127.0.0.1".to_string()),
    };
    let up_a = SampleUpstream::start(SocketAddr::new(bind, 0), "a", stop_rx.clone())
        .await
        .map_err(setup)?;
    let up_b = SampleUpstream::start(SocketAddr::new(bind, 0), "b", stop_rx.clone())
        .await
        .map_err(setup)?;
    let upstreams = [
        authority(&advertised, up_a.addr),
        authority(&advertised, up_b.addr),
    ];

    let mut cluster = match &o.existing {
        Some(_) if o.cut_worker.is_some() => {
            return Err(BenchError::Setup(
                "--cut-worker works on the bench's own cluster only (without --manager)".into(),
            ));
        }
        Some(x) => BenchCluster::existing(x).await?,
        None => BenchCluster::start(o.workers, &o.binary, o.cut_worker, &o.control_plane).await?,
    };
    let result = drive(&o, &mut cluster, &upstreams).await;
    let finished = cluster.finish().await;
    let _ = stop_tx.send(true);
    let report = result?;
    finished?;
    Ok(report)
}

/// The measured part: first apply, Workers, load, changes, then the Manager's records.
async fn drive(
    o: &SwapOptions,
    cluster: &mut BenchCluster,
    upstreams: &[String; 2],
) -> Result<SwapReport, BenchError> {
    let mut shape = Shape::initial();
    let first = cluster
        .apply(&manifests(&cluster.names, shape, upstreams))
        .await?;
    let mut changes = vec![Change {
        seq: shape.seq,
        revision: first,
        kind: ChangeKind::Header,
        sent_at: 0.0,
        expect: shape.expect(),
    }];
    cluster.start_workers().await?;
    let workers = &cluster.workers;
    wait_for_revision(cluster, first).await?;

    let swaps_start = swap_counters(workers).await;
    let rss_start = rss_all(workers).await;
    let peaks = Arc::new(std::sync::Mutex::new(rss_start.clone()));
    let sampling_done = Arc::new(AtomicBool::new(false));
    let sampler = spawn_sampler(workers, peaks.clone(), sampling_done.clone());

    // Load through every Worker.
    let start = Instant::now();
    let stop_load = Arc::new(AtomicBool::new(false));
    let plan = LoadPlan {
        targets: workers.iter().map(|w| w.listen).collect(),
        connections: o.connections,
        new_connections_per_sec: o.new_connections_per_sec,
        // In the order of analyse::PROBE_MAIN, PROBE_EXTRA.
        paths: vec!["/bench/item".into(), "/extra/item".into()],
        host: cluster.names.request_host(),
        headers: Vec::new(),
    };
    let load_task = tokio::spawn(load::run(plan, start, stop_load.clone()));

    // Changes at the requested rate, leaving a quiet second at both ends.
    let mut rss_after_100: Vec<Option<u64>> = vec![None; workers.len()];
    let interval = Duration::from_secs_f64(1.0 / o.changes_per_sec.max(0.01));
    let quiet = Duration::from_secs(1).min(o.duration / 4);
    tokio::time::sleep(quiet).await;
    let mut next = Instant::now();
    let mut k = 0usize;
    let mut last_revision = first;
    let mut cut = None;
    while start.elapsed() + quiet < o.duration {
        if cut.is_none() && start.elapsed() >= o.duration / 2 {
            cut = cluster.cut().map(str::to_string);
            if let Some(id) = &cut {
                tracing::warn!(worker = %id, "fault injection: cut off the Manager");
            }
        }
        tokio::time::sleep_until(next.into()).await;
        next += interval;
        let kind = ChangeKind::CYCLE[k % ChangeKind::CYCLE.len()];
        k += 1;
        shape = shape.next(kind);
        let sent_at = start.elapsed().as_secs_f64();
        let revision = cluster
            .apply(&manifests(&cluster.names, shape, upstreams))
            .await?;
        if revision <= last_revision || (cluster.owned && revision != last_revision + 1) {
            return Err(BenchError::Setup(format!(
                "the environment moved under the bench (after revision {last_revision}, got {revision}); is something else writing to it?"
            )));
        }
        last_revision = revision;
        changes.push(Change {
            seq: shape.seq,
            revision,
            kind,
            sent_at,
            expect: shape.expect(),
        });
        if changes.len() == 101 {
            rss_after_100 = rss_all(workers).await;
        }
    }
    tokio::time::sleep_until((start + o.duration).into()).await;
    stop_load.store(true, Ordering::Relaxed);
    let samples = load_task.await.map_err(setup)?;
    let duration_s = start.elapsed().as_secs_f64();

    // Let the last ACKs arrive (from every Worker connected when it was committed), then
    // read the run's revisions from the Manager.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = cluster.revision(last_revision).await?;
        let expected = v.expected_workers.unwrap_or_else(|| cluster.ackers.clone());
        let all = expected.iter().all(|w| {
            v.reports
                .iter()
                .any(|r| &r.worker_id == w && r.status == ReportStatus::Ack)
        });
        if all || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut revisions = Vec::new();
    for c in changes.iter().filter(|c| c.seq > 1) {
        let v = cluster.revision(c.revision).await?;
        revisions.push(RevisionAcks {
            revision: c.revision,
            acks: v
                .reports
                .iter()
                .filter(|r| r.status == ReportStatus::Ack)
                .map(|r| (r.worker_id.clone(), r.caught_up_to.is_some()))
                .collect(),
            joined_after: v.joined_after.len(),
            propagation_ms: v.propagation_ms.map(|ms| ms as f64),
        });
    }
    let swaps_end = swap_counters(workers).await;

    // Generations return to 1 once traffic has drained.
    let mut generations = Vec::new();
    let mut alloc = Vec::new();
    for w in workers {
        let Some(admin) = w.admin else {
            generations.push(None);
            alloc.push(None);
            continue;
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut g = gauge(admin, "switchyard_snapshot_generations_live").await;
        while g.is_some_and(|g| g > 1.0) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            g = gauge(admin, "switchyard_snapshot_generations_live").await;
        }
        generations.push(g);
        let sum = gauge(admin, "switchyard_swap_allocated_bytes_sum").await;
        let count = gauge(admin, "switchyard_swap_allocated_bytes_count").await;
        alloc.push(match (sum, count) {
            (Some(s), Some(c)) if c > 0.0 => Some(s / c),
            _ => None,
        });
    }
    sampling_done.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let peaks = peaks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let rss_end = rss_all(workers).await;

    Ok(analyse(
        &samples,
        &changes,
        Analysis {
            revisions,
            ackers: cluster.ackers.clone(),
            duration_s,
            generations_required: cluster.owned,
            workers: workers
                .iter()
                .enumerate()
                .map(|(i, w)| WorkerReport {
                    id: w.id.clone(),
                    target: w.target.clone(),
                    swaps_during_run: match (swaps_start[i], swaps_end[i]) {
                        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
                        _ => None,
                    },
                    rss_start_kb: rss_start[i],
                    rss_peak_kb: peaks[i].max(rss_end[i]),
                    rss_end_kb: rss_end[i],
                    rss_after_100_swaps_kb: rss_after_100[i],
                    live_generations_end: generations[i],
                    alloc_bytes_per_swap: alloc[i],
                    ..WorkerReport::default()
                })
                .collect(),
        },
    ))
}

/// Each Worker's `switchyard_config_swaps_total` (None without an admin address).
async fn swap_counters(workers: &[BenchWorker]) -> Vec<Option<u64>> {
    let mut out = Vec::with_capacity(workers.len());
    for w in workers {
        out.push(match w.admin {
            Some(admin) => gauge(admin, "switchyard_config_swaps_total")
                .await
                .map(|n| n as u64),
            None => None,
        });
    }
    out
}

async fn rss_all(workers: &[BenchWorker]) -> Vec<Option<u64>> {
    let mut out = Vec::with_capacity(workers.len());
    for w in workers {
        out.push(w.rss_kb().await);
    }
    out
}

/// Samples every Worker's memory until `done`, keeping the peaks (local Workers every
/// 100 ms from /proc, remote ones every 500 ms from their admin `/metrics`).
fn spawn_sampler(
    workers: &[BenchWorker],
    peaks: Arc<std::sync::Mutex<Vec<Option<u64>>>>,
    done: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let workers = workers.to_vec();
    let every = if workers.iter().all(|w| w.pid.is_some()) {
        Duration::from_millis(100)
    } else {
        Duration::from_millis(500)
    };
    tokio::spawn(async move {
        while !done.load(Ordering::Relaxed) {
            let now = rss_all(&workers).await;
            {
                let mut p = peaks
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for (peak, kb) in p.iter_mut().zip(now) {
                    *peak = (*peak).max(kb);
                }
            }
            tokio::time::sleep(every).await;
        }
    })
}

/// Waits until every Worker that must has ACKed `revision` (the bench's first apply).
async fn wait_for_revision(cluster: &BenchCluster, revision: u64) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let acks = cluster.revision(revision).await?.acks;
        if acks >= cluster.ackers.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(BenchError::Setup(format!(
                "only {acks} of {} Workers ACKed the bench's first revision {revision}",
                cluster.ackers.len()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn setup(e: impl std::fmt::Display) -> BenchError {
    BenchError::Setup(e.to_string())
}
