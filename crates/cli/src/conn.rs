//! Arguments every command that talks to a Manager shares: where it is, the token, and
//! how to print the answer.

use switchyard_api::AdminClient;

use crate::manager_error::Explain;

#[derive(clap::Args, Clone)]
pub struct ConnArgs {
    /// The Manager's URL.
    #[arg(
        long,
        env = "SWITCHYARD_MANAGER",
        default_value = "http://127.0.0.1:9000"
    )]
    pub manager: String,
    /// An API token.
    #[arg(long, env = "SWITCHYARD_TOKEN", hide_env_values = true)]
    pub token: String,
    /// `text` (a table or diff for people, coloured on a terminal) or `json` (stable,
    /// documented in docs/cli-json.md).
    #[arg(long, default_value = "text")]
    pub output: Output,
}

impl ConnArgs {
    pub fn client(&self) -> anyhow::Result<AdminClient> {
        // The token goes in the header even when it is empty, as it always did: the
        // Manager then names the form it expects (`Bearer <token>`).
        AdminClient::new(&self.manager, "")
            .and_then(|c| c.as_token(&self.token))
            .explain()
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
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("error: cannot encode the answer as JSON: {e}"),
            },
            Output::Text => println!("{}", text()),
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
