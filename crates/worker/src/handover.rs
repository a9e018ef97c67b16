//! Handing a Worker's listening sockets to a successor process, so that the binary can be
//! replaced (or the process restarted) without refusing a connection: the predecessor
//! starts the successor, passes it the very sockets it listens on over a Unix socket
//! (`SCM_RIGHTS`, as HAProxy's `expose-fd listeners` and Pingora's graceful upgrade do —
//! the accept queue is the kernel's and lives as long as one process holds the socket), and
//! waits until it says it is ready; only then does it stop accepting and drain. Until
//! then both accept from the same queue. A successor that exits or is not ready in time is
//! killed and the predecessor carries on serving.
//!
//! The exchange: the successor connects to the path it is given, receives one message
//! whose bytes name the sockets in order, separated by spaces (`traffic admin tls
//! listener:0.0.0.0:443/edge`), and whose ancillary data holds them, then writes
//! `ready\n` once it serves.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::net::TcpListener;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::Serialize;
use tokio::sync::mpsc;

/// The most sockets one handover passes (the flags' listeners, the admin listener and
/// the environment's listeners).
pub const MAX_SOCKETS: usize = 64;

/// The sockets a Worker hands over, each by name: `traffic` (`--listen`), `tls`
/// (`--listen-tls`), `admin`, and one `listener:ADDRESS/NAME` per environment listener
/// (see `Worker::listener_sockets`).
#[derive(Debug, Default)]
pub struct Sockets {
    pub named: Vec<(String, TcpListener)>,
}

impl Sockets {
    /// Duplicates of the given listeners (the originals keep serving here).
    pub fn duplicate(named: &[(&str, &tokio::net::TcpListener)]) -> io::Result<Sockets> {
        let named = named
            .iter()
            .map(|(name, l)| {
                Ok((
                    name.to_string(),
                    TcpListener::from(l.as_fd().try_clone_to_owned()?),
                ))
            })
            .collect::<io::Result<_>>()?;
        Ok(Sockets { named })
    }

    /// Takes the socket named `name` out, if there is one.
    pub fn take(&mut self, name: &str) -> Option<TcpListener> {
        let i = self.named.iter().position(|(n, _)| n == name)?;
        Some(self.named.swap_remove(i).1)
    }

    /// Duplicates of these sockets followed by `more`, for one handover.
    fn with(&self, more: Vec<(String, TcpListener)>) -> io::Result<Vec<(String, OwnedFd)>> {
        let mut out = Vec::with_capacity(self.named.len() + more.len());
        for (name, l) in &self.named {
            out.push((name.clone(), l.as_fd().try_clone_to_owned()?));
        }
        for (name, l) in more {
            out.push((name, OwnedFd::from(l)));
        }
        if out.len() > MAX_SOCKETS {
            return Err(io::Error::other(format!(
                "{} sockets to hand over: at most {MAX_SOCKETS}",
                out.len()
            )));
        }
        Ok(out)
    }
}

/// Why a handover did not happen. The predecessor keeps serving in every case.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("handover: {0}")]
    Io(#[from] io::Error),
    #[error("handover: the successor {0}")]
    Successor(String),
    #[error("handover: {0}")]
    Protocol(String),
}

/// The most bytes of socket names one handover sends.
const NAMES_CAPACITY: usize = 16 * 1024;

/// What the successor tells its predecessor once it serves.
const READY: &[u8] = b"ready\n";

/// Successor side: the sockets handed over at `path`, and the line to report readiness on.
pub fn receive(path: &Path) -> Result<(Sockets, Ready), HandoverError> {
    let stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut names = vec![0u8; NAMES_CAPACITY];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        &stream,
        &mut [IoSliceMut::new(&mut names)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    let names = std::str::from_utf8(names.get(..got.bytes).unwrap_or_default())
        .map_err(|_| HandoverError::Protocol("the socket names are not text".into()))?;
    let names: Vec<&str> = names.split_whitespace().collect();
    if names.len() != fds.len() {
        return Err(HandoverError::Protocol(format!(
            "{} socket names ({names:?}) for {} sockets",
            names.len(),
            fds.len()
        )));
    }
    let named = names
        .into_iter()
        .zip(fds)
        .map(|(name, fd)| (name.to_string(), TcpListener::from(fd)))
        .collect();
    Ok((Sockets { named }, Ready(stream)))
}

/// The successor's line back to its predecessor.
#[derive(Debug)]
pub struct Ready(UnixStream);

impl Ready {
    /// Tells the predecessor this process serves: it stops accepting and drains.
    pub fn send(mut self) -> io::Result<()> {
        self.0.write_all(READY)
    }
}

/// Predecessor side: starts `command` with `--handover-from PATH` appended, hands it
/// `sockets` and `more` (the environment's listeners bound now), and waits (up to
/// `deadline`) for it to say it serves. Returns its process id. A successor that exits
/// first, or is not ready in time, is killed.
pub async fn start_successor(
    sockets: &Sockets,
    more: Vec<(String, TcpListener)>,
    mut command: tokio::process::Command,
    deadline: Duration,
) -> Result<u32, HandoverError> {
    let fds = sockets.with(more)?;
    let dir = PrivateDir::create()?;
    let path = dir.0.join("handover.sock");
    let listener = tokio::net::UnixListener::bind(&path)?;
    command.arg("--handover-from").arg(&path);
    // The successor outlives this process: never killed because a handle is dropped.
    command.kill_on_drop(false);
    let mut child = command
        .spawn()
        .map_err(|e| HandoverError::Successor(format!("cannot be started: {e}")))?;
    let pid = child.id().unwrap_or_default();
    let handover = async {
        let (stream, _) = listener.accept().await?;
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        tokio::task::spawn_blocking(move || send_and_wait(&stream, &fds))
            .await
            .map_err(|e| HandoverError::Protocol(e.to_string()))?
    };
    let outcome = tokio::select! {
        done = tokio::time::timeout(deadline, handover) => match done {
            Ok(result) => result,
            Err(_) => Err(HandoverError::Successor(format!(
                "(pid {pid}) was not ready within {deadline:?}"
            ))),
        },
        status = child.wait() => Err(HandoverError::Successor(match status {
            Ok(s) => format!("(pid {pid}) exited before it was ready: {s}"),
            Err(e) => format!("(pid {pid}) cannot be waited on: {e}"),
        })),
    };
    drop(dir);
    let error = match outcome {
        Ok(()) => return Ok(pid),
        Err(e) => e,
    };
    // A successor that hung up has usually exited: say how (its log says why).
    match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
        Ok(Ok(status)) => Err(HandoverError::Successor(format!(
            "(pid {pid}) exited before it was ready: {status}"
        ))),
        _ => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            Err(error)
        }
    }
}

/// Sends the sockets, then waits for `ready` (the caller bounds the wait: the successor
/// is killed on the deadline, which ends the read).
fn send_and_wait(stream: &UnixStream, sockets: &[(String, OwnedFd)]) -> Result<(), HandoverError> {
    let names = sockets
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    if names.len() > NAMES_CAPACITY {
        return Err(HandoverError::Protocol(
            "the socket names are too long".into(),
        ));
    }
    let fds: Vec<_> = sockets.iter().map(|(_, fd)| fd.as_fd()).collect();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(HandoverError::Protocol("too many sockets".into()));
    }
    rustix::net::sendmsg(
        stream,
        &[IoSlice::new(names.as_bytes())],
        &mut control,
        SendFlags::empty(),
    )
    .map_err(io::Error::from)?;
    let mut answer = [0u8; READY.len()];
    let mut reader = stream;
    match reader.read_exact(&mut answer) {
        Ok(()) if answer == READY => Ok(()),
        Ok(()) => Err(HandoverError::Protocol("an unexpected answer".into())),
        Err(e) => Err(HandoverError::Successor(format!(
            "hung up before it was ready: {e}"
        ))),
    }
}

/// A directory only this user can enter, removed when dropped.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn create() -> io::Result<PrivateDir> {
        use std::os::unix::fs::DirBuilderExt;
        // Unique, not secret (the directory is private): the pid and the time.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "switchyard-handover-{}-{nanos}",
            std::process::id()
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(PrivateDir(dir))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `POST /upgrade` header naming the binary the successor runs (see [`UpgradeRequest`]).
pub const UPGRADE_BINARY_HEADER: &str = "x-switchyard-binary";

/// One request for a successor: which binary it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// `None`: the binary at the path this process was started from (which a package
    /// upgrade replaces).
    pub binary: Option<PathBuf>,
}

/// Where an upgrade stands, as `/status` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum UpgradeState {
    /// A successor is starting.
    InProgress,
    /// The successor serves; this process drains.
    HandedOver { successor_pid: u32 },
    /// The last attempt failed; this process carries on.
    Failed { error: String },
}

/// The way in to a Worker's upgrade: `POST /upgrade` on the admin listener and SIGUSR2
/// send a request; the binary, which knows how to start a successor, carries it out and
/// records where it stands.
#[derive(Clone, Debug)]
pub struct UpgradeHook {
    requests: mpsc::Sender<UpgradeRequest>,
    state: Arc<Mutex<Option<UpgradeState>>>,
}

impl UpgradeHook {
    /// The hook, and the requests the binary answers.
    pub fn new() -> (UpgradeHook, mpsc::Receiver<UpgradeRequest>) {
        let (requests, rx) = mpsc::channel(1);
        (
            UpgradeHook {
                requests,
                state: Arc::default(),
            },
            rx,
        )
    }

    /// Asks for an upgrade to the same binary path; `false` when one is already asked for
    /// or running.
    pub fn request(&self) -> bool {
        self.request_binary(None)
    }

    /// Asks for an upgrade to `binary` (`None`: the binary at the path this process was
    /// started from). The binary's side decides whether it may run it (`--upgrade-binaries`).
    pub fn request_binary(&self, binary: Option<PathBuf>) -> bool {
        if matches!(self.state(), Some(UpgradeState::InProgress)) {
            return false;
        }
        self.requests.try_send(UpgradeRequest { binary }).is_ok()
    }

    pub fn state(&self) -> Option<UpgradeState> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set(&self, state: UpgradeState) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = Some(state);
    }
}
