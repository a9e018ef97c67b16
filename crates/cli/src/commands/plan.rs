//! `switchyard plan --env ENV FILES…`: what `apply` would do, entity by entity, with each
//! changed field; changes nothing. Exit status 0 when nothing would change, 2 when
//! something would.

use std::process::ExitCode;

use crate::batch;
use crate::commands::apply::{self, ApplyArgs};

pub async fn run(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    if args.wait.wait {
        anyhow::bail!(
            "plan commits nothing, so there is nothing to --wait for: use `switchyard apply --wait`"
        );
    }
    let client = args.conn.client()?;
    let result = apply::send(&client, &args.input(true)).await?;
    batch::print(&result, args.conn.output);
    Ok(batch::exit(&result))
}
