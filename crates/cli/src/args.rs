//! The command line: every subcommand and its arguments (clap). `main.rs` runs them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use switchyard_worker::AccessLogTarget;

use crate::conn::ConnArgs;
use crate::{apply, audit, bench, credential, dump, rollback, status, wait};

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "An API gateway whose configuration changes are non-events"
)]
pub(crate) struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub(crate) log_format: String,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
    /// Run a Manager (control plane) with its embedded store, or manage its tokens.
    Manager(ManagerArgs),
    /// Apply manifests to an environment: validated locally, sent as one batch, one revision.
    Apply(ApplyArgs),
    /// What `apply` would do, entity by entity, with each changed field (secrets redacted)
    /// and whether it is applied hot; changes nothing. Exit status 0 when nothing would
    /// change, 2 when something would, 1 on error.
    Plan(ApplyArgs),
    /// Copy proxies as deployed in one environment into another (stage -> prod), resolved
    /// with the target's variables, as one audited revision.
    Promote(PromoteArgs),
    /// An environment's Workers (revision, lag, last ACK/NACK) and its latest revisions
    /// (propagation time, audit completeness).
    Status(status::StatusArgs),
    /// The audit trail, newest first: who changed what, where, when.
    Audit(audit::AuditArgs),
    /// An environment's live entities as YAML manifests (secret values as ${env:…}
    /// references) that `apply` takes back unchanged.
    Dump(dump::DumpArgs),
    /// Set or rotate a secret credential's value without touching manifests.
    Credential {
        #[command(subcommand)]
        action: credential::CredentialAction,
    },
    /// Return an environment to an earlier revision's content, as a new revision.
    Rollback(rollback::RollbackArgs),
    /// Create an environment.
    Env {
        #[command(subcommand)]
        action: EnvAction,
    },
    /// The embedded cluster in one command: a Manager, two Workers for `dev`, sample
    /// upstreams, and ./examples applied.
    Up {
        #[arg(long, default_value = "switchyard-data")]
        data: PathBuf,
        #[arg(long, default_value = "examples")]
        config: PathBuf,
        #[arg(long, default_value = "127.0.0.1:9000")]
        manager_listen: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin_listen: SocketAddr,
        #[arg(long, default_value_t = 2)]
        workers: u16,
    },
    /// Measure the hot-deployment contract and the proxy on this machine.
    Bench {
        #[command(subcommand)]
        which: bench::BenchCommand,
    },
    /// Check manifests without running anything: prints every problem with file:line:col.
    Validate {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Resolve `${NAME}` variables for this environment (from the files' kind:
        /// Environment document named so), as `switchyard apply --env` would.
        #[arg(long)]
        env: Option<String>,
    },
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct ManagerArgs {
    #[command(subcommand)]
    pub(crate) action: Option<ManagerAction>,
    /// Data directory: the SQLite store and, after the first start, `admin.token`.
    #[arg(long, default_value = "switchyard-data")]
    pub(crate) data: PathBuf,
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub(crate) listen: SocketAddr,
    /// Key that seals credentials at rest (base64 or hex, 32 bytes). Default: DATA/secret.key,
    /// created on first start.
    #[arg(long, env = "SWITCHYARD_SECRET_KEY", hide_env_values = true)]
    pub(crate) secret_key: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum ManagerAction {
    /// Manage API tokens directly in the store (the Manager may be running).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(Subcommand)]
pub(crate) enum TokenAction {
    /// Create a token and print it once.
    Create {
        #[arg(long, default_value = "switchyard-data")]
        data: PathBuf,
        /// admin, deployer, viewer or worker.
        #[arg(long)]
        role: String,
        /// Environment(s) the token is scoped to (deployer: one or more; worker: exactly one).
        #[arg(long = "env")]
        envs: Vec<String>,
        #[arg(long)]
        name: Option<String>,
        /// The token stops working after this long (`30d`, `12h`); default: never.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<Duration>,
    },
}

#[derive(Subcommand)]
pub(crate) enum EnvAction {
    /// Create an environment (admin token).
    Create {
        name: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

#[derive(clap::Args)]
pub(crate) struct ApplyArgs {
    #[arg(long)]
    pub(crate) env: String,
    /// Manifest files or directories (shell globs welcome). `${NAME}` is resolved with the
    /// variables of the `kind: Environment` document named like --env (or, without one,
    /// the variables the Manager keeps for it); `${env:SWITCHYARD_…}` from this process.
    #[arg(required = true)]
    pub(crate) files: Vec<PathBuf>,
    /// Also delete the entities carrying the --selector labels that the files no longer
    /// contain (never anything else).
    #[arg(long, requires = "selector")]
    pub(crate) prune: bool,
    /// Labels that mark the entities these files own, `key=value[,key=value]` (with --prune).
    #[arg(long)]
    pub(crate) selector: Option<String>,
    /// Only show what would change (the same as `switchyard plan`).
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Refuse (409) unless the environment is still at this revision (the one a plan showed).
    #[arg(long)]
    pub(crate) expected_revision: Option<u64>,
    /// `--wait` / `--timeout` (apply only).
    #[command(flatten)]
    pub(crate) wait: wait::WaitArgs,
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
}

impl ApplyArgs {
    pub(crate) fn request(&self, dry_run: bool) -> apply::Request<'_> {
        apply::Request {
            env: &self.env,
            files: &self.files,
            prune_selector: if self.prune {
                self.selector.as_deref()
            } else {
                None
            },
            expected_revision: self.expected_revision,
            dry_run: dry_run || self.dry_run,
        }
    }
}

#[derive(clap::Args)]
pub(crate) struct PromoteArgs {
    /// The environment whose deployed proxies are copied.
    #[arg(long)]
    pub(crate) from: String,
    /// The environment they are copied into (resolved with its own variables; the
    /// credentials they use must exist there).
    #[arg(long)]
    pub(crate) to: String,
    /// Proxies to promote (repeat the flag); default: every proxy of --from.
    #[arg(long = "proxy")]
    pub(crate) proxies: Vec<String>,
    /// Only show what would change.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Refuse (409) unless --to is still at this revision.
    #[arg(long)]
    pub(crate) expected_revision: Option<u64>,
    /// `--wait` / `--timeout` (apply only).
    #[command(flatten)]
    pub(crate) wait: wait::WaitArgs,
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
}

#[derive(clap::Args)]
pub(crate) struct WorkerArgs {
    /// Standalone mode: a manifest file or directory.
    #[arg(long, required_unless_present = "manager", conflicts_with = "manager")]
    pub(crate) config: Option<PathBuf>,
    /// Manager mode: follow an environment on this Manager (http://host:port).
    #[arg(long, env = "SWITCHYARD_MANAGER", requires_all = ["env", "token"])]
    pub(crate) manager: Option<String>,
    /// Manager mode: the environment to serve.
    #[arg(long)]
    pub(crate) env: Option<String>,
    /// Manager mode: a worker token for the environment.
    #[arg(long, env = "SWITCHYARD_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Manager mode: this Worker's id in the Manager's status and audit trail
    /// (default: host name and listen port).
    #[arg(long)]
    pub(crate) worker_id: Option<String>,
    /// Manager mode: where the last-known-good cache is kept.
    #[arg(long, default_value = "switchyard-cache")]
    pub(crate) cache_dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(crate) listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:9901")]
    pub(crate) admin_listen: SocketAddr,
    /// `stdout`, `off`, or a file path.
    #[arg(long, default_value = "stdout")]
    pub(crate) access_log: AccessLogTarget,
    /// How long in-flight requests may take to finish on shutdown.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub(crate) drain_timeout: Duration,
    /// Do not watch the configuration for changes (SIGHUP still reloads).
    #[arg(long)]
    pub(crate) no_watch: bool,
}
