//! `switchyard credential set|rotate --env ENV NAME (--from-file F | --from-env VAR)`:
//! change a `secret` credential's value without touching manifests. The value is read
//! here, sent once to the Manager, and never printed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use switchyard_api::admin::{CredentialValueRequest, CredentialValueResponse};

use crate::conn::ConnArgs;
use crate::manager_error::Explain;

#[derive(clap::Subcommand)]
pub enum CredentialAction {
    /// Set a `secret` credential's value: creates the credential (type secret) when it does
    /// not exist, or replaces its value (the same value changes nothing).
    #[command(after_help = "Examples:
  switchyard credential set --env dev openai-key --from-file ./openai.key
  switchyard credential set --env dev openai-key --from-env OPENAI_API_KEY

One revision with its audit record; Workers pick the new value up as after an apply.
Credentials of other types (api-keys, basic-users, jwks) change through manifests.")]
    Set(CredentialArgs),
    /// Rotate an existing `secret` credential to a new value (refused when the credential
    /// does not exist or already has this value).
    #[command(after_help = "Examples:
  switchyard credential rotate --env prod openai-key --from-file ./new.key
  vault read -field=key secret/openai | switchyard credential rotate --env prod openai-key --from-file /dev/stdin")]
    Rotate(CredentialArgs),
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["from_file", "from_env"])))]
pub struct CredentialArgs {
    /// The environment.
    #[arg(long)]
    pub env: String,
    /// The credential's name (metadata.name).
    pub name: String,
    /// Read the value from this file (one trailing newline is dropped).
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,
    /// Read the value from this environment variable of this process (any name).
    #[arg(long, value_name = "VAR")]
    pub from_env: Option<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

pub async fn run(action: CredentialAction) -> anyhow::Result<ExitCode> {
    let (args, rotate) = match action {
        CredentialAction::Set(a) => (a, false),
        CredentialAction::Rotate(a) => (a, true),
    };
    let value = read_value(&args)?;
    let client = args.conn.client()?;
    let request = CredentialValueRequest { value, rotate };
    // The answer never holds the value; `--output json` prints it as is.
    let r = client
        .set_credential(&args.env, &args.name, &request)
        .await
        .explain()?;
    args.conn.output.print(&r, || describe(&r));
    Ok(ExitCode::SUCCESS)
}

fn describe(r: &CredentialValueResponse) -> String {
    let what = match (r.changed, r.created, r.rotated, r.old_version) {
        (false, ..) => format!("unchanged (v{}): it already has this value", r.new_version),
        (true, true, ..) => format!("created (v{})", r.new_version),
        (true, false, rotated, old) => format!(
            "{} (v{} -> v{})",
            if rotated { "rotated" } else { "set" },
            old.unwrap_or_default(),
            r.new_version
        ),
    };
    format!(
        "{}: credential {} {what}, revision {}",
        r.env, r.name, r.revision
    )
}

/// The value from `--from-file` (one trailing newline dropped) or `--from-env`.
fn read_value(args: &CredentialArgs) -> anyhow::Result<String> {
    read_secret(
        args.from_file.as_deref(),
        args.from_env.as_deref(),
        "--from",
    )
}

/// A secret from a file (one trailing newline dropped) or from an environment variable of
/// this process; `flag` names the options in errors (`--from` for `--from-file` and
/// `--from-env`). Never echoes the value.
pub fn read_secret(
    file: Option<&std::path::Path>,
    var: Option<&str>,
    flag: &str,
) -> anyhow::Result<String> {
    let value = match (file, var) {
        (Some(file), _) => {
            let text = std::fs::read(file)
                .with_context(|| format!("{flag}-file: cannot read {}", file.display()))?;
            let mut text = String::from_utf8(text).map_err(|_| {
                anyhow::anyhow!(
                    "{flag}-file {}: the value is not UTF-8 text",
                    file.display()
                )
            })?;
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            if text.is_empty() {
                bail!(
                    "{flag}-file {}: the file is empty (a secret cannot be empty)",
                    file.display()
                );
            }
            text
        }
        (None, Some(var)) => match std::env::var(var) {
            Ok(v) if v.is_empty() => {
                bail!("{flag}-env {var}: the variable is empty (a secret cannot be empty)")
            }
            Ok(v) => v,
            Err(std::env::VarError::NotPresent) => {
                bail!("{flag}-env {var}: the variable is not set in this environment")
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                bail!("{flag}-env {var}: the value is not UTF-8 text")
            }
        },
        (None, None) => bail!("give the value with {flag}-file FILE or {flag}-env VAR"),
    };
    Ok(value)
}
