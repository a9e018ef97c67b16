//! From the samples, the change log and the Manager's records to the report, and to the
//! verdict. PASS means the bench looked and saw: every response checked against the one
//! configuration it names, every kind of change seen in responses, every Worker seen
//! serving every revision (or a later one) and acknowledging it, no connection going back
//! in time, and each Worker's own swap counter agreeing with what it was seen to serve.
//! Each shortfall is a reason in `failures`, naming the Worker and revisions concerned.

use std::collections::{BTreeMap, HashMap};

use super::changes::{ChangeKind, Expect};
use crate::load::{Outcome, Sample};
use crate::report::{
    AuditReport, ConnectionErrors, KindReport, LatencyReport, StatusClasses, SwapReport,
    WorkerReport,
};
use crate::stats::percentiles;

/// Which of the load's paths a sample asked for (`LoadPlan::paths`, in this order).
pub const PROBE_MAIN: u8 = 0;
/// The path of the route that revisions add and remove.
pub const PROBE_EXTRA: u8 = 1;

/// One applied change.
#[derive(Debug, Clone)]
pub struct Change {
    /// The bench's sequence number (the `x-release` value); 1 is the initial apply.
    pub seq: u64,
    /// The Manager's revision that carried it.
    pub revision: u64,
    pub kind: ChangeKind,
    /// Seconds since start when the change was sent.
    pub sent_at: f64,
    /// What a response served by this configuration must show.
    pub expect: Expect,
}

/// What the Manager recorded about one revision committed during the run.
#[derive(Debug, Clone, Default)]
pub struct RevisionAcks {
    pub revision: u64,
    /// The Workers that ACKed it, each with whether through a catch-up jump.
    pub acks: Vec<(String, bool)>,
    /// Workers that ACKed it although they connected after its commit.
    pub joined_after: usize,
    /// Commit → the last expected Worker's swap, when every expected Worker ACKed.
    pub propagation_ms: Option<f64>,
}

pub struct Analysis {
    /// One per change after the initial apply, in order.
    pub revisions: Vec<RevisionAcks>,
    /// The Manager's ids of the Workers that must ACK every revision.
    pub ackers: Vec<String>,
    pub duration_s: f64,
    /// The Workers under load, in the order of `Sample::worker`, with what was read of
    /// them (memory, generations, swap counter); the rest is filled in here.
    pub workers: Vec<WorkerReport>,
    /// Every Worker's live generations must be known (local Workers) rather than merely
    /// not contradicted (remote Workers without an admin address).
    pub generations_required: bool,
}

/// A kind's bit in the per-release mask of what responses showed.
fn bit(kind: ChangeKind) -> u8 {
    1 << ChangeKind::CYCLE
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(0)
}

/// Checks one response against the configuration it names; on success, the kinds of
/// change it shows (a mask of [`bit`]s), otherwise what was wrong.
fn check(
    expect: &Expect,
    probe: u8,
    status: u16,
    upstream: u8,
    credential: u32,
    limit: u32,
) -> Result<u8, String> {
    let routed = probe == PROBE_MAIN || expect.extra_route;
    if !routed {
        // The fallback's answer: the extra route is absent in this configuration.
        return if status == 404 {
            Ok(bit(ChangeKind::Header) | bit(ChangeKind::RouteRemove))
        } else {
            Err(format!(
                "status {status} on /extra where the revision has no such route (404 expected)"
            ))
        };
    }
    if status != 200 {
        let path = if probe == PROBE_MAIN {
            "/bench"
        } else {
            "/extra"
        };
        return Err(format!("status {status} on {path} (200 expected)"));
    }
    if upstream != expect.upstream {
        return Err(format!(
            "upstream {:?} where the revision routes to {:?}",
            char::from(upstream),
            char::from(expect.upstream)
        ));
    }
    if credential != expect.credential {
        return Err(format!(
            "the upstream saw credential {credential} where the revision sends {}",
            expect.credential
        ));
    }
    if limit != expect.limit {
        return Err(format!(
            "RateLimit-Limit {limit} where the revision's limit is {}",
            expect.limit
        ));
    }
    let mut shown = bit(ChangeKind::Header)
        | bit(ChangeKind::UpstreamSwitch)
        | bit(ChangeKind::CredentialRotation)
        | bit(ChangeKind::PolicyEdit);
    if probe == PROBE_EXTRA {
        shown |= bit(ChangeKind::RouteAdd);
    }
    Ok(shown)
}

/// Revision numbers for a reason: the first few, then how many in all.
fn list(revisions: &[u64]) -> String {
    const SHOWN: usize = 10;
    let mut s: Vec<String> = revisions
        .iter()
        .take(SHOWN)
        .map(|r| format!("r{r}"))
        .collect();
    if revisions.len() > SHOWN {
        s.push(format!("… ({} in all)", revisions.len()));
    }
    s.join(", ")
}

/// How many mismatches are described in the report.
const MIXED_EXAMPLES: usize = 5;

/// What the samples say, read in one pass.
struct Tally<'a> {
    by_seq: HashMap<u64, &'a Change>,
    /// Each change's send time (after the initial apply), to tell latency around swaps.
    sends: Vec<f64>,
    classes: StatusClasses,
    errors: ConnectionErrors,
    dropped: u64,
    mixed: u64,
    mixed_examples: Vec<String>,
    /// release → the kinds of change responses carrying it showed
    shown: HashMap<u64, u8>,
    /// (release, worker) → first time a correct response carrying it arrived
    first_seen: HashMap<(u64, u16), f64>,
    /// connection → the newest release it has seen
    newest: HashMap<u32, u64>,
    /// Per Worker: requests, and responses older than their connection had seen.
    requests: Vec<u64>,
    backwards: Vec<u64>,
    around: Vec<f64>,
    between: Vec<f64>,
}

impl<'a> Tally<'a> {
    fn new(changes: &'a [Change], workers: usize) -> Tally<'a> {
        Tally {
            by_seq: changes.iter().map(|c| (c.seq, c)).collect(),
            sends: changes
                .iter()
                .filter(|c| c.seq > 1)
                .map(|c| c.sent_at)
                .collect(),
            classes: StatusClasses::default(),
            errors: ConnectionErrors::default(),
            dropped: 0,
            mixed: 0,
            mixed_examples: Vec::new(),
            shown: HashMap::new(),
            first_seen: HashMap::new(),
            newest: HashMap::new(),
            requests: vec![0; workers],
            backwards: vec![0; workers],
            around: Vec::new(),
            between: Vec::new(),
        }
    }

    fn add(&mut self, s: &Sample, names: &[WorkerReport]) {
        let w = usize::from(s.worker);
        if let Some(n) = self.requests.get_mut(w) {
            *n += 1;
        }
        let e = &mut self.errors;
        match s.outcome {
            Outcome::Response {
                status,
                release,
                upstream,
                credential,
                limit,
            } => self.response(
                s,
                names,
                status,
                u64::from(release),
                (upstream, credential, limit),
            ),
            Outcome::Refused => e.refused += 1,
            Outcome::Reset => e.reset += 1,
            Outcome::Timeout => e.timeout += 1,
            Outcome::Other => e.other += 1,
        }
        if !matches!(s.outcome, Outcome::Response { .. }) {
            self.dropped += 1;
        }
        let near = self
            .sends
            .partition_point(|t| *t <= s.at)
            .checked_sub(1)
            .is_some_and(|i| s.at - self.sends[i] <= 1.0);
        let latencies = if near {
            &mut self.around
        } else {
            &mut self.between
        };
        latencies.push(f64::from(s.latency_ms));
    }

    /// A response: counted by class, then checked against the configuration it names.
    fn response(
        &mut self,
        s: &Sample,
        names: &[WorkerReport],
        status: u16,
        release: u64,
        (upstream, credential, limit): (u8, u32, u32),
    ) {
        let c = &mut self.classes;
        match status / 100 {
            2 => c.s2xx += 1,
            3 => c.s3xx += 1,
            4 => c.s4xx += 1,
            _ => c.s5xx += 1,
        }
        if status >= 500 || release == 0 {
            // Not an answer of any configuration of the bench's: the gateway failed.
            self.dropped += 1;
            return;
        }
        let change = self.by_seq.get(&release);
        let checked = match change {
            None => Err(format!("x-release r{release} names no applied change")),
            Some(c) => check(&c.expect, s.probe, status, upstream, credential, limit),
        };
        match checked {
            Ok(mask) => {
                *self.shown.entry(release).or_default() |= mask;
                let e = self
                    .first_seen
                    .entry((release, s.worker))
                    .or_insert(f64::MAX);
                *e = e.min(s.at + f64::from(s.latency_ms) / 1000.0);
            }
            Err(why) => {
                self.mixed += 1;
                if self.mixed_examples.len() < MIXED_EXAMPLES {
                    let name = names
                        .get(usize::from(s.worker))
                        .map_or("?", |w| w.id.as_str());
                    let revision = change.map_or(0, |c| c.revision);
                    self.mixed_examples.push(format!(
                        "worker {name}, {:.3} s: revision r{revision} (x-release r{release}): {why}",
                        s.at
                    ));
                }
            }
        }
        let seen = self.newest.entry(s.conn).or_insert(release);
        if release < *seen {
            if let Some(b) = self.backwards.get_mut(usize::from(s.worker)) {
                *b += 1;
            }
        } else {
            *seen = release;
        }
    }
}

pub fn analyse(samples: &[Sample], changes: &[Change], a: Analysis) -> SwapReport {
    let mut workers = a.workers;
    let mut t = Tally::new(changes, workers.len());
    for s in samples {
        t.add(s, &workers);
    }
    let run: Vec<&Change> = changes.iter().filter(|c| c.seq > 1).collect();
    let mut failures = Vec::new();
    if t.dropped > 0 {
        failures.push(format!(
            "{} dropped requests (no answer, or an answer of no configuration)",
            t.dropped
        ));
    }
    if t.mixed > 0 {
        failures.push(format!(
            "{} responses that did not match the revision they name, e.g. {}",
            t.mixed,
            t.mixed_examples.first().map_or("", String::as_str)
        ));
    }
    let kinds = judge_kinds(&run, &t.shown, &mut failures);
    let mut first_response = judge_workers(
        &mut workers,
        &run,
        &t,
        a.generations_required,
        &mut failures,
    );
    let (audit, mut propagation) =
        judge_audit(&a.revisions, &a.ackers, &mut workers, &mut failures);
    let audit_completeness = if audit.expected == 0 {
        1.0
    } else {
        audit.acked as f64 / audit.expected as f64
    };
    SwapReport {
        requests: samples.len() as u64,
        responses: t.classes,
        connection_errors: t.errors,
        dropped_requests: t.dropped,
        mixed_version_responses: t.mixed,
        mixed_examples: t.mixed_examples,
        audit_completeness,
        audit,
        propagation_ms: percentiles(&mut propagation),
        first_response_ms: percentiles(&mut first_response),
        revisions_committed: run.len() as u64,
        kinds,
        workers,
        latency_ms: LatencyReport {
            around_swaps: percentiles(&mut t.around),
            between_swaps: percentiles(&mut t.between),
        },
        duration_s: a.duration_s,
        passed: failures.is_empty(),
        failures,
    }
}

/// Every kind of change seen in responses: per kind, applied and observed.
fn judge_kinds(
    run: &[&Change],
    shown: &HashMap<u64, u8>,
    failures: &mut Vec<String>,
) -> BTreeMap<&'static str, KindReport> {
    let mut kinds = BTreeMap::new();
    for kind in ChangeKind::CYCLE {
        let of_kind: Vec<&&Change> = run.iter().filter(|c| c.kind == kind).collect();
        let observed = of_kind
            .iter()
            .filter(|c| shown.get(&c.seq).is_some_and(|m| m & bit(kind) != 0))
            .count() as u64;
        let applied = of_kind.len() as u64;
        if applied > 0 && observed == 0 {
            failures.push(format!(
                "{}: applied {applied} times, never observed in a response",
                kind.name()
            ));
        }
        kinds.insert(kind.key(), KindReport { applied, observed });
    }
    kinds
}

/// Every Worker seen serving every revision (or a later one), never backwards, its swap
/// counter and generations as they should be. Returns the times to first response.
fn judge_workers(
    workers: &mut [WorkerReport],
    run: &[&Change],
    t: &Tally<'_>,
    generations_required: bool,
    failures: &mut Vec<String>,
) -> Vec<f64> {
    let mut first_response = Vec::new();
    for (i, w) in workers.iter_mut().enumerate() {
        let wid = u16::try_from(i).unwrap_or(u16::MAX);
        let first: Vec<Option<f64>> = run
            .iter()
            .map(|c| t.first_seen.get(&(c.seq, wid)).copied())
            .collect();
        for (c, at) in run.iter().zip(&first) {
            if let Some(at) = at {
                first_response.push(((at - c.sent_at) * 1000.0).max(0.0));
            }
        }
        let last_served = first.iter().rposition(Option::is_some);
        w.requests = t.requests.get(i).copied().unwrap_or(0);
        w.revisions_served = first.iter().filter(|f| f.is_some()).count() as u64;
        w.revisions_superseded = 0;
        w.revisions_missed.clear();
        for (k, c) in run.iter().enumerate().filter(|(k, _)| first[*k].is_none()) {
            if last_served.is_some_and(|l| l > k) {
                w.revisions_superseded += 1;
            } else {
                w.revisions_missed.push(c.revision);
            }
        }
        w.went_backwards = t.backwards.get(i).copied().unwrap_or(0);
        if !w.revisions_missed.is_empty() {
            failures.push(format!(
                "worker {}: never seen serving {} of the {} revisions committed during the run, nor a later one: {}",
                w.id,
                w.revisions_missed.len(),
                run.len(),
                list(&w.revisions_missed)
            ));
        }
        if w.went_backwards > 0 {
            failures.push(format!(
                "worker {}: {} responses carried an older revision than one their connection had already seen",
                w.id, w.went_backwards
            ));
        }
        if let Some(swaps) = w.swaps_during_run {
            let needed = w.revisions_served.max(u64::from(!run.is_empty()));
            if swaps < needed {
                failures.push(format!(
                    "worker {}: its swap counter advanced {swaps} times, but it was seen serving {} new revisions",
                    w.id, w.revisions_served
                ));
            }
        }
        match w.live_generations_end {
            Some(g) if g != 1.0 => failures.push(format!(
                "worker {}: {g} configuration generations still live after the load stopped (1 expected)",
                w.id
            )),
            None if generations_required => failures.push(format!(
                "worker {}: its live generations could not be read",
                w.id
            )),
            _ => {}
        }
    }
    first_response
}

/// Every revision acknowledged by every Worker that must: applied itself, or caught up.
/// Returns the audit and the propagation times.
fn judge_audit(
    revisions: &[RevisionAcks],
    ackers: &[String],
    workers: &mut [WorkerReport],
    failures: &mut Vec<String>,
) -> (AuditReport, Vec<f64>) {
    let mut audit = AuditReport::default();
    let mut propagation = Vec::new();
    for r in revisions {
        audit.joined_after += r.joined_after as u64;
        propagation.extend(r.propagation_ms);
        for w in ackers {
            audit.expected += 1;
            match r.acks.iter().find(|(id, _)| id == w) {
                Some((_, true)) => audit.caught_up += 1,
                Some((_, false)) => audit.applied += 1,
                None => audit.missing.entry(w.clone()).or_default().push(r.revision),
            }
        }
    }
    audit.acked = audit.applied + audit.caught_up;
    for (w, missing) in &audit.missing {
        failures.push(format!(
            "worker {w}: no ACK for {} of the {} revisions committed during the run: {}",
            missing.len(),
            revisions.len(),
            list(missing)
        ));
        if let Some(report) = workers.iter_mut().find(|r| r.id == *w) {
            report.acks_missing.clone_from(missing);
        }
    }
    (audit, propagation)
}

#[cfg(test)]
mod tests;
