//! `switchyard rollback --env ENV --to-revision R`: a new revision whose content equals
//! revision R (history is never rewritten), optionally waiting for the Workers.

use std::process::ExitCode;

use serde::Serialize;
use switchyard_api::admin::{BatchResponse, RollbackRequest};

use crate::batch;
use crate::conn::{ConnArgs, Output};
use crate::manager_error::Explain;
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

/// What `--output json` prints: the Manager's answer (as `apply`'s) and the revision asked
/// for (docs/cli-json.md).
#[derive(Debug, Serialize)]
pub struct Rollback {
    pub to_revision: u64,
    #[serde(flatten)]
    pub batch: BatchResponse,
}

/// For people: the changes, entity by entity, as `apply` and `plan` show them.
pub fn describe(r: &Rollback, colour: bool) -> String {
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
            batch::describe(b, colour)
        )
    } else {
        format!(
            "{}\nrevision {} has the content of revision {}",
            batch::describe(b, colour),
            b.revision,
            r.to_revision
        )
    }
}

pub async fn run(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    let request = RollbackRequest {
        to_revision: args.to_revision,
        expected_revision: None,
        dry_run: args.dry_run,
    };
    let result = Rollback {
        to_revision: args.to_revision,
        batch: client.rollback(&args.env, &request).await.explain()?,
    };
    let revision = (result.batch.changed && !result.batch.dry_run).then_some(result.batch.revision);
    if args.conn.output == Output::Json {
        let report = wait::print_json(&client, &args.env, revision, &args.wait, &result).await?;
        return Ok(report
            .as_ref()
            .map_or_else(|| batch::exit(&result.batch), wait::exit_code));
    }
    crate::text::out(&format!(
        "{}\n",
        describe(&result, crate::conn::stdout_is_terminal())
    ));
    if result.batch.dry_run {
        // Like plan: 2 when something would change.
        return Ok(batch::exit(&result.batch));
    }
    wait::after_commit(&client, &args.env, revision, &args.wait, args.conn.output).await
}
