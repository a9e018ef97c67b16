//! Test harness for end-to-end tests: real sample upstreams on port 0, a real Worker in
//! the test process (as a task, like Sozu's e2e), real TCP clients, configuration written
//! to a temporary directory exactly as an operator would.

#![allow(clippy::unwrap_used)]

pub mod cluster;
pub mod forwarder;
pub mod raw;
pub mod send;
pub mod tls;
pub mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use switchyard_worker::sample_upstream::SampleUpstream;
use switchyard_worker::{Worker, WorkerHandle, WorkerOptions};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long any wait in a test may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A proxy manifest pointing `/payments` at `target`, tagging responses with `release`.
pub fn payments_manifest(release: &str, target: SocketAddr, extra_upstream: &str) -> String {
    format!(
        r#"apiVersion: switchyard.dev/v1
kind: Proxy
metadata:
  name: payments
  labels: {{ owner: payments-team }}
spec:
  routes:
    - pathPrefix: /payments
  upstream:
    targets:
      - url: http://{target}
{extra_upstream}
  policies:
    - type: headers
      response:
        set: {{ x-release: {release} }}
      request:
        set: {{ x-from-gateway: "yes" }}
"#
    )
}

/// A config directory the Worker watches. Writes are atomic (temp file + rename), as
/// deploy tools do, so the Worker never reads a half-written file.
pub struct ConfigDir {
    pub dir: tempfile::TempDir,
}

impl ConfigDir {
    pub fn new() -> ConfigDir {
        ConfigDir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, content: &str) {
        let tmp: PathBuf = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, self.dir.path().join(name)).unwrap();
    }
}

impl Default for ConfigDir {
    fn default() -> Self {
        Self::new()
    }
}

/// Everything one test runs against.
pub struct Harness {
    pub stop: watch::Sender<bool>,
    pub upstreams: Vec<SampleUpstream>,
}

impl Harness {
    /// Starts `ids.len()` sample upstreams on port 0.
    pub async fn upstreams(ids: &[&str]) -> Harness {
        let (stop, stop_rx) = watch::channel(false);
        let mut upstreams = Vec::new();
        for id in ids {
            let up = SampleUpstream::start("127.0.0.1:0".parse().unwrap(), id, stop_rx.clone())
                .await
                .unwrap();
            upstreams.push(up);
        }
        Harness { stop, upstreams }
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        self.upstreams[i].addr
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// A Worker running as a task on port 0.
pub struct RunningWorker {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub handle: WorkerHandle,
    pub shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: JoinHandle<()>,
}

impl RunningWorker {
    pub async fn start(config: &Path) -> RunningWorker {
        Self::start_with(WorkerOptions::new(config)).await
    }

    /// Starts a standalone Worker. Unless `options` say otherwise, it serves on two
    /// data-plane threads of its own, as `switchyard worker` does (Workers in a [`Cluster`]
    /// serve on the test's runtime, as `switchyard up`'s do: both layouts are under test).
    pub async fn start_with(options: WorkerOptions) -> RunningWorker {
        Self::start_inner(options, None).await
    }

    /// [`RunningWorker::start_with`], also serving HTTPS; returns the HTTPS address too.
    pub async fn start_https(options: WorkerOptions) -> (RunningWorker, SocketAddr) {
        let tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tls.local_addr().unwrap();
        (Self::start_inner(options, Some(tls)).await, addr)
    }

    async fn start_inner(mut options: WorkerOptions, tls: Option<TcpListener>) -> RunningWorker {
        if options.threads.is_none() {
            options.threads = std::num::NonZeroUsize::new(2);
        }
        let mut worker = Worker::new(options).unwrap();
        if let Some(l) = tls {
            worker.listen_tls(l);
        }
        let handle = worker.handle();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let admin_addr = admin.local_addr().unwrap();
        let (tx, task) = spawn_worker(worker, listener, admin);
        RunningWorker {
            addr,
            admin: admin_addr,
            handle,
            shutdown: Some(tx),
            task,
        }
    }

    /// A standalone Worker that binds the `kind: Listener` entities of its files instead of
    /// a given socket (`addr` is its admin address then: the listeners' are in
    /// [`RunningWorker::listener`]).
    pub async fn start_from_environment(options: WorkerOptions) -> RunningWorker {
        let mut worker = Worker::new(options).unwrap();
        worker.listen_from_environment(switchyard_worker::EnvironmentListeners::default());
        let handle = worker.handle();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin_addr = admin.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            worker
                .serve(None, Some(admin), async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        RunningWorker {
            addr: admin_addr,
            admin: admin_addr,
            handle,
            shutdown: Some(tx),
            task,
        }
    }

    /// The bound address of listener `name`, once it serves (bounded by [`DEADLINE`]).
    pub async fn listener(&self, name: &str) -> SocketAddr {
        let mut found = None;
        eventually("the listener serves", || {
            found = self
                .handle
                .status()
                .listeners
                .into_iter()
                .find(|l| l.name == name && l.state == "serving")
                .and_then(|l| l.address.parse().ok());
            found.is_some()
        })
        .await;
        found.unwrap_or_else(|| unreachable!())
    }

    /// Waits (bounded by [`DEADLINE`]) until the Worker serves at least `revision`.
    pub async fn wait_for_revision(&self, revision: u64) {
        let mut rx = self.handle.subscribe();
        tokio::time::timeout(DEADLINE, rx.wait_for(|r| *r >= revision))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "worker did not reach revision {revision} in time (at {}; last reload: {:?})",
                    self.handle.revision(),
                    self.handle.status().last_reload
                )
            })
            .unwrap();
    }

    /// Starts a graceful shutdown.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Runs a Worker as a task; the sender starts its graceful shutdown.
pub fn spawn_worker(
    worker: Worker,
    listener: TcpListener,
    admin: TcpListener,
) -> (tokio::sync::oneshot::Sender<()>, JoinHandle<()>) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        worker
            .run(listener, Some(admin), async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (tx, task)
}

/// An address where connections are refused for as long as this lives: the port is bound
/// (so nothing else — another test's listener on port 0 — can take it) but not listening.
/// A listener bound and dropped would free the port for the next test to take, and a
/// "dead" upstream would then answer.
pub struct DeadPort {
    _socket: tokio::net::TcpSocket,
    pub addr: SocketAddr,
}

impl DeadPort {
    pub fn new() -> DeadPort {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        DeadPort {
            _socket: socket,
            addr,
        }
    }
}

impl Default for DeadPort {
    fn default() -> Self {
        DeadPort::new()
    }
}

/// Polls `cond` until it holds, failing the test after [`DEADLINE`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One HTTP/1.1 keep-alive connection, requests sent one after another on it.
pub struct Conn {
    sender: http1::SendRequest<Empty<Bytes>>,
    pub addr: SocketAddr,
}

/// A response read in full.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Self::over(stream, addr).await
    }

    /// HTTP/1.1 over an established stream (a TLS one, say) to `addr`.
    pub async fn over<S>(stream: S, addr: SocketAddr) -> std::io::Result<Conn>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender, addr })
    }

    /// Sends a GET with extra headers and reads the whole response.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<Answer, String> {
        self.request(http::Method::GET, path, headers).await
    }

    /// Sends a request without a body and reads the whole response.
    pub async fn request(
        &mut self,
        method: http::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Answer, String> {
        self.sender
            .ready()
            .await
            .map_err(|e| format!("connection not ready: {e}"))?;
        let mut req = Request::builder().method(method).uri(path);
        // `gateway.test` unless the caller names the host.
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req = req.header("host", "gateway.test");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Empty::new()).map_err(|e| e.to_string())?;
        let resp: Response<hyper::body::Incoming> = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("body failed: {e}"))?
            .to_bytes();
        Ok(Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// GET on a fresh connection (admin endpoints and one-off requests).
pub async fn get_once(addr: SocketAddr, path: &str) -> Answer {
    let mut c = Conn::open(addr).await.unwrap();
    c.get(path, &[]).await.unwrap()
}

/// The Worker's `/metrics` text.
pub async fn metrics_text(admin: SocketAddr) -> String {
    String::from_utf8_lossy(&get_once(admin, "/metrics").await.body).into_owned()
}

/// The value of one series (`name{labels}` exactly as exposed) in a metrics text.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// Polls the Worker's metrics until `series` satisfies `cond`, failing after [`DEADLINE`].
pub async fn wait_metric(admin: SocketAddr, series: &str, cond: impl Fn(f64) -> bool) -> f64 {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let text = metrics_text(admin).await;
        if let Some(v) = metric_value(&text, series)
            && cond(v)
        {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting on {series}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A `kind: Environment` document with these `spec.gateway` settings (YAML, indented as
/// the block under `gateway:`).
pub fn environment_manifest(gateway: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Environment\nmetadata: {{ name: test }}\nspec:\n  gateway:\n{gateway}\n"
    )
}
