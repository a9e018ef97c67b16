//! From the samples and the change log to the report: dropped and mixed-version responses,
//! first response per revision and Worker, latency around and between swaps.

use std::collections::HashMap;

use super::changes::ChangeKind;
use crate::load::{Outcome, Sample};
use crate::report::{ConnectionErrors, LatencyReport, StatusClasses, SwapReport, WorkerReport};
use crate::stats::percentiles;

/// One applied change.
pub struct Change {
    /// The bench's sequence number (the `x-release` value).
    pub seq: u64,
    /// The Manager's revision that carried it.
    pub revision: u64,
    pub kind: ChangeKind,
    /// Seconds since start when the change was sent.
    pub sent_at: f64,
    /// The upstream id byte this change routes to.
    pub upstream: u8,
    /// The upstream credential number this change sends.
    pub credential: u64,
}

pub struct Analysis {
    pub propagation: Vec<f64>,
    pub acked: u64,
    /// Workers expected to ACK each change.
    pub ackers: usize,
    pub duration_s: f64,
    pub workers: Vec<WorkerReport>,
    /// Every Worker's live generations must be known (local Workers) rather than merely
    /// not contradicted (remote Workers without an admin address).
    pub generations_required: bool,
}

pub fn analyse(samples: &[Sample], changes: &[Change], a: Analysis) -> SwapReport {
    let mut classes = StatusClasses::default();
    let mut errors = ConnectionErrors::default();
    let mut dropped = 0u64;
    let mut mixed = 0u64;
    let mut workers = a.workers;
    // change number → the upstream and credential its configuration gives
    let mut expected: HashMap<u64, (u8, u64)> = HashMap::new();
    for c in changes {
        expected.insert(c.seq, (c.upstream, c.credential));
    }
    // (change number, worker) → first time seen
    let mut first_seen: HashMap<(u64, u16), f64> = HashMap::new();
    let mut around = Vec::new();
    let mut between = Vec::new();
    let sends: Vec<f64> = changes
        .iter()
        .filter(|c| c.seq > 1)
        .map(|c| c.sent_at)
        .collect();
    for s in samples {
        if let Some(w) = workers.get_mut(usize::from(s.worker)) {
            w.requests += 1;
        }
        match s.outcome {
            Outcome::Response {
                status,
                revision,
                upstream,
                credential,
            } => {
                match status / 100 {
                    2 => classes.s2xx += 1,
                    3 => classes.s3xx += 1,
                    4 => classes.s4xx += 1,
                    _ => classes.s5xx += 1,
                }
                if status != 200 || revision == 0 {
                    dropped += 1;
                } else if expected.get(&revision) != Some(&(upstream, credential)) {
                    mixed += 1;
                } else {
                    let e = first_seen.entry((revision, s.worker)).or_insert(f64::MAX);
                    *e = e.min(s.at + f64::from(s.latency_ms) / 1000.0);
                }
            }
            Outcome::Refused => {
                errors.refused += 1;
                dropped += 1;
            }
            Outcome::Reset => {
                errors.reset += 1;
                dropped += 1;
            }
            Outcome::Timeout => {
                errors.timeout += 1;
                dropped += 1;
            }
            Outcome::Other => {
                errors.other += 1;
                dropped += 1;
            }
        }
        let near = sends
            .partition_point(|t| *t <= s.at)
            .checked_sub(1)
            .is_some_and(|i| s.at - sends[i] <= 1.0);
        if near {
            around.push(f64::from(s.latency_ms));
        } else {
            between.push(f64::from(s.latency_ms));
        }
    }
    let mut first_response = Vec::new();
    // The initial apply (sent before the load started) has no first-response time.
    for c in changes.iter().filter(|c| c.seq > 1) {
        for w in 0..workers.len() {
            if let Some(t) = first_seen.get(&(c.seq, u16::try_from(w).unwrap_or(u16::MAX))) {
                first_response.push(((t - c.sent_at) * 1000.0).max(0.0));
            }
        }
    }
    let mut by_kind: Vec<(String, u64)> = ChangeKind::CYCLE
        .iter()
        .map(|k| {
            (
                k.name().to_string(),
                changes.iter().filter(|c| c.seq > 1 && c.kind == *k).count() as u64,
            )
        })
        .collect();
    by_kind.retain(|(_, n)| *n > 0);
    let swaps = changes.iter().filter(|c| c.seq > 1).count();
    let expected_acks = (swaps * a.ackers) as u64;
    let audit_completeness = if expected_acks == 0 {
        1.0
    } else {
        a.acked as f64 / expected_acks as f64
    };
    let mut propagation = a.propagation;
    let passed = dropped == 0
        && mixed == 0
        && (audit_completeness - 1.0).abs() < f64::EPSILON
        && workers.iter().all(|w| match w.live_generations_end {
            Some(g) => g == 1.0,
            None => !a.generations_required,
        });
    SwapReport {
        requests: samples.len() as u64,
        responses: classes,
        connection_errors: errors,
        dropped_requests: dropped,
        mixed_version_responses: mixed,
        audit_completeness,
        propagation_ms: percentiles(&mut propagation),
        first_response_ms: percentiles(&mut first_response),
        swaps: swaps as u64,
        changes_by_kind: by_kind,
        workers,
        latency_ms: LatencyReport {
            around_swaps: percentiles(&mut around),
            between_swaps: percentiles(&mut between),
        },
        duration_s: a.duration_s,
        passed,
    }
}
