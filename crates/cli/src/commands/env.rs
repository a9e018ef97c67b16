//! `switchyard env create NAME`: create an environment (admin token).

use std::process::ExitCode;

use crate::conn::ConnArgs;
use crate::manager_error::Explain;

#[derive(clap::Subcommand)]
pub enum EnvAction {
    /// Create an environment (admin token).
    Create {
        name: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

pub async fn run(action: EnvAction) -> anyhow::Result<ExitCode> {
    let EnvAction::Create { name, conn } = action;
    let client = conn.client()?;
    let created = client.create_env(&name).await.explain()?;
    // As a JSON object with its keys sorted, as it has always been printed.
    let created = serde_json::to_value(&created)?;
    conn.output
        .print(&created, || format!("environment {name} created"));
    Ok(ExitCode::SUCCESS)
}
