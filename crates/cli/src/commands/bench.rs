//! `switchyard bench …`: the measuring instruments (see the bench crate).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use serde::Serialize;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// A Manager, N Worker processes and local upstreams; steady load while changes of six
    /// kinds are applied through the admin API; reports dropped requests, mixed-version
    /// responses, propagation, memory and audit completeness, and per Worker what it was
    /// seen to serve. Exits 1, listing why, if anything was dropped or mixed, a kind of
    /// change was never seen in a response, a Worker missed a revision, went backwards,
    /// did not ACK or did not swap.
    Swap {
        #[arg(long, default_value_t = 3)]
        workers: usize,
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        duration: Duration,
        #[arg(long, default_value_t = 5.0)]
        changes_per_sec: f64,
        /// Keep-alive connections, spread over the Workers.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// New connections per second (one request each), on top of the keep-alive ones.
        #[arg(long, default_value_t = 10.0)]
        new_connections_per_sec: f64,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Fault injection, to see the verdict fail: cut Worker N (1-based) off the
        /// Manager halfway through the run (its traffic is untouched). The bench's own
        /// cluster only.
        #[arg(long, value_name = "N", conflicts_with = "manager")]
        cut_worker: Option<usize>,
        #[command(flatten)]
        control_plane: ControlPlaneArgs,
        #[command(flatten)]
        existing: Box<ExistingArgs>,
    },
    /// Throughput, latency and CPU per request of one Worker vs the upstream directly vs
    /// nginx and HAProxy (if installed), with as many worker processes or threads as the
    /// Worker has threads; interleaved runs, medians and ratios. Exits 1 if any run had an error
    /// (a failed connection or a response other than 200): its numbers would not compare.
    Proxy {
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long)]
        no_nginx: bool,
        #[arg(long)]
        no_haproxy: bool,
        /// Also measure a proxy with api-key + rate-limit + headers.
        #[arg(long)]
        pipeline: bool,
        /// The Worker's threads; nginx gets as many worker processes, HAProxy as many
        /// threads (the load generator and the upstream share the machine's cores).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Every proxy writes an access log line per request to a file (the Worker its
        /// JSON lines, nginx and HAProxy their usual formats).
        #[arg(long)]
        access_log: bool,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The cost of a one-proxy change when many proxies exist: compile + swap time, memory
    /// per proxy, route lookup time, at 10, 1,000, 10,000 … up to N proxies.
    Scale {
        #[arg(long, default_value_t = 10_000)]
        proxies: usize,
        /// One-proxy changes measured at each size, per mode (p99 is shown from 100 on).
        #[arg(long, default_value_t = 200)]
        swaps: usize,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Canary revisions: a bad change (a proxy pointed at a refusing upstream) applied as a
    /// canary until the Manager rolls it back, against the same change applied without
    /// one, held as long and rolled back — the requests that failed each way; and the
    /// Workers' CPU per request with one generation and with a 50% canary beside it.
    Canary {
        #[arg(long, default_value_t = 2)]
        workers: usize,
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// Each CPU round's length.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// CPU rounds (each: one generation, then a canary live).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// The bad canary's share, e.g. `5%`.
        #[arg(long, default_value = "5%")]
        share: String,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// A Manager process and simulated Workers (real streams, pulls and ACKs, no
    /// proxying): propagation versus subscriber count (1, 10, 100, … up to N), Manager CPU
    /// and bytes sent per change.
    Fanout {
        #[arg(long, default_value_t = 500)]
        subscribers: usize,
        /// Changes measured at each subscriber count.
        #[arg(long, default_value_t = 20)]
        changes: usize,
        /// The Manager serves plain HTTP instead of HTTPS (to compare the two).
        #[arg(long)]
        insecure_http: bool,
        #[command(flatten)]
        control_plane: ControlPlaneArgs,
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

/// The bench's own Managers: one on SQLite (default), or several sharing a database.
#[derive(clap::Args)]
pub struct ControlPlaneArgs {
    /// The Managers' database (`postgres://…`, best given in the environment); default:
    /// SQLite in the Manager's data directory.
    #[arg(long, env = "SWITCHYARD_DATABASE_URL", hide_env_values = true)]
    database: Option<String>,
    /// Managers sharing --database: Workers (subscribers) are spread over them, each
    /// given the others to fail over to; changes are applied through the first.
    #[arg(long, default_value_t = 1, requires = "database", value_parser = clap::value_parser!(u16).range(1..=16))]
    managers: u16,
}

impl ControlPlaneArgs {
    fn options(self) -> switchyard_bench::ControlPlane {
        switchyard_bench::ControlPlane {
            database: self.database,
            managers: usize::from(self.managers),
        }
    }
}

/// Measure an existing cluster instead of starting one. The bench adds a proxy and a
/// credential of its own (unique names, a host of its own), drives load through the named
/// Workers, changes them while the load runs, and deletes them at the end.
#[derive(clap::Args)]
pub struct ExistingArgs {
    /// The cluster's Manager (https://host:port, or http:// for one with --insecure-http).
    #[arg(long, requires_all = ["env", "targets"])]
    manager: Option<String>,
    /// The CA the Manager's certificate is verified against (its DATA/ca.pem); default:
    /// the system's roots.
    #[arg(long, env = "SWITCHYARD_CA", value_name = "PATH")]
    ca: Option<std::path::PathBuf>,
    /// The environment to change (an admin or deployer token for it is needed).
    #[arg(long)]
    env: Option<String>,
    /// An admin or deployer token (best in a file: --token-file).
    #[command(flatten)]
    token: crate::conn::TokenArgs,
    /// The Workers to load (their traffic listeners), comma-separated.
    #[arg(long, value_delimiter = ',')]
    targets: Vec<String>,
    /// The Workers' admin listeners, same order as --targets (memory, generations).
    #[arg(long, value_delimiter = ',')]
    worker_admins: Vec<String>,
    /// Where the bench's two upstreams listen (Workers must reach them).
    #[arg(long, default_value = "127.0.0.1")]
    upstream_bind: std::net::IpAddr,
    /// The address Workers reach the bench's upstreams by (default: --upstream-bind).
    #[arg(long)]
    upstream_host: Option<String>,
}

impl ExistingArgs {
    fn cluster(self) -> anyhow::Result<Option<switchyard_bench::ExistingCluster>> {
        let Some(manager) = self.manager else {
            return Ok(None);
        };
        let token = self.token.require()?;
        Ok(Some(switchyard_bench::ExistingCluster {
            manager,
            tls: crate::conn::manager_tls(self.ca.as_deref(), None)?,
            token,
            env: self.env.unwrap_or_default(),
            targets: self.targets,
            admins: self.worker_admins,
            upstream_bind: self.upstream_bind,
            upstream_host: self.upstream_host,
        }))
    }
}

fn binary() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot find the switchyard binary")
}

fn write_json(path: Option<&Path>, report: &impl Serialize) -> anyhow::Result<()> {
    if let Some(path) = path {
        std::fs::write(path, serde_json::to_vec_pretty(report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

pub async fn run(which: BenchCommand) -> anyhow::Result<ExitCode> {
    match which {
        BenchCommand::Swap {
            workers,
            duration,
            changes_per_sec,
            connections,
            new_connections_per_sec,
            json,
            cut_worker,
            control_plane,
            existing,
        } => {
            let report = switchyard_bench::swap(switchyard_bench::SwapOptions {
                workers,
                duration,
                changes_per_sec,
                connections,
                new_connections_per_sec,
                binary: binary()?,
                existing: existing.cluster()?,
                cut_worker,
                control_plane: control_plane.options(),
            })
            .await?;
            crate::text::out(&report.to_text());
            write_json(json.as_deref(), &report)?;
            Ok(if report.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        BenchCommand::Proxy {
            duration,
            connections,
            rounds,
            no_nginx,
            no_haproxy,
            pipeline,
            threads,
            access_log,
            json,
        } => {
            let report = switchyard_bench::proxy(switchyard_bench::ProxyOptions {
                duration,
                connections,
                rounds,
                no_nginx,
                no_haproxy,
                pipeline,
                threads,
                access_log,
                binary: binary()?,
            })
            .await?;
            crate::text::out(&report.to_text());
            write_json(json.as_deref(), &report)?;
            let errors: u64 = report.summary.iter().map(|t| t.errors).sum();
            Ok(if errors == 0 {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "bench proxy: {errors} request(s) failed (see the errors column); these numbers do not compare"
                );
                ExitCode::FAILURE
            })
        }
        BenchCommand::Fanout {
            subscribers,
            changes,
            insecure_http,
            control_plane,
            json,
        } => {
            let report = switchyard_bench::fanout(switchyard_bench::FanoutOptions {
                subscribers,
                changes,
                binary: binary()?,
                insecure_http,
                control_plane: control_plane.options(),
            })
            .await?;
            crate::text::out(&report.to_text());
            write_json(json.as_deref(), &report)?;
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Canary {
            workers,
            connections,
            duration,
            rounds,
            share,
            json,
        } => {
            let share_ppm = switchyard_api::canary::parse_percent(&share)
                .map_err(|e| anyhow::anyhow!("--share: {e}"))?;
            let report = switchyard_bench::canary(switchyard_bench::CanaryOptions {
                workers,
                connections,
                duration,
                rounds,
                share_ppm,
                binary: binary()?,
            })
            .await?;
            crate::text::out(&report.to_text());
            write_json(json.as_deref(), &report)?;
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Scale {
            proxies,
            swaps,
            json,
        } => {
            let report =
                tokio::task::spawn_blocking(move || switchyard_bench::scale(proxies, swaps))
                    .await??;
            crate::text::out(&report.to_text());
            write_json(json.as_deref(), &report)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
