//! `switchyard manager`: run a Manager (control plane) with its embedded store, or create
//! a token directly in its store.

use std::num::NonZeroU64;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use switchyard_api::records::{Role, now_millis};
use switchyard_manager::tls::{ManagerCa, ServeTls};
use switchyard_manager::{Manager, ManagerOptions};

use crate::signals;
use crate::text::rfc3339;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ManagerArgs {
    #[command(subcommand)]
    pub action: Option<ManagerAction>,
    #[command(flatten)]
    pub trace: crate::trace_args::TraceArgs,
    /// Data directory: the SQLite store (unless --database names another), the key that
    /// seals credentials, the Manager's CA and, after the first start, `admin.token`.
    #[arg(long, default_value = "switchyard-data")]
    pub data: PathBuf,
    #[command(flatten)]
    pub database: DatabaseArg,
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: std::net::SocketAddr,
    /// Key that seals credentials at rest (base64 or hex, 32 bytes). Visible in `ps`: prefer
    /// --secret-key-file. Default: DATA/secret.key, created on first start.
    #[arg(long, env = "SWITCHYARD_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// A file holding the key that seals credentials at rest (base64 or hex, 32 bytes).
    #[arg(long, env = "SWITCHYARD_SECRET_KEY_FILE", value_name = "PATH")]
    pub secret_key_file: Option<PathBuf>,
    /// Serve HTTPS with this certificate (PEM chain, leaf first) instead of one from the
    /// Manager's own CA (DATA/ca.pem).
    #[arg(
        long,
        value_name = "PATH",
        requires = "tls_key",
        conflicts_with = "insecure_http"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Another name (DNS name or IP address) the Manager's own certificate covers, beside
    /// the listen address, loopback, localhost and this host's name. Repeatable.
    #[arg(long = "tls-name", value_name = "NAME")]
    pub tls_names: Vec<String>,
    /// Serve plain HTTP (tokens and the Workers' credentials in clear). Refused on an address
    /// other than loopback unless --allow-insecure-remote is also given.
    #[arg(long)]
    pub insecure_http: bool,
    /// Allow --insecure-http on an address other than loopback (something else encrypts
    /// the link, e.g. a service mesh).
    #[arg(long, requires = "insecure_http")]
    pub allow_insecure_remote: bool,
    /// Workers must also present a client certificate from the Manager's CA for their
    /// environment (`switchyard manager worker-cert create`).
    #[arg(long, conflicts_with = "insecure_http")]
    pub require_worker_certificates: bool,
    /// This Manager's name among the Managers sharing a database: the Workers' streams it
    /// holds are stored under it (shown in `GET /v1/envs/ENV/workers`). Must be unique
    /// among them. Default: host name and process id.
    #[arg(long, env = "SWITCHYARD_MANAGER_NAME", value_parser = manager_name)]
    pub name: Option<String>,
    /// History retention: keep each environment's last N revisions (and the entity
    /// versions they need); older ones are pruned, and a Worker behind them gets a full
    /// pull. Default: keep every revision.
    #[arg(long, value_name = "N")]
    pub history_revisions: Option<NonZeroU64>,
    /// History retention: keep the revisions committed within this long (`30d`, `12h`).
    /// With --history-revisions too, a revision is pruned only when both let it go; the
    /// current revision is always kept. Default: keep every revision.
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    pub history_age: Option<Duration>,
    /// Delete audit records older than this (`365d`). Default: audit records are never
    /// deleted (history retention never touches them).
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    pub audit_retention: Option<Duration>,
}

/// A Manager name: 1 to 100 visible ASCII characters.
fn manager_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 100 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a Manager name is 1 to 100 visible ASCII characters (no spaces)".into());
    }
    Ok(s.to_string())
}

/// A duration such as `30d` or `12h`, more than zero (a retention of nothing is refused
/// rather than taken to mean "prune everything").
fn positive_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be more than 0 (e.g. 30d)".to_string()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e} (e.g. 30d, 12h)")),
    }
}

/// Where the Manager's state is kept.
#[derive(clap::Args, Clone)]
pub struct DatabaseArg {
    /// The store: `postgres://USER:PASSWORD@HOST/DB` (add `?sslmode=verify-full` for TLS to
    /// the database; several Managers may share one) or `sqlite://PATH`. Default: SQLite in
    /// DATA/switchyard.db. Prefer the environment variable: a password in a flag is visible
    /// in `ps`.
    #[arg(
        long,
        env = "SWITCHYARD_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database: Option<String>,
}

impl DatabaseArg {
    /// Opens the store it names, or the embedded one in `data`.
    pub async fn open(&self, data: &std::path::Path) -> anyhow::Result<switchyard_store::SqlStore> {
        Ok(match &self.database {
            Some(url) => switchyard_store::SqlStore::connect(url).await?,
            None => switchyard_store::SqlStore::open(&data.join("switchyard.db")).await?,
        })
    }
}

#[derive(clap::Subcommand)]
pub enum ManagerAction {
    /// Manage API tokens directly in the store (the Manager may be running).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Issue Workers' client certificates from the Manager's CA (DATA/ca.pem).
    WorkerCert {
        #[command(subcommand)]
        action: WorkerCertAction,
    },
}

#[derive(clap::Subcommand)]
pub enum WorkerCertAction {
    /// Issue a client certificate for one Worker of one environment: NAME.pem and NAME.key
    /// (mode 0600) in --out.
    Create(WorkerCertArgs),
}

#[derive(clap::Args)]
pub struct WorkerCertArgs {
    #[arg(long, default_value = "switchyard-data")]
    pub data: PathBuf,
    /// The environment the Worker serves (its certificate is refused for any other).
    #[arg(long)]
    pub env: String,
    /// The Worker's name (its --worker-id, by convention).
    pub name: String,
    /// The directory the certificate and key are written to.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// How long the certificate is valid.
    #[arg(long, default_value = "365d", value_parser = humantime::parse_duration)]
    pub valid_for: Duration,
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
    #[command(flatten)]
    pub database: DatabaseArg,
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
        Some(ManagerAction::WorkerCert {
            action: WorkerCertAction::Create(create),
        }) => create_worker_cert(&create)?,
        None => serve(args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: ManagerArgs) -> anyhow::Result<()> {
    let traces = start_tracing(&args.trace.config("switchyard-manager")?)?;
    let served = serve_traced(args).await;
    if let Some(provider) = traces {
        // What is queued is exported before the process exits (bounded wait).
        let _ = tokio::task::spawn_blocking(move || {
            provider.shutdown_with_timeout(std::time::Duration::from_secs(5))
        })
        .await;
    }
    served
}

/// The Manager's spans (`switchyard.apply` and its steps) go through the global tracer
/// provider, set here when an OTLP endpoint is configured.
fn start_tracing(
    config: &switchyard_telemetry::otlp::TraceConfig,
) -> anyhow::Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>> {
    if !config.enabled() {
        return Ok(None);
    }
    let queue = switchyard_telemetry::otlp::SpanQueue::start(
        config,
        prometheus_client::metrics::counter::Counter::default(),
    )
    .map_err(anyhow::Error::msg)?;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(queue)
        .with_sampler(config.sdk_sampler())
        .with_resource(config.resource())
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    tracing::info!(target: "switchyard", endpoint = config.endpoint.as_deref().unwrap_or_default(), protocol = config.protocol.as_str(), "exporting traces");
    Ok(Some(provider))
}

async fn serve_traced(args: ManagerArgs) -> anyhow::Result<()> {
    let mut options = ManagerOptions::new(&args.data);
    options.database = args.database.database.clone();
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
    options.tls = match (args.insecure_http, args.tls_cert, args.tls_key) {
        (true, _, _) => ServeTls::InsecureHttp,
        (false, Some(cert), Some(key)) => ServeTls::Files { cert, key },
        _ => ServeTls::OwnCertificate,
    };
    options.tls_names = args.tls_names;
    options.allow_insecure_remote = args.allow_insecure_remote;
    options.require_worker_certificates = args.require_worker_certificates;
    options.name = args.name.clone();
    options.retention.history = switchyard_store::HistoryRetention {
        revisions: args.history_revisions,
        max_age: args.history_age,
    };
    options.retention.audit = args.audit_retention;
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
        database,
        role,
        envs,
        name,
        expires_in,
    } = args;
    let role = Role::parse(&role)
        .with_context(|| format!("unknown role {role:?}: use admin, deployer, viewer or worker"))?;
    let store = database.open(&data).await?;
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
    crate::text::out(&format!("{secret}\n"));
    Ok(())
}

/// `manager worker-cert create`: a client certificate from the CA in the data directory.
fn create_worker_cert(args: &WorkerCertArgs) -> anyhow::Result<()> {
    let names_ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    anyhow::ensure!(
        names_ok(&args.env) && names_ok(&args.name),
        "--env and NAME may hold letters, digits, '-', '_' and '.' only"
    );
    let (ca, created) = ManagerCa::load_or_create(&args.data)?;
    if created {
        eprintln!(
            "created the Manager's CA in {} (the Manager serves with it at its next start)",
            ca.path.display()
        );
    }
    let issued = ca.issue_worker(&args.env, &args.name, args.valid_for)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let cert = args.out.join(format!("{}.pem", args.name));
    let key = args.out.join(format!("{}.key", args.name));
    switchyard_config::files::write_private(&key, issued.key_pem.trim_end())
        .with_context(|| format!("cannot write {}", key.display()))?;
    std::fs::write(&cert, &issued.chain_pem)
        .with_context(|| format!("cannot write {}", cert.display()))?;
    eprintln!(
        "issued a client certificate for Worker {:?} of environment {:?}, valid {}:\n  \
         {}\n  {} (mode 0600)\ngive it to the Worker: --client-cert {} --client-key {} \
         --manager-ca {}",
        args.name,
        args.env,
        humantime::format_duration(args.valid_for),
        cert.display(),
        key.display(),
        cert.display(),
        key.display(),
        ca.path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::positive_duration;
    use std::time::Duration;

    #[test]
    fn retentions_are_durations_of_more_than_nothing() {
        assert_eq!(
            positive_duration("30d"),
            Ok(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(positive_duration("12h"), Ok(Duration::from_secs(43_200)));
        assert!(positive_duration("0s").unwrap_err().contains("more than 0"));
        assert!(positive_duration("soon").unwrap_err().contains("e.g. 30d"));
    }
}
