//! The binary's side of a Worker handover (`switchyard_worker::handover` moves the
//! sockets): it knows how this process was started, so it starts the successor the same
//! way — the same binary path (which a package upgrade replaces) and arguments — when
//! `POST /upgrade` or SIGUSR2 asks, and ends this process's serving once the successor
//! serves.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use switchyard_worker::WorkerHandle;
use switchyard_worker::handover::{self, Sockets, UpgradeHook, UpgradeRequest, UpgradeState};
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

/// Which binaries a successor may run besides the one this process was started from:
/// those in `--upgrade-binaries DIR` (none without it). A path from elsewhere — given to
/// the admin API or by a Manager — is refused, so neither can make a Worker host run any
/// program it names.
#[derive(Debug, Clone, Default)]
pub struct AllowedBinaries(pub Option<PathBuf>);

impl AllowedBinaries {
    /// The binary a request names, if it may run: a file inside the allowed directory
    /// (symbolic links resolved first).
    fn check(&self, binary: &std::path::Path) -> Result<PathBuf, String> {
        let Some(dir) = &self.0 else {
            return Err(format!(
                "this Worker runs no other binary than its own ({} asked); start it with \
                 --upgrade-binaries DIR to allow the binaries in DIR",
                binary.display()
            ));
        };
        let dir = dir
            .canonicalize()
            .map_err(|e| format!("--upgrade-binaries {}: {e}", dir.display()))?;
        let real = binary
            .canonicalize()
            .map_err(|e| format!("binary {}: {e}", binary.display()))?;
        if !real.starts_with(&dir) || !real.is_file() {
            return Err(format!(
                "binary {} is not a file in --upgrade-binaries {}",
                binary.display(),
                dir.display()
            ));
        }
        Ok(real)
    }
}

/// Starts a successor each time one is asked for, until one serves; completes then (the
/// caller stops accepting and drains). A failed attempt is recorded and logged, and this
/// process carries on.
pub async fn serve_upgrades(
    launch: Launch,
    sockets: Sockets,
    worker: WorkerHandle,
    hook: UpgradeHook,
    mut requests: mpsc::Receiver<UpgradeRequest>,
    deadline: Duration,
    allowed: AllowedBinaries,
) {
    while let Some(request) = requests.recv().await {
        hook.set(UpgradeState::InProgress);
        let exe = match request.binary.as_deref().map(|b| allowed.check(b)) {
            None => launch.exe.clone(),
            Some(Ok(exe)) => exe,
            Some(Err(error)) => {
                tracing::error!(target: "switchyard", %error, "handover refused; this process carries on serving");
                hook.set(UpgradeState::Failed { error });
                continue;
            }
        };
        tracing::info!(target: "switchyard", binary = %exe.display(), "handover: starting a successor");
        let mut command = tokio::process::Command::new(&exe);
        command.args(&launch.args);
        // The environment's listeners as they are bound now.
        let listeners = match worker.listener_sockets() {
            Ok(l) => l,
            Err(e) => {
                let error = format!("cannot duplicate the listening sockets: {e}");
                tracing::error!(target: "switchyard", %error, "handover failed; this process carries on serving");
                hook.set(UpgradeState::Failed { error });
                continue;
            }
        };
        match handover::start_successor(&sockets, listeners, command, deadline).await {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::AllowedBinaries;

    #[test]
    fn only_binaries_in_the_allowed_directory_run() {
        let allowed = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let inside = allowed.path().join("switchyard-2");
        let outside = elsewhere.path().join("switchyard-evil");
        std::fs::write(&inside, "x").unwrap();
        std::fs::write(&outside, "x").unwrap();
        // A link in the directory to a file outside it is outside.
        let link = allowed.path().join("link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();

        let none = AllowedBinaries(None);
        assert!(
            none.check(&inside)
                .unwrap_err()
                .contains("--upgrade-binaries")
        );
        let dir = AllowedBinaries(Some(allowed.path().to_path_buf()));
        assert_eq!(dir.check(&inside).unwrap(), inside.canonicalize().unwrap());
        assert!(
            dir.check(&outside)
                .unwrap_err()
                .contains("is not a file in")
        );
        assert!(dir.check(&link).unwrap_err().contains("is not a file in"));
        assert!(
            dir.check(allowed.path())
                .unwrap_err()
                .contains("is not a file in")
        );
        let dotdot = allowed
            .path()
            .join("..")
            .join(elsewhere.path().file_name().unwrap());
        assert!(dir.check(&dotdot.join("switchyard-evil")).is_err());
    }
}
