//! Arguments every command that talks to a Manager shares: where it is, the token, and
//! how to print the answer; and secrets given as files rather than on the command line.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use switchyard_api::{AdminClient, ManagerTls};

use crate::manager_error::Explain;

#[derive(clap::Args, Clone)]
pub struct ConnArgs {
    /// The Manager's URL. Several Managers of one control plane (sharing a PostgreSQL
    /// database): comma-separated or the flag repeated; each call goes to the first that
    /// can be reached (a Manager that refuses the connection or fails the TLS handshake was
    /// sent nothing, so the next is tried), and the one that answered is kept for the
    /// rest of the command.
    #[arg(
        long,
        env = "SWITCHYARD_MANAGER",
        default_value = "https://127.0.0.1:9000",
        value_delimiter = ',',
        value_name = "URL[,URL…]"
    )]
    pub manager: Vec<String>,
    /// The CA certificate(s) the Manager's certificate is verified against (PEM; its own CA
    /// is DATA/ca.pem). Default: the system's roots.
    #[arg(long, env = "SWITCHYARD_CA", value_name = "PATH")]
    pub ca: Option<PathBuf>,
    #[command(flatten)]
    pub token: TokenArgs,
    /// `text` (a table or diff for people, coloured on a terminal) or `json` (stable,
    /// documented in docs/cli-json.md).
    #[arg(long, default_value = "text")]
    pub output: Output,
}

impl ConnArgs {
    pub fn client(&self) -> anyhow::Result<AdminClient> {
        let token = self.token.require()?;
        // The token goes in the header even when it is empty, as it always did: the
        // Manager then names the form it expects (`Bearer <token>`).
        let urls = manager_urls(&self.manager)?;
        let tls = manager_tls(self.ca.as_deref(), None)?;
        AdminClient::with_fallbacks(&urls, "", &tls)
            .and_then(|c| c.as_token(&token))
            .explain()
    }
}

/// The Manager URLs given to `--manager` (comma-separated, or the flag repeated), trimmed,
/// empty pieces dropped; an error naming the flag when none is left.
pub fn manager_urls(given: &[String]) -> anyhow::Result<Vec<String>> {
    let urls: Vec<String> = given
        .iter()
        .flat_map(|u| u.split(','))
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect();
    if urls.is_empty() {
        bail!("--manager: give at least one URL (https://host:port)");
    }
    Ok(urls)
}

/// How the Manager is verified: the CA file given (else the system's roots), and a client
/// certificate (cert, key) if one was given.
pub fn manager_tls(
    ca: Option<&Path>,
    client: Option<(&Path, &Path)>,
) -> anyhow::Result<ManagerTls> {
    let tls = match ca {
        Some(path) => ManagerTls::ca_file(path).explain()?,
        None => ManagerTls::system(),
    };
    match client {
        Some((cert, key)) => tls.client_certificate(cert, key).explain(),
        None => Ok(tls),
    }
}

/// The API token: in a file (`--token-file`, `SWITCHYARD_TOKEN_FILE`), which is how to
/// give it, or on the command line (`--token`, visible to anyone who can list processes)
/// or in `SWITCHYARD_TOKEN`.
#[derive(clap::Args, Clone, Debug)]
pub struct TokenArgs {
    /// An API token. Visible in `ps`: prefer --token-file.
    #[arg(long, env = "SWITCHYARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the API token (surrounding whitespace ignored), e.g. one written with
    /// mode 0600 or mounted from a secret store.
    #[arg(long, env = "SWITCHYARD_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,
}

impl TokenArgs {
    /// The token, if one was given (either way, not both).
    pub fn get(&self) -> anyhow::Result<Option<String>> {
        secret(
            ("--token", "SWITCHYARD_TOKEN", self.token.as_deref()),
            (
                "--token-file",
                "SWITCHYARD_TOKEN_FILE",
                self.token_file.as_deref(),
            ),
        )
    }

    /// The token; an error naming both ways to give it when there is none.
    pub fn require(&self) -> anyhow::Result<String> {
        self.get()?.context(
            "no API token: give --token-file PATH (or SWITCHYARD_TOKEN_FILE), or --token \
             (SWITCHYARD_TOKEN)",
        )
    }
}

/// A secret given inline (`inline`: flag, variable, value) or in a file (`file`: flag,
/// variable, path), not both. A file's content is trimmed and must not be empty; errors
/// name the file, never the secret.
pub fn secret(
    inline: (&str, &str, Option<&str>),
    file: (&str, &str, Option<&Path>),
) -> anyhow::Result<Option<String>> {
    let ((flag, var, value), (file_flag, file_var, path)) = (inline, file);
    match (value, path) {
        (Some(_), Some(_)) => bail!(
            "give {flag} ({var}) or {file_flag} ({file_var}), not both: check the command \
             line and the environment"
        ),
        (Some(v), None) => Ok(Some(v.to_string())),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("{file_flag} {}: cannot read it", path.display()))?;
            let text = text.trim();
            if text.is_empty() {
                bail!("{file_flag} {}: the file is empty", path.display());
            }
            Ok(Some(text.to_string()))
        }
        (None, None) => Ok(None),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

impl Output {
    /// Prints `value` as pretty JSON (json) or `text()` (text).
    pub fn print<T: serde::Serialize>(self, value: &T, text: impl FnOnce() -> String) {
        match self {
            Output::Json => match serde_json::to_string_pretty(value) {
                Ok(s) => crate::text::out(&format!("{s}\n")),
                Err(e) => eprintln!("error: cannot encode the answer as JSON: {e}"),
            },
            Output::Text => crate::text::out(&format!("{}\n", text())),
        }
    }
}

/// Whether stdout is a terminal (colours and progress only then).
pub fn stdout_is_terminal() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stdout())
}

/// Whether stderr is a terminal (progress lines only then).
pub fn stderr_is_terminal() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
}
