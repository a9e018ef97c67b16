//! The Switchyard Manager (control plane): the source of truth for every environment's
//! entities, the admin API, the audit trail, and the fan-out that tells Workers a new
//! revision exists. See `ARCHITECTURE.md`.

mod api;
pub mod auth;
mod canary;
mod commits;
pub mod error;
pub mod fanout;
pub mod listener;
pub mod metrics;
mod presence;
mod pull_cache;
mod reports;
pub mod retention;
pub mod rollout;
pub mod state;
mod stats;
pub mod tls;
mod ui;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use switchyard_api::records::Role;
use switchyard_config::secretbox::SecretBox;
use switchyard_store::{SqlStore, Store, StoreError};
use tokio::net::TcpListener;

pub use crate::listener::Peer;
use crate::listener::TlsListener;
pub use crate::state::AppState;
use crate::tls::{ManagerCa, ServeTls, TlsSetupError};

#[derive(Debug, Clone)]
pub struct ManagerOptions {
    /// Holds `switchyard.db` (unless `database` names another store), `admin.token`,
    /// `secret.key` and the Manager's CA.
    pub data_dir: PathBuf,
    /// The store: `postgres://…` (several Managers may share it) or `sqlite://PATH`.
    /// Default: SQLite in `DATA/switchyard.db`.
    pub database: Option<String>,
    /// Interval of SSE heartbeat comments.
    pub heartbeat: Duration,
    /// The key that seals credentials at rest (base64 or hex of 32 bytes). Default: read
    /// `DATA/secret.key`, created (mode 0600) on first start.
    pub secret_key: Option<String>,
    /// HTTPS (default: with a certificate from the Manager's own CA in `DATA/ca.pem`) or,
    /// when asked for, plain HTTP.
    pub tls: ServeTls,
    /// More names (DNS names, IP addresses) for the Manager's own server certificate, beside
    /// the listen address, loopback, `localhost` and the host name.
    pub tls_names: Vec<String>,
    /// Plain HTTP on an address other than loopback (refused without it).
    pub allow_insecure_remote: bool,
    /// Workers must present a client certificate from the Manager's CA naming their
    /// environment (besides their worker token).
    pub require_worker_certificates: bool,
    /// This Manager's name among those sharing a database (the Workers' streams it holds
    /// are stored under it). Default: host name and process id.
    pub name: Option<String>,
    /// How much history (and audit) is kept; default: everything.
    pub retention: retention::Retention,
}

impl ManagerOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ManagerOptions {
            data_dir: data_dir.into(),
            database: None,
            heartbeat: Duration::from_secs(5),
            secret_key: None,
            tls: ServeTls::OwnCertificate,
            tls_names: Vec::new(),
            allow_insecure_remote: false,
            require_worker_certificates: false,
            name: None,
            retention: retention::Retention::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("cannot use data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Api(String),
    #[error("server error: {0}")]
    Serve(std::io::Error),
    #[error("TLS: {0}")]
    Tls(#[from] TlsSetupError),
    #[error(
        "refusing to serve plain HTTP on {0}, which is not a loopback address: tokens and \
         the Workers' credentials would cross the network in clear. Serve HTTPS (drop \
         --insecure-http), or add --allow-insecure-remote if something else encrypts the link"
    )]
    InsecureRemote(std::net::SocketAddr),
}

pub struct Manager {
    state: AppState,
    tls: ServeTls,
    tls_names: Vec<String>,
    allow_insecure_remote: bool,
    /// The Manager's CA (`DATA/ca.pem`), unless it serves plain HTTP.
    ca: Option<Arc<ManagerCa>>,
    shutdown_tx: tokio::sync::watch::Sender<bool>,
    /// Set when this start created the first admin token (written to `admin.token`).
    pub created_admin_token: Option<PathBuf>,
}

impl Manager {
    /// Opens (or creates) the store — `options.database`, or the embedded one in
    /// `data_dir`. On first start, creates an admin token and writes it to
    /// `DATA/admin.token` (mode 0600).
    pub async fn open(options: ManagerOptions) -> Result<Manager, ManagerError> {
        std::fs::create_dir_all(&options.data_dir).map_err(|source| ManagerError::DataDir {
            path: options.data_dir.clone(),
            source,
        })?;
        let store = match &options.database {
            Some(url) => SqlStore::connect(url).await?,
            None => SqlStore::open(&options.data_dir.join("switchyard.db")).await?,
        };
        Self::with_store(Arc::new(store), &options).await
    }

    /// A Manager over any store (tests use this to inject a store of their choosing).
    pub async fn with_store(
        store: Arc<dyn Store>,
        options: &ManagerOptions,
    ) -> Result<Manager, ManagerError> {
        let key = match &options.secret_key {
            Some(text) => SecretBox::key_from_text(text).map_err(ManagerError::Api)?,
            None => SecretBox::load_or_create(&options.data_dir.join("secret.key"))
                .map_err(ManagerError::Api)?,
        };
        let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
        let metrics = Arc::new(metrics::ManagerMetrics::new());
        let reports = reports::ReportWriter::start(store.clone(), metrics.clone());
        let name = options.name.clone().unwrap_or_else(presence::default_name);
        let presence = presence::Presence::new(store.clone(), name);
        let rollouts = rollout::Rollouts::new(store.clone());
        let state = AppState {
            store,
            fanout: fanout::Fanout::new(presence.clone()),
            metrics,
            heartbeat: options.heartbeat,
            shutdown,
            secrets: Arc::new(SecretBox::new(&key)),
            tokens: Arc::new(auth::TokenCache::default()),
            auth_failures: Arc::default(),
            pulls: Arc::new(pull_cache::PullCache::default()),
            reports,
            parsed: Arc::default(),
            require_worker_certificates: options.require_worker_certificates,
            digest_master: Arc::new(state::DigestMaster(key)),
            rollouts,
            presence,
            stats: Arc::default(),
            canaries: Arc::default(),
        };
        let created_admin_token = bootstrap_admin(&state, &options.data_dir).await?;
        tokio::spawn(commits::follow(state.clone(), state.shutdown.clone()));
        tokio::spawn(presence::keep_fresh(state.clone(), state.shutdown.clone()));
        tokio::spawn(canary::follow(state.clone(), state.shutdown.clone()));
        if !options.retention.keeps_everything() {
            tokio::spawn(retention::run(
                state.clone(),
                options.retention,
                state.shutdown.clone(),
            ));
        }
        let ca = match options.tls {
            ServeTls::InsecureHttp => None,
            _ => {
                let (ca, created) = ManagerCa::load_or_create(&options.data_dir)?;
                if created {
                    tracing::info!(path = %ca.path.display(), fingerprint = %ca.fingerprint(), "first start: created the Manager's CA; Workers and the CLI trust it with --manager-ca / --ca");
                }
                Some(Arc::new(ca))
            }
        };
        Ok(Manager {
            state,
            tls: options.tls.clone(),
            tls_names: options.tls_names.clone(),
            allow_insecure_remote: options.allow_insecure_remote,
            ca,
            shutdown_tx,
            created_admin_token,
        })
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn router(&self) -> axum::Router {
        api::router(self.state.clone())
    }

    /// The Manager's CA certificate file (`DATA/ca.pem`), which Workers and the CLI are
    /// given to verify it; `None` when it serves plain HTTP.
    pub fn ca_path(&self) -> Option<&Path> {
        self.ca.as_ref().map(|ca| ca.path.as_path())
    }

    /// `https` or `http`: the scheme of the URL clients use.
    pub fn scheme(&self) -> &'static str {
        match self.tls {
            ServeTls::InsecureHttp => "http",
            _ => "https",
        }
    }

    /// Serves the admin API until `shutdown` completes, then finishes in-flight requests.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ManagerError> {
        let addr = listener.local_addr().map_err(ManagerError::Serve)?;
        // Each request knows its peer (the auth-failure throttle keys on its address; a
        // Worker's certificate binds its token to its environment).
        let router = self.router().into_make_service_with_connect_info::<Peer>();
        let tx = self.shutdown_tx;
        let graceful = async move {
            shutdown.await;
            // End the Workers' event streams; they reconnect to another Manager or retry
            // with backoff.
            let _ = tx.send(true);
        };
        let ca = match (&self.tls, &self.ca) {
            (ServeTls::InsecureHttp, _) | (_, None) => {
                if !addr.ip().is_loopback() && !self.allow_insecure_remote {
                    return Err(ManagerError::InsecureRemote(addr));
                }
                tracing::warn!(listen = %addr, "serving the admin and sync API over plain HTTP (--insecure-http): tokens and credentials cross the network in clear");
                return axum::serve(listener, router)
                    .with_graceful_shutdown(graceful)
                    .await
                    .map_err(ManagerError::Serve);
            }
            (_, Some(ca)) => ca,
        };
        let setup = tls::server_config(&self.tls, ca, addr, &self.tls_names)?;
        tracing::info!(listen = %addr, certificate = %setup.describe, ca = %ca.path.display(), ca_fingerprint = %ca.fingerprint(), "serving HTTPS");
        let acceptor = tokio_rustls::TlsAcceptor::from(setup.config);
        let failures = self.state.metrics.tls_handshake_failures.clone();
        let listener =
            TlsListener::new(listener, acceptor, failures).map_err(ManagerError::Serve)?;
        axum::serve(listener, router)
            .with_graceful_shutdown(graceful)
            .await
            .map_err(ManagerError::Serve)
    }
}

/// Creates a token directly in the store (the CLI's `manager token create`). Returns the
/// record id and the secret, which is not stored.
pub async fn create_token(
    store: &dyn Store,
    name: &str,
    role: Role,
    envs: Vec<String>,
    expires_at: Option<switchyard_api::records::Millis>,
    actor: &str,
) -> Result<(String, String), ManagerError> {
    auth::check_scope(role, &envs).map_err(|e| ManagerError::Api(e.message))?;
    for env in &envs {
        if store.env(env).await?.is_none() {
            return Err(ManagerError::Api(format!(
                "unknown environment {env:?}: create it first (`switchyard env create {env}`)"
            )));
        }
    }
    let (record, secret) =
        auth::new_token(name, role, envs, expires_at).map_err(|e| ManagerError::Api(e.message))?;
    let id = record.id.clone();
    store.create_token(record, actor).await?;
    Ok((id, secret))
}

async fn bootstrap_admin(
    state: &AppState,
    data_dir: &Path,
) -> Result<Option<PathBuf>, ManagerError> {
    if !state.store.list_tokens().await?.is_empty() {
        return Ok(None);
    }
    let (id, secret) = create_token(
        state.store.as_ref(),
        "bootstrap-admin",
        Role::Admin,
        Vec::new(),
        None,
        "manager",
    )
    .await?;
    let path = data_dir.join("admin.token");
    switchyard_config::files::write_private(&path, &secret).map_err(|source| {
        ManagerError::DataDir {
            path: path.clone(),
            source,
        }
    })?;
    tracing::info!(token = %id, path = %path.display(), "first start: created an admin token (mode 0600); keep it safe");
    Ok(Some(path))
}
