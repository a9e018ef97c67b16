//! The Switchyard Worker (data plane): proxies HTTP traffic with the policies and upstreams
//! of an immutable configuration snapshot, and swaps in new snapshots atomically while
//! traffic flows. See `ARCHITECTURE.md` at the repository root.

pub mod access_log;
mod admin;
pub mod canary;
mod connections;
mod cores;
pub mod handover;
mod health;
mod idle;
pub mod listeners;
mod metrics;
mod pool;
pub mod proxy;
mod reload;
mod runtime;
pub mod sample_upstream;
mod server;
pub mod status;
mod swap_path;
pub mod sync;
mod tls;
pub mod trace;
pub mod upstream_tls;
mod watch;

use std::future::Future;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use arc_swap::ArcSwap;
use switchyard_engine::runtime::ListenerSettings;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub use access_log::AccessLogTarget;
pub use listeners::{DEFAULT_LISTENER, ListenerStatus};
pub use reload::ReloadOutcome;
pub use status::{ReloadResult, StatusReport, SyncStatus};
pub use swap_path::SwapPath;
pub use sync::ManagedOptions;

use crate::access_log::AccessLog;
use crate::pool::Pools;
use crate::reload::Reloader;
use crate::runtime::{Observability, Runtime};

/// Where a Worker's configuration comes from.
// Built once per Worker: the size of the Manager variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// Standalone: a manifest file or a directory of them, reloaded on change (`watch`)
    /// and on SIGHUP.
    Files { path: PathBuf, watch: bool },
    /// Follows one environment on a Manager.
    Manager(ManagedOptions),
}

/// How a Worker is set up.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub source: ConfigSource,
    pub access_log: AccessLogTarget,
    /// How long in-flight requests may take to finish on shutdown.
    pub drain_timeout: Duration,
    /// Bytes allocated so far by the calling thread, when the binary's allocator can tell
    /// (bench builds). Each swap's allocations are then reported in
    /// `switchyard_swap_allocated_bytes`.
    pub thread_allocated: Option<fn() -> u64>,
    /// Data-plane threads, each with a single-threaded runtime of its own that serves the
    /// connections handed to it (thread per core, `cores.rs`). `None`: connections are
    /// served on the runtime that runs the Worker (an embedded Worker shares its host's).
    pub threads: Option<NonZeroUsize>,
    /// `threads` is the default (not given on the command line): the environment's
    /// `kind: WorkerSettings` `threads`, when set, replaces it.
    pub threads_from_settings: bool,
    /// How long a generation that is no longer the current one may stay pinned by
    /// long-lived streams before they are closed gracefully (`--max-pinned-age`).
    pub max_pinned_age: Duration,
    /// Request traces and their OTLP export (off without an endpoint).
    pub tracing: switchyard_telemetry::otlp::TraceConfig,
}

/// The default of [`WorkerOptions::max_pinned_age`].
pub const DEFAULT_MAX_PINNED_AGE: Duration = Duration::from_secs(3600);

impl WorkerOptions {
    /// The upstream pools: one lane of idle connections per data-plane thread.
    fn pools(&self) -> Pools {
        Pools::new(self.threads.map_or(1, NonZeroUsize::get))
    }

    /// Standalone, watching `config`.
    pub fn new(config: impl Into<PathBuf>) -> Self {
        Self::with_source(ConfigSource::Files {
            path: config.into(),
            watch: true,
        })
    }

    pub fn with_source(source: ConfigSource) -> Self {
        WorkerOptions {
            source,
            access_log: AccessLogTarget::Off,
            drain_timeout: Duration::from_secs(30),
            thread_allocated: None,
            threads: None,
            threads_from_settings: false,
            max_pinned_age: DEFAULT_MAX_PINNED_AGE,
            tracing: switchyard_telemetry::otlp::TraceConfig::off("switchyard-worker"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("invalid configuration:\n{0}")]
    Config(#[from] switchyard_config::ConfigErrors),
    #[error("cannot open the access log: {0}")]
    AccessLog(std::io::Error),
    #[error("cannot set up tracing: {0}")]
    Tracing(String),
    #[error(transparent)]
    Start(#[from] sync::StartError),
    #[error("{0}")]
    Client(#[from] sync::ClientError),
    #[error("this operation needs a {0} Worker")]
    WrongMode(&'static str),
    #[error("cannot start the data-plane threads: {0}")]
    Threads(std::io::Error),
    #[error("cannot set up TLS for the HTTPS listener: {0}")]
    Tls(rustls::Error),
    #[error("cannot bind the environment's listeners:\n{0}")]
    Listen(switchyard_config::ConfigErrors),
    #[error("cannot accept on a listener: {0}")]
    Socket(std::io::Error),
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
}

/// What a Worker that binds its environment's listeners starts from.
#[derive(Debug, Default)]
pub struct EnvironmentListeners {
    /// Bound while the environment declares no listener.
    pub fallback: Option<SocketAddr>,
    /// A predecessor's sockets (`handover::Sockets::listeners`).
    pub inherited: Vec<(String, std::net::TcpListener)>,
}

/// A Worker with its first configuration loaded, ready to serve.
pub struct Worker {
    reloader: Arc<Reloader>,
    options: WorkerOptions,
    /// Manager mode: the state the sync task starts from.
    sync_state: Option<sync::SyncState>,
    /// The HTTPS listener, if any (see [`Worker::listen_tls`]).
    tls_listener: Option<TcpListener>,
    /// Set by [`Worker::listen_from_environment`]: the Worker binds the environment's
    /// listeners instead of serving given sockets.
    environment: Option<EnvironmentListeners>,
    /// How an upgrade is asked for (see [`Worker::on_upgrade`]).
    upgrade: Option<handover::UpgradeHook>,
}

/// A cheap handle to a running Worker: its revision, status, and a way to reload now.
#[derive(Clone)]
pub struct WorkerHandle {
    reloader: Arc<Reloader>,
    /// How `POST /upgrade` reaches the binary (none: this Worker cannot be upgraded).
    upgrade: Option<handover::UpgradeHook>,
}

impl Worker {
    /// Standalone mode: loads and compiles the files; fails (naming every problem) if
    /// they are invalid.
    pub fn new(options: WorkerOptions) -> Result<Worker, WorkerError> {
        let ConfigSource::Files { path, .. } = &options.source else {
            return Err(WorkerError::WrongMode("files (use Worker::connect)"));
        };
        let obs = Self::observability(&options)?;
        let mut reloader = Reloader::initial(path.clone(), obs.clone(), options.pools())?;
        reloader.thread_allocated = options.thread_allocated;
        let options = Self::with_process_settings(options, &reloader, &obs);
        Ok(Worker {
            reloader: Arc::new(reloader),
            options,
            sync_state: None,
            tls_listener: None,
            environment: None,
            upgrade: None,
        })
    }

    /// Either mode. In Manager mode, pulls the environment's current revision (or, if the
    /// Manager does not answer in time, serves the last-known-good cache).
    pub async fn connect(options: WorkerOptions) -> Result<Worker, WorkerError> {
        let ConfigSource::Manager(managed) = &options.source else {
            return Self::new(options);
        };
        let managed = managed.clone();
        let obs = Self::observability(&options)?;
        let (mut reloader, state, served_from, manager_error) =
            sync::Syncer::start(managed.clone(), |m, o| {
                Reloader::from_set(m, o, obs.clone(), options.pools())
            })
            .await?;
        reloader.thread_allocated = options.thread_allocated;
        let options = Self::with_process_settings(options, &reloader, &obs);
        reloader.update_sync_status(|s| {
            s.manager = managed.manager.clone();
            s.env = managed.env.clone();
            s.worker_id = managed.worker_id.clone();
            s.served_from = served_from;
            s.last_error = manager_error;
        });
        Ok(Worker {
            reloader: Arc::new(reloader),
            options,
            sync_state: Some(state),
            tls_listener: None,
            environment: None,
            upgrade: None,
        })
    }

    /// Takes the environment's process settings (`kind: WorkerSettings`) from the first
    /// generation, as a process does once, when it starts: the data-plane threads (unless
    /// the Worker was given a number: flags win) and the open files for `maxConnections`.
    fn with_process_settings(
        mut options: WorkerOptions,
        reloader: &Reloader,
        obs: &Observability,
    ) -> WorkerOptions {
        let settings = reloader.current().load().snapshot.process().clone();
        if options.threads_from_settings
            && let Some(n) = settings
                .spec
                .threads
                .and_then(|t| NonZeroUsize::new(t.into()))
        {
            options.threads = Some(n);
        }
        if let Some(max) = settings.spec.max_connections {
            let allowed = obs.connections.size_for(max);
            tracing::info!(
                max_connections = max,
                allowed,
                "sized for WorkerSettings maxConnections"
            );
        }
        options
    }

    fn observability(options: &WorkerOptions) -> Result<Arc<Observability>, WorkerError> {
        let access_log = AccessLog::open(&options.access_log).map_err(WorkerError::AccessLog)?;
        let mut obs = Observability::new(access_log);
        obs.max_pinned_age = options.max_pinned_age;
        obs.tracing =
            trace::Tracing::start(&options.tracing, obs.metrics.trace_spans_dropped.clone())
                .map_err(WorkerError::Tracing)?;
        Ok(Arc::new(obs))
    }

    /// Also serves HTTPS on `listener` (HTTP/1.1 and HTTP/2 by ALPN), with the certificate
    /// of each handshake chosen by SNI from the `kind: Certificate` entities being served.
    pub fn listen_tls(&mut self, listener: TcpListener) {
        self.tls_listener = Some(listener);
    }

    /// Accepts traffic on the environment's listeners (`kind: Listener`) rather than on
    /// given sockets: binds them, and follows them from generation to generation (see
    /// `listeners.rs`). `fallback` is bound while the environment declares none;
    /// `inherited` are a predecessor's sockets (a handover), taken instead of binding.
    pub fn listen_from_environment(&mut self, listeners: EnvironmentListeners) {
        self.environment = Some(listeners);
    }

    pub fn handle(&self) -> WorkerHandle {
        WorkerHandle {
            reloader: self.reloader.clone(),
            upgrade: self.upgrade.clone(),
        }
    }

    /// Lets `POST /upgrade` on the admin listener (and the binary's SIGUSR2) ask for a
    /// handover to a successor process, which the holder of the hook's requests carries out.
    pub fn on_upgrade(&mut self, hook: handover::UpgradeHook) {
        self.upgrade = Some(hook);
    }

    /// Serves traffic on `listener` (and the HTTPS listener, if given, and the admin API on
    /// `admin`) until `shutdown` completes, then drains: stops accepting, lets in-flight
    /// requests finish within the drain timeout, and returns.
    pub async fn run(
        self,
        listener: TcpListener,
        admin: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), WorkerError> {
        self.serve(Some(listener), admin, shutdown).await
    }

    /// The sockets traffic is accepted on: `plain` and the HTTPS listener as given, or the
    /// environment's listeners (see [`Worker::listen_from_environment`]).
    fn traffic(
        &mut self,
        plain: Option<TcpListener>,
    ) -> Result<
        (
            Arc<listeners::Listeners>,
            mpsc::UnboundedReceiver<listeners::Start>,
        ),
        WorkerError,
    > {
        let socket = |l: TcpListener| l.into_std().map_err(WorkerError::Socket);
        let (listeners, starts) = match self.environment.take() {
            Some(env) if plain.is_none() && self.tls_listener.is_none() => {
                let (listeners, starts) =
                    listeners::Listeners::from_environment(env.fallback, env.inherited);
                let current = self.reloader.current().load_full();
                match listeners.prepare(&current.snapshot) {
                    Ok(Some(prepared)) => prepared.commit(),
                    Ok(None) => {}
                    Err(errors) => return Err(WorkerError::Listen(errors)),
                }
                (listeners, starts)
            }
            _ => {
                let mut fixed = Vec::new();
                if let Some(l) = plain {
                    fixed.push(("--listen", socket(l)?, ListenerSettings::http()));
                }
                if let Some(l) = self.tls_listener.take() {
                    fixed.push(("--listen-tls", socket(l)?, ListenerSettings::https()));
                }
                listeners::Listeners::fixed(fixed).map_err(WorkerError::Socket)?
            }
        };
        let listeners = Arc::new(listeners);
        self.reloader.set_listeners(listeners.clone());
        Ok((listeners, starts))
    }

    /// [`Worker::run`], with the plain listener optional (none: the environment's
    /// listeners, or the HTTPS listener alone).
    pub async fn serve(
        mut self,
        plain: Option<TcpListener>,
        admin: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), WorkerError> {
        let (listeners, starts) = self.traffic(plain)?;
        let acceptor =
            tls::HttpsAcceptor::new(self.reloader.current()).map_err(WorkerError::Tls)?;
        let cores = match self.options.threads {
            Some(n) => Some(cores::Cores::start(n).map_err(WorkerError::Threads)?),
            None => None,
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut _watcher = None;
        let mut sync_task = None;
        let handle = self.handle();
        match (&self.options.source, self.sync_state.take()) {
            (ConfigSource::Files { path, watch: true }, _) => {
                _watcher = Some(watch::spawn(handle, path, stop_rx.clone())?);
            }
            (ConfigSource::Files { .. }, _) => {}
            (ConfigSource::Manager(managed), Some(state)) => {
                let syncer = sync::Syncer::new(
                    managed.clone(),
                    self.reloader.clone(),
                    state,
                    self.upgrade.clone(),
                )?;
                sync_task = Some(tokio::spawn(syncer.run(stop_rx.clone())));
            }
            (ConfigSource::Manager(_), None) => return Err(WorkerError::WrongMode("connected")),
        }
        let admin_task =
            admin.map(|l| tokio::spawn(admin::serve(l, self.handle(), stop_rx.clone())));
        let current: Arc<ArcSwap<Runtime>> = self.reloader.current();
        let health_task = tokio::spawn(health::run(
            current.clone(),
            self.reloader.subscribe(),
            stop_rx.clone(),
        ));
        let server = tokio::spawn(server::serve(
            starts,
            listeners.clone(),
            server::Shared::new(current, acceptor, cores),
            stop_rx,
            self.options.drain_timeout,
        ));
        shutdown.await;
        // Before anything stops: every response from now on says `Connection: close`.
        listeners.drain_all();
        self.reloader.set_draining();
        let _ = stop_tx.send(true);
        let _ = server.await;
        if let Some(t) = sync_task {
            let _ = t.await;
        }
        if let Some(t) = admin_task {
            let _ = t.await;
        }
        let _ = health_task.await;
        Ok(())
    }
}

impl WorkerHandle {
    /// The configuration revision being served.
    pub fn revision(&self) -> u64 {
        self.reloader.revision()
    }

    /// Notified with each new revision.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.reloader.subscribe()
    }

    /// Reads, validates and compiles the configuration now and swaps it in if it changed.
    /// Blocking: call from a blocking context (or `spawn_blocking`).
    pub fn reload(&self) -> ReloadOutcome {
        self.reloader.reload()
    }

    /// Configuration generations alive: the current one plus any still held by requests.
    pub fn live_generations(&self) -> i64 {
        self.reloader.live_generations()
    }

    /// Serves the configuration at `path` (a manifest file or directory: the whole
    /// configuration) as a canary beside the current generation, to the requests `split`
    /// picks (issue #21's first slice: the Manager does not drive it yet). Blocking.
    pub fn start_canary(
        &self,
        path: &std::path::Path,
        split: canary::Split,
    ) -> Result<u64, canary::CanaryError> {
        let manifests = switchyard_config::load_path(path).map_err(canary::CanaryError::Invalid)?;
        let refs: Vec<_> = manifests.iter().collect();
        self.reloader
            .start_canary(&refs, &switchyard_engine::Numbering::default(), split)
    }

    /// The canary becomes the generation served; returns its revision.
    pub fn promote_canary(&self) -> Result<u64, canary::CanaryError> {
        self.reloader.promote_canary()
    }

    /// The canary is dropped; returns the revision served.
    pub fn abort_canary(&self) -> Result<u64, canary::CanaryError> {
        self.reloader.abort_canary()
    }

    pub fn status(&self) -> StatusReport {
        let mut status = self.reloader.status();
        status.upgrade = self.upgrade.as_ref().and_then(handover::UpgradeHook::state);
        status
    }

    /// Prometheus text exposition of the Worker's metrics.
    pub fn metrics_text(&self) -> String {
        self.metrics_in(switchyard_telemetry::exposition::Format::Prometheus)
    }

    /// `/metrics` in `format`.
    pub fn metrics_in(&self, format: switchyard_telemetry::exposition::Format) -> String {
        self.reloader.metrics_text(format)
    }

    pub fn is_draining(&self) -> bool {
        self.reloader.is_draining()
    }

    /// Duplicates of the listening sockets bound from the environment's listeners, named
    /// for a successor (empty for a Worker serving sockets it was given).
    pub fn listener_sockets(&self) -> std::io::Result<Vec<(String, std::net::TcpListener)>> {
        self.reloader.listener_sockets()
    }

    /// The upgrade hook, if this Worker can be upgraded.
    pub fn upgrade(&self) -> Option<&handover::UpgradeHook> {
        self.upgrade.as_ref()
    }
}
