//! `switchyard`: the one binary. Subcommands run a Worker, a Manager, a sample upstream,
//! the demo gateway, and the operator's commands against a Manager (`commands/`).

// A command-line tool: its results go to stdout by design.
#![allow(clippy::print_stdout)]

mod alloc;
mod args;
mod batch;
mod commands;
mod conn;
mod handover;
mod manager_error;
mod sd_notify;
mod signals;
mod text;
mod trace_args;
mod wait;

use std::process::ExitCode;

use args::{Cli, Command};
use clap::Parser;
use commands::{
    apply, audit, bench, canary, certificate, credential, demo, dump, env, manager, plan, promote,
    rollback, rollout, status, token, up, upstream, validate, worker,
};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage(&e),
    };
    // The bench prints a report; the components it runs in-process log warnings only.
    let default_level = if matches!(cli.command, Command::Bench { .. }) {
        "warn"
    } else {
        "info"
    };
    init_tracing(cli.log_format, default_level);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Worker(_) = &cli.command {
        // A Worker serves traffic on threads of its own (`--threads`); this runtime runs
        // its control plane: sync, reloads, health checks, the admin API.
        builder.worker_threads(2);
    }
    let runtime = match builder.enable_all().build() {
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

/// `--help` and `--version` exit 0; a usage error exits 1 like every other error (clap's
/// own 2 would read as "changes pending" to scripts that check `plan`).
fn usage(e: &clap::Error) -> ExitCode {
    let _ = e.print();
    if e.use_stderr() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Worker(args) => worker::run(args).await,
        Command::Upstream(args) => upstream::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Manager(args) => manager::run(args).await,
        Command::Apply(args) => apply::run(args).await,
        Command::Plan(args) => plan::run(args).await,
        Command::Rollout(args) => rollout::run(args).await,
        Command::Promote(args) => promote::run(args).await,
        Command::Canary { action } => canary::run(action).await,
        Command::Status(args) => status::run(args).await,
        Command::Audit(args) => audit::run(args).await,
        Command::Dump(args) => dump::run(args).await,
        Command::Credential { action } => credential::run(action).await,
        Command::Certificate { action } => certificate::run(action).await,
        Command::Rollback(args) => rollback::run(args).await,
        Command::Env { action } => env::run(action).await,
        Command::Token { action } => token::run(action).await,
        Command::Up(args) => up::run(args).await,
        Command::Bench { which } => bench::run(which).await,
        Command::Validate(args) => Ok(validate::run(&args)),
    }
}

fn init_tracing(format: args::LogFormat, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("SWITCHYARD_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if format == args::LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}
