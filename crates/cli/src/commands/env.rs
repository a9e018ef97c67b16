//! `switchyard env create|delete NAME`: create or delete an environment (admin token).

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
    /// Delete an environment: its entities, revisions and Worker reports (its audit trail
    /// stays). Refused while Workers are connected to it, unless --force.
    #[command(after_help = "Examples:
  switchyard env delete qa
  switchyard env delete qa --force     # even with Workers connected: they keep serving what they have

The deletion is audited (operation delete-env). The name can be created again, from revision 0.")]
    Delete {
        name: String,
        /// Delete even while Workers are connected (they keep serving their last
        /// configuration until stopped or pointed at another environment).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

pub async fn run(action: EnvAction) -> anyhow::Result<ExitCode> {
    match action {
        EnvAction::Create { name, conn } => {
            let created = conn.client()?.create_env(&name).await.explain()?;
            // As a JSON object with its keys sorted, as it has always been printed.
            let created = serde_json::to_value(&created)?;
            conn.output
                .print(&created, || format!("environment {name} created"));
        }
        EnvAction::Delete { name, force, conn } => {
            let deleted = conn.client()?.delete_env(&name, force).await.explain()?;
            conn.output.print(&deleted, || {
                let mut text = format!(
                    "environment {} deleted (it was at revision {}: {} entities, {} revisions); \
                     its audit trail is kept",
                    deleted.name, deleted.revision, deleted.entities, deleted.revisions
                );
                if !deleted.connected_workers.is_empty() {
                    text.push_str(&format!(
                        "\n{} Worker(s) were connected and keep serving their last \
                         configuration: {}",
                        deleted.connected_workers.len(),
                        deleted.connected_workers.join(", ")
                    ));
                }
                text
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
