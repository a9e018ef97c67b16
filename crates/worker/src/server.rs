//! The data-plane listener: HTTP/1.1 (keep-alive) and HTTP/2 cleartext on one port, with
//! graceful shutdown passed in as a value.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::proxy;
use crate::runtime::Runtime;

/// Serves until `shutdown` turns true, then stops accepting, asks every connection to close
/// after its current request (HTTP/1: `Connection: close`; HTTP/2: GOAWAY), and waits up to
/// `drain` for in-flight requests to finish.
pub async fn serve(
    listener: TcpListener,
    current: Arc<ArcSwap<Runtime>>,
    draining: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(Duration::from_secs(30));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30));
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    spawn_connection(&builder, &graceful, stream, remote, current.clone(), draining.clone());
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            _ = stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    tracing::info!("listener closed; draining in-flight requests");
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(drain) => tracing::warn!(?drain, "drain deadline reached; closing remaining connections"),
    }
}

fn spawn_connection(
    builder: &auto::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    current: Arc<ArcSwap<Runtime>>,
    draining: Arc<AtomicBool>,
) {
    // What every request on this connection needs, behind one Arc: one refcount bump per
    // request instead of three.
    struct Conn {
        current: Arc<ArcSwap<Runtime>>,
        draining: Arc<AtomicBool>,
        client: http::HeaderValue,
        remote: SocketAddr,
    }
    let conn_ctx = Arc::new(Conn {
        current,
        draining,
        client: proxy::forward::client_value(remote.ip()),
        remote,
    });
    let svc = service_fn(move |req| {
        let c = conn_ctx.clone();
        async move { proxy::handle(&c.current, &c.draining, c.remote, &c.client, req).await }
    });
    let conn = builder
        .serve_connection(TokioIo::new(stream), svc)
        .into_owned();
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%remote, error = %e, "client connection ended with an error");
        }
    });
}

/// Completes when the shutdown flag turns true (or its sender is gone).
pub(crate) async fn stopped(flag: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it inside this future.
    let _ = flag.wait_for(|s| *s).await.map(|_| ());
}
