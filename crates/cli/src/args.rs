//! The command line: the subcommands (clap). Each command's arguments live with the
//! command, in `commands/`; `main.rs` dispatches.

use clap::{Parser, Subcommand};

use crate::commands::{
    apply, audit, bench, canary, certificate, credential, demo, dump, env, manager, promote,
    rollback, rollout, status, token, up, upstream, validate, worker,
};

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "An API gateway whose configuration changes are non-events",
    after_help = "Exit status: 0 = success (for plan and a --dry-run: nothing would change), \
        2 = changes pending (plan; apply, promote or rollback --dry-run), 1 = any error, usage \
        errors and refused tokens included."
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a Worker (data plane) serving the manifests in a file or directory; reloads
    /// them on change and on SIGHUP.
    Worker(worker::WorkerArgs),
    /// Run the sample upstream (answers with its id; for demos and tests).
    Upstream(upstream::UpstreamArgs),
    /// Run the sample gateway: two sample upstreams and a Worker serving ./examples.
    Demo(demo::DemoArgs),
    /// Run a Manager (control plane) with its embedded store, or manage its tokens.
    Manager(manager::ManagerArgs),
    /// Apply manifests to an environment: validated locally, sent as one batch, one revision.
    Apply(apply::ApplyArgs),
    /// What `apply` would do, entity by entity, with each changed field (secrets redacted)
    /// and how it is applied (hot, hot-with-drain, restart-required); changes nothing. Exit status 0 when nothing would
    /// change, 2 when something would, 1 on error.
    Plan(apply::ApplyArgs),
    /// Roll out a change Workers take only when they start (restart-required, refused by
    /// `apply`), or a new binary: commit it, then hand each Worker over to a successor
    /// process, one at a time, without refusing a connection. `rollout status` shows it.
    Rollout(rollout::RolloutArgs),
    /// A canary revision (`apply --canary`): where it stands, or finish it by hand.
    Canary {
        #[command(subcommand)]
        action: canary::CanaryAction,
    },
    /// Copy proxies as deployed in one environment into another (stage -> prod), resolved
    /// with the target's variables, as one audited revision.
    Promote(promote::PromoteArgs),
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
    /// Create or replace a TLS certificate from PEM files, the key kept out of manifests.
    Certificate {
        #[command(subcommand)]
        action: certificate::CertificateAction,
    },
    /// Return an environment to an earlier revision's content, as a new revision.
    Rollback(rollback::RollbackArgs),
    /// Create or delete an environment.
    Env {
        #[command(subcommand)]
        action: env::EnvAction,
    },
    /// List the Manager's API tokens, or revoke one.
    Token {
        #[command(subcommand)]
        action: token::TokenAction,
    },
    /// The embedded cluster in one command: a Manager, two Workers for `dev`, sample
    /// upstreams, and ./examples applied.
    Up(up::UpArgs),
    /// Measure the hot-deployment contract and the proxy on this machine.
    Bench {
        #[command(subcommand)]
        which: bench::BenchCommand,
    },
    /// Check manifests without running anything: prints every problem with file:line:col.
    Validate(validate::ValidateArgs),
}
