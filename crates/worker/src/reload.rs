//! Building and swapping configuration generations. Off the request path: parse, validate
//! and compile happen here; the request path sees only the finished `Arc<Runtime>`,
//! published with one atomic pointer store.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Instant, SystemTime};
use switchyard_telemetry::exposition::Format;

use arc_swap::ArcSwap;
use switchyard_config::{ConfigErrors, Located, Manifest, load_path};
use switchyard_engine::runtime::{ProcessSettings, TargetHealth};
use switchyard_engine::{Change, ChangeKind, Compiled, Compiler, Numbering};
use tokio::sync::watch;

use crate::canary::{Canary, CanaryError, Split};
use crate::listeners::Listeners;
use crate::pool::Pools;
use crate::runtime::{Observability, ProxyExt, Runtime};
use crate::status::{
    CertificateStatus, ProxyStatus, ReloadReport, ReloadResult, StatusReport, SyncStatus,
    TargetStatus,
};

/// What one reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new generation is serving.
    Applied { revision: u64, changed: usize },
    /// The files compile to exactly what is already served; nothing was swapped.
    Unchanged { revision: u64 },
    /// The files are invalid; the previous generation keeps serving.
    Rejected { revision: u64, errors: ConfigErrors },
    /// Valid, but it changes the process settings (`kind: WorkerSettings`) this process
    /// started with: it is not swapped in (`revision` keeps serving); a successor process
    /// takes it (`switchyard worker upgrade`, `switchyard rollout`).
    RestartRequired {
        revision: u64,
        pending: u64,
        why: String,
    },
}

/// Builds configuration generations and swaps them in. It exists so that there is one
/// place where a Worker's served configuration changes, in either mode: every swap is
/// serialised, compiled by the same [`Compiler`], recorded (status, metrics) and announced
/// the same way.
pub struct Reloader {
    /// Files mode: the manifest file or directory. `None` when a Manager is the source.
    config: Option<PathBuf>,
    current: Arc<ArcSwap<Runtime>>,
    obs: Arc<Observability>,
    pools: Arc<Pools>,
    /// Serialises reloads; held only by the (blocking) reload itself.
    reload_lock: Mutex<()>,
    last: Mutex<Option<ReloadReport>>,
    revision_tx: watch::Sender<u64>,
    draining: Arc<AtomicBool>,
    /// Manager mode: connection and sync state, for `/status`.
    sync_status: Mutex<Option<SyncStatus>>,
    /// See `WorkerOptions::thread_allocated`.
    pub thread_allocated: Option<fn() -> u64>,
    /// Makes every compile of this Worker, so rate-limit counters and per-target health
    /// survive swaps.
    compiler: Compiler<ProxyExt>,
    /// The process settings this process started with (from its first generation): a
    /// generation with others is not swapped in.
    started: Arc<ProcessSettings>,
    /// The sockets traffic is accepted on, once the Worker serves: a generation whose
    /// listeners cannot be bound is rejected before it is swapped in.
    listeners: OnceLock<Arc<Listeners>>,
}

impl Reloader {
    /// Files mode: loads and compiles `config`; fails if it is invalid.
    pub fn initial(
        config: PathBuf,
        obs: Arc<Observability>,
        pools: Pools,
    ) -> Result<Reloader, ConfigErrors> {
        let manifests = load_path(&config)?;
        let now = SystemTime::now();
        for e in manifests
            .iter()
            .flat_map(|m| switchyard_engine::tls::check_validity(m, now))
        {
            tracing::warn!(error = %e, "serving a certificate outside its validity period");
        }
        let refs: Vec<&Located<Manifest>> = manifests.iter().collect();
        let reloader = Self::from_set(&refs, &Numbering::default(), obs, pools)?;
        tracing::info!(config = %config.display(), "configuration files loaded");
        Ok(Reloader {
            config: Some(config),
            ..reloader
        })
    }

    /// Builds the first generation from a manifest set (Manager mode, or the cache).
    pub fn from_set(
        manifests: &[&Located<Manifest>],
        numbering: &Numbering,
        obs: Arc<Observability>,
        pools: Pools,
    ) -> Result<Reloader, ConfigErrors> {
        let started = Instant::now();
        let compiler = Compiler::new();
        let compiled = compiler.compile(None, Change::Set(manifests), numbering)?;
        let mut snapshot = compiled.snapshot;
        snapshot.revision = numbering.revision.unwrap_or(snapshot.revision.max(1));
        let revision = snapshot.revision;
        let pools = Arc::new(pools);
        Pools::spawn_reaper(&pools);
        let runtime = Runtime::new(snapshot, &compiled.changes, &obs, &pools);
        obs.metrics
            .revision
            .set(i64::try_from(revision).unwrap_or(i64::MAX));
        obs.metrics
            .build_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::info!(
            revision,
            proxies = runtime.snapshot.proxy_count(),
            "configuration compiled"
        );
        let (revision_tx, _) = watch::channel(revision);
        let started = runtime.snapshot.process().clone();
        let current = Arc::new(ArcSwap::from_pointee(runtime));
        obs.follow(&current);
        Ok(Reloader {
            config: None,
            current,
            obs,
            pools,
            reload_lock: Mutex::new(()),
            last: Mutex::new(None),
            revision_tx,
            draining: Arc::new(AtomicBool::new(false)),
            sync_status: Mutex::new(None),
            thread_allocated: None,
            compiler,
            started,
            listeners: OnceLock::new(),
        })
    }

    pub fn current(&self) -> Arc<ArcSwap<Runtime>> {
        self.current.clone()
    }

    pub fn revision(&self) -> u64 {
        self.current.load().snapshot.revision
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.revision_tx.subscribe()
    }

    /// The running totals sent to the Manager (`POST /v1/envs/{env}/stats`).
    pub fn stats(&self) -> switchyard_api::sync::StatsBody {
        let totals = &self.obs.metrics.totals;
        switchyard_api::sync::StatsBody {
            revision: self.revision(),
            requests: switchyard_api::sync::StatusClasses::from_array(
                totals
                    .by_class
                    .each_ref()
                    .map(|c| switchyard_api::sync::Count(c.get())),
            ),
            gateway_errors: totals.gateway_errors.get(),
            resident_bytes: switchyard_telemetry::process::resident_bytes().unwrap_or(0),
            live_generations: u64::try_from(self.live_generations()).unwrap_or(0),
            served_from: self
                .sync_status
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .map(|s| s.served_from),
            generations: self.generation_counters(),
        }
    }

    /// Each live generation's totals while a canary is live (the stable one first); none
    /// otherwise: the Manager judges a canary by them.
    fn generation_counters(&self) -> Vec<switchyard_api::canary::GenerationCounters> {
        let current = self.current.load_full();
        let Some(canary) = &current.canary else {
            return Vec::new();
        };
        [&*current, &*canary.runtime]
            .into_iter()
            .map(|runtime| {
                runtime
                    .generation
                    .metrics
                    .counters(runtime.snapshot.revision)
            })
            .collect()
    }

    pub fn live_generations(&self) -> i64 {
        self.obs.metrics.live_generations.get()
    }

    pub fn metrics_text(&self, format: Format) -> String {
        let rt = self.current.load_full();
        self.obs
            .connections
            .refresh_metrics(rt.snapshot.gateway().max_connections);
        let now = Instant::now();
        self.obs
            .metrics
            .set_target_health(rt.snapshot.proxies().flat_map(|p| {
                p.upstream.targets.iter().enumerate().map(move |(i, t)| {
                    (
                        &*p.name,
                        &*t.url,
                        p.upstream.target_health(i, now).is_healthy(),
                    )
                })
            }));
        let wall = std::time::SystemTime::now();
        self.obs.metrics.set_certificate_expiry(
            rt.snapshot
                .certificates()
                .map(|c| (&*c.name, switchyard_engine::tls::seconds_left(c, wall))),
        );
        drop(rt);
        self.obs
            .metrics
            .oldest_pinned_age
            .set(self.obs.oldest_pinned_age().as_secs_f64());
        self.obs.metrics.encode(format)
    }

    /// Updates the Manager-sync part of `/status`.
    pub fn update_sync_status(&self, f: impl FnOnce(&mut SyncStatus)) {
        let mut guard = self
            .sync_status
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(guard.get_or_insert_with(SyncStatus::default));
    }

    /// The Worker's sockets, once it serves (set once).
    pub(crate) fn set_listeners(&self, listeners: Arc<Listeners>) {
        let _ = self.listeners.set(listeners);
    }

    /// The addresses of the sockets serving traffic, comma-separated (`None`: none yet).
    pub fn traffic_addresses(&self) -> Option<String> {
        let serving: Vec<String> = self
            .listeners
            .get()?
            .status()
            .into_iter()
            .filter(|l| l.state == "serving")
            .map(|l| l.address)
            .collect();
        (!serving.is_empty()).then(|| serving.join(","))
    }

    /// See `WorkerHandle::listener_sockets`.
    pub fn listener_sockets(&self) -> std::io::Result<Vec<(String, std::net::TcpListener)>> {
        match self.listeners.get() {
            Some(l) => l.sockets(),
            None => Ok(Vec::new()),
        }
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Files mode: re-reads the files and applies them. In Manager mode there is nothing
    /// to re-read; the current revision is reported unchanged.
    pub fn reload(&self) -> ReloadOutcome {
        let Some(config) = &self.config else {
            return ReloadOutcome::Unchanged {
                revision: self.revision(),
            };
        };
        match load_path(config).and_then(|m| self.check_new_certificates(m)) {
            Ok(manifests) => {
                let refs: Vec<&Located<Manifest>> = manifests.iter().collect();
                self.apply(Change::Set(&refs), &Numbering::default())
            }
            Err(errors) => {
                let _serial = self
                    .reload_lock
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                self.apply_result(Err(errors), Instant::now())
            }
        }
    }

    /// Refuses certificates that are new or changed (not served under the same digest) and
    /// expired or not yet valid: an operator's files are where they are applied. Those
    /// already served keep serving, expired or not (a restart does not refuse them either;
    /// `switchyard_certificate_expiry_seconds` shows them).
    fn check_new_certificates(
        &self,
        manifests: Vec<Located<Manifest>>,
    ) -> Result<Vec<Located<Manifest>>, ConfigErrors> {
        let rt = self.current.load();
        let now = SystemTime::now();
        let errors: Vec<_> = manifests
            .iter()
            .filter(|m| {
                matches!(m.value, Manifest::Certificate(_))
                    && !rt.snapshot.certificates().any(|c| c.digest == m.digest)
            })
            .flat_map(|m| switchyard_engine::tls::check_validity(m, now))
            .collect();
        if errors.is_empty() {
            Ok(manifests)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Compiles `change` against the current generation and swaps the result in when it
    /// differs; invalid changes are rejected and the current generation keeps serving.
    /// A [`Change::Set`] is the whole configuration (files mode, a full pull), diffed
    /// against what is served; a [`Change::Delta`] only what changed (an incremental pull),
    /// so its cost grows with the change, not with the number of proxies. `numbering` is
    /// the Manager's revision and proxy versions (default: counted on from what is served).
    /// Blocking: call from a blocking context.
    pub fn apply(&self, change: Change<'_>, numbering: &Numbering) -> ReloadOutcome {
        self.compile_and_swap(true, change, numbering)
    }

    /// Compiles `manifests` (the whole configuration) against the stable generation — the
    /// one served, without any canary it has — and serves it beside it as a canary: the
    /// share of requests `split` picks run on it, the others on the stable one. Refused
    /// (nothing changes) when it is invalid, is what is served, or changes what a process
    /// serves for every request. A canary live already is replaced. Blocking.
    pub fn start_canary(
        &self,
        manifests: &[&Located<Manifest>],
        numbering: &Numbering,
        split: Split,
    ) -> Result<u64, CanaryError> {
        let _serial = self
            .reload_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let stable = self.current.load_full();
        let compiled = self
            .compiler
            .compile(Some(&stable.snapshot), Change::Set(manifests), numbering)
            .map_err(CanaryError::Invalid)?;
        if compiled.changes.is_empty() && compiled.snapshot.revision == stable.snapshot.revision {
            return Err(CanaryError::Unchanged(stable.snapshot.revision));
        }
        let (a, b) = (&stable.snapshot, &compiled.snapshot);
        let whole_process = [
            (
                !a.process().same_process(b.process()),
                "the process settings",
            ),
            (a.listeners() != b.listeners(), "the listeners"),
            (a.gateway() != b.gateway(), "the gateway settings"),
            (
                !a.certificates()
                    .map(|c| &c.digest)
                    .eq(b.certificates().map(|c| &c.digest)),
                "the certificates",
            ),
        ];
        if let Some((_, what)) = whole_process.iter().find(|(changed, _)| *changed) {
            return Err(CanaryError::NotPerRequest((*what).to_string()));
        }
        let revision = compiled.snapshot.revision;
        let share_ppm = split.share_ppm();
        let canary = Runtime::new(compiled.snapshot, &compiled.changes, &self.obs, &self.pools);
        let old = self.current.swap(Arc::new(stable.with_canary(Some(Canary {
            runtime: Arc::new(canary),
            split,
        }))));
        // A canary replaced: its generation is an old one now.
        if let Some(c) = &old.canary {
            self.obs.swapped(&c.runtime);
        }
        tracing::info!(
            stable = stable.snapshot.revision,
            canary = revision,
            share_ppm,
            "canary started"
        );
        Ok(revision)
    }

    /// The live canary's share (and key) becomes `split`; `NoCanary` when there is none.
    pub fn set_canary_split(&self, split: Split) -> Result<(), CanaryError> {
        let _serial = self
            .reload_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.current.load_full();
        let canary = current.canary.as_ref().ok_or(CanaryError::NoCanary)?;
        let share_ppm = split.share_ppm();
        let runtime = canary.runtime.clone();
        self.current.store(Arc::new(
            current.with_canary(Some(Canary { runtime, split })),
        ));
        tracing::info!(share_ppm, "canary share changed");
        Ok(())
    }

    /// The canary becomes the one generation served (every new request runs on it); the
    /// stable one finishes the requests it has. Returns the revision now served.
    pub fn promote_canary(&self) -> Result<u64, CanaryError> {
        self.end_canary(true)
    }

    /// The canary is dropped (requests on it finish on it); every new request runs on the
    /// stable generation. Returns the revision served.
    pub fn abort_canary(&self) -> Result<u64, CanaryError> {
        self.end_canary(false)
    }

    fn end_canary(&self, promote: bool) -> Result<u64, CanaryError> {
        let _serial = self
            .reload_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.current.load_full();
        let canary = current.canary.as_ref().ok_or(CanaryError::NoCanary)?;
        let (next, superseded) = if promote {
            (canary.runtime.clone(), current.clone())
        } else {
            (Arc::new(current.with_canary(None)), canary.runtime.clone())
        };
        let revision = next.snapshot.revision;
        self.current.store(next);
        self.obs.swapped(&superseded);
        if promote {
            self.announce(revision);
        }
        tracing::info!(revision, promoted = promote, "canary ended");
        Ok(revision)
    }

    /// Compiles the whole set `manifests` from nothing — no proxy of the current generation
    /// reused, whatever its digest and version — and swaps the result in. For a Worker
    /// whose served state did not verify against its Manager's: what is served cannot be
    /// trusted as a base. Costs a full compile; rate-limit counters and target health are
    /// kept as for any swap. Blocking: call from a blocking context.
    pub fn rebuild(
        &self,
        manifests: &[&Located<Manifest>],
        numbering: &Numbering,
    ) -> ReloadOutcome {
        self.compile_and_swap(false, Change::Set(manifests), numbering)
    }

    /// Compiles `change` (against the current generation when `on_current`) and swaps.
    fn compile_and_swap(
        &self,
        on_current: bool,
        change: Change<'_>,
        numbering: &Numbering,
    ) -> ReloadOutcome {
        let started = Instant::now();
        let _serial = self
            .reload_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let allocated = self.thread_allocated.map(|f| f());
        let prev = self.current.load_full();
        let base = on_current.then_some(&prev.snapshot);
        let result = self.compiler.compile(base, change, numbering);
        drop(prev);
        let outcome = self.apply_result(result, started);
        self.record_allocations(allocated, &outcome);
        outcome
    }

    /// Bytes this thread allocated to build and swap a generation (bench builds).
    fn record_allocations(&self, before: Option<u64>, outcome: &ReloadOutcome) {
        if let (Some(before), Some(now), ReloadOutcome::Applied { .. }) =
            (before, self.thread_allocated.map(|f| f()), outcome)
        {
            self.obs
                .metrics
                .swap_allocated_bytes
                .observe(now.saturating_sub(before) as f64);
        }
    }

    fn apply_result(
        &self,
        result: Result<Compiled<ProxyExt>, ConfigErrors>,
        started: Instant,
    ) -> ReloadOutcome {
        let prev = self.current.load_full();
        let (outcome, changes) = match result {
            // A new revision that changed no proxy (e.g. only a credential) still becomes the
            // served generation, so the served revision always matches what was applied.
            Ok(compiled)
                if compiled.changes.is_empty()
                    && compiled.snapshot.revision == prev.snapshot.revision =>
            {
                (
                    ReloadOutcome::Unchanged {
                        revision: prev.snapshot.revision,
                    },
                    Vec::new(),
                )
            }
            Ok(compiled) if !self.started.same_process(compiled.snapshot.process()) => {
                let why = process_change(&self.started, compiled.snapshot.process());
                tracing::warn!(
                    serving = prev.snapshot.revision,
                    pending = compiled.snapshot.revision,
                    "restart-required: {why}; still serving the previous revision until a \
                     successor process takes over (switchyard rollout, or switchyard worker \
                     upgrade)"
                );
                (
                    ReloadOutcome::RestartRequired {
                        revision: prev.snapshot.revision,
                        pending: compiled.snapshot.revision,
                        why,
                    },
                    Vec::new(),
                )
            }
            Ok(compiled) => {
                // New sockets are bound before the swap; one that cannot be rejects the
                // generation and leaves every socket as it was.
                let prepared = match self.listeners.get().map(|l| l.prepare(&compiled.snapshot)) {
                    Some(Err(errors)) => {
                        return self.finish(self.reject(&prev, errors), Vec::new(), started);
                    }
                    Some(Ok(p)) => p,
                    None => None,
                };
                let revision = compiled.snapshot.revision;
                let changes: Vec<String> = compiled
                    .changes
                    .iter()
                    .map(|c| match c.kind {
                        ChangeKind::Added => {
                            format!("{} added (v{})", c.name, c.new_version.unwrap_or(0))
                        }
                        ChangeKind::Updated => format!(
                            "{} v{} -> v{}",
                            c.name,
                            c.old_version.unwrap_or(0),
                            c.new_version.unwrap_or(0)
                        ),
                        ChangeKind::Removed => {
                            format!("{} removed (was v{})", c.name, c.old_version.unwrap_or(0))
                        }
                    })
                    .collect();
                // Computed off the request path, before the swap; only when certificates
                // or routes may have changed what they cover.
                let uncovered = compiled.snapshot.uncovered_hosts();
                if !uncovered.is_empty() && uncovered != prev.snapshot.uncovered_hosts() {
                    tracing::warn!(
                        hosts = ?uncovered,
                        "routes name hosts that no certificate covers: HTTPS clients of these \
                         get the default certificate (which does not name them) or no handshake"
                    );
                }
                let runtime =
                    Runtime::new(compiled.snapshot, &compiled.changes, &self.obs, &self.pools);
                // The swap: one atomic pointer store. Requests that already loaded the old
                // generation keep it until they finish; new ones get this one.
                let old = self.current.swap(Arc::new(runtime));
                self.obs.swapped(&old);
                // A canary live beside it ends with it.
                if let Some(c) = &old.canary {
                    self.obs.swapped(&c.runtime);
                }
                drop(old);
                if let Some(p) = prepared {
                    p.commit();
                }
                self.announce(revision);
                tracing::info!(
                    revision,
                    rebuilt = compiled.rebuilt,
                    changes = ?changes,
                    build_ms = started.elapsed().as_secs_f64() * 1e3,
                    "configuration swapped"
                );
                (
                    ReloadOutcome::Applied {
                        revision,
                        changed: compiled.changes.len(),
                    },
                    changes,
                )
            }
            Err(errors) => (self.reject(&prev, errors), Vec::new()),
        };
        drop(prev);
        self.finish(outcome, changes, started)
    }

    /// `revision` is the one served now: counted, shown, and told to subscribers.
    fn announce(&self, revision: u64) {
        self.obs.metrics.swaps.inc();
        self.obs
            .metrics
            .revision
            .set(i64::try_from(revision).unwrap_or(i64::MAX));
        self.revision_tx.send_replace(revision);
    }

    /// A generation that is not served: counted and logged.
    fn reject(&self, prev: &Runtime, errors: ConfigErrors) -> ReloadOutcome {
        self.obs.metrics.rejected.inc();
        tracing::error!(
            revision = prev.snapshot.revision,
            "configuration rejected, still serving the previous one:\n{errors}"
        );
        ReloadOutcome::Rejected {
            revision: prev.snapshot.revision,
            errors,
        }
    }

    /// Records what a reload did (status, metrics) and returns it.
    fn finish(
        &self,
        outcome: ReloadOutcome,
        changes: Vec<String>,
        started: Instant,
    ) -> ReloadOutcome {
        let elapsed = started.elapsed();
        self.obs
            .metrics
            .build_seconds
            .observe(elapsed.as_secs_f64());
        let (result, revision, error) = match &outcome {
            ReloadOutcome::Applied { revision, .. } => (ReloadResult::Applied, *revision, None),
            ReloadOutcome::Unchanged { revision } => (ReloadResult::Unchanged, *revision, None),
            ReloadOutcome::Rejected { revision, errors } => {
                (ReloadResult::Rejected, *revision, Some(errors.to_string()))
            }
            ReloadOutcome::RestartRequired {
                revision,
                pending,
                why,
            } => (
                ReloadResult::RestartRequired,
                *revision,
                Some(format!("revision {pending} waits for a restart: {why}")),
            ),
        };
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(ReloadReport {
            result,
            at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            revision,
            build_ms: elapsed.as_secs_f64() * 1e3,
            changes,
            error,
        });
        outcome
    }

    pub fn status(&self) -> StatusReport {
        let rt = self.current.load_full();
        let now = Instant::now();
        let last_reload = self
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        StatusReport {
            pid: std::process::id(),
            upgrade: None,
            revision: rt.snapshot.revision,
            proxies: rt
                .snapshot
                .proxies()
                .map(|p| ProxyStatus {
                    name: p.name.to_string(),
                    version: p.version,
                    digest: p.digest.clone(),
                    routes: p.routes.len(),
                    targets: p
                        .upstream
                        .targets
                        .iter()
                        .map(|t| t.url.to_string())
                        .collect(),
                    target_health: p
                        .upstream
                        .targets
                        .iter()
                        .enumerate()
                        .map(|(i, t)| {
                            let health = p.upstream.target_health(i, now);
                            TargetStatus {
                                url: t.url.to_string(),
                                health: health.as_str(),
                                ejected_for_ms: match health {
                                    TargetHealth::Ejected(d) => {
                                        Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                                    }
                                    _ => None,
                                },
                                in_flight: t.state.in_flight.load(Ordering::Relaxed),
                            }
                        })
                        .collect(),
                })
                .collect(),
            certificates: {
                let wall = SystemTime::now();
                rt.snapshot
                    .certificates()
                    .map(|c| CertificateStatus {
                        name: c.name.to_string(),
                        hosts: c.hosts.clone(),
                        default: c.default,
                        seconds_left: switchyard_engine::tls::seconds_left(c, wall),
                    })
                    .collect()
            },
            uncovered_hosts: rt.snapshot.uncovered_hosts(),
            listeners: self.listeners.get().map(|l| l.status()).unwrap_or_default(),
            last_reload,
            live_generations: self.live_generations(),
            swaps_total: self.obs.metrics.swaps.get(),
            rejected_total: self.obs.metrics.rejected.get(),
            sync: self
                .sync_status
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

/// What differs between the process settings this process started with and `next`, for
/// people: `WorkerSettings spec.threads 2 -> 4`.
fn process_change(started: &ProcessSettings, next: &ProcessSettings) -> String {
    let json = |p: &ProcessSettings| {
        serde_json::to_string(&serde_json::json!({ "spec": p.spec })).unwrap_or_default()
    };
    let fields = switchyard_config::plan::field_changes(
        switchyard_config::Kind::WorkerSettings,
        Some(&json(started)),
        Some(&json(next)),
    );
    let show = |v: &Option<serde_json::Value>| {
        v.as_ref()
            .map_or_else(|| "(default)".to_string(), ToString::to_string)
    };
    let list: Vec<String> = fields
        .iter()
        .map(|f| format!("{} {} -> {}", f.path, show(&f.old), show(&f.new)))
        .collect();
    format!("WorkerSettings {}", list.join(", "))
}
