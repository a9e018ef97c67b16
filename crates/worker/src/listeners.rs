//! The sockets a Worker accepts traffic on, and how they follow the environment's `kind:
//! Listener` entities without a restart.
//!
//! Each socket is an [`Endpoint`] with its own accept loop (`server.rs`). A Worker given
//! `--listen`/`--listen-tls` serves those and nothing else (flags are the per-host
//! override); one without them binds the environment's listeners. Then, for every
//! generation, *before* it is swapped in, [`Listeners::prepare`] binds what is new (a
//! listener added, or moved to another address): a socket that cannot be bound rejects
//! the generation (the Worker NACKs it and keeps serving the previous one on the sockets
//! it has). After the swap, [`Prepared::commit`] starts the new accept loops and retires
//! the sockets no longer wanted: each goes on accepting for its `drainAcceptingFor`, then
//! serves what is queued on it, closes, and asks its connections to close after their
//! current request. Settings of a kept listener are replaced for the connections accepted
//! next.
//!
//! In a handover, every bound socket is passed to the successor ([`Listeners::sockets`]),
//! which takes an inherited socket for a listener wanting the same address instead of
//! binding it.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Serialize;
use switchyard_config::error::{ConfigError, Position, SourceRef};
use switchyard_config::{ConfigErrors, Kind};
use switchyard_engine::runtime::{ListenerSettings, Snapshot};
use tokio::sync::{mpsc, watch};

/// The name a listener socket is handed over under: `listener:ADDRESS/NAME` (the address
/// as the listener asks for it, so port 0 stays 0).
const HANDOVER_PREFIX: &str = "listener:";

/// The listener a Worker without flags binds while its environment declares none.
pub const DEFAULT_LISTENER: &str = "(default)";

/// One socket being accepted on, and what its accept loop shares with its connections.
/// It exists so that a socket can be retired on its own: its connections are told to
/// close by its `draining` flag and its tag in the connection table, while the other
/// sockets' connections carry on.
pub(crate) struct Endpoint {
    /// Tags its connections in the connection table.
    pub id: u64,
    /// `--listen`, `--listen-tls`, or the environment's listener name.
    name: Mutex<Arc<str>>,
    /// The address asked for (port 0 stays 0) and the one bound.
    pub requested: SocketAddr,
    pub local: SocketAddr,
    /// Read when a connection is accepted.
    pub settings: ArcSwap<ListenerSettings>,
    /// Set once the socket is retired or the Worker drains: HTTP/1 responses on its
    /// connections say `Connection: close`.
    pub draining: Arc<AtomicBool>,
    /// Its open connections, for its own limit.
    pub open: AtomicUsize,
    /// `Some(grace)` once retired: accept for `grace` more, then close.
    pub retire: watch::Sender<Option<Duration>>,
    state: AtomicU8,
}

const SERVING: u8 = 0;
const DRAINING: u8 = 1;
const CLOSED: u8 = 2;

impl Endpoint {
    fn new(
        id: u64,
        name: &str,
        requested: SocketAddr,
        local: SocketAddr,
        settings: ListenerSettings,
    ) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            id,
            name: Mutex::new(Arc::from(name)),
            requested,
            local,
            settings: ArcSwap::from_pointee(settings),
            draining: Arc::new(AtomicBool::new(false)),
            open: AtomicUsize::new(0),
            retire: watch::Sender::new(None),
            state: AtomicU8::new(SERVING),
        })
    }

    pub fn name(&self) -> Arc<str> {
        self.name
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Its accept loop has ended: the socket is closed.
    pub fn closed(&self) {
        self.state.store(CLOSED, Ordering::Release);
    }

    /// Admits one more connection under `max`, if any; the guard counts it until dropped.
    pub fn admit(self: &Arc<Self>, max: Option<u32>) -> Option<EndpointConn> {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        if let Some(max) = max
            && before >= usize::try_from(max).unwrap_or(usize::MAX)
        {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(EndpointConn(self.clone()))
    }
}

/// A connection counted against its endpoint's limit while it lives.
pub(crate) struct EndpointConn(Arc<Endpoint>);

impl Drop for EndpointConn {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A socket to start accepting on (sent to the server task).
pub(crate) struct Start {
    pub endpoint: Arc<Endpoint>,
    pub socket: TcpListener,
}

/// What `/status` shows of a listener.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ListenerStatus {
    pub name: String,
    /// The bound address.
    pub address: String,
    pub protocol: &'static str,
    pub http2: bool,
    /// `serving`, or `draining` (retired: accepting for its `drainAcceptingFor`, or its
    /// connections finishing).
    pub state: &'static str,
    pub open_connections: usize,
}

/// Every socket of a Worker, and whether they follow the environment.
pub(crate) struct Listeners {
    /// `false`: the Worker was given sockets by flags and binds nothing itself.
    from_environment: bool,
    /// Bound when the environment declares no listener (`None`: nothing).
    fallback: Option<SocketAddr>,
    next_id: AtomicU64,
    table: Mutex<Table>,
    starts: mpsc::UnboundedSender<Start>,
}

#[derive(Default)]
struct Table {
    /// Serving, by listener name.
    bound: Vec<Bound>,
    /// Retired, until their accept loop ends.
    retired: Vec<Arc<Endpoint>>,
    /// Handed over by a predecessor and not taken yet: `(requested, name, socket)`.
    inherited: Vec<(SocketAddr, String, TcpListener)>,
}

struct Bound {
    endpoint: Arc<Endpoint>,
    /// A duplicate of the socket the accept loop owns: handed to a successor (closed
    /// once the Worker drains, so the socket closes with its accept loop).
    socket: Option<TcpListener>,
}

/// A generation's listeners, bound, not started yet (see [`Listeners::prepare`]).
#[must_use]
pub(crate) struct Prepared<'a> {
    listeners: &'a Listeners,
    /// `(name, settings, existing endpoint index | new socket)`.
    wanted: Vec<Wanted>,
}

struct Wanted {
    name: Arc<str>,
    requested: SocketAddr,
    settings: ListenerSettings,
    socket: Option<TcpListener>,
}

impl Listeners {
    /// The sockets of a Worker started with flags: `fixed` as they are, nothing bound later.
    pub fn fixed(
        fixed: Vec<(&str, TcpListener, ListenerSettings)>,
    ) -> std::io::Result<(Listeners, mpsc::UnboundedReceiver<Start>)> {
        let (starts, rx) = mpsc::unbounded_channel();
        let listeners = Listeners {
            from_environment: false,
            fallback: None,
            next_id: AtomicU64::new(1),
            table: Mutex::default(),
            starts,
        };
        for (name, socket, settings) in fixed {
            let local = socket.local_addr()?;
            let endpoint = listeners.endpoint(name, local, local, settings);
            listeners.start(endpoint, socket)?;
        }
        Ok((listeners, rx))
    }

    /// The sockets of a Worker that binds its environment's listeners (`fallback` while
    /// there are none), taking those of `inherited` (a predecessor's, by
    /// [`Listeners::sockets`] name) that listeners ask for.
    pub fn from_environment(
        fallback: Option<SocketAddr>,
        inherited: Vec<(String, TcpListener)>,
    ) -> (Listeners, mpsc::UnboundedReceiver<Start>) {
        let (starts, rx) = mpsc::unbounded_channel();
        let inherited = inherited
            .into_iter()
            .filter_map(|(handed, socket)| {
                let rest = handed.strip_prefix(HANDOVER_PREFIX)?;
                let (addr, name) = rest.split_once('/')?;
                Some((addr.parse().ok()?, name.to_string(), socket))
            })
            .collect();
        let listeners = Listeners {
            from_environment: true,
            fallback,
            next_id: AtomicU64::new(1),
            table: Mutex::new(Table {
                inherited,
                ..Table::default()
            }),
            starts,
        };
        (listeners, rx)
    }

    fn endpoint(
        &self,
        name: &str,
        requested: SocketAddr,
        local: SocketAddr,
        settings: ListenerSettings,
    ) -> Arc<Endpoint> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        Endpoint::new(id, name, requested, local, settings)
    }

    fn start(&self, endpoint: Arc<Endpoint>, socket: TcpListener) -> std::io::Result<()> {
        let kept = socket.try_clone()?;
        self.lock().bound.push(Bound {
            endpoint: endpoint.clone(),
            socket: Some(kept),
        });
        // The server task is gone only when the Worker stops.
        let _ = self.starts.send(Start { endpoint, socket });
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The listeners `snapshot` asks for, by name (the fallback when it declares none).
    fn wanted<X>(&self, snapshot: &Snapshot<X>) -> Vec<(Arc<str>, SocketAddr, ListenerSettings)> {
        let declared = snapshot.listeners();
        if declared.is_empty() {
            return self
                .fallback
                .map(|a| (Arc::from(DEFAULT_LISTENER), a, ListenerSettings::http()))
                .into_iter()
                .collect();
        }
        declared
            .values()
            .map(|l| (l.name.clone(), l.address, l.settings.clone()))
            .collect()
    }

    /// Binds what `snapshot` asks for that no socket serves yet: a listener keeps the
    /// socket of the same name and address, or takes one of another name on the same
    /// (non-zero) port and address, or an inherited one, or binds. Nothing changes until
    /// [`Prepared::commit`]; an error (naming each listener that cannot be bound) leaves
    /// every socket as it was.
    pub fn prepare<X>(&self, snapshot: &Snapshot<X>) -> Result<Option<Prepared<'_>>, ConfigErrors> {
        if !self.from_environment {
            return Ok(None);
        }
        let mut table = self.lock();
        let mut wanted = Vec::new();
        let mut errors = Vec::new();
        for (name, requested, settings) in self.wanted(snapshot) {
            let served = table.bound.iter().any(|b| {
                b.endpoint.requested == requested
                    && (requested.port() != 0 || *b.endpoint.name() == *name)
            });
            let socket = if served {
                None
            } else if let Some(i) = table
                .inherited
                .iter()
                .position(|(a, n, _)| *a == requested && (requested.port() != 0 || *n == *name))
            {
                Some(table.inherited.swap_remove(i).2)
            } else {
                match bind(requested) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        errors.push(bind_error(&name, requested, &e));
                        continue;
                    }
                }
            };
            wanted.push(Wanted {
                name,
                requested,
                settings,
                socket,
            });
        }
        drop(table);
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Some(Prepared {
            listeners: self,
            wanted,
        }))
    }

    /// Duplicates of every socket serving (not the retired ones), named for a successor.
    pub fn sockets(&self) -> std::io::Result<Vec<(String, TcpListener)>> {
        if !self.from_environment {
            return Ok(Vec::new());
        }
        self.lock()
            .bound
            .iter()
            .filter_map(|b| Some((b, b.socket.as_ref()?)))
            .map(|(b, socket)| {
                Ok((
                    format!(
                        "{HANDOVER_PREFIX}{}/{}",
                        b.endpoint.requested,
                        b.endpoint.name()
                    ),
                    socket.try_clone()?,
                ))
            })
            .collect()
    }

    /// What `/status` shows: serving sockets, then retired ones still open.
    pub fn status(&self) -> Vec<ListenerStatus> {
        let mut table = self.lock();
        table
            .retired
            .retain(|e| e.state.load(Ordering::Acquire) != CLOSED);
        let one = |e: &Endpoint| {
            let settings = e.settings.load();
            ListenerStatus {
                name: e.name().to_string(),
                address: e.local.to_string(),
                protocol: if settings.tls { "https" } else { "http" },
                http2: settings.http2,
                state: if e.state.load(Ordering::Acquire) == SERVING {
                    "serving"
                } else {
                    "draining"
                },
                open_connections: e.open.load(Ordering::Relaxed),
            }
        };
        table
            .bound
            .iter()
            .map(|b| one(&b.endpoint))
            .chain(table.retired.iter().map(|e| one(e)))
            .collect()
    }

    /// The Worker drains: every socket, serving or retired, tells its connections to close,
    /// and closes with its accept loop (no duplicate is kept for a successor any more).
    pub fn drain_all(&self) {
        let mut table = self.lock();
        for b in &mut table.bound {
            b.socket = None;
        }
        for e in table
            .bound
            .iter()
            .map(|b| &b.endpoint)
            .chain(table.retired.iter())
        {
            e.draining.store(true, Ordering::Release);
        }
    }
}

impl Prepared<'_> {
    /// After the swap: starts the new sockets' accept loops, gives kept ones their new
    /// settings, and retires the sockets no listener wants any more.
    pub fn commit(self) {
        let listeners = self.listeners;
        let mut table = listeners.lock();
        let mut keep = Vec::with_capacity(self.wanted.len());
        let mut start = Vec::new();
        for mut w in self.wanted {
            match w.socket.take() {
                None => {
                    let found = table.bound.iter().position(|b| {
                        b.endpoint.requested == w.requested
                            && (w.requested.port() != 0 || *b.endpoint.name() == *w.name)
                    });
                    if let Some(i) = found {
                        let b = table.bound.swap_remove(i);
                        b.endpoint.settings.store(Arc::new(w.settings));
                        *b.endpoint
                            .name
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) = w.name;
                        keep.push(b);
                    }
                }
                Some(socket) => start.push((w, socket)),
            }
        }
        // What is left is not wanted: retired.
        for b in std::mem::take(&mut table.bound) {
            let e = b.endpoint;
            let grace = e.settings.load().drain_accepting_for;
            e.state.store(DRAINING, Ordering::Release);
            tracing::info!(listener = %e.name(), address = %e.local, ?grace, "listener retired: draining");
            e.retire.send_replace(Some(grace));
            table.retired.push(e);
        }
        table.bound = keep;
        // Inherited sockets nobody asked for close here.
        table.inherited.clear();
        drop(table);
        for (w, socket) in start {
            let local = match socket.local_addr() {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(listener = %w.name, error = %e, "a bound socket has no address");
                    continue;
                }
            };
            tracing::info!(listener = %w.name, address = %local, "listener bound");
            let endpoint = listeners.endpoint(&w.name, w.requested, local, w.settings);
            if let Err(e) = listeners.start(endpoint, socket) {
                tracing::error!(listener = %w.name, error = %e, "cannot start accepting");
            }
        }
    }
}

/// A listening socket on `addr`, non-blocking, close-on-exec (the standard library sets
/// `SO_REUSEADDR`, so a port in `TIME_WAIT` is no obstacle).
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpListener::bind(addr)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn bind_error(name: &str, addr: SocketAddr, e: &std::io::Error) -> ConfigError {
    let source = SourceRef {
        file: Arc::from("worker"),
        document: 0,
        line_offset: 0,
    };
    ConfigError::new(
        &source,
        Position::UNKNOWN,
        format!("cannot listen on {addr}: {e}"),
    )
    .entity(Kind::Listener, name)
    .field("spec.port")
}
