//! `switchyard status --env ENV`: the environment's Workers (revision served, lag, last
//! ACK/NACK, last seen) and its last revisions (who, what, how fast they propagated, audit
//! completeness).

use std::process::ExitCode;

use serde::{Deserialize, Serialize};

use crate::admin_client::{AdminClient, encode};
use crate::conn::ConnArgs;

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

/// `GET /v1/envs/{env}`.
#[derive(Deserialize)]
struct EnvInfo {
    revision: u64,
}

/// `GET /v1/envs/{env}/workers` (one entry).
#[derive(Deserialize)]
struct WorkerView {
    id: String,
    address: Option<String>,
    connected: bool,
    revision: Option<u64>,
    lag: Option<u64>,
    last_report: Option<Report>,
    last_seen: Option<i64>,
}

/// A Worker's ACK or NACK, as the Manager stores it.
#[derive(Deserialize, Serialize, Clone)]
pub struct Report {
    worker_id: String,
    revision: u64,
    /// `ack` or `nack`.
    status: String,
    error: Option<String>,
    applied_at: i64,
    received_at: i64,
}

/// `GET /v1/envs/{env}/revisions/{rev}`.
#[derive(Deserialize)]
struct RevisionView {
    revision: u64,
    committed_at: i64,
    actor: String,
    operation: String,
    changes: Vec<ChangeView>,
    expected_workers: Option<Vec<String>>,
    reports: Vec<Report>,
    acks: usize,
    nacks: usize,
    propagation_ms: Option<i64>,
    first_swap_ms: Option<i64>,
    audit_completeness: Option<f64>,
}

#[derive(Deserialize, Serialize, Clone)]
pub struct ChangeView {
    kind: String,
    name: String,
    old_version: Option<u64>,
    new_version: Option<u64>,
}

/// `--output json`: one stable object (docs/cli-json.md).
#[derive(Serialize)]
pub struct Status {
    env: String,
    revision: u64,
    workers: Vec<WorkerStatus>,
    revisions: Vec<RevisionStatus>,
}

#[derive(Serialize)]
pub struct WorkerStatus {
    id: String,
    address: Option<String>,
    connected: bool,
    /// Latest revision it ACKed (`null` when its latest report is a NACK or it never
    /// reported).
    revision: Option<u64>,
    lag: Option<u64>,
    last_report: Option<Report>,
    last_seen: Option<i64>,
    last_seen_ago_ms: Option<i64>,
}

#[derive(Serialize)]
pub struct RevisionStatus {
    revision: u64,
    committed_at: i64,
    actor: String,
    operation: String,
    changes: Vec<ChangeView>,
    propagation_ms: Option<i64>,
    first_swap_ms: Option<i64>,
    acks: usize,
    nacks: usize,
    /// Workers connected when the revision was committed (`null`: unknown since a
    /// Manager restart).
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
    let e = encode(env);
    let info: EnvInfo = client.get(&format!("/v1/envs/{e}")).await?;
    let workers: Vec<WorkerView> = client.get(&format!("/v1/envs/{e}/workers")).await?;
    let now = switchyard_api::records::now_millis();
    let workers = workers
        .into_iter()
        .map(|w| WorkerStatus {
            last_seen_ago_ms: w.last_seen.map(|t| (now - t).max(0)),
            id: w.id,
            address: w.address,
            connected: w.connected,
            revision: w.revision,
            lag: w.lag,
            last_report: w.last_report,
            last_seen: w.last_seen,
        })
        .collect();
    let mut out = Vec::new();
    if revisions > 0 {
        #[derive(Deserialize)]
        struct Listed {
            revision: u64,
        }
        let listed: Vec<Listed> = client
            .get(&format!("/v1/envs/{e}/revisions?limit={revisions}"))
            .await?;
        for r in listed {
            let v: RevisionView = client
                .get(&format!("/v1/envs/{e}/revisions/{}", r.revision))
                .await?;
            let acked_expected = v.expected_workers.as_ref().map(|expected| {
                expected
                    .iter()
                    .filter(|w| {
                        v.reports
                            .iter()
                            .any(|r| &r.worker_id == *w && r.status == "ack")
                    })
                    .count()
            });
            out.push(RevisionStatus {
                revision: v.revision,
                committed_at: v.committed_at,
                actor: v.actor,
                operation: v.operation,
                changes: v.changes,
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
    Ok(Status {
        env: env.to_string(),
        revision: info.revision,
        workers,
        revisions: out,
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
                    w.revision.map_or_else(|| "-".into(), |r| r.to_string()),
                    w.lag.map_or_else(|| "-".into(), |l| l.to_string()),
                    w.last_report.as_ref().map_or_else(
                        || "-".into(),
                        |r| {
                            let mut t =
                                format!("{} r{}", r.status.to_ascii_uppercase(), r.revision);
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
                    r.operation.clone(),
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
    out.trim_end().to_string()
}

/// An aligned table: a header line, then one line per row, columns two spaces apart.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            l.push_str(cell);
            l.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// Unix milliseconds as RFC 3339 UTC, to the second.
pub(crate) fn rfc3339(ms: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
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

/// Errors can span lines; a table cell cannot.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_times_read_well() {
        let t = table(
            &["A", "LONGER"],
            &[
                vec!["wide cell".into(), "x".into()],
                vec!["y".into(), "".into()],
            ],
        );
        assert_eq!(t, "A          LONGER\nwide cell  x\ny\n");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20Z");
        assert_eq!(ago(3_400), "3s ago");
        assert_eq!(ago(125_000), "2m ago");
        assert_eq!(ago(7_200_000), "2h ago");
        assert_eq!(ago(3 * 86_400_000), "3d ago");
    }
}
