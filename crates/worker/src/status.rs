//! The Worker's `/status` document.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// Configuration revision being served.
    pub revision: u64,
    pub proxies: Vec<ProxyStatus>,
    pub last_reload: Option<ReloadReport>,
    pub live_generations: i64,
    pub swaps_total: u64,
    pub rejected_total: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProxyStatus {
    pub name: String,
    pub version: u64,
    pub digest: String,
    pub routes: usize,
    pub targets: Vec<String>,
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
#[serde(rename_all = "lowercase")]
pub enum ReloadResult {
    Applied,
    Unchanged,
    Rejected,
}
