//! `switchyard worker`: a Worker (data plane) serving the manifests of a directory
//! (standalone) or following an environment on a Manager.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use switchyard_worker::handover::{self, Sockets, UPGRADE_BINARY_HEADER, UpgradeHook};
use switchyard_worker::{
    AccessLogTarget, ConfigSource, EnvironmentListeners, ManagedOptions, Worker, WorkerOptions,
};

use crate::manager_error::Explain;

use crate::conn::TokenArgs;
use crate::signals;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct WorkerArgs {
    #[command(subcommand)]
    pub action: Option<WorkerAction>,
    /// Standalone mode: a manifest file or directory.
    #[arg(long, conflicts_with = "manager")]
    pub config: Option<PathBuf>,
    /// Manager mode: follow an environment on this Manager (https://host:port). Several
    /// Managers of one control plane (sharing a PostgreSQL database), comma-separated or
    /// the flag repeated: the first is followed, the next ones are tried in turn whenever
    /// the one followed is lost.
    #[arg(
        long,
        env = "SWITCHYARD_MANAGER",
        requires = "env",
        value_delimiter = ',',
        value_name = "URL[,URL…]"
    )]
    pub manager: Vec<String>,
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
    /// Serve HTTP here, and nothing the environment declares (flags are the per-host
    /// override). Without it (and without --listen-tls) the Worker binds the environment's
    /// `kind: Listener` entities, and follows them as they are added, moved and removed —
    /// 127.0.0.1:8080 while there are none.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Also serve HTTPS here (HTTP/1.1 and HTTP/2 by ALPN), with certificates chosen by SNI
    /// from the `kind: Certificate` entities being served (with --listen's address, or
    /// 127.0.0.1:8080, for HTTP).
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
    /// upstream connections its requests use stay on one of them (default: the
    /// environment's `kind: WorkerSettings` `threads`, else one per CPU).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// How long a configuration generation that is no longer the current one may stay
    /// pinned by long-lived streams (WebSockets, streamed responses): past it, they are
    /// closed gracefully (WebSocket close 1001, end of the response body). A route's
    /// `maxStreamAge` may close them sooner.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub max_pinned_age: Duration,
    #[command(flatten)]
    pub trace: crate::trace_args::TraceArgs,
    /// Do not watch the configuration for changes (SIGHUP still reloads).
    #[arg(long)]
    pub no_watch: bool,
    /// How long a successor started by `switchyard worker upgrade` (or SIGUSR2) may take to
    /// load its configuration and serve before it is killed and this process carries on.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub handover_timeout: Duration,
    /// A directory of `switchyard` binaries a handover may switch to when asked for one
    /// (`switchyard worker upgrade --binary`, `switchyard rollout --binary`). Without it
    /// a successor always runs the binary at this process's own path.
    #[arg(long, value_name = "DIR")]
    pub upgrade_binaries: Option<PathBuf>,
    /// Set by a predecessor handing its sockets over (see `switchyard worker upgrade`):
    /// receive the listeners there instead of binding them.
    #[arg(long, hide = true, value_name = "PATH")]
    pub handover_from: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
pub enum WorkerAction {
    /// Replace a running Worker process by a new one (the binary at the same path, e.g.
    /// after a package upgrade) without refusing a connection: the running one starts its
    /// successor, hands it its listening sockets, and drains once the successor serves.
    /// (SIGUSR2 to the Worker does the same.)
    Upgrade(UpgradeArgs),
}

#[derive(clap::Args)]
pub struct UpgradeArgs {
    /// The Worker's admin listener.
    #[arg(long, default_value = "127.0.0.1:9901")]
    pub admin_listen: SocketAddr,
    /// How long to wait for the successor to serve.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Start the successor from this binary instead of the Worker's own path (it must be
    /// in the directory the Worker was given with --upgrade-binaries).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
}

pub async fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    if let Some(WorkerAction::Upgrade(u)) = args.action {
        return upgrade(u).await;
    }
    let source = match (args.config, args.manager.is_empty()) {
        (Some(path), _) => ConfigSource::Files {
            path,
            watch: !args.no_watch,
        },
        (None, false) => {
            let env = args.env.context("--env is required with --manager")?;
            let token = args.token.get()?.context(
                "--manager needs a worker token: --token-file PATH (or SWITCHYARD_TOKEN_FILE), \
                 or --token (SWITCHYARD_TOKEN)",
            )?;
            let worker_id = args
                .worker_id
                .unwrap_or_else(|| default_worker_id(args.listen.unwrap_or(DEFAULT_LISTEN)));
            // The address reported to the Manager is the bound one (`serve` fills it in:
            // with port 0, the port the system chose).
            let mut urls = crate::conn::manager_urls(&args.manager)?.into_iter();
            let first = urls.next().context("--manager: give at least one URL")?;
            let mut m = ManagedOptions::new(&first, &env, &token, &worker_id, args.cache_dir);
            m.fallbacks = urls.collect();
            let client = args.client_cert.as_deref().zip(args.client_key.as_deref());
            m.tls = crate::conn::manager_tls(args.manager_ca.as_deref(), client)?;
            ConfigSource::Manager(m)
        }
        (None, true) => {
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
        threads_from_settings: args.threads.is_none(),
        max_pinned_age: args.max_pinned_age,
        tracing: args.trace.config("switchyard-worker")?,
    };
    let addresses = Addresses {
        listen: match (args.listen, args.listen_tls) {
            (None, None) => Listen::Environment {
                fallback: DEFAULT_LISTEN,
            },
            (listen, tls) => Listen::Flags {
                listen: listen.unwrap_or(DEFAULT_LISTEN),
                tls,
            },
        },
        admin: args.admin_listen,
    };
    let handover = Handover {
        from: args.handover_from,
        timeout: args.handover_timeout,
        binaries: crate::handover::AllowedBinaries(args.upgrade_binaries),
    };
    serve(options, addresses, handover).await?;
    Ok(ExitCode::SUCCESS)
}

/// `--listen`'s address when a Worker is given none and needs one.
const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);

/// Where a Worker listens: traffic and its admin API.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    pub listen: Listen,
    pub admin: SocketAddr,
}

/// Where a Worker accepts traffic.
#[derive(Debug, Clone, Copy)]
pub enum Listen {
    /// `--listen` (and `--listen-tls`): these sockets, whatever the environment declares.
    Flags {
        listen: SocketAddr,
        tls: Option<SocketAddr>,
    },
    /// The environment's `kind: Listener` entities (`fallback` while there are none).
    Environment { fallback: SocketAddr },
}

/// `--threads`, or one per CPU.
fn data_threads(threads: Option<u16>) -> NonZeroUsize {
    threads
        .and_then(|n| NonZeroUsize::new(usize::from(n)))
        .or_else(|| std::thread::available_parallelism().ok())
        .unwrap_or(NonZeroUsize::MIN)
}

/// Starts a Worker on the given addresses and runs it until SIGTERM/SIGINT, or until it
/// has handed its sockets to a successor (`switchyard worker upgrade`, SIGUSR2). The
/// sockets are bound first (or received from a predecessor, with `handover_from`), so that
/// a Worker following a Manager reports the address it really listens on (with port 0,
/// the one the system chose); connections made before the first configuration is in wait
/// in the listen backlog.
pub async fn serve(
    mut options: WorkerOptions,
    addresses: Addresses,
    handover: Handover,
) -> anyhow::Result<()> {
    let Handover {
        from: handover_from,
        timeout: handover_timeout,
        binaries,
    } = handover;
    let launch =
        crate::handover::Launch::current().context("cannot tell how this process was started")?;
    let (mut handed, ready) = match handover_from {
        Some(path) => {
            let (s, ready) = handover::receive(&path)
                .with_context(|| format!("cannot take over the sockets at {}", path.display()))?;
            (Some(s), Some(ready))
        }
        None => (None, None),
    };
    let tokio_listener = |l: std::net::TcpListener| -> std::io::Result<tokio::net::TcpListener> {
        l.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(l)
    };
    // Each socket handed over by a predecessor, or bound here.
    let mut socket =
        async |name: &str, addr: SocketAddr| -> anyhow::Result<tokio::net::TcpListener> {
            if let Some(l) = handed.as_mut().and_then(|h| h.take(name)) {
                return Ok(tokio_listener(l)?);
            }
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} ({name})"))
        };
    let admin = socket("admin", addresses.admin).await?;
    let (listener, tls_listener) = match addresses.listen {
        Listen::Flags { listen, tls } => {
            let plain = socket("traffic", listen).await?;
            let tls = match tls {
                Some(addr) => Some(socket("tls", addr).await?),
                None => None,
            };
            (Some(plain), tls)
        }
        Listen::Environment { .. } => (None, None),
    };
    let admin_listen = admin.local_addr()?;
    let listen = listener.as_ref().map(|l| l.local_addr()).transpose()?;
    let listen_tls = tls_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    if let ConfigSource::Manager(m) = &mut options.source
        && m.address.is_none()
    {
        m.address = listen.map(|a| a.to_string());
    }
    let mut fixed = vec![("admin", &admin)];
    fixed.extend(listener.as_ref().map(|l| ("traffic", l)));
    fixed.extend(tls_listener.as_ref().map(|l| ("tls", l)));
    let sockets = Sockets::duplicate(&fixed)?;
    let mut worker = Worker::connect(options).await?;
    if let Some(l) = tls_listener {
        worker.listen_tls(l);
    }
    if let Listen::Environment { fallback } = addresses.listen {
        worker.listen_from_environment(EnvironmentListeners {
            fallback: Some(fallback),
            inherited: handed.map(|h| h.named).unwrap_or_default(),
        });
    }
    let (hook, requests) = UpgradeHook::new();
    worker.on_upgrade(hook.clone());
    signals::upgrade_on_sigusr2(hook.clone());
    let show = |a: Option<SocketAddr>| a.map_or_else(|| "-".to_string(), |a| a.to_string());
    let (http, https) = match addresses.listen {
        Listen::Flags { .. } => (show(listen), show(listen_tls)),
        Listen::Environment { .. } => ("the environment's listeners".into(), "-".into()),
    };
    tracing::info!(target: "switchyard", listen = %http, %https, admin = %admin_listen, pid = std::process::id(), "worker listening");
    signals::reload_on_sighup(worker.handle());
    if let Some(ready) = ready {
        // The predecessor stops accepting once it reads this: connections arriving
        // meanwhile wait in the shared listen queue for this process's accept loop.
        match ready.send() {
            Ok(()) => {
                tracing::info!(target: "switchyard", "handover: took over the sockets; serving");
            }
            // The predecessor is gone (stopped meanwhile): this process is the one serving.
            Err(e) => {
                tracing::warn!(target: "switchyard", error = %e, "handover: the predecessor did not hear that this Worker serves; serving anyway");
            }
        }
    }
    // Under systemd (`Type=notify`, `NotifyAccess=all`): this process serves, and is the
    // service's main process (a successor takes over from its predecessor).
    crate::sd_notify::ready();
    let handed_over = crate::handover::serve_upgrades(
        launch,
        sockets,
        worker.handle(),
        hook,
        requests,
        handover_timeout,
        binaries,
    );
    let shutdown = async {
        tokio::select! {
            () = signals::terminated() => {}
            () = handed_over => {}
        }
    };
    worker.serve(listener, Some(admin), shutdown).await?;
    tracing::info!(target: "switchyard", "worker stopped");
    Ok(())
}

/// A Worker's part in handovers: the predecessor's socket path it takes its listeners from
/// (if it is a successor), and how long its own successors may take to serve.
#[derive(Debug, Clone)]
pub struct Handover {
    pub from: Option<PathBuf>,
    pub timeout: Duration,
    /// The binaries a successor may run besides this one (`--upgrade-binaries`).
    pub binaries: crate::handover::AllowedBinaries,
}

impl Handover {
    /// A Worker started by itself, with the default successor deadline.
    pub fn none() -> Handover {
        Handover {
            from: None,
            timeout: Duration::from_secs(60),
            binaries: crate::handover::AllowedBinaries::default(),
        }
    }
}

/// `switchyard worker upgrade`: asks the Worker on `--admin-listen` to hand over, then
/// waits until another process answers there (or the attempt is reported failed).
async fn upgrade(u: UpgradeArgs) -> anyhow::Result<ExitCode> {
    let admin = switchyard_api::Transport::builder(&format!("http://{}", u.admin_listen), "")
        .explain()?
        .timeout(Duration::from_secs(10))
        .build();
    // A connection per call: a kept-alive one would go on reaching the old process.
    let close = [(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    )];
    let status = |admin: switchyard_api::Transport| async move {
        let close = [(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        )];
        let reply = admin
            .send_with(http::Method::GET, "/status", None::<&()>, &close)
            .await
            .explain()?;
        anyhow::ensure!(
            reply.status.is_success(),
            "GET /status answered {}",
            reply.status
        );
        Ok::<_, anyhow::Error>(reply.json())
    };
    let before = status(admin.clone()).await?;
    let old_pid = before["pid"]
        .as_u64()
        .context("the Worker's /status has no pid")?;
    let mut headers = close.to_vec();
    if let Some(b) = &u.binary {
        let absolute =
            std::path::absolute(b).with_context(|| format!("--binary {}", b.display()))?;
        let value = http::HeaderValue::from_str(&absolute.to_string_lossy())
            .context("--binary: the path cannot be sent in a header")?;
        headers.push((http::HeaderName::from_static(UPGRADE_BINARY_HEADER), value));
    }
    let reply = admin
        .send_with(http::Method::POST, "/upgrade", None::<&()>, &headers)
        .await
        .explain()?;
    if reply.status != http::StatusCode::ACCEPTED {
        anyhow::bail!(
            "the Worker (pid {old_pid}) refused: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body).trim()
        );
    }
    eprintln!("handover started: Worker pid {old_pid} is starting its successor");
    let deadline = tokio::time::Instant::now() + u.timeout;
    loop {
        // The old process answers until the successor serves; then the successor does,
        // on the same address.
        if let Ok(now) = status(admin.clone()).await {
            let pid = now["pid"].as_u64().unwrap_or(old_pid);
            if pid != old_pid {
                eprintln!(
                    "Worker pid {pid} serves on {} (revision {}); pid {old_pid} drains and exits",
                    u.admin_listen, now["revision"]
                );
                return Ok(ExitCode::SUCCESS);
            }
            if now["upgrade"]["state"] == "failed" {
                anyhow::bail!(
                    "the handover failed, pid {old_pid} carries on serving: {}",
                    now["upgrade"]["error"].as_str().unwrap_or("?")
                );
            }
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no successor serves after {}; see the Worker's log",
            humantime::format_duration(u.timeout)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
