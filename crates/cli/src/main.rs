//! `switchyard`: the one binary. Subcommands run a Worker, a sample upstream, the demo
//! gateway, and check manifests.

// A command-line tool: its results go to stdout by design.
#![allow(clippy::print_stdout)]

mod admin_client;

// Bench builds (`--features alloc-stats`): jemalloc, which can tell how much each thread
// allocated, so Workers report what a configuration swap costs in memory.
#[cfg(feature = "alloc-stats")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Reads the calling thread's allocated-bytes counter, when the allocator keeps one.
pub(crate) fn thread_allocated() -> Option<fn() -> u64> {
    #[cfg(feature = "alloc-stats")]
    {
        fn read() -> u64 {
            tikv_jemalloc_ctl::thread::allocatedp::read()
                .map(|p| p.get())
                .unwrap_or(0)
        }
        Some(read)
    }
    #[cfg(not(feature = "alloc-stats"))]
    {
        None
    }
}

mod apply;
mod args;
mod audit;
mod bench;
mod conn;
mod credential;
mod demo;
mod dump;
mod rollback;
mod signals;
mod status;
mod up;
mod wait;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use args::{Cli, Command, EnvAction, ManagerAction, ManagerArgs, TokenAction};
use clap::Parser;
use switchyard_worker::{ConfigSource, ManagedOptions, Worker, WorkerOptions};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The bench prints a report; the components it runs in-process log warnings only.
    let default_level = if matches!(cli.command, Command::Bench { .. }) {
        "warn"
    } else {
        "info"
    };
    init_tracing(&cli.log_format, default_level);
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
            let source = match (args.config, args.manager) {
                (Some(path), _) => ConfigSource::Files {
                    path,
                    watch: !args.no_watch,
                },
                (None, Some(manager)) => {
                    let env = args.env.context("--env is required with --manager")?;
                    let token = args
                        .token
                        .context("--token (or SWITCHYARD_TOKEN) is required with --manager")?;
                    let worker_id = args
                        .worker_id
                        .unwrap_or_else(|| default_worker_id(args.listen));
                    let mut m =
                        ManagedOptions::new(&manager, &env, &token, &worker_id, args.cache_dir);
                    m.address = Some(args.listen.to_string());
                    ConfigSource::Manager(m)
                }
                (None, None) => anyhow::bail!(
                    "give --config DIR (standalone) or --manager URL --env ENV --token T"
                ),
            };
            let options = WorkerOptions {
                source,
                access_log: args.access_log,
                drain_timeout: args.drain_timeout,
                thread_allocated: thread_allocated(),
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
        Command::Validate { paths, env } => Ok(validate(&paths, env.as_deref())),
        Command::Bench { which } => bench::run(which).await,
        Command::Manager(args) => {
            run_manager(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Apply(args) => {
            let client = args.conn.client()?;
            let result = apply::send(&client, &args.request(false)).await?;
            let revision = (result.changed && !result.dry_run).then_some(result.revision);
            if args.conn.output == conn::Output::Json {
                // One JSON document: the apply, with the wait's report under "wait".
                let report = wait::wait_if_asked(&client, &args.env, revision, &args.wait).await?;
                let mut v = serde_json::to_value(&result)?;
                if let Some(r) = &report {
                    v["wait"] = serde_json::to_value(r)?;
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(match &report {
                    Some(r) => wait::exit_code(r),
                    None => batch_exit(&result),
                });
            }
            print_batch(&result, args.conn.output);
            if result.dry_run {
                return Ok(batch_exit(&result));
            }
            wait::after_commit(&client, &args.env, revision, &args.wait, args.conn.output).await
        }
        Command::Rollback(args) => rollback::run(args).await,
        Command::Plan(args) => {
            if args.wait.wait {
                anyhow::bail!(
                    "plan commits nothing, so there is nothing to --wait for: use `switchyard apply --wait`"
                );
            }
            let client = args.conn.client()?;
            let result = apply::send(&client, &args.request(true)).await?;
            print_batch(&result, args.conn.output);
            Ok(batch_exit(&result))
        }
        Command::Promote(args) => {
            let client = args.conn.client()?;
            let result = apply::promote(
                &client,
                &args.from,
                &args.to,
                &args.proxies,
                args.dry_run,
                args.expected_revision,
            )
            .await?;
            print_batch(&result, args.conn.output);
            Ok(batch_exit(&result))
        }
        Command::Status(args) => status::run(args).await,
        Command::Audit(args) => audit::run(args).await,
        Command::Dump(args) => dump::run(args).await,
        Command::Credential { action } => credential::run(action).await,
        Command::Env {
            action: EnvAction::Create { name, conn },
        } => {
            let client = conn.client()?;
            let created: serde_json::Value = client
                .post("/v1/envs", &serde_json::json!({ "name": name }))
                .await?;
            conn.output
                .print(&created, || format!("environment {name} created"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Up {
            data,
            config,
            manager_listen,
            listen,
            admin_listen,
            workers,
        } => {
            up::run(up::UpOptions {
                data,
                config,
                manager: manager_listen,
                gateway: listen,
                admin: admin_listen,
                workers,
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_batch(result: &apply::BatchResponse, output: conn::Output) {
    output.print(result, || {
        apply::describe(result, conn::stdout_is_terminal())
    });
}

/// A dry run exits 2 when something would change (like `terraform plan
/// -detailed-exitcode`); everything else that got an answer exits 0.
fn batch_exit(result: &apply::BatchResponse) -> ExitCode {
    if result.dry_run && result.changed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

async fn run_manager(args: ManagerArgs) -> anyhow::Result<()> {
    use switchyard_manager::{Manager, ManagerOptions};
    match args.action {
        Some(ManagerAction::Token {
            action:
                TokenAction::Create {
                    data,
                    role,
                    envs,
                    name,
                    expires_in,
                },
        }) => {
            let role = switchyard_api::records::Role::parse(&role).with_context(|| {
                format!("unknown role {role:?}: use admin, deployer, viewer or worker")
            })?;
            let store = switchyard_store::SqliteStore::open(&data.join("switchyard.db")).await?;
            let name = name.unwrap_or_else(|| format!("{}-cli", role.as_str()));
            let expires_at = expires_in.map(|d| {
                switchyard_api::records::now_millis()
                    .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            });
            let (id, secret) = switchyard_manager::create_token(
                &store,
                &name,
                role,
                envs,
                expires_at,
                "cli (manager token create)",
            )
            .await?;
            let expiry = expires_at.map_or_else(
                || "never expires".to_string(),
                |at| format!("expires {}", status::rfc3339(at)),
            );
            eprintln!(
                "created token {id} ({}, {expiry}); it is shown only once:",
                role.as_str()
            );
            println!("{secret}");
            Ok(())
        }
        None => {
            let mut options = ManagerOptions::new(&args.data);
            options.secret_key = args.secret_key;
            let manager = Manager::open(options).await?;
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            tracing::info!(listen = %listener.local_addr()?, data = %args.data.display(), "manager listening");
            manager.serve(listener, signals::terminated()).await?;
            tracing::info!("manager stopped");
            Ok(())
        }
    }
}

/// Writes a secret to a file only its owner can read.
pub(crate) fn write_secret(path: &std::path::Path, secret: &str) -> anyhow::Result<()> {
    switchyard_config::secretbox::write_private(path, secret)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Starts a Worker on the given addresses and runs it until SIGTERM/SIGINT.
pub(crate) async fn run_worker(
    options: WorkerOptions,
    listen: SocketAddr,
    admin_listen: SocketAddr,
) -> anyhow::Result<()> {
    let worker = Worker::connect(options).await?;
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

fn validate(paths: &[PathBuf], env: Option<&str>) -> ExitCode {
    let mut manifests = Vec::new();
    let mut failed = false;
    if let Some(env) = env {
        match switchyard_config::for_env::load_paths(paths, env, None) {
            Ok(set) => manifests = set.manifests,
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    for p in paths.iter().filter(|_| env.is_none()) {
        match switchyard_config::load_path(p) {
            Ok(mut m) => manifests.append(&mut m),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if !failed {
        match switchyard_engine::compile(&manifests, None) {
            Ok(c) => {
                eprintln!(
                    "ok: {} document(s), {} proxy(ies), no problems found",
                    manifests.len(),
                    c.snapshot.proxy_count()
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

fn init_tracing(format: &str, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("SWITCHYARD_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
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

/// `host-port`: stable across restarts of the same Worker on the same machine.
fn default_worker_id(listen: SocketAddr) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_string());
    format!("{host}-{}", listen.port())
}
