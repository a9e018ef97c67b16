//! `switchyard upstream`: the sample upstream (answers with its id; for demos and tests).

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use switchyard_worker::sample_upstream::SampleUpstream;

use crate::signals;

#[derive(clap::Args)]
pub struct UpstreamArgs {
    #[arg(long, default_value = "127.0.0.1:18081")]
    pub listen: SocketAddr,
    #[arg(long, default_value = "upstream-1")]
    pub id: String,
}

pub async fn run(args: UpstreamArgs) -> anyhow::Result<ExitCode> {
    let UpstreamArgs { listen, id } = args;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let up = SampleUpstream::start(listen, &id, stop_rx)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(target: "switchyard", addr = %up.addr, %id, "sample upstream listening");
    signals::terminated().await;
    let _ = stop_tx.send(true);
    Ok(ExitCode::SUCCESS)
}
