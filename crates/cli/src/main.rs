//! `switchyard`: the one binary. Subcommands run a Worker, a sample upstream, the demo
//! gateway, and check manifests.

mod demo;
mod signals;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchyard_worker::{AccessLogTarget, Worker, WorkerOptions};

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "An API gateway whose configuration changes are non-events"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a Worker (data plane) serving the manifests in a file or directory; reloads
    /// them on change and on SIGHUP.
    Worker(WorkerArgs),
    /// Run the sample upstream (answers with its id; for demos and tests).
    Upstream {
        #[arg(long, default_value = "127.0.0.1:18081")]
        listen: SocketAddr,
        #[arg(long, default_value = "upstream-1")]
        id: String,
    },
    /// Run the sample gateway: two sample upstreams and a Worker serving ./examples.
    Demo {
        #[arg(long, default_value = "examples")]
        config: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin_listen: SocketAddr,
    },
    /// Check manifests without running anything: prints every problem with file:line:col.
    Validate {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

#[derive(clap::Args)]
struct WorkerArgs {
    /// Manifest file or directory.
    #[arg(long)]
    config: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin_listen: SocketAddr,
    /// `stdout`, `off`, or a file path.
    #[arg(long, default_value = "stdout")]
    access_log: AccessLogTarget,
    /// How long in-flight requests may take to finish on shutdown.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// Do not watch the configuration for changes (SIGHUP still reloads).
    #[arg(long)]
    no_watch: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Worker(args) => {
            let options = WorkerOptions {
                config: args.config,
                access_log: args.access_log,
                watch: !args.no_watch,
                drain_timeout: args.drain_timeout,
            };
            run_worker(options, args.listen, args.admin_listen).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Upstream { listen, id } => {
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let up =
                switchyard_worker::sample_upstream::SampleUpstream::start(listen, &id, stop_rx)
                    .await
                    .with_context(|| format!("cannot listen on {listen}"))?;
            tracing::info!(addr = %up.addr, %id, "sample upstream listening");
            signals::terminated().await;
            let _ = stop_tx.send(true);
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            config,
            listen,
            admin_listen,
        } => {
            demo::run(config, listen, admin_listen).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { paths } => Ok(validate(&paths)),
    }
}

/// Starts a Worker on the given addresses and runs it until SIGTERM/SIGINT.
pub(crate) async fn run_worker(
    options: WorkerOptions,
    listen: SocketAddr,
    admin_listen: SocketAddr,
) -> anyhow::Result<()> {
    let worker = Worker::new(options)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let admin = tokio::net::TcpListener::bind(admin_listen)
        .await
        .with_context(|| format!("cannot listen on {admin_listen} (admin)"))?;
    let (listen, admin_listen) = (listener.local_addr()?, admin.local_addr()?);
    tracing::info!(%listen, admin = %admin_listen, "worker listening");
    signals::reload_on_sighup(worker.handle());
    worker
        .run(listener, Some(admin), signals::terminated())
        .await?;
    tracing::info!("worker stopped");
    Ok(())
}

fn validate(paths: &[PathBuf]) -> ExitCode {
    let mut manifests = Vec::new();
    let mut failed = false;
    for p in paths {
        match switchyard_model::load_path(p) {
            Ok(mut m) => manifests.append(&mut m),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if !failed {
        match switchyard_model::compile(&manifests, None) {
            Ok(c) => {
                eprintln!(
                    "ok: {} document(s), {} proxy(ies), no problems found",
                    manifests.len(),
                    c.snapshot.proxies.len()
                );
            }
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn init_tracing(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("SWITCHYARD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
