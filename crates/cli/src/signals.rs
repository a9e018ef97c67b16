//! Process signals: SIGTERM/SIGINT end the process gracefully, SIGHUP reloads, SIGUSR2
//! hands a Worker over to a successor process.

use switchyard_worker::WorkerHandle;
use tokio::signal::unix::{SignalKind, signal};

/// Completes on the first SIGTERM or SIGINT.
pub async fn terminated() {
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down gracefully"),
                _ = int.recv() => tracing::info!("SIGINT: shutting down gracefully"),
            }
        }
        _ => {
            tracing::warn!("cannot install signal handlers; falling back to Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Reloads the Worker's configuration on every SIGHUP.
pub fn reload_on_sighup(handle: WorkerHandle) {
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install the SIGHUP handler; reload on file change only");
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading configuration");
            let h = handle.clone();
            let _ = tokio::task::spawn_blocking(move || h.reload()).await;
        }
    });
}

/// Asks for a handover to a successor process on every SIGUSR2 (`switchyard worker
/// upgrade` does the same through the admin listener).
pub fn upgrade_on_sigusr2(hook: switchyard_worker::handover::UpgradeHook) {
    let Ok(mut usr2) = signal(SignalKind::user_defined2()) else {
        tracing::warn!("cannot install the SIGUSR2 handler; upgrade through POST /upgrade only");
        return;
    };
    tokio::spawn(async move {
        while usr2.recv().await.is_some() {
            if hook.request() {
                tracing::info!("SIGUSR2: handing over to a successor process");
            } else {
                tracing::warn!("SIGUSR2: a handover is already in progress");
            }
        }
    });
}
