//! Worker presence in the store. The Manager holding a Worker's event stream writes it down
//! when it opens, removes it when it closes, and refreshes every stream it holds every
//! [`PRESENCE_REFRESH_MS`]: so who is connected — and who is expected to pick up each
//! revision, which the commit reads from these rows — is the same answer from every Manager
//! on the database and from a restarted one. A write that fails (the database is down) is
//! logged and repaired by the next refresh; streams are served either way.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use switchyard_api::records::now_millis;
use switchyard_store::{PRESENCE_REFRESH_MS, PRESENCE_TTL_MS, Store, WorkerConnection};

use crate::state::AppState;

/// Writes this Manager's Workers' streams to the store.
pub struct Presence {
    store: Arc<dyn Store>,
    /// This Manager's name, unique among the Managers of a database.
    manager: String,
    sessions: AtomicU64,
    /// When the streams held here were last refreshed in the store (0: not yet).
    refreshed_at: AtomicI64,
}

impl Presence {
    pub fn new(store: Arc<dyn Store>, manager: String) -> Arc<Presence> {
        Arc::new(Presence {
            store,
            manager,
            sessions: AtomicU64::new(0),
            refreshed_at: AtomicI64::new(0),
        })
    }

    /// This Manager's name (`--name`; default: host name and process id).
    pub fn manager(&self) -> &str {
        &self.manager
    }

    /// A new stream's session: tells it from the next stream of the same Worker here.
    pub fn next_session(&self) -> String {
        self.sessions.fetch_add(1, Ordering::Relaxed).to_string()
    }

    /// Writes down a stream that opened (waited for: the Worker counts as connected for
    /// the next commit once its stream is answered).
    pub async fn connected(&self, connection: WorkerConnection) {
        let (env, worker) = (connection.env.clone(), connection.worker_id.clone());
        if let Err(e) = self.store.worker_connected(connection).await {
            tracing::warn!(env, worker, error = %e, "cannot store the Worker's connection; the next refresh will");
        }
    }

    /// Refreshes every stream held here (`held`) in the store.
    pub async fn refresh(
        &self,
        held: Vec<WorkerConnection>,
    ) -> Result<(), switchyard_store::StoreError> {
        let at = now_millis();
        self.store.refresh_connections(&self.manager, held).await?;
        self.refreshed_at.store(at, Ordering::Relaxed);
        Ok(())
    }

    /// Whether the rows of the streams held here may have expired (the last refresh failed
    /// for a while, e.g. the database was down): a commit then refreshes them first, so
    /// the Workers connected here are expected to pick it up.
    pub fn lapsed(&self) -> bool {
        now_millis() - self.refreshed_at.load(Ordering::Relaxed) > PRESENCE_TTL_MS / 2
    }

    /// Removes a stream that closed, in the background (called from a `Drop`).
    pub fn disconnected(&self, env: String, worker: String, session: String) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (store, manager) = (self.store.clone(), self.manager.clone());
        runtime.spawn(async move {
            if let Err(e) = store
                .worker_disconnected(&env, &worker, &manager, &session)
                .await
            {
                tracing::warn!(env, worker, error = %e, "cannot remove the Worker's connection from the store; it expires");
            }
        });
    }
}

/// The default name of a Manager: its host name and process id (unique among the Managers
/// sharing a database unless two hosts share a name).
pub fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "manager".to_string());
    format!("{host}-{}", std::process::id())
}

/// Refreshes the streams this Manager holds every [`PRESENCE_REFRESH_MS`] (every second
/// while that fails) until `shutdown` turns true; then removes them (the Workers reconnect
/// elsewhere and are written down there).
pub async fn keep_fresh(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = crate::commits::stopped(&mut shutdown) => break,
        }
        wait = match state.presence.refresh(state.fanout.held()).await {
            Ok(()) => Duration::from_millis(PRESENCE_REFRESH_MS as u64),
            Err(e) => {
                tracing::debug!(error = %e, "cannot refresh the Workers' connections in the store");
                Duration::from_secs(1)
            }
        };
    }
    let _ = state.presence.refresh(Vec::new()).await;
}
