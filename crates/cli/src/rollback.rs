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
    #[serde(default)]
    pub to_revision: u64,
    #[serde(flatten)]
    pub batch: apply::BatchResponse,
}

/// For people: the changes, entity by entity, as `apply` and `plan` show them.
pub fn describe(r: &RollbackResponse, colour: bool) -> String {
    let b = &r.batch;
    if !b.changed {
        return format!(
            "no changes: {} (revision {}) already has the content of revision {}",
            b.env, b.revision, r.to_revision
        );
    }
    if b.dry_run {
        format!(
            "rollback to revision {}: {}",
            r.to_revision,
            apply::describe(b, colour)
        )
    } else {
        format!(
            "{}\nrevision {} has the content of revision {}",
            apply::describe(b, colour),
            b.revision,
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
    let revision = (result.batch.changed && !result.batch.dry_run).then_some(result.batch.revision);
    if args.conn.output == crate::conn::Output::Json {
        // One JSON document: the rollback, with the wait's report under "wait".
        let report = wait::wait_if_asked(&client, &args.env, revision, &args.wait).await?;
        let mut v = serde_json::to_value(&result)?;
        if let Some(r) = &report {
            v["wait"] = serde_json::to_value(r)?;
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(report.as_ref().map_or(ExitCode::SUCCESS, wait::exit_code));
    }
    println!("{}", describe(&result, crate::conn::stdout_is_terminal()));
    wait::after_commit(&client, &args.env, revision, &args.wait, args.conn.output).await
}
