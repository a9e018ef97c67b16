//! `switchyard manager`: run a Manager (control plane) with its embedded store, or create
//! a token directly in its store.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use switchyard_api::records::{Role, now_millis};
use switchyard_manager::{Manager, ManagerOptions};

use crate::signals;
use crate::text::rfc3339;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ManagerArgs {
    #[command(subcommand)]
    pub action: Option<ManagerAction>,
    /// Data directory: the SQLite store and, after the first start, `admin.token`.
    #[arg(long, default_value = "switchyard-data")]
    pub data: PathBuf,
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: std::net::SocketAddr,
    /// Key that seals credentials at rest (base64 or hex, 32 bytes). Visible in `ps`: prefer
    /// --secret-key-file. Default: DATA/secret.key, created on first start.
    #[arg(long, env = "SWITCHYARD_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// A file holding the key that seals credentials at rest (base64 or hex, 32 bytes).
    #[arg(long, env = "SWITCHYARD_SECRET_KEY_FILE", value_name = "PATH")]
    pub secret_key_file: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
pub enum ManagerAction {
    /// Manage API tokens directly in the store (the Manager may be running).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(clap::Subcommand)]
pub enum TokenAction {
    /// Create a token and print it once.
    Create(TokenCreateArgs),
}

#[derive(clap::Args)]
pub struct TokenCreateArgs {
    #[arg(long, default_value = "switchyard-data")]
    pub data: PathBuf,
    /// admin, deployer, viewer or worker.
    #[arg(long)]
    pub role: String,
    /// Environment(s) the token is scoped to (deployer: one or more; worker: exactly one).
    #[arg(long = "env")]
    pub envs: Vec<String>,
    #[arg(long)]
    pub name: Option<String>,
    /// The token stops working after this long (`30d`, `12h`); default: never.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub expires_in: Option<Duration>,
}

pub async fn run(args: ManagerArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        Some(ManagerAction::Token {
            action: TokenAction::Create(create),
        }) => create_token(create).await?,
        None => serve(args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: ManagerArgs) -> anyhow::Result<()> {
    let mut options = ManagerOptions::new(&args.data);
    options.secret_key = crate::conn::secret(
        (
            "--secret-key",
            "SWITCHYARD_SECRET_KEY",
            args.secret_key.as_deref(),
        ),
        (
            "--secret-key-file",
            "SWITCHYARD_SECRET_KEY_FILE",
            args.secret_key_file.as_deref(),
        ),
    )?;
    let manager = Manager::open(options).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(target: "switchyard", listen = %listener.local_addr()?, data = %args.data.display(), "manager listening");
    manager.serve(listener, signals::terminated()).await?;
    tracing::info!(target: "switchyard", "manager stopped");
    Ok(())
}

/// `manager token create`: straight into the store; the secret on stdout, once.
async fn create_token(args: TokenCreateArgs) -> anyhow::Result<()> {
    let TokenCreateArgs {
        data,
        role,
        envs,
        name,
        expires_in,
    } = args;
    let role = Role::parse(&role)
        .with_context(|| format!("unknown role {role:?}: use admin, deployer, viewer or worker"))?;
    let store = switchyard_store::SqliteStore::open(&data.join("switchyard.db")).await?;
    let name = name.unwrap_or_else(|| format!("{}-cli", role.as_str()));
    let expires_at = expires_in
        .map(|d| now_millis().saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
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
        |at| format!("expires {}", rfc3339(at)),
    );
    eprintln!(
        "created token {id} ({}, {expiry}); it is shown only once:",
        role.as_str()
    );
    println!("{secret}");
    Ok(())
}
