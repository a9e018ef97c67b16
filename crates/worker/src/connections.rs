//! The Worker's client connections: each one's state (requests in flight, when it was last
//! busy), the connection limit kept below the file-descriptor limit, and the decisions
//! made at accept time — admit, shed the connections idle the longest to make room (as
//! Envoy's overload manager does), or refuse at once. Counted in `/metrics`.
//!
//! The limit is `spec.gateway.connections.max` when set, and never more than what the
//! process's `RLIMIT_NOFILE` leaves after reserving headroom: 64 descriptors for the
//! listeners, the admin API, logs and the Manager, and one upstream connection per client
//! connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Notify, watch};

/// Descriptors kept for everything but client connections and their upstream connections.
pub const RESERVED_DESCRIPTORS: u64 = 64;

/// The most client connections `RLIMIT_NOFILE = nofile` leaves room for.
pub fn limit_for_descriptors(nofile: u64) -> usize {
    let usable = nofile.saturating_sub(RESERVED_DESCRIPTORS) / 2;
    usize::try_from(usable.max(1)).unwrap_or(usize::MAX)
}

/// The metric handles of the connection table.
#[derive(Clone, Default)]
pub struct ConnectionMetrics {
    pub open: Gauge,
    pub idle: Gauge,
    pub limit: Gauge,
    pub shed: Counter,
    pub refused: Counter,
}

/// Every open client connection, and the limit.
pub struct Connections {
    /// From `RLIMIT_NOFILE` at start (raised once, before serving, by
    /// [`Connections::size_for`]).
    descriptor_limit: AtomicUsize,
    table: Mutex<Table>,
    next_id: AtomicU64,
    /// The clock connections' idle times are measured on.
    epoch: Instant,
    /// The number of open connections, for the drain to wait on.
    open_tx: watch::Sender<usize>,
    pub metrics: ConnectionMetrics,
}

/// The open connections, and how many of them were asked to close (shed) and are not gone
/// yet: kept together, so an accept never counts them.
#[derive(Default)]
struct Table {
    open: HashMap<u64, Arc<ConnState>>,
    shedding: usize,
}

/// One connection's state, shared by its task and its requests.
pub struct ConnState {
    id: u64,
    /// The socket it was accepted on (`listeners::Endpoint::id`).
    endpoint: u64,
    /// Requests accepted on it whose response has not ended.
    active: AtomicUsize,
    /// Milliseconds since the table's epoch when it was last busy (accepted, or a request
    /// ended).
    last_active_ms: AtomicU64,
    /// Asked to close (shed, or the Worker drains): wakes the connection's task, or the
    /// WebSocket relay that took the connection over.
    pub close: Notify,
    /// Requests that took the connection over (a WebSocket) and still run: the
    /// connection's task keeps the connection in the table until they end.
    taken_over: AtomicUsize,
    /// Notified when one of them ends.
    given_back: Notify,
    shed: AtomicBool,
    epoch: Instant,
}

impl ConnState {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// No request in flight.
    pub fn is_idle(&self) -> bool {
        self.active.load(Ordering::Acquire) == 0
    }

    /// How long it has been idle (zero while a request is in flight).
    pub fn idle_for(&self) -> std::time::Duration {
        if !self.is_idle() {
            return std::time::Duration::ZERO;
        }
        let since = self.last_active_ms.load(Ordering::Relaxed);
        std::time::Duration::from_millis(self.now_ms().saturating_sub(since))
    }

    /// Marks a request as started; the guard ends it when dropped (with its response).
    pub fn request(self: &Arc<Self>) -> ActiveRequest {
        self.active.fetch_add(1, Ordering::AcqRel);
        ActiveRequest(self.clone())
    }
}

impl ConnState {
    /// A request takes the connection over (an upgrade): the connection stays in the table
    /// until [`ConnState::give_back`].
    pub fn take_over(&self) {
        self.taken_over.fetch_add(1, Ordering::AcqRel);
    }

    /// The request that took the connection over has ended.
    pub fn give_back(&self) {
        self.taken_over.fetch_sub(1, Ordering::AcqRel);
        self.given_back.notify_one();
    }

    /// Completes once no request holds the connection taken over.
    pub async fn given_back(&self) {
        while self.taken_over.load(Ordering::Acquire) > 0 {
            self.given_back.notified().await;
        }
    }
}

/// A request in flight on a connection: the connection is not idle while it lives.
pub struct ActiveRequest(Arc<ConnState>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        let c = &self.0;
        c.last_active_ms.store(c.now_ms(), Ordering::Relaxed);
        c.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's place in the table; removed when dropped.
pub struct Admitted {
    pub state: Arc<ConnState>,
    table: Arc<Connections>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.table.remove(self.state.id);
    }
}

impl Connections {
    /// A table whose descriptor limit is the process's `RLIMIT_NOFILE` (soft) limit.
    pub fn new(metrics: ConnectionMetrics) -> Connections {
        let nofile = rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024);
        Connections::with_descriptor_limit(limit_for_descriptors(nofile), metrics)
    }

    pub fn with_descriptor_limit(descriptor_limit: usize, metrics: ConnectionMetrics) -> Self {
        Connections {
            descriptor_limit: AtomicUsize::new(descriptor_limit),
            table: Mutex::new(Table::default()),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
            open_tx: watch::Sender::new(0),
            metrics,
        }
    }

    /// The limit in force with the environment's setting `configured`.
    pub fn limit(&self, configured: Option<u32>) -> usize {
        let descriptors = self.descriptor_limit.load(Ordering::Relaxed);
        configured
            .and_then(|c| usize::try_from(c).ok())
            .map_or(descriptors, |c| c.min(descriptors))
    }

    /// Sizes the process for `connections` client connections (`kind: WorkerSettings`
    /// `maxConnections`, taken when the process starts): raises the soft `RLIMIT_NOFILE`
    /// to what they need, up to the hard limit, and returns the connections the
    /// descriptors now allow. Never lowers the limit.
    pub fn size_for(&self, connections: u32) -> usize {
        let wanted = u64::from(connections) * 2 + RESERVED_DESCRIPTORS;
        if let Ok((soft, hard)) = rlimit::getrlimit(rlimit::Resource::NOFILE)
            && soft < wanted
        {
            let target = wanted.min(hard);
            match rlimit::setrlimit(rlimit::Resource::NOFILE, target, hard) {
                Ok(()) => {
                    self.descriptor_limit
                        .store(limit_for_descriptors(target), Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(error = %e, wanted, "cannot raise the open-file limit");
                }
            }
            if target < wanted {
                tracing::warn!(
                    connections,
                    hard_limit = hard,
                    "WorkerSettings maxConnections needs more open files than the hard limit \
                     allows (raise LimitNOFILE= / ulimit -Hn)"
                );
            }
        }
        self.descriptor_limit.load(Ordering::Relaxed)
    }

    /// Admits a new connection under `limit`: when the table is full, the connections idle
    /// the longest are asked to close first (a batch, a 32nd of the limit, so a flood does
    /// not rescan the table at every accept); with none idle, the connection is refused
    /// (`None`).
    pub fn admit(self: &Arc<Self>, limit: usize, endpoint: u64) -> Option<Admitted> {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        // Connections already asked to close are on their way out: room is made for as
        // many new ones.
        if table.open.len() >= limit.saturating_add(table.shedding) {
            // Idle the longest first; among connections idle since the same millisecond,
            // the one accepted first.
            let mut idle: Vec<((u64, u64), &Arc<ConnState>)> = table
                .open
                .values()
                .filter(|c| c.is_idle() && !c.shed.load(Ordering::Relaxed))
                .map(|c| ((c.last_active_ms.load(Ordering::Relaxed), c.id), c))
                .collect();
            if idle.is_empty() {
                self.metrics.refused.inc();
                return None;
            }
            let batch = (limit / 32).clamp(1, idle.len());
            if batch < idle.len() {
                idle.select_nth_unstable_by_key(batch - 1, |(t, _)| *t);
            }
            for (_, c) in &idle[..batch] {
                c.shed.store(true, Ordering::Relaxed);
                c.close.notify_one();
                self.metrics.shed.inc();
            }
            table.shedding += batch;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState {
            id,
            endpoint,
            active: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(0),
            close: Notify::new(),
            taken_over: AtomicUsize::new(0),
            given_back: Notify::new(),
            shed: AtomicBool::new(false),
            epoch: self.epoch,
        });
        state
            .last_active_ms
            .store(state.now_ms(), Ordering::Relaxed);
        table.open.insert(id, state.clone());
        let open = table.open.len();
        drop(table);
        self.open_tx.send_replace(open);
        Some(Admitted {
            state,
            table: self.clone(),
        })
    }

    fn remove(&self, id: u64) {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = table.open.remove(&id)
            && c.shed.load(Ordering::Relaxed)
        {
            table.shedding = table.shedding.saturating_sub(1);
        }
        let open = table.open.len();
        drop(table);
        self.open_tx.send_replace(open);
    }

    /// Asks every connection to close after its current request (drain).
    pub fn close_all(&self) {
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        for c in table.open.values() {
            c.close.notify_one();
        }
    }

    /// Asks the connections accepted on one socket to close after their current request
    /// (the socket was retired).
    pub fn close_endpoint(&self, endpoint: u64) {
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        for c in table.open.values().filter(|c| c.endpoint == endpoint) {
            c.close.notify_one();
        }
    }

    /// Completes when no connection is open.
    pub async fn all_closed(&self) {
        let mut rx = self.open_tx.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Updates the gauges (at each scrape): open and idle connections, and the limit.
    pub fn refresh_metrics(&self, configured: Option<u32>) {
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let idle = table.open.values().filter(|c| c.is_idle()).count();
        let open = table.open.len();
        drop(table);
        let gauge = |g: &Gauge, n: usize| g.set(i64::try_from(n).unwrap_or(i64::MAX));
        gauge(&self.metrics.open, open);
        gauge(&self.metrics.idle, idle);
        gauge(&self.metrics.limit, self.limit(configured));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_leaves_room_for_upstream_connections_and_the_rest() {
        assert_eq!(limit_for_descriptors(1024), 480);
        assert_eq!(limit_for_descriptors(10), 1);
        let t = Connections::with_descriptor_limit(480, ConnectionMetrics::default());
        assert_eq!(t.limit(None), 480);
        assert_eq!(t.limit(Some(100)), 100);
        assert_eq!(t.limit(Some(100_000)), 480);
    }

    #[test]
    fn a_full_table_sheds_the_longest_idle_connection_and_refuses_when_none_is_idle() {
        let t = Arc::new(Connections::with_descriptor_limit(
            1000,
            ConnectionMetrics::default(),
        ));
        let a = t.admit(2, 0).unwrap();
        let b = t.admit(2, 0).unwrap();
        // `a` has been idle the longest: `b` was busy more recently.
        a.state.last_active_ms.store(0, Ordering::Relaxed);
        b.state.last_active_ms.store(10, Ordering::Relaxed);
        let busy = b.state.request();
        let c = t.admit(2, 0).unwrap();
        assert!(a.state.shed.load(Ordering::Relaxed));
        assert!(!b.state.shed.load(Ordering::Relaxed));
        assert_eq!(t.metrics.shed.get(), 1);
        // `a` is on its way out; `b` is busy, `c` idle: `c` goes next.
        let _d = t.admit(2, 0).unwrap();
        assert!(c.state.shed.load(Ordering::Relaxed));
        let _c_busy = c.state.request();
        drop(a);
        drop(c);
        // b and d left, b busy, d idle and fresh: d is shed for e.
        let d_state = _d.state.clone();
        let e = t.admit(2, 0).unwrap();
        assert!(d_state.shed.load(Ordering::Relaxed));
        drop(_d);
        let _e_busy = e.state.request();
        // b and e are busy: nothing to shed.
        assert!(t.admit(2, 0).is_none());
        assert_eq!(t.metrics.refused.get(), 1);
        drop(busy);
    }
}
