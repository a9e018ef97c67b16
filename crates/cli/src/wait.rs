//! `--wait` (on `apply` and `rollback`): after a revision is committed, wait until every
//! Worker the Manager expects has ACKed it.
//!
//! Which Workers: those connected to the environment's notification stream when the
//! revision was committed (`expected_workers` of `GET /v1/envs/{env}/revisions/{rev}`).
//! When the Manager no longer knows (it restarted since the commit: `null`), the Workers
//! connected to it when the wait begins (`connected` in `GET /v1/envs/{env}/workers`), a
//! set fixed at the first poll so a Worker that drops off is reported, not forgotten.
//!
//! A Worker counts as ACKed when it ACKed this revision or any later one (Workers may
//! skip straight to a newer revision); as NACKed when it reported a NACK of this revision
//! and has ACKed nothing as recent since. The wait ends when every expected Worker has
//! answered, or at the timeout. Success only when all ACKed (or none were expected).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;
use switchyard_api::AdminClient;
use switchyard_api::admin::WorkerView;
use switchyard_api::records::{ReportStatus, WorkerReport};

use crate::conn::{self, Output};
use crate::manager_error::Explain;

/// How often the Manager is asked while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

#[derive(clap::Args, Clone, Debug)]
pub struct WaitArgs {
    /// After the commit, wait until every Worker the Manager expects has ACKed the new
    /// revision; exit 1 when one NACKs it or the timeout passes. Nothing to wait for when
    /// no revision was created.
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits (`30s`, `2m`).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, requires = "wait")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every expected Worker ACKed.
    Acked,
    /// Every expected Worker answered, and at least one NACKed.
    Nacked,
    /// The timeout passed before every expected Worker answered.
    TimedOut,
    /// No Worker was expected: nothing to wait for.
    NoWorkers,
}

/// Where the list of expected Workers came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedFrom {
    /// Connected to the Manager when the revision was committed.
    Commit,
    /// The Manager restarted since the commit: connected when the wait began.
    Connected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerStatus {
    Ack,
    Nack,
    /// No answer (yet, or before the timeout).
    Pending,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerAnswer {
    pub id: String,
    pub status: WorkerStatus,
    /// The revision the answer is about: this one, or a later one the Worker ACKed.
    pub revision: Option<u64>,
    /// The Worker's error, for a NACK.
    pub error: Option<String>,
}

/// The result of a wait; its JSON form is stable (docs/cli-json.md).
#[derive(Debug, Clone, Serialize)]
pub struct WaitReport {
    pub env: String,
    pub revision: u64,
    pub outcome: Outcome,
    pub expected_from: ExpectedFrom,
    pub expected: usize,
    pub acked: usize,
    pub nacked: usize,
    /// Every expected Worker, by id.
    pub workers: Vec<WorkerAnswer>,
    pub elapsed_ms: u64,
    pub timeout_ms: u64,
}

impl WaitReport {
    /// All expected Workers ACKed (or none was expected).
    pub fn ok(&self) -> bool {
        matches!(self.outcome, Outcome::Acked | Outcome::NoWorkers)
    }
}

/// Polls the Manager until every expected Worker has answered `revision` or `timeout`
/// passes. With `progress`, one line on stderr is kept up to date while waiting.
pub async fn wait_for_revision(
    client: &AdminClient,
    env: &str,
    revision: u64,
    timeout: Duration,
    progress: bool,
) -> anyhow::Result<WaitReport> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut connected_at_start: Option<Vec<String>> = None;
    let report = loop {
        let view = client.revision(env, revision).await.explain()?;
        let workers = client.workers(env).await.explain()?;
        let (expected, from) = match view.expected_workers {
            Some(list) => (list, ExpectedFrom::Commit),
            None => (
                connected_at_start
                    .get_or_insert_with(|| {
                        workers
                            .iter()
                            .filter(|w| w.connected)
                            .map(|w| w.id.clone())
                            .collect()
                    })
                    .clone(),
                ExpectedFrom::Connected,
            ),
        };
        let mut answers: Vec<WorkerAnswer> = expected
            .iter()
            .map(|id| answer(id, revision, &view.reports, &workers))
            .collect();
        answers.sort_by(|a, b| a.id.cmp(&b.id));
        let count = |s: WorkerStatus| answers.iter().filter(|a| a.status == s).count();
        let (acked, nacked, pending) = (
            count(WorkerStatus::Ack),
            count(WorkerStatus::Nack),
            count(WorkerStatus::Pending),
        );
        let elapsed = start.elapsed();
        if progress {
            eprint!(
                "\r\x1b[Krevision {revision}: {acked}/{} Workers ACKed ({:.1}s)",
                answers.len(),
                elapsed.as_secs_f64()
            );
        }
        let now = Instant::now();
        if pending == 0 || now >= deadline {
            let outcome = if answers.is_empty() {
                Outcome::NoWorkers
            } else if pending > 0 {
                Outcome::TimedOut
            } else if nacked > 0 {
                Outcome::Nacked
            } else {
                Outcome::Acked
            };
            break WaitReport {
                env: env.to_string(),
                revision,
                outcome,
                expected_from: from,
                expected: answers.len(),
                acked,
                nacked,
                workers: answers,
                elapsed_ms: millis(elapsed),
                timeout_ms: millis(timeout),
            };
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
    };
    if progress {
        eprint!("\r\x1b[K");
    }
    Ok(report)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Where one expected Worker stands on `revision`.
fn answer(
    id: &str,
    revision: u64,
    reports: &[WorkerReport],
    workers: &[WorkerView],
) -> WorkerAnswer {
    let report = reports.iter().find(|r| r.worker_id == id);
    let later_ack = workers
        .iter()
        .find(|w| w.id == id)
        .and_then(|w| w.revision)
        .filter(|&r| r >= revision);
    let (status, revision, error) = match (report, later_ack) {
        (Some(r), _) if r.status == ReportStatus::Ack => (WorkerStatus::Ack, Some(revision), None),
        (_, Some(later)) => (WorkerStatus::Ack, Some(later), None),
        (Some(r), None) => (WorkerStatus::Nack, Some(revision), r.error.clone()),
        (None, None) => (WorkerStatus::Pending, None, None),
    };
    WorkerAnswer {
        id: id.to_string(),
        status,
        revision,
        error,
    }
}

/// The final result for people: one summary line, then one line per Worker that did not
/// ACK.
pub fn describe(r: &WaitReport) -> String {
    let secs = r.elapsed_ms as f64 / 1000.0;
    let mut out = match r.outcome {
        Outcome::NoWorkers => {
            return match r.expected_from {
                ExpectedFrom::Commit => format!(
                    "revision {}: no Workers were connected to {} when it was committed; \
                     nothing to wait for",
                    r.revision, r.env
                ),
                ExpectedFrom::Connected => format!(
                    "revision {}: no Workers are connected to {}; nothing to wait for",
                    r.revision, r.env
                ),
            };
        }
        Outcome::Acked => format!(
            "revision {}: {}/{} Workers ACKed ({secs:.1}s)",
            r.revision, r.acked, r.expected
        ),
        Outcome::Nacked => format!(
            "revision {}: {}/{} Workers ACKed, {} NACKed ({secs:.1}s)",
            r.revision, r.acked, r.expected, r.nacked
        ),
        Outcome::TimedOut => format!(
            "revision {}: timed out after {}: {}/{} Workers ACKed, {} NACKed, {} did not answer",
            r.revision,
            humantime::format_duration(Duration::from_millis(r.timeout_ms)),
            r.acked,
            r.expected,
            r.nacked,
            r.expected - r.acked - r.nacked
        ),
    };
    for w in &r.workers {
        match w.status {
            WorkerStatus::Ack => {}
            WorkerStatus::Nack => out.push_str(&format!(
                "\n  {}: NACK: {}",
                w.id,
                w.error.as_deref().unwrap_or("(no error given)")
            )),
            WorkerStatus::Pending => out.push_str(&format!("\n  {}: no answer", w.id)),
        }
    }
    if r.expected_from == ExpectedFrom::Connected {
        out.push_str(
            "\n  (the Manager restarted since the commit and no longer knows which Workers \
             were connected then; these are the Workers connected when the wait began)",
        );
    }
    out
}

/// What `--wait` does after a command: nothing without `--wait` or without a new
/// revision; otherwise waits, prints the result, and gives the exit status (1 when a
/// Worker NACKed or the timeout passed).
pub async fn after_commit(
    client: &AdminClient,
    env: &str,
    revision: Option<u64>,
    args: &WaitArgs,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let Some(report) = wait_if_asked(client, env, revision, args).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    output.print(&report, || describe(&report));
    Ok(exit_code(&report))
}

/// `--output json` of a command that may wait: one document, the command's `answer` with
/// the wait's report under `"wait"` (absent when there was nothing to wait for).
pub async fn print_json(
    client: &AdminClient,
    env: &str,
    revision: Option<u64>,
    args: &WaitArgs,
    answer: &impl Serialize,
) -> anyhow::Result<Option<WaitReport>> {
    let report = wait_if_asked(client, env, revision, args).await?;
    let mut v = serde_json::to_value(answer)?;
    if let Some(r) = &report {
        v["wait"] = serde_json::to_value(r)?;
    }
    crate::text::out(&format!("{}\n", serde_json::to_string_pretty(&v)?));
    Ok(report)
}

/// Waits when `--wait` was given and a revision was created.
pub async fn wait_if_asked(
    client: &AdminClient,
    env: &str,
    revision: Option<u64>,
    args: &WaitArgs,
) -> anyhow::Result<Option<WaitReport>> {
    let (true, Some(revision)) = (args.wait, revision) else {
        return Ok(None);
    };
    let progress = conn::stderr_is_terminal();
    wait_for_revision(client, env, revision, args.timeout, progress)
        .await
        .map(Some)
}

pub fn exit_code(report: &WaitReport) -> ExitCode {
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(status: ReportStatus, error: Option<&str>) -> WorkerReport {
        WorkerReport {
            env: "dev".into(),
            worker_id: "w1".into(),
            revision: 5,
            status,
            error: error.map(str::to_string),
            applied_at: 0,
            pulled_at: None,
            received_at: 0,
            address: None,
            detail: None,
            caught_up_to: None,
        }
    }

    fn worker(revision: Option<u64>) -> WorkerView {
        WorkerView {
            id: "w1".into(),
            address: None,
            version: None,
            connected: true,
            manager: None,
            revision,
            lag: None,
            last_report: None,
            last_seen: None,
            served_from: None,
        }
    }

    #[test]
    fn a_later_ack_counts_and_a_nack_needs_no_later_ack() {
        let a = answer(
            "w1",
            5,
            &[report(ReportStatus::Ack, None)],
            &[worker(Some(5))],
        );
        assert_eq!((a.status, a.revision), (WorkerStatus::Ack, Some(5)));
        let a = answer("w1", 5, &[], &[worker(Some(7))]);
        assert_eq!((a.status, a.revision), (WorkerStatus::Ack, Some(7)));
        let a = answer(
            "w1",
            5,
            &[report(ReportStatus::Nack, Some("boom"))],
            &[worker(Some(4))],
        );
        assert_eq!(
            (a.status, a.error.as_deref()),
            (WorkerStatus::Nack, Some("boom"))
        );
        let a = answer(
            "w1",
            5,
            &[report(ReportStatus::Nack, Some("boom"))],
            &[worker(Some(6))],
        );
        assert_eq!(a.status, WorkerStatus::Ack);
        let a = answer("w1", 5, &[], &[worker(Some(4))]);
        assert_eq!(a.status, WorkerStatus::Pending);
    }

    fn sample(outcome: Outcome, workers: Vec<WorkerAnswer>) -> WaitReport {
        let count = |s| workers.iter().filter(|w| w.status == s).count();
        WaitReport {
            env: "dev".into(),
            revision: 12,
            outcome,
            expected_from: ExpectedFrom::Commit,
            expected: workers.len(),
            acked: count(WorkerStatus::Ack),
            nacked: count(WorkerStatus::Nack),
            workers,
            elapsed_ms: 1200,
            timeout_ms: 1000,
        }
    }

    fn w(id: &str, status: WorkerStatus, error: Option<&str>) -> WorkerAnswer {
        WorkerAnswer {
            id: id.into(),
            status,
            revision: (status != WorkerStatus::Pending).then_some(12),
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn the_text_names_the_workers_that_did_not_ack() {
        let r = sample(Outcome::Acked, vec![w("a", WorkerStatus::Ack, None)]);
        assert_eq!(describe(&r), "revision 12: 1/1 Workers ACKed (1.2s)");
        assert!(r.ok());
        let r = sample(
            Outcome::TimedOut,
            vec![
                w("a", WorkerStatus::Ack, None),
                w("b", WorkerStatus::Nack, Some("bad upstream")),
                w("c", WorkerStatus::Pending, None),
            ],
        );
        assert_eq!(
            describe(&r),
            "revision 12: timed out after 1s: 1/3 Workers ACKed, 1 NACKed, 1 did not answer\n  \
             b: NACK: bad upstream\n  c: no answer"
        );
        assert!(!r.ok());
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["outcome"], "timed_out");
        assert_eq!(json["workers"][1]["status"], "nack");
        assert_eq!(json["workers"][2]["revision"], serde_json::Value::Null);
    }
}
