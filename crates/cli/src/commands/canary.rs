//! `switchyard canary status|promote|abort --env ENV`: where the environment's canary
//! stands (its share, its numbers against the stable revision, the Manager's verdict), and
//! finishing it by hand: promoted to every request now, or aborted (a new revision with the
//! stable content).

use std::process::ExitCode;

use switchyard_api::canary::{CanarySpec, CanaryState, CanaryStatus, WindowNumbers, percent};

use crate::conn::{ConnArgs, Output};
use crate::manager_error::Explain;

#[derive(clap::Subcommand)]
pub enum CanaryAction {
    /// The environment's latest canary: its step and share, its numbers against the
    /// stable revision over the step, and what the Manager waits for (or why it ended).
    Status(CanaryEnvArgs),
    /// Promote the running canary to every request now, whatever its step.
    Promote(CanaryFinishArgs),
    /// Abort the running canary: a new revision with the stable revision's content is
    /// committed (requests on the canary finish on it).
    Abort(CanaryFinishArgs),
}

#[derive(clap::Args)]
pub struct CanaryFinishArgs {
    #[command(flatten)]
    pub target: CanaryEnvArgs,
    /// Why, kept in the audit record.
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(clap::Args)]
pub struct CanaryEnvArgs {
    #[arg(long)]
    pub env: String,
    #[command(flatten)]
    pub conn: ConnArgs,
}

pub async fn run(action: CanaryAction) -> anyhow::Result<ExitCode> {
    let (args, status) = match action {
        CanaryAction::Status(args) => {
            let client = args.conn.client()?;
            let status = client.canary(&args.env).await.explain()?;
            (args, status)
        }
        CanaryAction::Promote(args) => {
            let client = args.target.conn.client()?;
            let action = switchyard_api::canary::CanaryAction {
                reason: args.reason,
            };
            let status = client
                .canary_promote(&args.target.env, &action)
                .await
                .explain()?;
            (args.target, Some(status))
        }
        CanaryAction::Abort(args) => {
            let client = args.target.conn.client()?;
            let action = switchyard_api::canary::CanaryAction {
                reason: args.reason,
            };
            let status = client
                .canary_abort(&args.target.env, &action)
                .await
                .explain()?;
            (args.target, Some(status))
        }
    };
    if args.conn.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    match &status {
        Some(s) => println!("{}", describe(s)),
        None => println!("{} has never had a canary", args.env),
    }
    Ok(ExitCode::SUCCESS)
}

/// What `apply --canary` prints once the revision is committed.
pub fn started(env: &str, revision: u64, spec: &CanarySpec) -> String {
    format!(
        "revision {revision} is a canary of {env}: {} of requests ({}), steps {}, each held {}s; \
         `switchyard canary status --env {env}` follows it",
        percent(spec.steps_ppm.first().copied().unwrap_or_default()),
        spec.key,
        steps(spec),
        spec.step_secs
    )
}

fn steps(spec: &CanarySpec) -> String {
    spec.steps_ppm
        .iter()
        .map(|s| percent(*s))
        .chain(std::iter::once("100%".to_string()))
        .collect::<Vec<_>>()
        .join(" → ")
}

/// For people: one line of state, then the numbers, then the verdict or the reason.
pub fn describe(s: &CanaryStatus) -> String {
    let mut out = match s.state {
        CanaryState::Running => format!(
            "canary r{} of {} (stable r{}): running, step {}/{} at {} ({}), steps {}",
            s.revision,
            s.env,
            s.stable_revision,
            s.step + 1,
            s.spec.steps_ppm.len(),
            percent(s.share_ppm),
            s.spec.key,
            steps(&s.spec)
        ),
        state => format!(
            "canary r{} of {} (stable r{}): {}{}",
            s.revision,
            s.env,
            s.stable_revision,
            state.as_str(),
            s.rollback_revision
                .map(|r| format!(", stable content committed as r{r}"))
                .unwrap_or_default()
        ),
    };
    for (label, n) in [("canary", &s.canary), ("stable", &s.stable)] {
        if let Some(n) = n {
            out.push_str(&format!("\n  {label:<6} {}", numbers(n)));
        }
    }
    if let Some(v) = &s.verdict {
        out.push_str(&format!("\n  {v}"));
    }
    if let Some(r) = &s.reason {
        out.push_str(&format!("\n  why: {r}"));
    }
    out
}

fn numbers(n: &WindowNumbers) -> String {
    format!(
        "r{}: {} requests, {} errors ({}), {} denials, p99 {}, {} worker(s)",
        n.revision,
        n.requests,
        n.errors,
        n.error_rate_ppm.map_or("-".into(), percent),
        n.denials,
        n.p99_seconds
            .map_or("-".into(), |p| format!("{:.1} ms", p * 1000.0)),
        n.workers
    )
}
