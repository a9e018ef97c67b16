//! `switchyard rollback --env ENV --to-revision R`: a new revision whose content equals
//! revision R (history is never rewritten), optionally waiting for the Workers.

use std::process::ExitCode;

use serde::{Deserialize, Serialize};

use crate::apply;
use crate::conn::ConnArgs;
use crate::wait::{self, WaitArgs};

#[derive(clap::Args)]
pub struct RollbackArgs {
    /// The environment to roll back.
    #[arg(long)]
    pub env: String,
    /// The revision whose content the environment returns to.
    #[arg(long)]
    pub to_revision: u64,
    /// Show what would change, without changing anything.
    #[arg(long, conflicts_with = "wait")]
    pub dry_run: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// The Manager's answer (as `apply`'s), plus the revision asked for; stable JSON.
#[derive(Debug, Serialize, Deserialize)]
pub struct RollbackResponse {
    pub env: String,
    #[serde(default)]
    pub to_revision: u64,
    pub revision: u64,
    pub previous_revision: u64,
    pub changed: bool,
    pub dry_run: bool,
    pub changes: Vec<Change>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Change {
    pub kind: String,
    pub name: String,
    pub old_version: Option<u64>,
    pub new_version: Option<u64>,
    pub digest: String,
}

impl RollbackResponse {
    /// The same answer as `apply`'s, so it is described the same way.
    fn as_apply(&self) -> apply::ApplyResponse {
        apply::ApplyResponse {
            env: self.env.clone(),
            revision: self.revision,
            previous_revision: self.previous_revision,
            changed: self.changed,
            changes: self
                .changes
                .iter()
                .map(|c| apply::Change {
                    kind: c.kind.clone(),
                    name: c.name.clone(),
                    old_version: c.old_version,
                    new_version: c.new_version,
                })
                .collect(),
        }
    }
}

/// For people: the changes, entity by entity, as `apply` and `plan` show them.
pub fn describe(r: &RollbackResponse) -> String {
    if !r.changed {
        return format!(
            "no changes: {} (revision {}) already has the content of revision {}",
            r.env, r.revision, r.to_revision
        );
    }
    if r.dry_run {
        format!(
            "rollback to revision {}: {}",
            r.to_revision,
            apply::describe_plan(&r.as_apply())
        )
    } else {
        format!(
            "{}\nrevision {} has the content of revision {}",
            apply::describe(&r.as_apply()),
            r.revision,
            r.to_revision
        )
    }
}

pub async fn run(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    let body = serde_json::json!({
        "to_revision": args.to_revision,
        "dry_run": args.dry_run,
    });
    let mut result: RollbackResponse = client
        .post(&format!("/v1/envs/{}/rollback", args.env), &body)
        .await?;
    result.to_revision = args.to_revision;
    args.conn.output.print(&result, || describe(&result));
    let revision = (result.changed && !result.dry_run).then_some(result.revision);
    wait::after_commit(&client, &args.env, revision, &args.wait, args.conn.output).await
}
