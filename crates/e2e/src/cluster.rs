//! A Manager and managed Workers in the test process, on port 0, with real sockets.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde_json::Value;
use switchyard_api::admin::RevisionView;
use switchyard_api::{AdminClient, ManagerTls};
use switchyard_manager::{Manager, ManagerOptions};
use switchyard_store::{SqlStore, Store};
use switchyard_worker::{ConfigSource, ManagedOptions, Worker, WorkerHandle, WorkerOptions};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::DEADLINE;

/// One call to the Manager's API with `token`, whatever its answer: (status, body as JSON;
/// a plain-text answer as a JSON string).
pub async fn api(
    m: &RunningManager,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let client = m.client.as_token(token).unwrap();
    raw(&client, method, path, body).await
}

/// [`api`] with a client already made.
pub async fn raw(
    client: &AdminClient,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let reply = client.raw(method, path, body.as_ref()).await.unwrap();
    (reply.status.as_u16(), reply.json())
}

/// Commits, straight into `store` (no Manager check, no notification: Managers see it when
/// they poll), a revision of `env` after `expected` that Workers refuse (`/payments` with an
/// invalid duration): the commit and the Workers' NACKs are real.
pub async fn commit_rejected_by_workers(store: &SqlStore, env: &str, expected: u64) {
    let bad = r#"{"apiVersion":"switchyard.dev/v1","kind":"Proxy","metadata":{"name":"payments"},"spec":{"routes":[{"pathPrefix":"/payments"}],"upstream":{"targets":[{"url":"http://127.0.0.1:1"}],"timeouts":{"connect":"2 s"}}}}"#;
    store
        .commit(switchyard_store::CommitRequest {
            env: env.into(),
            actor: "test (direct store write)".into(),
            operation: switchyard_api::records::Operation::Apply,
            expected_revision: Some(expected),
            changes: vec![switchyard_store::Change::Upsert {
                kind: switchyard_config::Kind::Proxy,
                name: "payments".into(),
                digest: switchyard_config::manifest::sha256_hex(bad.as_bytes()),
                manifest: bad.into(),
                labels: Default::default(),
                template: None,
                template_digest: None,
            }],
            detail: None,
            canary: Default::default(),
        })
        .await
        .unwrap();
}

/// A Manager serving from a data dir; can be stopped and started again on the same port.
pub struct RunningManager {
    pub addr: SocketAddr,
    pub data: PathBuf,
    /// Trusts the Manager's CA (`DATA/ca.pem`); plain HTTP when started with
    /// [`RunningManager::start_with`] and `ServeTls::InsecureHttp`.
    pub tls: ManagerTls,
    scheme: &'static str,
    pub admin_token: String,
    /// The admin API with the admin token.
    pub client: AdminClient,
    pub store: Arc<SqlStore>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningManager {
    pub async fn start(data: &Path) -> RunningManager {
        Self::start_on(data, "127.0.0.1:0".parse().unwrap()).await
    }

    /// A Manager serving plain HTTP on loopback (`--insecure-http`): for tests that write
    /// requests byte by byte or scrape it as Prometheus would.
    pub async fn start_plain(data: &Path) -> RunningManager {
        Self::start_with(data, "127.0.0.1:0".parse().unwrap(), |o| {
            o.tls = switchyard_manager::tls::ServeTls::InsecureHttp;
        })
        .await
    }

    /// [`commit_rejected_by_workers`] into this Manager's store.
    pub async fn commit_rejected_by_workers(&self, env: &str, expected: u64) {
        commit_rejected_by_workers(&self.store, env, expected).await;
    }

    /// A Manager serving HTTPS with its own CA (the default) on `addr`.
    pub async fn start_on(data: &Path, addr: SocketAddr) -> RunningManager {
        Self::start_with(data, addr, |_| {}).await
    }

    /// [`RunningManager::start_on`] with the options adjusted by `edit`.
    pub async fn start_with(
        data: &Path,
        addr: SocketAddr,
        edit: impl FnOnce(&mut ManagerOptions),
    ) -> RunningManager {
        std::fs::create_dir_all(data).unwrap();
        let store = Arc::new(SqlStore::open(&data.join("switchyard.db")).await.unwrap());
        let mut options = ManagerOptions::new(data);
        options.heartbeat = Duration::from_millis(500);
        edit(&mut options);
        let manager = Manager::with_store(store.clone() as Arc<dyn Store>, &options)
            .await
            .unwrap();
        let admin_token = std::fs::read_to_string(data.join("admin.token"))
            .unwrap()
            .trim()
            .to_string();
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let scheme = manager.scheme();
        let tls = match manager.ca_path() {
            Some(ca) => ManagerTls::ca_file(ca).unwrap(),
            None => ManagerTls::system(),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            manager
                .serve(listener, async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        RunningManager {
            addr,
            data: data.to_path_buf(),
            client: AdminClient::with_tls(&format!("{scheme}://{addr}"), &admin_token, &tls)
                .unwrap(),
            tls,
            scheme,
            admin_token,
            store,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// `https://127.0.0.1:PORT` (`http://` for a plain-HTTP Manager).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The Manager's CA certificate file.
    pub fn ca_path(&self) -> PathBuf {
        self.data.join("ca.pem")
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        raw(&self.client, method, path, body).await
    }

    /// Creates an environment and a worker token for it.
    pub async fn env_with_worker_token(&self, env: &str) -> String {
        let (s, b) = self
            .call(
                Method::POST,
                "/v1/envs",
                Some(serde_json::json!({ "name": env })),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        self.token("worker", &[env]).await
    }

    pub async fn token(&self, role: &str, envs: &[&str]) -> String {
        let (s, b) = self
            .call(
                Method::POST,
                "/v1/tokens",
                Some(serde_json::json!({ "name": format!("test-{role}"), "role": role, "envs": envs })),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        b["token"].as_str().unwrap().to_string()
    }

    /// Applies manifests (YAML text) with the admin token; returns (status, body).
    pub async fn apply(&self, env: &str, manifests: &[String]) -> (u16, Value) {
        self.call(
            Method::POST,
            &format!("/v1/envs/{env}/apply"),
            Some(serde_json::json!({ "manifests": manifests })),
        )
        .await
    }

    /// The view of `revision` of `env` once every Worker of `ids` has reported on it
    /// (bounded by [`DEADLINE`]).
    pub async fn wait_reports(&self, env: &str, revision: u64, ids: &[&str]) -> RevisionView {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let view = self.client.revision(env, revision).await.unwrap();
            if ids
                .iter()
                .all(|id| view.reports.iter().any(|r| r.worker_id == *id))
            {
                return view;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "revision {revision}: {:?}",
                view.reports
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the Manager (graceful) and waits until it has.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(DEADLINE, t).await.unwrap().unwrap();
        }
        self.store.close().await;
    }
}

/// A Worker following a Manager.
pub struct ManagedWorker {
    pub id: String,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub handle: WorkerHandle,
    pub cache: PathBuf,
    /// The HTTPS listener's address ([`ManagedWorker::start_https`]).
    pub https: Option<SocketAddr>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ManagedWorker {
    /// Options for a Worker following `manager` (verified with its CA), with short
    /// intervals for tests.
    pub fn options(
        manager: &RunningManager,
        env: &str,
        token: &str,
        id: &str,
        cache: &Path,
    ) -> ManagedOptions {
        Self::options_at(manager, &manager.url(), env, token, id, cache)
    }

    /// [`ManagedWorker::options`] reaching the Manager at another URL (a forwarder, a dead
    /// address).
    pub fn options_at(
        manager: &RunningManager,
        url: &str,
        env: &str,
        token: &str,
        id: &str,
        cache: &Path,
    ) -> ManagedOptions {
        let mut m = ManagedOptions::new(url, env, token, id, cache.to_path_buf());
        m.tls = manager.tls.clone();
        m.check_interval = Duration::from_millis(300);
        m.stream_timeout = Duration::from_secs(3);
        m.start_timeout = Duration::from_secs(2);
        // The dashboard's charts in tests: every second rather than every 10.
        m.stats_interval = Duration::from_secs(1);
        m
    }

    pub async fn start(
        options: ManagedOptions,
    ) -> Result<ManagedWorker, switchyard_worker::WorkerError> {
        Self::start_inner(options, false).await
    }

    /// [`ManagedWorker::start`], also serving HTTPS (address in `https`).
    pub async fn start_https(
        options: ManagedOptions,
    ) -> Result<ManagedWorker, switchyard_worker::WorkerError> {
        Self::start_inner(options, true).await
    }

    async fn start_inner(
        options: ManagedOptions,
        https: bool,
    ) -> Result<ManagedWorker, switchyard_worker::WorkerError> {
        let id = options.worker_id.clone();
        let cache = options.cache_dir.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let admin_addr = admin.local_addr().unwrap();
        let mut options = options;
        options.address = Some(addr.to_string());
        let mut worker =
            Worker::connect(WorkerOptions::with_source(ConfigSource::Manager(options))).await?;
        let mut https_addr = None;
        if https {
            let tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
            https_addr = Some(tls.local_addr().unwrap());
            worker.listen_tls(tls);
        }
        let handle = worker.handle();
        let (tx, task) = crate::spawn_worker(worker, listener, admin);
        Ok(ManagedWorker {
            id,
            addr,
            admin: admin_addr,
            handle,
            cache,
            https: https_addr,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    pub async fn wait_for_revision(&self, revision: u64) {
        let mut rx = self.handle.subscribe();
        tokio::time::timeout(DEADLINE, rx.wait_for(|r| *r >= revision))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "worker {} did not reach revision {revision} (at {}, status {:?})",
                    self.id,
                    self.handle.revision(),
                    self.handle.status().sync
                )
            })
            .unwrap();
    }

    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(DEADLINE, t).await.unwrap().unwrap();
        }
    }
}
