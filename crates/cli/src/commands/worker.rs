//! `switchyard worker`: a Worker (data plane) serving the manifests of a directory
//! (standalone) or following an environment on a Manager.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use switchyard_worker::{AccessLogTarget, ConfigSource, ManagedOptions, Worker, WorkerOptions};

use crate::conn::TokenArgs;
use crate::signals;

#[derive(clap::Args)]
pub struct WorkerArgs {
    /// Standalone mode: a manifest file or directory.
    #[arg(long, required_unless_present = "manager", conflicts_with = "manager")]
    pub config: Option<PathBuf>,
    /// Manager mode: follow an environment on this Manager (https://host:port).
    #[arg(long, env = "SWITCHYARD_MANAGER", requires = "env")]
    pub manager: Option<String>,
    /// Manager mode: the CA certificate(s) the Manager is verified against (PEM; the
    /// Manager's own CA is its DATA/ca.pem). Default: the system's roots. A Manager that
    /// cannot be verified is not talked to.
    #[arg(long, env = "SWITCHYARD_CA", value_name = "PATH")]
    pub manager_ca: Option<PathBuf>,
    /// Manager mode: this Worker's client certificate (PEM), from `switchyard manager
    /// worker-cert create`.
    #[arg(long, value_name = "PATH", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// Manager mode: the private key (PEM) of --client-cert.
    #[arg(long, value_name = "PATH", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Manager mode: the environment to serve.
    #[arg(long)]
    pub env: Option<String>,
    /// Manager mode: a worker token for the environment, best in a file (--token-file).
    #[command(flatten)]
    pub token: TokenArgs,
    /// Manager mode: this Worker's id in the Manager's status and audit trail
    /// (default: host name and listen port).
    #[arg(long)]
    pub worker_id: Option<String>,
    /// Manager mode: where the last-known-good cache is kept.
    #[arg(long, default_value = "switchyard-cache")]
    pub cache_dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Also serve HTTPS here (HTTP/1.1 and HTTP/2 by ALPN), with certificates chosen by SNI
    /// from the `kind: Certificate` entities being served.
    #[arg(long)]
    pub listen_tls: Option<SocketAddr>,
    #[arg(long, default_value = "127.0.0.1:9901")]
    pub admin_listen: SocketAddr,
    /// `stdout`, `off`, or a file path.
    #[arg(long, default_value = "stdout")]
    pub access_log: AccessLogTarget,
    /// How long in-flight requests may take to finish on shutdown.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// Threads serving traffic, each with its own runtime; every client connection and the
    /// upstream connections its requests use stay on one of them (default: one per CPU).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// Do not watch the configuration for changes (SIGHUP still reloads).
    #[arg(long)]
    pub no_watch: bool,
}

pub async fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let source = match (args.config, args.manager) {
        (Some(path), _) => ConfigSource::Files {
            path,
            watch: !args.no_watch,
        },
        (None, Some(manager)) => {
            let env = args.env.context("--env is required with --manager")?;
            let token = args.token.get()?.context(
                "--manager needs a worker token: --token-file PATH (or SWITCHYARD_TOKEN_FILE), \
                 or --token (SWITCHYARD_TOKEN)",
            )?;
            let worker_id = args
                .worker_id
                .unwrap_or_else(|| default_worker_id(args.listen));
            // The address reported to the Manager is the bound one (`serve` fills it in:
            // with port 0, the port the system chose).
            let mut m = ManagedOptions::new(&manager, &env, &token, &worker_id, args.cache_dir);
            let client = args.client_cert.as_deref().zip(args.client_key.as_deref());
            m.tls = crate::conn::manager_tls(args.manager_ca.as_deref(), client)?;
            ConfigSource::Manager(m)
        }
        (None, None) => {
            anyhow::bail!(
                "give --config DIR (standalone) or --manager URL --env ENV --token-file PATH"
            )
        }
    };
    let options = WorkerOptions {
        source,
        access_log: args.access_log,
        drain_timeout: args.drain_timeout,
        thread_allocated: crate::alloc::thread_allocated(),
        threads: Some(data_threads(args.threads)),
    };
    let addresses = Addresses {
        listen: args.listen,
        listen_tls: args.listen_tls,
        admin: args.admin_listen,
    };
    serve(options, addresses).await?;
    Ok(ExitCode::SUCCESS)
}

/// Where a Worker listens: traffic (plain and, optionally, HTTPS) and its admin API.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    pub listen: SocketAddr,
    pub listen_tls: Option<SocketAddr>,
    pub admin: SocketAddr,
}

/// `--threads`, or one per CPU.
fn data_threads(threads: Option<u16>) -> NonZeroUsize {
    threads
        .and_then(|n| NonZeroUsize::new(usize::from(n)))
        .or_else(|| std::thread::available_parallelism().ok())
        .unwrap_or(NonZeroUsize::MIN)
}

/// Starts a Worker on the given addresses and runs it until SIGTERM/SIGINT. The sockets
/// are bound first, so that a Worker following a Manager reports the address it really
/// listens on (with port 0, the one the system chose); connections made before the first
/// configuration is in wait in the listen backlog.
pub async fn serve(mut options: WorkerOptions, addresses: Addresses) -> anyhow::Result<()> {
    let Addresses {
        listen,
        listen_tls,
        admin: admin_listen,
    } = addresses;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let tls_listener = match listen_tls {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (HTTPS)"))?,
        ),
        None => None,
    };
    let admin = tokio::net::TcpListener::bind(admin_listen)
        .await
        .with_context(|| format!("cannot listen on {admin_listen} (admin)"))?;
    let (listen, admin_listen) = (listener.local_addr()?, admin.local_addr()?);
    let listen_tls = tls_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    if let ConfigSource::Manager(m) = &mut options.source
        && m.address.is_none()
    {
        m.address = Some(listen.to_string());
    }
    let mut worker = Worker::connect(options).await?;
    if let Some(l) = tls_listener {
        worker.listen_tls(l);
    }
    let https = listen_tls.map_or_else(|| "-".to_string(), |a| a.to_string());
    tracing::info!(target: "switchyard", %listen, %https, admin = %admin_listen, "worker listening");
    signals::reload_on_sighup(worker.handle());
    worker
        .run(listener, Some(admin), signals::terminated())
        .await?;
    tracing::info!(target: "switchyard", "worker stopped");
    Ok(())
}

/// `host-port`: stable across restarts of the same Worker on the same machine.
fn default_worker_id(listen: SocketAddr) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_string());
    format!("{host}-{}", listen.port())
}
