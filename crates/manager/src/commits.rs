//! Revisions committed through other Managers reach this Manager's Workers. Managers
//! sharing a PostgreSQL database hear of each other's commits by `LISTEN`/`NOTIFY`
//! (`Store::commit_notices`); those notices are hints, so every environment with Workers
//! connected here is also checked every [`POLL`] against the store — the safety net that
//! catches a notice missed across a reconnection. Either way the revision is read from the
//! store and announced to the Workers as a commit made here would be (once: a revision this
//! Manager announced already is skipped).

use std::time::Duration;

use switchyard_api::sync::RevisionEvent;

use crate::state::AppState;

/// How often environments with Workers connected here are checked for revisions
/// committed elsewhere.
pub const POLL: Duration = Duration::from_secs(2);

/// Follows commits until `shutdown` turns true.
pub async fn follow(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut notices = match state.store.commit_notices().await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for other Managers' commits; polling only");
            None
        }
    };
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            notice = next(&mut notices) => match notice {
                Some(n) => announce(&state, &n.env, n.revision).await,
                None => notices = None,
            },
            _ = tick.tick() => poll(&state).await,
            () = stopped(&mut shutdown) => return,
        }
    }
}

/// Completes when the shutdown flag turns true (or its sender is gone).
pub(crate) async fn stopped(flag: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: dropped inside this future.
    let _ = flag.wait_for(|s| *s).await.map(|_| ());
}

async fn next(
    notices: &mut Option<tokio::sync::mpsc::Receiver<switchyard_store::CommitNotice>>,
) -> Option<switchyard_store::CommitNotice> {
    match notices {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Each environment followed here, against the store's current revision.
async fn poll(state: &AppState) {
    for (env, announced) in state.fanout.followed() {
        let current = match state.store.env(&env).await {
            Ok(Some(info)) => info.revision,
            Ok(None) => continue,
            Err(e) => {
                tracing::debug!(env, error = %e, "cannot check the environment's revision");
                continue;
            }
        };
        match announced {
            // First look: what the Workers connecting now pulled is not news.
            None => state.fanout.baseline(&env, current),
            Some(a) if current > a => announce(state, &env, current).await,
            Some(_) => {}
        }
    }
}

/// Announces `revision` of `env` to the Workers connected here, unless it was already.
async fn announce(state: &AppState, env: &str, revision: u64) {
    if state.fanout.announced(env, revision) {
        return;
    }
    let record = match state.store.revision(env, revision).await {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(env, revision, error = %e, "cannot read a revision committed elsewhere");
            return;
        }
    };
    tracing::info!(env, revision, "revision committed through another Manager");
    state.fanout.publish(
        RevisionEvent::of_commit(env, revision, &record.changes),
        record.committed_at,
    );
}
