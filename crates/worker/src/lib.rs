//! The Switchyard Worker (data plane): proxies HTTP traffic with the policies and upstreams
//! of an immutable configuration snapshot, and swaps in new snapshots atomically while
//! traffic flows. See `ARCHITECTURE.md` at the repository root.

pub mod access_log;
mod admin;
mod metrics;
pub mod proxy;
mod reload;
mod runtime;
pub mod sample_upstream;
mod server;
pub mod status;
mod watch;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;

pub use access_log::AccessLogTarget;
pub use reload::ReloadOutcome;
pub use status::{ReloadResult, StatusReport};

use crate::access_log::AccessLog;
use crate::reload::Reloader;
use crate::runtime::{ClientPool, Observability, Runtime};

/// How a Worker is set up.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// A manifest file or a directory of them.
    pub config: PathBuf,
    pub access_log: AccessLogTarget,
    /// Reload when files under `config` change.
    pub watch: bool,
    /// How long in-flight requests may take to finish on shutdown.
    pub drain_timeout: Duration,
}

impl WorkerOptions {
    pub fn new(config: impl Into<PathBuf>) -> Self {
        WorkerOptions {
            config: config.into(),
            access_log: AccessLogTarget::Off,
            watch: true,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("invalid configuration:\n{0}")]
    Config(#[from] switchyard_model::ConfigErrors),
    #[error("cannot open the access log: {0}")]
    AccessLog(std::io::Error),
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
}

/// A Worker with its first configuration loaded, ready to serve.
pub struct Worker {
    reloader: Arc<Reloader>,
    options: WorkerOptions,
}

/// A cheap handle to a running Worker: its revision, status, and a way to reload now.
#[derive(Clone)]
pub struct WorkerHandle {
    reloader: Arc<Reloader>,
}

impl Worker {
    /// Loads and compiles the configuration; fails (naming every problem) if it is invalid.
    pub fn new(options: WorkerOptions) -> Result<Worker, WorkerError> {
        let access_log = AccessLog::open(&options.access_log).map_err(WorkerError::AccessLog)?;
        let obs = Arc::new(Observability {
            metrics: metrics::Metrics::new(),
            access_log,
        });
        let reloader = Reloader::initial(options.config.clone(), obs, ClientPool::default())?;
        Ok(Worker {
            reloader: Arc::new(reloader),
            options,
        })
    }

    pub fn handle(&self) -> WorkerHandle {
        WorkerHandle {
            reloader: self.reloader.clone(),
        }
    }

    /// Serves traffic on `listener` (and the admin API on `admin`) until `shutdown`
    /// completes, then drains: stops accepting, lets in-flight requests finish within the
    /// drain timeout, and returns.
    pub async fn run(
        self,
        listener: TcpListener,
        admin: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), WorkerError> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let _watcher = if self.options.watch {
            Some(watch::spawn(
                self.handle(),
                &self.options.config,
                stop_rx.clone(),
            )?)
        } else {
            None
        };
        let admin_task =
            admin.map(|l| tokio::spawn(admin::serve(l, self.handle(), stop_rx.clone())));
        let current: Arc<ArcSwap<Runtime>> = self.reloader.current();
        let server = tokio::spawn(server::serve(
            listener,
            current,
            stop_rx,
            self.options.drain_timeout,
        ));
        shutdown.await;
        self.reloader.set_draining();
        let _ = stop_tx.send(true);
        let _ = server.await;
        if let Some(t) = admin_task {
            let _ = t.await;
        }
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

    pub fn status(&self) -> StatusReport {
        self.reloader.status()
    }

    /// Prometheus text exposition of the Worker's metrics.
    pub fn metrics_text(&self) -> String {
        self.reloader.metrics_text()
    }

    pub fn is_draining(&self) -> bool {
        self.reloader.is_draining()
    }
}
