//! `switchyard promote --from ENV --to ENV`: the Manager copies the proxies as deployed in
//! one environment into another, resolved with the target's variables; this prints what
//! it did.

use std::process::ExitCode;

use switchyard_api::admin::PromoteRequest;

use crate::batch;
use crate::conn::ConnArgs;
use crate::manager_error::Explain;
use crate::wait;

#[derive(clap::Args)]
pub struct PromoteArgs {
    /// The environment whose deployed proxies are copied.
    #[arg(long)]
    pub from: String,
    /// The environment they are copied into (resolved with its own variables; the
    /// credentials they use must exist there).
    #[arg(long)]
    pub to: String,
    /// Proxies to promote (repeat the flag); default: every proxy of --from.
    #[arg(long = "proxy")]
    pub proxies: Vec<String>,
    /// Only show what would change.
    #[arg(long)]
    pub dry_run: bool,
    /// Refuse (409) unless --to is still at this revision.
    #[arg(long)]
    pub expected_revision: Option<u64>,
    /// `--wait` / `--timeout` (apply only).
    #[command(flatten)]
    pub wait: wait::WaitArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
}

pub async fn run(args: PromoteArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    let request = PromoteRequest {
        from: args.from,
        proxies: args.proxies,
        expected_revision: args.expected_revision,
        dry_run: args.dry_run,
    };
    let result = client.promote(&args.to, &request).await.explain()?;
    batch::print(&result, args.conn.output);
    Ok(batch::exit(&result))
}
