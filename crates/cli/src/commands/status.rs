//! `switchyard status --env ENV`: the environment's Workers (revision served, lag, last
//! ACK/NACK, last seen) and its last revisions (who, what, how fast they propagated, audit
//! completeness).

use std::process::ExitCode;

use serde::Serialize;
use switchyard_api::AdminClient;
use switchyard_api::admin::RolloutStatus;
use switchyard_api::records::{AppliedChange, Operation, ReportStatus, WorkerReport};
use switchyard_api::sync::ServedFrom;
use switchyard_config::Kind;

use crate::conn::ConnArgs;
use crate::manager_error::Explain;
use crate::text::{one_line, rfc3339, table};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  switchyard status --env dev
  switchyard status --env prod --revisions 10 --output json

LAG is how many revisions a Worker is behind the environment's current revision (from its
last ACK). PROPAGATION is commit -> the last Worker's swap; AUDIT is ACKs / Workers connected
at commit (\"-\" when the Manager restarted since and no longer knows).")]
pub struct StatusArgs {
    /// The environment.
    #[arg(long)]
    pub env: String,
    /// How many of the latest revisions to show.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub revisions: u32,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// A Worker's last ACK or NACK, as `status --output json` shows it.
#[derive(Serialize)]
pub struct LastReport {
    worker_id: String,
    revision: u64,
    status: ReportStatus,
    error: Option<String>,
    applied_at: i64,
    received_at: i64,
}

impl From<WorkerReport> for LastReport {
    fn from(r: WorkerReport) -> LastReport {
        LastReport {
            worker_id: r.worker_id,
            revision: r.revision,
            status: r.status,
            error: r.error,
            applied_at: r.applied_at,
            received_at: r.received_at,
        }
    }
}

/// One change of a revision, as `status --output json` shows it.
#[derive(Serialize)]
pub struct ChangeSummary {
    kind: Kind,
    name: String,
    old_version: Option<u64>,
    new_version: Option<u64>,
}

impl From<AppliedChange> for ChangeSummary {
    fn from(c: AppliedChange) -> ChangeSummary {
        ChangeSummary {
            kind: c.kind,
            name: c.name,
            old_version: c.old_version,
            new_version: c.new_version,
        }
    }
}

/// `--output json`: one stable object (docs/cli-json.md).
#[derive(Serialize)]
pub struct Status {
    env: String,
    revision: u64,
    workers: Vec<WorkerStatus>,
    revisions: Vec<RevisionStatus>,
    /// The environment's latest rollout on this Manager, if any (running, or how the last
    /// one ended), each Worker's step.
    #[serde(skip_serializing_if = "Option::is_none")]
    rollout: Option<RolloutStatus>,
    /// The environment's latest canary, if any (running: its share and numbers; ended:
    /// how and why).
    #[serde(skip_serializing_if = "Option::is_none")]
    canary: Option<switchyard_api::canary::CanaryStatus>,
}

#[derive(Serialize)]
pub struct WorkerStatus {
    id: String,
    address: Option<String>,
    /// What the Worker runs, while connected: `0.1.0; schemas=switchyard.dev/v1`.
    version: Option<String>,
    connected: bool,
    /// The Manager holding its event stream (its `--name`), while connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    manager: Option<String>,
    /// Latest revision it ACKed (`null` when its latest report is a NACK or it never
    /// reported).
    revision: Option<u64>,
    lag: Option<u64>,
    last_report: Option<LastReport>,
    last_seen: Option<i64>,
    last_seen_ago_ms: Option<i64>,
    /// `manager` or `cache`, as the Worker last said in its statistics (absent: unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    served_from: Option<ServedFrom>,
}

#[derive(Serialize)]
pub struct RevisionStatus {
    revision: u64,
    committed_at: i64,
    actor: String,
    operation: Operation,
    changes: Vec<ChangeSummary>,
    propagation_ms: Option<i64>,
    first_swap_ms: Option<i64>,
    acks: usize,
    nacks: usize,
    /// Workers connected (to any Manager) when the revision was committed, as stored with
    /// it (`null`: a revision committed before that was stored).
    expected_workers: Option<usize>,
    /// How many of those ACKed it.
    acked_expected: Option<usize>,
    audit_completeness: Option<f64>,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    let status = fetch(&client, &args.env, args.revisions).await?;
    args.conn.output.print(&status, || describe(&status));
    Ok(ExitCode::SUCCESS)
}

async fn fetch(client: &AdminClient, env: &str, revisions: u32) -> anyhow::Result<Status> {
    let info = client.env(env).await.explain()?;
    let workers = client.workers(env).await.explain()?;
    let now = switchyard_api::records::now_millis();
    let workers = workers
        .into_iter()
        .map(|w| WorkerStatus {
            last_seen_ago_ms: w.last_seen.map(|t| (now - t).max(0)),
            served_from: w.served_from,
            id: w.id,
            address: w.address,
            version: w.version,
            connected: w.connected,
            manager: w.manager,
            revision: w.revision,
            lag: w.lag,
            last_report: w.last_report.map(LastReport::from),
            last_seen: w.last_seen,
        })
        .collect();
    let mut out = Vec::new();
    if revisions > 0 {
        for r in client.revisions(env, revisions).await.explain()? {
            let v = client.revision(env, r.revision).await.explain()?;
            let acked_expected = v.expected_workers.as_ref().map(|expected| {
                expected
                    .iter()
                    .filter(|w| {
                        v.reports
                            .iter()
                            .any(|r| &r.worker_id == *w && r.status == ReportStatus::Ack)
                    })
                    .count()
            });
            let record = v.record;
            out.push(RevisionStatus {
                revision: record.revision,
                committed_at: record.committed_at,
                actor: record.actor,
                operation: record.operation,
                changes: record
                    .changes
                    .into_iter()
                    .map(ChangeSummary::from)
                    .collect(),
                propagation_ms: v.propagation_ms,
                first_swap_ms: v.first_swap_ms,
                acks: v.acks,
                nacks: v.nacks,
                expected_workers: v.expected_workers.as_ref().map(Vec::len),
                acked_expected,
                audit_completeness: v.audit_completeness,
            });
        }
    }
    // An older Manager, without rollouts, answers 404: nothing to show.
    let rollout = client.rollout_status(env).await.ok().flatten();
    // Likewise for canaries.
    let canary = client.canary(env).await.ok().flatten();
    Ok(Status {
        env: env.to_string(),
        revision: info.revision,
        workers,
        revisions: out,
        rollout,
        canary,
    })
}

fn describe(s: &Status) -> String {
    let mut out = format!(
        "{}: revision {}, {} Worker(s), {} connected\n",
        s.env,
        s.revision,
        s.workers.len(),
        s.workers.iter().filter(|w| w.connected).count()
    );
    if s.workers.is_empty() {
        out.push_str("\nno Worker has connected or reported yet\n");
    } else {
        let rows = s
            .workers
            .iter()
            .map(|w| {
                vec![
                    w.id.clone(),
                    w.address.clone().unwrap_or_else(|| "-".into()),
                    // The binary version, without the schema list.
                    w.version
                        .as_deref()
                        .and_then(|v| v.split(';').next())
                        .unwrap_or("-")
                        .to_string(),
                    match (w.revision, w.served_from) {
                        (None, _) => "-".into(),
                        // Not what the Manager gave it: its last-known-good cache.
                        (Some(r), Some(ServedFrom::Cache)) => format!("{r} (from cache)"),
                        (Some(r), _) => r.to_string(),
                    },
                    w.lag.map_or_else(|| "-".into(), |l| l.to_string()),
                    w.last_report.as_ref().map_or_else(
                        || "-".into(),
                        |r| {
                            let mut t = format!(
                                "{} r{}",
                                r.status.as_str().to_ascii_uppercase(),
                                r.revision
                            );
                            if let Some(e) = &r.error {
                                t.push_str(": ");
                                t.push_str(&one_line(e));
                            }
                            t
                        },
                    ),
                    if w.connected {
                        "now (connected)".into()
                    } else {
                        w.last_seen_ago_ms.map_or_else(|| "-".into(), ago)
                    },
                ]
            })
            .collect::<Vec<_>>();
        out.push('\n');
        out.push_str(&table(
            &[
                "WORKER",
                "ADDRESS",
                "VERSION",
                "REVISION",
                "LAG",
                "LAST REPORT",
                "LAST SEEN",
            ],
            &rows,
        ));
    }
    if !s.revisions.is_empty() {
        let rows = s
            .revisions
            .iter()
            .map(|r| {
                let propagation = match (r.propagation_ms, r.expected_workers) {
                    (Some(ms), _) => format!("{ms}ms"),
                    (None, Some(n)) if n > 0 => "pending".into(),
                    _ => "-".into(),
                };
                let audit = match (r.acked_expected, r.expected_workers) {
                    (Some(done), Some(n)) => format!("{done}/{n}"),
                    _ => "-".into(),
                };
                vec![
                    r.revision.to_string(),
                    rfc3339(r.committed_at),
                    r.actor.clone(),
                    r.operation.as_str().to_string(),
                    r.changes.len().to_string(),
                    propagation,
                    audit,
                ]
            })
            .collect::<Vec<_>>();
        out.push('\n');
        out.push_str(&table(
            &[
                "REVISION",
                "COMMITTED",
                "ACTOR",
                "OPERATION",
                "CHANGES",
                "PROPAGATION",
                "AUDIT",
            ],
            &rows,
        ));
    }
    if let Some(r) = &s.rollout {
        out.push('\n');
        out.push_str(&crate::commands::rollout::describe(r));
    }
    if let Some(c) = &s.canary {
        out.push_str("\n\n");
        out.push_str(&crate::commands::canary::describe(c));
    }
    out.trim_end().to_string()
}

/// `3s ago`, `5m ago`, `2h ago`, `3d ago`.
fn ago(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        ..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..172_800 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_well() {
        assert_eq!(ago(3_400), "3s ago");
        assert_eq!(ago(125_000), "2m ago");
        assert_eq!(ago(7_200_000), "2h ago");
        assert_eq!(ago(3 * 86_400_000), "3d ago");
    }
}
