//! The binary's side of a Worker handover (`switchyard_worker::handover` moves the
//! sockets): it knows how this process was started, so it starts the successor the same
//! way — the same binary path (which a package upgrade replaces) and arguments — when
//! `POST /upgrade` or SIGUSR2 asks, and ends this process's serving once the successor
//! serves.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use switchyard_worker::handover::{self, Sockets, UpgradeHook, UpgradeState};
use tokio::sync::mpsc;

/// How this process was started, captured at start (before a package upgrade replaces the
/// binary, after which `/proc/self/exe` names a deleted file).
pub struct Launch {
    exe: PathBuf,
    args: Vec<OsString>,
}

impl Launch {
    pub fn current() -> std::io::Result<Launch> {
        let exe = std::env::current_exe()?;
        // This process's own `--handover-from PATH` is its predecessor's, not for the next.
        let mut args = Vec::new();
        let mut skip = false;
        for a in std::env::args_os().skip(1) {
            if skip {
                skip = false;
                continue;
            }
            if a == "--handover-from" {
                skip = true;
                continue;
            }
            if a.to_str()
                .is_some_and(|s| s.starts_with("--handover-from="))
            {
                continue;
            }
            args.push(a);
        }
        Ok(Launch { exe, args })
    }
}

/// Starts a successor each time one is asked for, until one serves; completes then (the
/// caller stops accepting and drains). A failed attempt is recorded and logged, and this
/// process carries on.
pub async fn serve_upgrades(
    launch: Launch,
    sockets: Sockets,
    hook: UpgradeHook,
    mut requests: mpsc::Receiver<()>,
    deadline: Duration,
) {
    while requests.recv().await.is_some() {
        hook.set(UpgradeState::InProgress);
        tracing::info!(target: "switchyard", binary = %launch.exe.display(), "handover: starting a successor");
        let mut command = tokio::process::Command::new(&launch.exe);
        command.args(&launch.args);
        match handover::start_successor(&sockets, command, deadline).await {
            Ok(pid) => {
                hook.set(UpgradeState::HandedOver { successor_pid: pid });
                tracing::info!(target: "switchyard", successor = pid, "handover: the successor serves; draining");
                return;
            }
            Err(e) => {
                tracing::error!(target: "switchyard", error = %e, "handover failed; this process carries on serving");
                hook.set(UpgradeState::Failed {
                    error: e.to_string(),
                });
            }
        }
    }
    std::future::pending::<()>().await;
}
