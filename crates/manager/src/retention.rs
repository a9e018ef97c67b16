//! History (and, when asked for, audit) retention: a background task prunes every
//! environment's history to what the Manager's options keep, at start and then every
//! [`Retention::interval`]. Each pruning is one transaction of the store's, idempotent, and
//! serialised with commits on the environment's row, so several Managers sharing a database
//! may all run it: one prunes, the others find nothing to do.

use std::time::Duration;

use switchyard_api::records::now_millis;
use switchyard_store::HistoryRetention;

use crate::state::AppState;

/// How often history is pruned by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// The audit-record actor of a Manager's own pruning.
const ACTOR: &str = "manager";

/// What a Manager keeps, and how often it prunes the rest: the options of the background
/// task, in one value (default: everything is kept, and the task is not started).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Entity history and revisions.
    pub history: HistoryRetention,
    /// Audit records younger than this are kept, older ones deleted; `None` (the default):
    /// audit records are never deleted.
    pub audit: Option<Duration>,
    /// How often to prune.
    pub interval: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            history: HistoryRetention::default(),
            audit: None,
            interval: DEFAULT_INTERVAL,
        }
    }
}

impl Retention {
    /// Whether there is anything to prune at all.
    pub fn keeps_everything(&self) -> bool {
        self.history.keeps_everything() && self.audit.is_none()
    }
}

/// Prunes at once, then every `retention.interval`, until `shutdown` turns true.
pub async fn run(
    state: AppState,
    retention: Retention,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(retention.interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => prune(&state, &retention).await,
            () = crate::commits::stopped(&mut shutdown) => return,
        }
    }
}

/// One round: every environment's history, then the audit trail. Failures are logged and
/// retried at the next round (nothing is half done: each pruning is one transaction).
pub async fn prune(state: &AppState, retention: &Retention) {
    if !retention.history.keeps_everything() {
        let envs = match state.store.list_envs().await {
            Ok(envs) => envs,
            Err(e) => {
                tracing::warn!(error = %e, "history retention: cannot list environments");
                Vec::new()
            }
        };
        for env in envs {
            // A running canary's stable revision is pulled by Workers that do not serve it
            // yet (and returned to on a rollback): nothing is pruned until it ends.
            if let Ok(Some(c)) = state.store.canary(&env.name).await
                && c.state == switchyard_api::canary::CanaryState::Running
            {
                continue;
            }
            match state
                .store
                .prune_history(&env.name, &retention.history, ACTOR)
                .await
            {
                Ok(Some(out)) => tracing::info!(
                    env = %out.env,
                    history_from = out.history_from,
                    revisions = out.revisions,
                    entity_versions = out.entity_versions,
                    tombstones = out.tombstones,
                    reports = out.reports,
                    "pruned the history older than the retention"
                ),
                Ok(None) => {}
                // Deleted meanwhile.
                Err(switchyard_store::StoreError::NoSuchEnv(_)) => {}
                Err(e) => {
                    tracing::warn!(env = %env.name, error = %e, "history retention: cannot prune")
                }
            }
        }
    }
    if let Some(age) = retention.audit {
        let before =
            now_millis().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
        match state.store.prune_audit(before, ACTOR).await {
            Ok(0) => {}
            Ok(deleted) => {
                tracing::info!(
                    deleted,
                    "deleted the audit records older than the audit retention"
                )
            }
            Err(e) => tracing::warn!(error = %e, "audit retention: cannot prune"),
        }
    }
}
