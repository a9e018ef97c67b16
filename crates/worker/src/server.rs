//! The data-plane listeners: an accept loop per socket (`listeners.rs` decides which
//! sockets), each serving HTTP/1.1 (keep-alive) and HTTP/2 — in clear, or over TLS
//! (`tls.rs`) — by its listener's settings, with graceful shutdown passed in as a value.
//!
//! Each connection is admitted against the connection limit (`connections.rs`: shedding
//! the connections idle the longest, or refusing with a 503 at once), and lives by the
//! environment's traffic timeouts read when it is accepted: closed once it has had no
//! request in flight for `idle` (a new connection that sends nothing included), and cut
//! when the client stops reading a response for `send`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use switchyard_engine::tls::ClientIdentity;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::connections::{Admitted, ConnState, Connections};
use crate::cores::Cores;
use crate::idle::IdleTimer;
use crate::listeners::{Endpoint, EndpointConn, Listeners, Start};
use crate::proxy;
use crate::runtime::Runtime;
use crate::tls::{HttpsAcceptor, TlsOptions};

/// What an over-limit connection is told before it is closed: a 503 a client can act on
/// (retry elsewhere), written without reading the request so no descriptor is held.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-type: application/json\r\nretry-after: 1\r\ncontent-length: 114\r\n\r\n{\"error\":\"connection_limit\",\"message\":\"this gateway is at its connection limit; retry later\",\"source\":\"internal\"}\n";

/// What every accept loop shares: how connections are served and where they go.
pub(crate) struct Shared {
    /// HTTP/1.1 and HTTP/2 (detected by the preface, or by ALPN over TLS).
    both: auto::Builder<TokioExecutor>,
    /// HTTP/1.1 only (a listener with `http2: false`).
    http1: auto::Builder<TokioExecutor>,
    current: Arc<ArcSwap<Runtime>>,
    connections: Arc<Connections>,
    tls: HttpsAcceptor,
    cores: Option<Cores>,
}

impl Shared {
    pub fn new(current: Arc<ArcSwap<Runtime>>, tls: HttpsAcceptor, cores: Option<Cores>) -> Shared {
        let mut both = auto::Builder::new(TokioExecutor::new());
        both.http1().timer(TokioTimer::new()).keep_alive(true);
        both.http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30));
        let http1 = both.clone().http1_only();
        let connections = current.load().obs.connections.clone();
        Shared {
            both,
            http1,
            current,
            connections,
            tls,
            cores,
        }
    }

    /// Admits a connection accepted on `endpoint` (or refuses it, over a limit) and serves
    /// it by the endpoint's settings and the gateway's timeouts current now.
    fn admit(&self, endpoint: &Arc<Endpoint>, stream: TcpStream, remote: SocketAddr) {
        let settings = endpoint.settings.load_full();
        let Some(counted) = endpoint.admit(settings.max_connections) else {
            self.connections.metrics.refused.inc();
            if !settings.tls {
                refuse(&stream);
            }
            return;
        };
        let rt = self.current.load();
        let gateway = rt.snapshot.gateway();
        let limit = self.connections.limit(gateway.max_connections);
        let Some(admitted) = self.connections.admit(limit, endpoint.id) else {
            // A TLS client could not read a plain-text 503: it just sees the connection
            // close.
            if !settings.tls {
                refuse(&stream);
            }
            return;
        };
        let timeouts = gateway.timeouts;
        drop(rt);
        let _ = stream.set_nodelay(true);
        let mut builder = if settings.http2 {
            self.both.clone()
        } else {
            self.http1.clone()
        };
        builder
            .http1()
            .header_read_timeout(settings.header_timeout.unwrap_or(timeouts.idle));
        let conn = Accepted {
            builder,
            http1_only: !settings.http2,
            remote,
            admitted,
            _counted: counted,
            timeouts: ConnTimeouts {
                idle: timeouts.idle,
                send: timeouts.send,
                request_body_idle: settings.request_body_idle,
            },
            current: self.current.clone(),
            draining: endpoint.draining.clone(),
            tls: settings.tls.then(|| {
                (
                    self.tls.clone(),
                    TlsOptions {
                        http2: settings.http2,
                        require_client_certificate: settings.require_client_certificate,
                    },
                )
            }),
        };
        match &self.cores {
            None => {
                tokio::spawn(conn.serve(stream, 0));
            }
            Some(cores) => hand_over(cores, conn, stream),
        }
    }
}

/// How long a draining Worker lets its clients close their connections themselves (told
/// by `Connection: close` on their next response) before it closes the idle ones.
const LINGER: Duration = Duration::from_secs(1);

/// Serves until `shutdown` turns true: an accept loop per socket, those of `starts` (the
/// flags' sockets, then each listener the environment adds). Then stops accepting, asks
/// every connection to close after its current request (HTTP/1: `Connection: close` on
/// its next response, and after [`LINGER`] the idle ones are closed; HTTP/2: GOAWAY), and
/// waits up to `drain` for in-flight requests to finish.
///
/// With `shared.cores`, each accepted connection is handed to one of them and served there
/// (see `cores.rs`), its TLS handshake included; without, it is served on the calling
/// runtime.
pub async fn serve(
    mut starts: mpsc::UnboundedReceiver<Start>,
    listeners: Arc<Listeners>,
    shared: Shared,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let shared = Arc::new(shared);
    let connections = shared.connections.clone();
    let mut loops = JoinSet::new();
    loop {
        tokio::select! {
            Some(start) = starts.recv() => {
                let Start { endpoint, socket } = start;
                match TcpListener::from_std(socket) {
                    Ok(socket) => {
                        loops.spawn(accept_loop(endpoint, socket, shared.clone(), shutdown.clone()));
                    }
                    Err(e) => {
                        endpoint.closed();
                        tracing::error!(listener = %endpoint.name(), error = %e, "cannot accept on a listener");
                    }
                }
            }
            Some(_) = loops.join_next(), if !loops.is_empty() => {}
            _ = stopped(&mut shutdown) => break,
        }
    }
    listeners.drain_all();
    while loops.join_next().await.is_some() {}
    tracing::info!("listeners closed; draining in-flight requests");
    // First the clients close by themselves: every response now says `Connection: close`
    // (the Worker is draining), so a busy keep-alive client is told on its next answer and
    // reconnects — to a successor, in a handover. Closing an idle connection at once would
    // race a request the client is sending on it (it would see a reset and have to retry).
    // The connections still open after `LINGER` are idle ones: they are asked to close.
    let linger = LINGER.min(drain);
    let lingered = tokio::select! {
        _ = connections.all_closed() => true,
        _ = tokio::time::sleep(linger) => false,
    };
    if !lingered {
        connections.close_all();
        tokio::select! {
            _ = connections.all_closed() => {},
            _ = tokio::time::sleep(drain.saturating_sub(linger)) => tracing::warn!(?drain, "drain deadline reached; closing remaining connections"),
        }
    }
    tracing::info!("connections drained");
    // The cores' threads end here (every accept loop, and its `Shared`, is gone), with
    // whatever connections the deadline left on them.
    drop(shared);
}

/// Accepts on one socket until the Worker stops (the socket may live on in a successor:
/// its queue is left alone) or the socket is retired: then it goes on accepting for the
/// grace it was retired with, serves what is queued, closes, and after [`LINGER`] asks its
/// idle connections to close (busy ones are told by `Connection: close`).
async fn accept_loop(
    endpoint: Arc<Endpoint>,
    socket: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut retire = endpoint.retire.subscribe();
    let mut until: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok((stream, remote)) => shared.admit(&endpoint, stream, remote),
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            grace = retired(&mut retire), if until.is_none() => {
                endpoint.draining.store(true, Ordering::Release);
                until = Some(tokio::time::Instant::now() + grace);
            }
            () = sleep_until(until), if until.is_some() => break,
            _ = stopped(&mut shutdown) => {
                endpoint.closed();
                return;
            }
        }
    }
    // Retired: what the kernel queued before the close is served, not reset.
    while let Poll::Ready(Ok((stream, remote))) =
        std::future::poll_fn(|cx| Poll::Ready(socket.poll_accept(cx))).await
    {
        shared.admit(&endpoint, stream, remote);
    }
    drop(socket);
    endpoint.closed();
    tracing::info!(listener = %endpoint.name(), address = %endpoint.local, "listener closed; its connections drain");
    tokio::select! {
        () = tokio::time::sleep(LINGER) => shared.connections.close_endpoint(endpoint.id),
        _ = stopped(&mut shutdown) => {}
    }
}

/// Completes with the grace a socket is retired with.
async fn retired(rx: &mut watch::Receiver<Option<Duration>>) -> Duration {
    // The guard `wait_for` returns is not `Send`: read it inside this expression.
    let grace = rx
        .wait_for(Option::is_some)
        .await
        .map(|g| g.unwrap_or_default());
    match grace {
        Ok(grace) => grace,
        // Its endpoint is gone: the Worker stops.
        Err(_) => std::future::pending().await,
    }
}

async fn sleep_until(until: Option<tokio::time::Instant>) {
    match until {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Serves `stream` on the next core: the socket leaves this runtime's reactor and joins
/// that core's, so its readiness events are handled on the thread that serves it.
fn hand_over(cores: &Cores, conn: Accepted, stream: TcpStream) {
    let std = match stream.into_std() {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(remote = %conn.remote, error = %e, "cannot hand a connection to a core");
            return;
        }
    };
    cores.spawn(move |lane| async move {
        match TcpStream::from_std(std) {
            Ok(stream) => conn.serve(stream, lane).await,
            Err(e) => tracing::debug!(remote = %conn.remote, error = %e, "cannot register a connection on its core"),
        }
    });
}

/// Tells an over-limit client why, without waiting on it: one non-blocking write (a full
/// socket buffer just means the client sees the connection close), then the close.
fn refuse(stream: &TcpStream) {
    let _ = stream.try_write(REFUSED);
    tracing::debug!("connection refused: at the connection limit");
}

/// The traffic timeouts a connection lives by, read when it was accepted.
#[derive(Clone, Copy)]
struct ConnTimeouts {
    idle: Duration,
    send: Duration,
    /// Its listener's `requestBodyIdle`, if it sets one (else the gateway's, per request).
    request_body_idle: Option<Duration>,
}

/// An accepted, admitted connection and what serving it needs.
struct Accepted {
    builder: auto::Builder<TokioExecutor>,
    /// The listener says `http2: false`.
    http1_only: bool,
    remote: SocketAddr,
    admitted: Admitted,
    /// Counted against its listener's own limit while it lives.
    _counted: EndpointConn,
    timeouts: ConnTimeouts,
    current: Arc<ArcSwap<Runtime>>,
    /// Its listener's: set when the listener is retired or the Worker drains.
    draining: Arc<AtomicBool>,
    /// Set when the connection came in on an HTTPS listener: the handshake comes first.
    tls: Option<(HttpsAcceptor, TlsOptions)>,
}

/// What every request on a connection needs, behind one Arc: one refcount bump per request
/// instead of several.
pub(crate) struct ConnCtx {
    pub current: Arc<ArcSwap<Runtime>>,
    pub draining: Arc<AtomicBool>,
    /// The client's address as `Forwarded`/`X-Forwarded-For` give it.
    pub client: http::HeaderValue,
    pub remote: SocketAddr,
    pub(crate) state: Arc<ConnState>,
    /// The pool lane of the core serving this connection (0 without cores).
    pub lane: usize,
    /// Whether the client connected over TLS (`X-Forwarded-Proto: https`).
    pub tls: bool,
    /// The client certificate the TLS handshake verified (`mtls-auth` reads it).
    pub client_cert: Option<ClientIdentity>,
    /// Its listener's `requestBodyIdle`, if set (else the gateway's).
    pub request_body_idle: Option<Duration>,
}

impl Accepted {
    /// Serves the connection until it ends: closed by the client, idle for too long, or
    /// asked to close (drain) and done with its requests. On the HTTPS listener the TLS
    /// handshake comes first, bounded by the idle timeout (a client that connects and
    /// says nothing is not waited on longer than one that says nothing after a request).
    async fn serve(mut self, stream: TcpStream, lane: usize) {
        let Some((acceptor, options)) = self.tls.take() else {
            return self.serve_io(stream, lane, None).await;
        };
        let handshake =
            tokio::time::timeout(self.timeouts.idle, acceptor.accept(stream, options)).await;
        match handshake {
            Ok(Ok(tls)) => self.serve_io(tls.stream, lane, Some(tls.client)).await,
            Ok(Err(e)) => {
                self.current.load().obs.metrics.tls_handshake_failures.inc();
                tracing::debug!(remote = %self.remote, error = %e, "TLS handshake failed");
            }
            Err(_) => {
                self.current.load().obs.metrics.tls_handshake_failures.inc();
                tracing::debug!(remote = %self.remote, "TLS handshake timed out");
            }
        }
    }

    /// `tls`: the connection is TLS, with the client certificate's identity if verified.
    async fn serve_io<S>(self, stream: S, lane: usize, tls: Option<Option<ClientIdentity>>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Accepted {
            builder,
            http1_only,
            remote,
            admitted,
            _counted,
            timeouts,
            current,
            draining,
            tls: _,
        } = self;
        let conn_ctx = Arc::new(ConnCtx {
            current,
            draining,
            client: proxy::forward::client_value(remote.ip()),
            remote,
            state: admitted.state.clone(),
            lane,
            tls: tls.is_some(),
            client_cert: tls.flatten(),
            request_body_idle: timeouts.request_body_idle,
        });
        // Boxed: hyper keeps each request's future in its dispatcher, and a boxed one is
        // moved there as a pointer instead of as the whole request state (kilobytes) by
        // value.
        let svc = service_fn(move |req| {
            let c = conn_ctx.clone();
            Box::pin(async move {
                let active = c.state.request();
                proxy::handle(&c, active, req).await
            })
        });
        let io = SendTimeout {
            io: TokioIo::new(PrefaceGuard::new(stream, http1_only)),
            send: IdleTimer::new(timeouts.send),
        };
        let conn = builder.serve_connection_with_upgrades(io, svc);
        let mut conn = std::pin::pin!(conn);
        let state = &admitted.state;
        let mut closing = false;
        let mut check = tokio::time::Instant::now() + timeouts.idle;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%remote, error = %e, "client connection ended with an error");
                    }
                    break;
                }
                () = state.close.notified(), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                    check = tokio::time::Instant::now() + timeouts.idle;
                }
                () = tokio::time::sleep_until(check) => {
                    let idle_for = state.idle_for();
                    if closing && state.is_idle() {
                        // Asked to close and still not gone after a whole idle period:
                        // a client that ignores it is not waited on.
                        break;
                    }
                    if idle_for >= timeouts.idle {
                        tracing::debug!(%remote, "closing an idle connection");
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                        check = tokio::time::Instant::now() + timeouts.idle;
                    } else {
                        check = tokio::time::Instant::now() + (timeouts.idle - idle_for);
                    }
                }
            }
        }
        // A request that took the connection over (a WebSocket, `proxy/upgrade.rs`) still
        // runs: the connection stays in the table (counted, drained) until it ends. Its
        // relay answers the drain's close itself.
        state.given_back().await;
        drop(admitted);
        drop(_counted);
    }
}

/// The client connection's socket, with writes bounded: a client that stops reading a
/// response for `send` gets its connection closed (which frees the request, its upstream
/// connection and its configuration generation).
struct SendTimeout<S> {
    io: TokioIo<S>,
    send: IdleTimer,
}

impl<S> SendTimeout<S> {
    fn bounded<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if self.send.stalled(cx, polled.is_ready()) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not read the response within the send timeout",
            )));
        }
        polled
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> hyper::rt::Read for SendTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> hyper::rt::Write for SendTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.bounded(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.bounded(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.bounded(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_shutdown(cx);
        this.bounded(cx, polled)
    }
}

/// The client's socket, on a listener with `http2: false`: a connection opening with the
/// HTTP/2 preface (`PRI * HTTP/2.0`) is served as the malformed HTTP/1.1 request it is
/// there (a 400, then closed). hyper_util's auto builder, once it serves upgrades
/// (WebSockets), detects HTTP/2 whatever `http1_only` says; turning the preface's fourth
/// byte into one no request line can hold keeps the listener's setting.
struct PrefaceGuard<S> {
    io: S,
    /// Still looking at the first bytes.
    checking: bool,
    /// The first bytes read so far (at most 4).
    first: [u8; 4],
    seen: usize,
}

impl<S> PrefaceGuard<S> {
    fn new(io: S, refuse_http2: bool) -> PrefaceGuard<S> {
        PrefaceGuard {
            io,
            checking: refuse_http2,
            first: [0; 4],
            seen: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PrefaceGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if this.checking && matches!(polled, Poll::Ready(Ok(()))) {
            let seen_before = this.seen;
            let new = &buf.filled()[before..];
            let take = new.len().min(4 - seen_before);
            this.first[seen_before..seen_before + take].copy_from_slice(&new[..take]);
            this.seen += take;
            if !b"PRI ".starts_with(&this.first[..this.seen]) || take == 0 {
                this.checking = false;
            } else if this.seen == 4 {
                this.checking = false;
                buf.filled_mut()[before + (3 - seen_before)] = 0;
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PrefaceGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Completes when the shutdown flag turns true (or its sender is gone).
pub(crate) async fn stopped(flag: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it inside this future.
    let _ = flag.wait_for(|s| *s).await.map(|_| ());
}
