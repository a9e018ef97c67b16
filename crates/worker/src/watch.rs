//! Reload when the configuration files change. File events are coalesced (a burst of
//! writes becomes one reload) and the reload itself runs on the blocking pool.

use std::path::Path;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use crate::{WorkerError, WorkerHandle};

/// Quiet time after the last file event before reloading.
const SETTLE: Duration = Duration::from_millis(25);
/// Upper bound on how long a continuous stream of events can postpone a reload.
const MAX_DELAY: Duration = Duration::from_millis(500);

/// Watches `path` until `stop` turns true. The returned watcher must be kept alive.
pub fn spawn(
    handle: WorkerHandle,
    path: &Path,
    mut stop: watch::Receiver<bool>,
) -> Result<RecommendedWatcher, WorkerError> {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let initial = tx.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        match res {
            Ok(ev) if is_change(&ev.kind) => {
                // Capacity 1: a pending signal already covers this event.
                let _ = tx.try_send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "file watcher error"),
        }
    })
    .map_err(|source| WorkerError::Watch {
        path: path.to_path_buf(),
        source,
    })?;
    let (target, mode) = if path.is_dir() {
        (path, RecursiveMode::Recursive)
    } else {
        // Editors and deploy tools replace files by rename: watch the directory.
        (
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
            RecursiveMode::NonRecursive,
        )
    };
    watcher
        .watch(target, mode)
        .map_err(|source| WorkerError::Watch {
            path: target.to_path_buf(),
            source,
        })?;
    // Files may have changed between the first load and this watch: check once now.
    let _ = initial.try_send(());
    drop(initial);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                got = rx.recv() => if got.is_none() { break },
                _ = crate::server::stopped(&mut stop) => break,
            }
            let deadline = tokio::time::Instant::now() + MAX_DELAY;
            loop {
                tokio::select! {
                    got = rx.recv() => if got.is_none() { break },
                    _ = tokio::time::sleep(SETTLE) => break,
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            let h = handle.clone();
            if tokio::task::spawn_blocking(move || h.reload())
                .await
                .is_err()
            {
                tracing::error!("configuration reload task failed");
            }
        }
    });
    Ok(watcher)
}

fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}
