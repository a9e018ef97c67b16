//! Manager mode: the Worker follows one environment on a Manager.
//!
//! Notifications (SSE) are hints: on each, and on a periodic check, the Worker pulls what
//! changed since the revision it serves, verifies digests, compiles, swaps, checks that
//! the state it now serves is the Manager's, and reports ACK or NACK. Within one store's
//! history it only moves forward; a Manager whose store is another one (a restored backup
//! gets a new id), or is behind the Worker, or has other content at the same revision, is
//! followed with a full pull to exactly its state, logged and reported. It never waits for
//! other Workers, keeps serving its last good revision when the Manager is down or a
//! revision is rejected, and keeps a last-known-good cache on disk for starts without a
//! Manager.

mod backoff;
pub mod cache;
mod canary;
mod follow;
pub mod sse;
mod start;
mod state;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use switchyard_api::records::{Millis, ReportStatus};
use switchyard_api::sync::ReportBody;

use self::state::Served;
use crate::handover::UpgradeHook;
use crate::reload::Reloader;
pub use switchyard_api::ClientError;
use switchyard_api::{ManagerTls, SyncClient};

/// How a Worker finds and follows its Manager.
#[derive(Debug, Clone)]
pub struct ManagedOptions {
    /// `https://host:port` of the Manager (`http://` for one with `--insecure-http`).
    pub manager: String,
    /// Other Managers of the same control plane (sharing one database), tried in turn
    /// when the one followed is lost: the Worker resumes from the revision it serves.
    pub fallbacks: Vec<String>,
    /// How the Manager is verified (`--manager-ca`, default the system's roots) and this
    /// Worker's client certificate, if it has one.
    pub tls: ManagerTls,
    pub env: String,
    /// A `worker` token for `env`.
    pub token: String,
    /// Names this Worker in the Manager's status and audit records.
    pub worker_id: String,
    /// Where the last-known-good cache lives.
    pub cache_dir: PathBuf,
    /// The Worker's traffic address, reported to the Manager.
    pub address: Option<String>,
    /// How often the Worker compares its revision with the Manager's (catches missed
    /// notifications even when the stream looks healthy).
    pub check_interval: Duration,
    /// The stream is considered dead after this long without a byte (heartbeats included).
    pub stream_timeout: Duration,
    /// How long to wait for the Manager at start before falling back to the cache.
    pub start_timeout: Duration,
    /// How often the Worker sends its running totals for the dashboard's charts.
    pub stats_interval: Duration,
    /// This Worker process among those under the same id (a handover's successor
    /// connects beside its predecessor): pid and start time, new with each `new`.
    pub instance: String,
}

impl ManagedOptions {
    /// The client for this Worker's calls to its (first) Manager.
    fn client(&self) -> Result<SyncClient, ClientError> {
        self.client_for(&self.manager)
    }

    /// Every Manager URL, the first one first.
    pub fn managers(&self) -> Vec<&str> {
        std::iter::once(self.manager.as_str())
            .chain(self.fallbacks.iter().map(String::as_str))
            .collect()
    }

    /// The client for this Worker's calls to the Manager at `url`.
    fn client_for(&self, url: &str) -> Result<SyncClient, ClientError> {
        SyncClient::for_process(
            url,
            &self.token,
            &self.env,
            &self.worker_id,
            self.address.as_deref(),
            Some(&self.instance),
            &self.tls,
        )
    }

    pub fn new(manager: &str, env: &str, token: &str, worker_id: &str, cache_dir: PathBuf) -> Self {
        ManagedOptions {
            manager: manager.to_string(),
            fallbacks: Vec::new(),
            env: env.to_string(),
            token: token.to_string(),
            worker_id: worker_id.to_string(),
            cache_dir,
            address: None,
            tls: ManagerTls::system(),
            check_interval: Duration::from_secs(5),
            stream_timeout: Duration::from_secs(15),
            start_timeout: Duration::from_secs(5),
            stats_interval: switchyard_api::sync::STATS_INTERVAL,
            instance: format!(
                "{}-{}",
                std::process::id(),
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "cannot start: the Manager is unreachable ({manager}) and there is no usable cache ({cache})"
    )]
    NoConfig { manager: String, cache: String },
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// The sync task's own state: the revision being served, and what is still to tell the
/// Manager about it. Handed from the start (which built the first generation) to the task.
pub struct SyncState {
    served: Served,
    /// A revision that failed to compile here; not retried until the Manager moves on.
    rejected: Option<u64>,
    /// Reports not yet delivered (delivered in order once the Manager answers).
    pending: Vec<ReportBody>,
    /// When the latest pull was read: the reports about what it brought carry it.
    pulled_at: Option<Millis>,
    /// A canary revision served beside `served` (the stable one), and how.
    canary: Option<CanaryServed>,
}

/// A canary revision this Worker serves beside the stable one: its state (as `served` is
/// the stable one's: promoted, it becomes `served`) and the directive it follows.
pub struct CanaryServed {
    served: Served,
    directive: switchyard_api::canary::CanaryDirective,
}

/// The sync task: follows the Manager for one Worker, swapping in each revision through
/// the Worker's [`Reloader`] and reporting the outcome.
pub struct Syncer {
    opts: ManagedOptions,
    client: SyncClient,
    /// Which of `opts.managers()` the client talks to.
    current: usize,
    reloader: Arc<Reloader>,
    state: SyncState,
    /// How this process hands over to a successor when a rollout asks (none: it cannot,
    /// and says so in a NACK).
    upgrade: Option<UpgradeHook>,
}

impl Syncer {
    pub fn new(
        opts: ManagedOptions,
        reloader: Arc<Reloader>,
        state: SyncState,
        upgrade: Option<UpgradeHook>,
    ) -> Result<Syncer, ClientError> {
        Ok(Syncer {
            client: opts.client()?,
            current: 0,
            opts,
            reloader,
            state,
            upgrade,
        })
    }
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn now_text() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// An ACK (no `error`) or a NACK of `revision` of `store_id`, made now; `detail` says how
/// the Worker came to it when that was not a plain pull (a resynchronisation). It says the
/// Worker swapped exactly this revision in: a catch-up ACK sets `caught_up_to`.
fn report(
    store_id: &str,
    revision: u64,
    error: Option<String>,
    address: Option<String>,
    detail: Option<String>,
) -> ReportBody {
    ReportBody {
        revision,
        status: if error.is_some() {
            ReportStatus::Nack
        } else {
            ReportStatus::Ack
        },
        error,
        applied_at: now_millis(),
        pulled_at: None,
        address,
        store_id: (!store_id.is_empty()).then(|| store_id.to_string()),
        detail,
        caught_up_to: None,
    }
}
