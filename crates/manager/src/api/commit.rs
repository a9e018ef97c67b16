//! What follows every commit that changed something (apply, rollback): the commit counter,
//! the notification to the environment's Workers, and the log line.

use switchyard_model::protocol::{EntityRef, RevisionEvent};
use switchyard_store::CommitOutcome;

use crate::state::AppState;

/// Counts the commit and notifies every Worker of `env` (never waits for them).
pub(super) fn publish(state: &AppState, env: &str, outcome: &CommitOutcome, actor: &str) {
    state
        .metrics
        .commits
        .get_or_create(&[("env", env.to_string())])
        .inc();
    state.fanout.publish(
        RevisionEvent {
            env: env.to_string(),
            revision: outcome.revision,
            changes: outcome
                .changes
                .iter()
                .map(|c| EntityRef {
                    kind: c.kind.clone(),
                    name: c.name.clone(),
                    version: c.new_version,
                })
                .collect(),
        },
        outcome.committed_at,
    );
    tracing::info!(env = %env, revision = outcome.revision, changes = outcome.changes.len(), actor = %actor, "revision committed");
}
