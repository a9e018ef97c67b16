//! The Worker's `/status` document.

use serde::Serialize;
use switchyard_api::sync::ServedFrom;

#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// This process (it changes with a handover to a successor).
    pub pid: u32,
    /// The last handover asked for, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<crate::handover::UpgradeState>,
    /// Configuration revision being served.
    pub revision: u64,
    pub proxies: Vec<ProxyStatus>,
    /// The certificates served on the HTTPS listener.
    pub certificates: Vec<CertificateStatus>,
    /// Hosts routes name that no certificate covers (empty without certificates).
    pub uncovered_hosts: Vec<String>,
    /// The sockets traffic is accepted on (empty until the Worker serves).
    pub listeners: Vec<crate::listeners::ListenerStatus>,
    pub last_reload: Option<ReloadReport>,
    pub live_generations: i64,
    pub swaps_total: u64,
    pub rejected_total: u64,
    /// Manager mode only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncStatus>,
}

/// How a Manager-driven Worker is doing.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncStatus {
    pub manager: String,
    pub env: String,
    pub worker_id: String,
    /// Whether the notification stream is open right now.
    pub connected: bool,
    /// `manager` when the served revision came from the Manager, `cache` when it was read
    /// from the last-known-good cache because the Manager was unreachable at start.
    pub served_from: ServedFrom,
    /// Latest revision known to exist on the Manager.
    pub manager_revision: Option<u64>,
    pub last_sync_at: Option<String>,
    pub last_error: Option<String>,
    /// A revision this Worker rejected (NACKed), if the Manager has not moved past it.
    pub rejected_revision: Option<u64>,
    /// Problem with the local cache file, if any (e.g. corrupt: not served).
    pub cache_error: Option<String>,
    /// Reports not yet delivered to the Manager.
    pub pending_reports: usize,
    /// The Manager's store the served revision belongs to.
    pub store_id: Option<String>,
    /// The last time this Worker resynchronised with a full pull, and why.
    pub last_resync: Option<Resync>,
    /// A newer revision this process does not swap in because it changes the process
    /// settings it started with (restart-required): which, and what differs.
    pub pending_restart: Option<String>,
}

/// A resynchronisation: the Worker found that the Manager's history was not the one it
/// served (another store, a Manager behind it, a state that did not verify) and swapped
/// to exactly the Manager's state.
#[derive(Debug, Clone, Serialize)]
pub struct Resync {
    pub at: String,
    pub reason: String,
    /// The revision served before, and the Manager's it now serves.
    pub from_revision: u64,
    pub to_revision: u64,
}

/// One served certificate: what it covers and how long it has left. Never its key.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateStatus {
    pub name: String,
    /// The DNS names of its subjectAltName.
    pub hosts: Vec<String>,
    pub default: bool,
    /// Until it expires (negative once expired).
    pub seconds_left: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProxyStatus {
    pub name: String,
    pub version: u64,
    pub digest: String,
    pub routes: usize,
    pub targets: Vec<String>,
    /// Each target's health as load balancing sees it now.
    pub target_health: Vec<TargetStatus>,
}

/// One upstream target's health. Targets start healthy; without `healthCheck` they stay so.
#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    pub url: String,
    /// `healthy`, `unhealthy` (active checks) or `ejected` (passive checks).
    pub health: &'static str,
    /// When ejected: for how much longer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ejected_for_ms: Option<u64>,
    /// Requests in flight to this target, from every configuration generation.
    pub in_flight: usize,
}

/// The outcome of the most recent reload attempt.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    /// `applied`, `unchanged` or `rejected`.
    pub result: ReloadResult,
    pub at: String,
    /// Revision served after this attempt.
    pub revision: u64,
    pub build_ms: f64,
    /// Proxies changed by this attempt (`name` → `old → new` version).
    pub changes: Vec<String>,
    /// Set when rejected: every problem, one per line, file:line:col first.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadResult {
    Applied,
    Unchanged,
    Rejected,
    /// Valid, but it changes process settings: it waits for a successor process.
    RestartRequired,
}
