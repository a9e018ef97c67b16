//! What every handler shares.

use std::sync::Arc;

use switchyard_store::Store;

use crate::fanout::Fanout;
use crate::metrics::ManagerMetrics;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub fanout: Fanout,
    pub metrics: Arc<ManagerMetrics>,
    /// How often SSE streams send a heartbeat comment.
    pub heartbeat: std::time::Duration,
    /// Turns true when the Manager shuts down: long-lived streams end so the graceful
    /// shutdown does not wait for Workers to hang up.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}
