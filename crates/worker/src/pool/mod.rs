//! Upstream connections, pooled per target: HTTP/1.1 ones driven by the request that uses
//! them (here), HTTP/2 ones shared by the requests of a core (`h2.rs`).
//!
//! hyper's legacy client gives every upstream connection a task of its own: each request
//! is handed to that task through a channel and its response handed back, two task
//! wake-ups per request (across threads when the tasks sit on different ones), plus a pool
//! checkout under a lock shared by every host. Here an upstream connection has no task: the
//! request's own future drives it (`hyper::client::conn::http1`'s `Connection` polled beside
//! the response future), and so does the response body on its way to the client
//! ([`Lease`]), as nginx's event loop does. When the body has ended, the connection goes
//! back to its target's idle list; the next request takes the most recently used one.
//!
//! A connection belongs to the runtime whose reactor it is registered with, so each target
//! keeps one idle list (a lane) per data-plane core (`cores.rs`): a request takes from and
//! gives back to its own core's lane only, and the lane's lock is never contended by
//! another request.
//!
//! Idle connections are closed after [`IDLE_TIMEOUT`], shorter than the keep-alive of
//! common upstream servers, so the gateway is the one to close an idle connection. One the
//! upstream closed anyway is noticed when it is taken (its driver has finished) and skipped;
//! one it closes just as a request is written gives the request back unsent
//! ([`SendError::NotSent`]), to be sent again on a fresh connection.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

mod h2;

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use switchyard_engine::runtime::UpstreamProtocol;
use switchyard_engine::tls::UpstreamTls;
use tokio::net::TcpStream;

use crate::proxy::body::RequestBody;
use crate::upstream_tls::{self, TlsTarget, UpstreamIo, UpstreamTlsError};

/// Idle upstream connections are closed after this long: shorter than the keep-alive of
/// common upstream servers (Node.js 5 s, Apache 5 s, nginx 75 s), so the gateway closes an
/// idle connection before the upstream does and seldom reuses one that is being closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// How often a target's failing TLS handshakes are logged (each is counted in metrics).
const TLS_WARNING_EVERY: Duration = Duration::from_secs(10);

/// At most this many idle connections are kept per target and lane.
const MAX_IDLE_PER_TARGET: usize = 512;

/// Every target's pool, shared by all configuration generations so that a swap never
/// throws away warm connections: a proxy version compiled later finds the pools of the
/// targets it shares with the previous one (same authority, connect timeout and TLS
/// settings).
pub struct Pools {
    by_target: Mutex<HashMap<PoolKey, Weak<HostPool>>>,
    /// Idle lists per target: one per data-plane core.
    lanes: usize,
    /// The system's trusted roots, read when the first `https://` target needs them.
    system_roots: OnceLock<Arc<RootCertStore>>,
}

/// A target's authority, connect timeout, TLS settings (`None`: plain HTTP) and protocol.
type PoolKey = (Authority, Duration, Option<String>, UpstreamProtocol);

impl Default for Pools {
    fn default() -> Self {
        Pools::new(1)
    }
}

impl Pools {
    /// Pools whose targets keep `lanes` idle lists (at least one).
    pub fn new(lanes: usize) -> Pools {
        Pools {
            by_target: Mutex::default(),
            lanes: lanes.max(1),
            system_roots: OnceLock::new(),
        }
    }

    /// The pool of the target at `authority` (over TLS with `tls`, speaking `protocol`),
    /// made if no live generation has it.
    pub fn get(
        &self,
        authority: &Authority,
        connect_timeout: Duration,
        tls: Option<&UpstreamTls>,
        protocol: UpstreamProtocol,
    ) -> Arc<HostPool> {
        let mut map = self
            .by_target
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (
            authority.clone(),
            connect_timeout,
            tls.map(|t| t.key.clone()),
            protocol,
        );
        if let Some(p) = map.get(&key).and_then(Weak::upgrade) {
            return p;
        }
        // Targets no generation uses any more are forgotten (their pools are gone).
        map.retain(|_, p| p.strong_count() > 0);
        let client = |protocol| {
            tls.map(|t| {
                TlsTarget::new(t, authority.host(), alpn(protocol), || {
                    self.system_roots
                        .get_or_init(upstream_tls::system_roots)
                        .clone()
                })
            })
        };
        // Upgrades (WebSocket) are HTTP/1.1 exchanges: their connections offer only that.
        let upgrade_tls = match protocol {
            UpstreamProtocol::Http1 => None,
            _ => client(UpstreamProtocol::Http1),
        };
        let pool = Arc::new(HostPool::new(
            authority,
            connect_timeout,
            (client(protocol), upgrade_tls),
            protocol,
            self.lanes,
        ));
        map.insert(key, Arc::downgrade(&pool));
        pool
    }

    /// Closes the idle connections that have outlived [`IDLE_TIMEOUT`] in every pool.
    fn close_expired(&self) {
        let pools: Vec<Arc<HostPool>> = self
            .by_target
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        let now = Instant::now();
        for p in pools {
            p.close_expired(now);
        }
    }

    /// Closes expired idle connections every second while `pools` lives (when there is a
    /// runtime to do it on: an in-process bench that only compiles has none).
    pub fn spawn_reaper(pools: &Arc<Pools>) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let weak = Arc::downgrade(pools);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(p) => p.close_expired(),
                    None => return,
                }
            }
        });
    }
}

/// The protocols offered in a TLS handshake (ALPN) for `protocol`.
fn alpn(protocol: UpstreamProtocol) -> Vec<Vec<u8>> {
    match protocol {
        UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
        UpstreamProtocol::Http2 => vec![b"h2".to_vec()],
        UpstreamProtocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    }
}

/// A target's TLS client (`None`: plain HTTP), or why there is none.
type TargetTls = Option<Result<TlsTarget, String>>;

/// One target's connections: where to connect, the `Host` to send, and the idle ones
/// per lane (most recently used last).
pub struct HostPool {
    /// `host:port` to connect to.
    addr: String,
    /// The target's authority, sent as `Host` (HTTP/1.1) or `:authority` (HTTP/2).
    host: HeaderValue,
    authority: Authority,
    scheme: Scheme,
    protocol: UpstreamProtocol,
    /// Each lane's shared HTTP/2 connection (unused with `http1`).
    h2: Box<[h2::Slot]>,
    connect_timeout: Duration,
    /// For an `https://` target: its TLS client, or why there is none.
    tls: TargetTls,
    /// For an `https://` target whose `tls` offers `h2`: the TLS client of upgrades, which
    /// offers HTTP/1.1 only.
    upgrade_tls: TargetTls,
    /// When this pool last logged a failed TLS handshake (seconds since `created`): at
    /// most one warning per [`TLS_WARNING_EVERY`], however many requests fail.
    tls_warned: std::sync::atomic::AtomicU64,
    created: Instant,
    lanes: Box<[Mutex<VecDeque<Idle>>]>,
}

struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

/// One upstream connection: hyper's request sender and the connection state machine it
/// goes with, which whoever uses the connection drives (it has no task of its own). Kept
/// boxed (its buffers make it hundreds of bytes): it moves between the pool, the request
/// and the response body as a pointer.
pub struct Conn {
    sender: http1::SendRequest<RequestBody>,
    /// `None` once the connection is over.
    driver: Option<http1::Connection<TokioIo<UpstreamIo>, RequestBody>>,
}

impl Conn {
    /// Drives the connection; `true` once it is over (closed by either side, or failed).
    /// An over connection's state machine is dropped, which answers a request still
    /// queued on it (with the request itself: it was never written).
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(d) = &mut self.driver else {
            return true;
        };
        if Pin::new(d).poll(cx).is_ready() {
            self.driver = None;
            return true;
        }
        false
    }

    /// Whether an idle connection can take a request now: still open, and ready.
    fn usable(&mut self, cx: &mut Context<'_>) -> bool {
        !self.drive(cx) && matches!(self.sender.poll_ready(cx), Poll::Ready(Ok(())))
    }
}

/// A new connection, by the protocol it speaks.
enum Connected {
    Http1(Box<Conn>),
    Http2(h2::Connected),
}

/// Why a request got no response head.
pub enum SendError {
    /// Nothing of the request was written (the connection was closed first): it comes
    /// back, to be sent again on a fresh connection whatever its method.
    NotSent(Box<Request<RequestBody>>, hyper::Error),
    /// No connection could be made.
    Connect(std::io::Error),
    /// The request was (at least partly) written; then the exchange failed.
    Failed(hyper::Error),
    /// The connection ended without an answer to the request, nor the request back.
    Closed,
}

impl HostPool {
    fn new(
        authority: &Authority,
        connect_timeout: Duration,
        (tls, upgrade_tls): (TargetTls, TargetTls),
        protocol: UpstreamProtocol,
        lanes: usize,
    ) -> HostPool {
        let scheme = if tls.is_some() {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        let port = authority
            .port_u16()
            .unwrap_or(if tls.is_some() { 443 } else { 80 });
        HostPool {
            addr: format!("{}:{port}", authority.host()),
            host: HeaderValue::from_str(authority.as_str())
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
            authority: authority.clone(),
            scheme,
            protocol,
            h2: (0..lanes.max(1)).map(|_| Mutex::default()).collect(),
            connect_timeout,
            tls,
            upgrade_tls,
            tls_warned: std::sync::atomic::AtomicU64::new(u64::MAX),
            created: Instant::now(),
            lanes: (0..lanes.max(1)).map(|_| Mutex::default()).collect(),
        }
    }

    /// The idle list of `lane` (any lane number maps to one).
    fn lane(&self, lane: usize) -> &Mutex<VecDeque<Idle>> {
        &self.lanes[lane % self.lanes.len()]
    }

    /// Sends `req` (origin-form URI; `Host` is set here) on an idle connection of `lane`,
    /// or on a new one when `fresh` or none is idle, driving the connection until the
    /// response head has arrived. The [`Lease`] carries the connection on to the response
    /// body, and back to `lane` (an HTTP/2 connection is shared instead: `h2.rs`).
    pub async fn send(
        self: &Arc<Self>,
        req: Request<RequestBody>,
        fresh: bool,
        lane: usize,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        let h2_slot = &self.h2[lane % self.h2.len()];
        let speaks_h2 = self.protocol != UpstreamProtocol::Http1;
        if speaks_h2
            && !fresh
            && let Some((sender, stream)) = h2::take(h2_slot)
        {
            return self.send_h2(sender, stream, req, lane).await;
        }
        let reused = if fresh || self.protocol == UpstreamProtocol::Http2 {
            None
        } else {
            self.checkout(lane).await
        };
        let conn = match reused {
            Some(c) => c,
            None => match self.connect().await.map_err(SendError::Connect)? {
                Connected::Http1(c) => c,
                Connected::Http2(new) => {
                    let stream = h2::keep(h2_slot, &new);
                    return self.send_h2(new.sender, stream, req, lane).await;
                }
            },
        };
        self.send_h1(conn, req, lane).await
    }

    /// Sends `req` on the HTTP/2 connection `sender`, as `stream`.
    async fn send_h2(
        self: &Arc<Self>,
        sender: h2::Sender,
        stream: h2::StreamGuard,
        req: Request<RequestBody>,
        lane: usize,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        let resp = h2::send(sender, req, &self.scheme, &self.authority).await?;
        // Nothing to drive or give back: the connection is the lane's, its task drives it.
        // The stream is counted until the response body is over.
        let lease = Lease {
            conn: None,
            _h2_stream: Some(stream),
            pool: self.clone(),
            lane,
        };
        Ok((resp, lease))
    }

    /// Sends `req` on the HTTP/1.1 connection `conn`, driving it until the response head.
    async fn send_h1(
        self: &Arc<Self>,
        mut conn: Box<Conn>,
        mut req: Request<RequestBody>,
        lane: usize,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        req.headers_mut()
            .insert(http::header::HOST, self.host.clone());
        let mut response = std::pin::pin!(conn.sender.try_send_request(req));
        let result = poll_fn(|cx| {
            if let Poll::Ready(r) = response.as_mut().poll(cx) {
                return Poll::Ready(Some(r));
            }
            if conn.drive(cx) {
                // The connection is over and its state machine dropped: the request has its
                // answer (an error, with the request itself if it was never written).
                return Poll::Ready(match response.as_mut().poll(cx) {
                    Poll::Ready(r) => Some(r),
                    Poll::Pending => None,
                });
            }
            Poll::Pending
        })
        .await;
        let Some(result) = result else {
            return Err(SendError::Closed);
        };
        match result {
            Ok(resp) => Ok((
                resp,
                Lease {
                    conn: Some(conn),
                    _h2_stream: None,
                    pool: self.clone(),
                    lane,
                },
            )),
            Err(mut e) => match e.take_message() {
                Some(req) => Err(SendError::NotSent(Box::new(req), e.into_error())),
                None => Err(SendError::Failed(e.into_error())),
            },
        }
    }

    /// The most recently used idle connection that is still usable; the others on the way
    /// are closed.
    async fn checkout(&self, lane: usize) -> Option<Box<Conn>> {
        loop {
            let mut c = {
                let mut idle = self
                    .lane(lane)
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let c = idle.pop_back()?;
                if c.since.elapsed() >= IDLE_TIMEOUT {
                    // The rest are older still.
                    idle.clear();
                    return None;
                }
                c.conn
            };
            if poll_fn(|cx| Poll::Ready(c.usable(cx))).await {
                return Some(c);
            }
        }
    }

    fn checkin(&self, conn: Box<Conn>, lane: usize) {
        let mut idle = self
            .lane(lane)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_PER_TARGET {
            idle.push_back(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    fn close_expired(&self, now: Instant) {
        if let Some(idle_before) = now.checked_sub(IDLE_TIMEOUT) {
            for slot in &self.h2 {
                h2::expire(slot, idle_before);
            }
        }
        for lane in &self.lanes {
            let expired: Vec<Idle> = {
                let mut idle = lane.lock().unwrap_or_else(PoisonError::into_inner);
                let n = idle
                    .iter()
                    .take_while(|i| now.duration_since(i.since) >= IDLE_TIMEOUT)
                    .count();
                idle.drain(..n).collect()
            };
            // Closed outside the lock.
            drop(expired);
        }
    }

    /// Logs a failed handshake, unless one was logged less than [`TLS_WARNING_EVERY`] ago.
    fn warn_tls(&self, name: &rustls::pki_types::ServerName<'_>, e: &std::io::Error) {
        use std::sync::atomic::Ordering;
        let now = self.created.elapsed().as_secs();
        let last = self.tls_warned.load(Ordering::Relaxed);
        let due = last == u64::MAX || now >= last + TLS_WARNING_EVERY.as_secs();
        if due
            && self
                .tls_warned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(target = %self.addr, name = ?name, error = %e, "upstream TLS handshake failed (logged at most every 10 s; every failure is counted in switchyard_upstream_errors_total, kind tls)");
        }
    }

    /// A new connection to the target with `tls` (`None`: plain), its TLS handshake
    /// included: both within the connect timeout.
    async fn open(&self, tls: Option<&Result<TlsTarget, String>>) -> std::io::Result<UpstreamIo> {
        let timed_out = || {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no connection to {} within {:?}",
                    self.addr, self.connect_timeout
                ),
            )
        };
        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        let stream = tokio::time::timeout_at(deadline, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| timed_out())??;
        stream.set_nodelay(true)?;
        Ok(match tls {
            None => UpstreamIo::Plain(stream),
            Some(Err(why)) => {
                return Err(std::io::Error::other(UpstreamTlsError(
                    std::io::Error::other(why.clone()),
                )));
            }
            Some(Ok(tls)) => {
                let handshake = tls.connector.connect(tls.name.clone(), stream);
                match tokio::time::timeout_at(deadline, handshake).await {
                    Err(_) => return Err(timed_out()),
                    Ok(Err(e)) => {
                        self.warn_tls(&tls.name, &e);
                        return Err(std::io::Error::other(UpstreamTlsError(e)));
                    }
                    Ok(Ok(s)) => UpstreamIo::Tls(Box::new(s)),
                }
            }
        })
    }

    /// A new pooled connection, speaking HTTP/2 with `http2`, or with `auto` when the
    /// target chose `h2` in the TLS handshake (ALPN); HTTP/1.1 otherwise.
    async fn connect(&self) -> std::io::Result<Connected> {
        let io = self.open(self.tls.as_ref()).await?;
        let h2 = match self.protocol {
            UpstreamProtocol::Http1 => false,
            UpstreamProtocol::Http2 => true,
            UpstreamProtocol::Auto => io.alpn_h2(),
        };
        if h2 {
            return h2::handshake(io, &self.addr).await.map(Connected::Http2);
        }
        let (sender, driver) = http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(std::io::Error::other)?;
        Ok(Connected::Http1(Box::new(Conn {
            sender,
            driver: Some(driver),
        })))
    }
}

/// An upstream connection lent to one response: driven while its body is read, given back
/// to the pool once the body has ended, closed if the response is dropped before that.
pub struct Lease {
    conn: Option<Box<Conn>>,
    /// An HTTP/2 response's stream, counted on its shared connection until the lease ends
    /// (held for its `Drop`).
    _h2_stream: Option<h2::StreamGuard>,
    pool: Arc<HostPool>,
    lane: usize,
}

impl Lease {
    /// Drives the connection (reads the response body on, writes what is left of the
    /// request). Once it is over, it is not given back.
    pub fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(c) = &mut self.conn
            && c.drive(cx)
        {
            self.conn = None;
        }
    }

    /// The response body has ended: the connection can take another request.
    pub fn release(mut self) {
        if let Some(c) = self.conn.take() {
            self.pool.checkin(c, self.lane);
        }
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("target", &self.pool.addr)
            .field("open", &self.conn.is_some())
            .finish()
    }
}

/// Upgrades (WebSocket, `proxy/upgrade.rs`): a dedicated connection that never joins the
/// pool, since the upgraded connection is the WebSocket's for its whole life. Kept apart
/// from the pooled `connect` so that the two can change independently.
impl HostPool {
    /// A new connection to the target, its TLS handshake included (both within the connect
    /// timeout), and the `Host` to send on it. Over TLS, a target that negotiated anything
    /// but HTTP/1.1 by ALPN is refused: an upgrade is an HTTP/1.1 exchange.
    pub(crate) async fn connect_dedicated(&self) -> std::io::Result<(UpstreamIo, HeaderValue)> {
        let io = self
            .open(self.upgrade_tls.as_ref().or(self.tls.as_ref()))
            .await?;
        if let UpstreamIo::Tls(s) = &io
            && let Some(alpn) = s.get_ref().1.alpn_protocol()
            && alpn != b"http/1.1"
        {
            return Err(std::io::Error::other(
                "the upstream negotiated a protocol other than HTTP/1.1 for an upgrade",
            ));
        }
        Ok((io, self.host.clone()))
    }
}
