//! `switchyard rollout --env ENV [FILES…]`: commits a change Workers take only when they
//! start (restart-required, which `apply` refuses) — or nothing, to roll out a new binary
//! or resume a rollout that stopped — and follows the Manager as it hands each Worker over
//! to a successor process, one at a time. `switchyard rollout status --env ENV` shows the
//! latest one.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use switchyard_api::admin::{RolloutRequest, RolloutState, RolloutStatus, RolloutStepState};

use crate::commands::apply::read_for_env;
use crate::conn::{ConnArgs, Output};
use crate::manager_error::Explain;
use crate::text::out;

/// One line of output.
fn line(text: &str) {
    out(&format!("{text}\n"));
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub action: Option<RolloutAction>,
    #[arg(long)]
    pub env: Option<String>,
    /// Manifest files or directories, as for `apply`. None: the current revision is rolled
    /// out (a new `switchyard` binary installed on the Workers' hosts, or a rollout that
    /// stopped, resumed).
    pub files: Vec<PathBuf>,
    /// How long one Worker's handover may take, from the request to its successor's ACK.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub step_timeout: Duration,
    /// Refuse (409) unless the environment is still at this revision.
    #[arg(long)]
    pub expected_revision: Option<u64>,
    /// The binary each successor runs, a path on the Workers' hosts (default: each
    /// Worker's own path, which a package upgrade replaced). Workers take it only from
    /// their `--upgrade-binaries` directory.
    #[arg(long, value_name = "PATH")]
    pub binary: Option<String>,
    /// How many Workers are handed over at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_unavailable: u32,
    /// Return once the rollout has started (the Manager carries on without this command).
    #[arg(long)]
    pub detach: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(clap::Subcommand)]
pub enum RolloutAction {
    /// Where the environment's latest rollout stands.
    Status {
        #[arg(long)]
        env: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

pub async fn run(args: RolloutArgs) -> anyhow::Result<ExitCode> {
    if let Some(RolloutAction::Status { env, conn }) = args.action {
        let client = conn.client()?;
        match client.rollout_status(&env).await.explain()? {
            Some(status) => show(&status, conn.output),
            None if conn.output == Output::Json => line("null"),
            None => line(&format!("no rollout of {env} on this Manager")),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(env) = args.env else {
        anyhow::bail!("--env is required");
    };
    let client = args.conn.client()?;
    let (manifests, delete) = if args.files.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        (
            read_for_env(&client, &env, &args.files).await?.templates,
            Vec::new(),
        )
    };
    let request = RolloutRequest {
        manifests,
        delete,
        expected_revision: args.expected_revision,
        step_timeout_secs: Some(args.step_timeout.as_secs().max(1)),
        binary: args.binary,
        max_unavailable: Some(args.max_unavailable),
    };
    let started = client.rollout(&env, &request).await.explain()?;
    if args.conn.output != Output::Json {
        if let Some(c) = &started.commit {
            crate::batch::print(c, args.conn.output);
        }
        line(&format!(
            "rollout {}: r{} to {} Worker(s), one at a time",
            started.id,
            started.revision,
            started.workers.len()
        ));
    }
    if args.detach {
        if args.conn.output == Output::Json {
            show(&started, args.conn.output);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut shown = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Some(now) = client.rollout_status(&env).await.explain()? else {
            anyhow::bail!("the Manager no longer knows the rollout (it restarted?)");
        };
        if args.conn.output != Output::Json {
            let finished = now
                .workers
                .iter()
                .filter(|w| matches!(w.state, RolloutStepState::Done | RolloutStepState::Failed))
                .count();
            for w in now.workers.iter().take(finished).skip(shown) {
                line(&format!("  {}", worker_line(w)));
            }
            shown = shown.max(finished);
        }
        if now.state != RolloutState::Running {
            if args.conn.output == Output::Json {
                show(&now, args.conn.output);
            } else {
                line(&summary(&now));
            }
            return Ok(exit(&now));
        }
    }
}

fn worker_line(w: &switchyard_api::admin::RolloutWorker) -> String {
    match w.state {
        RolloutStepState::Done => format!(
            "{}: handed over in {} ms (process {} -> {})",
            w.id,
            w.took_ms.unwrap_or(0),
            w.from_instance.as_deref().unwrap_or("?"),
            w.to_instance.as_deref().unwrap_or("?")
        ),
        RolloutStepState::Failed => {
            format!("{}: FAILED: {}", w.id, w.error.as_deref().unwrap_or("?"))
        }
        RolloutStepState::HandingOver => format!("{}: handing over…", w.id),
        RolloutStepState::Waiting => format!("{}: waiting", w.id),
    }
}

fn summary(s: &RolloutStatus) -> String {
    match s.state {
        RolloutState::Succeeded => format!(
            "rollout {}: every Worker ({}) serves r{}",
            s.id,
            s.workers.len(),
            s.revision
        ),
        RolloutState::Failed => format!(
            "rollout {} FAILED: {}\nthe Workers not handed over serve their previous \
             revision; fix the cause, then `switchyard rollout --env {}` resumes",
            s.id,
            s.error.as_deref().unwrap_or("?"),
            s.env
        ),
        RolloutState::Running => format!("rollout {}: running", s.id),
    }
}

fn show(s: &RolloutStatus, output: Output) {
    if output == Output::Json {
        line(&serde_json::to_string_pretty(s).unwrap_or_default());
        return;
    }
    line(&describe(s));
}

/// A rollout for people: its state, each Worker's step, and how it ended.
pub fn describe(s: &RolloutStatus) -> String {
    let state = match s.state {
        RolloutState::Running => "running",
        RolloutState::Succeeded => "succeeded",
        RolloutState::Failed => "FAILED",
    };
    let mut text = format!(
        "rollout {} of {}: r{}, {state}, by {}",
        s.id, s.env, s.revision, s.actor
    );
    for w in &s.workers {
        text.push_str(&format!("\n  {}", worker_line(w)));
    }
    if s.state != RolloutState::Running {
        text.push('\n');
        text.push_str(&summary(s));
    }
    text
}

fn exit(s: &RolloutStatus) -> ExitCode {
    match s.state {
        RolloutState::Failed => ExitCode::FAILURE,
        RolloutState::Running | RolloutState::Succeeded => ExitCode::SUCCESS,
    }
}
