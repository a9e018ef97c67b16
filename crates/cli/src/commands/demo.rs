//! `switchyard demo`: the sample gateway in one process, for a first look.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use switchyard_worker::sample_upstream::SampleUpstream;
use switchyard_worker::{AccessLogTarget, ConfigSource, WorkerOptions};

/// The addresses the example manifests point at.
const UPSTREAMS: [(&str, &str); 2] = [
    ("127.0.0.1:18081", "blue-1"),
    ("127.0.0.1:18082", "green-1"),
];

#[derive(clap::Args)]
pub struct DemoArgs {
    #[arg(long, default_value = "examples")]
    pub config: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:9901")]
    pub admin_listen: SocketAddr,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let DemoArgs {
        config,
        listen,
        admin_listen: admin,
    } = args;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    for (addr, id) in UPSTREAMS {
        let addr: SocketAddr = addr.parse()?;
        SampleUpstream::start(addr, id, stop_rx.clone())
            .await
            .with_context(|| format!("cannot start the sample upstream on {addr}"))?;
        tracing::info!(target: "switchyard::demo", %addr, id, "sample upstream listening");
    }
    eprintln!(
        "\nSwitchyard demo: gateway on http://{listen}, admin on http://{admin}\n\
         try:\n  curl -i http://{listen}/payments/42\n  curl -s http://{admin}/status\n\
         then edit {} (e.g. x-release: blue -> green) and curl again: the change is live.\n",
        config.display()
    );
    let options = WorkerOptions {
        source: ConfigSource::Files {
            path: config,
            watch: true,
        },
        access_log: AccessLogTarget::Stdout,
        drain_timeout: Duration::from_secs(10),
        thread_allocated: crate::alloc::thread_allocated(),
        threads: None,
        threads_from_settings: false,
        max_pinned_age: switchyard_worker::DEFAULT_MAX_PINNED_AGE,
        tracing: switchyard_telemetry::otlp::TraceConfig::off("switchyard-worker"),
    };
    let addresses = super::worker::Addresses {
        listen: super::worker::Listen::Flags { listen, tls: None },
        admin,
    };
    let result = super::worker::serve(options, addresses, super::worker::Handover::none()).await;
    let _ = stop_tx.send(true);
    result.map(|()| ExitCode::SUCCESS)
}
