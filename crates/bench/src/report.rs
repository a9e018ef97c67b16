//! The `bench swap` report: JSON for machines, text for people.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::stats::Percentiles;

#[derive(Debug, Clone, Serialize)]
pub struct SwapReport {
    pub requests: u64,
    pub responses: StatusClasses,
    pub connection_errors: ConnectionErrors,
    /// Requests that got no answer, or an answer of no configuration (a 5xx, or no
    /// `x-release`). Must be 0.
    pub dropped_requests: u64,
    /// Responses that did not show exactly the configuration they name: its header,
    /// upstream, upstream credential, rate limit and routes (a 200 or a 404 on the extra
    /// route). Must be 0.
    pub mixed_version_responses: u64,
    /// The first few of them, described.
    pub mixed_examples: Vec<String>,
    /// ACKs from the Workers that must ACK every revision / what they owed, 0..1.
    pub audit_completeness: f64,
    pub audit: AuditReport,
    /// Manager commit → the last Worker's swap (from ACKs), per revision where every
    /// expected Worker ACKed.
    pub propagation_ms: Percentiles,
    /// Change sent → first response carrying the new revision, per revision and Worker.
    pub first_response_ms: Percentiles,
    /// Revisions the bench committed during the run (the Workers' own swaps are in
    /// `workers[].swaps_during_run`).
    pub revisions_committed: u64,
    /// Per kind of change: how many were applied, and how many of those were seen in a
    /// response carrying their revision (a kind applied but never observed is a FAIL).
    pub kinds: BTreeMap<&'static str, KindReport>,
    pub workers: Vec<WorkerReport>,
    pub latency_ms: LatencyReport,
    pub duration_s: f64,
    /// Why the run failed, one reason each, naming the Workers and revisions concerned.
    pub failures: Vec<String>,
    pub passed: bool,
}

/// One kind of change over the run.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct KindReport {
    pub applied: u64,
    pub observed: u64,
}

/// The audit trail of the run's revisions, as the Manager recorded it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditReport {
    /// Revisions × the Workers that must ACK each.
    pub expected: u64,
    /// ACKs found from those Workers: `applied` + `caught_up`.
    pub acked: u64,
    /// ACKs of Workers that swapped the revision in themselves.
    pub applied: u64,
    /// ACKs of Workers that went straight to a later revision containing it.
    pub caught_up: u64,
    /// ACKs of Workers that connected after the revision was committed but served it.
    pub joined_after: u64,
    /// Per Worker, the revisions it owed an ACK for and did not send.
    pub missing: BTreeMap<String, Vec<u64>>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusClasses {
    #[serde(rename = "2xx")]
    pub s2xx: u64,
    #[serde(rename = "3xx")]
    pub s3xx: u64,
    #[serde(rename = "4xx")]
    pub s4xx: u64,
    #[serde(rename = "5xx")]
    pub s5xx: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ConnectionErrors {
    pub refused: u64,
    pub reset: u64,
    pub timeout: u64,
    pub other: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkerReport {
    /// The Worker's id at the Manager (or, when the bench cannot tell it, its address).
    pub id: String,
    /// Its traffic listener.
    pub target: String,
    pub requests: u64,
    /// Revisions committed during the run that a response from this Worker carried.
    pub revisions_served: u64,
    /// Revisions no response from it carried, superseded by a later one that did before
    /// the load sampled them (shown apart, not a failure).
    pub revisions_superseded: u64,
    /// Revisions no response from it carried, nor any later one. Must be empty.
    pub revisions_missed: Vec<u64>,
    /// Responses carrying an older revision than one their connection had already seen.
    /// Must be 0.
    pub went_backwards: u64,
    /// `switchyard_config_swaps_total` at the end minus at the start (null when the
    /// Worker's admin listener is unknown).
    pub swaps_during_run: Option<u64>,
    /// Revisions it owed an ACK for and did not send. Must be empty.
    pub acks_missing: Vec<u64>,
    /// Resident memory (KiB); null when it cannot be read (a remote Worker without
    /// `--worker-admins`).
    pub rss_start_kb: Option<u64>,
    pub rss_peak_kb: Option<u64>,
    pub rss_end_kb: Option<u64>,
    /// RSS right after the 100th change was applied (absent in shorter runs): the
    /// baseline for "memory after many swaps".
    pub rss_after_100_swaps_kb: Option<u64>,
    pub live_generations_end: Option<f64>,
    /// Mean bytes allocated to build and swap one generation; only when the Workers run a
    /// bench build (`--features alloc-stats`).
    pub alloc_bytes_per_swap: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyReport {
    /// Requests sent within one second after a change was sent.
    pub around_swaps: Percentiles,
    pub between_swaps: Percentiles,
}

fn kib(k: Option<u64>) -> String {
    k.map_or("-".into(), |k| k.to_string())
}

impl SwapReport {
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "bench swap: {:.1} s, {} revisions committed, {} Workers",
            self.duration_s,
            self.revisions_committed,
            self.workers.len()
        );
        let r = &self.responses;
        let c = &self.connection_errors;
        let _ = writeln!(
            s,
            "requests {}: 2xx {}, 3xx {}, 4xx {} (/extra's 404s while a revision has no such route), 5xx {}; connection errors: refused {}, reset {}, timeout {}, other {}",
            self.requests, r.s2xx, r.s3xx, r.s4xx, r.s5xx, c.refused, c.reset, c.timeout, c.other
        );
        let _ = writeln!(s, "dropped requests:        {}", self.dropped_requests);
        let _ = writeln!(
            s,
            "mixed-version responses: {}",
            self.mixed_version_responses
        );
        for m in &self.mixed_examples {
            let _ = writeln!(s, "  {m}");
        }
        let _ = writeln!(s, "changes (applied / observed in responses):");
        for (key, k) in &self.kinds {
            let _ = writeln!(s, "  {key:<20} {:>6} / {:>6}", k.applied, k.observed);
        }
        let a = &self.audit;
        let _ = writeln!(
            s,
            "audit completeness:      {:.1}% ({} of {} ACKs: {} applied, {} caught up; {} more from Workers that joined after a commit)",
            self.audit_completeness * 100.0,
            a.acked,
            a.expected,
            a.applied,
            a.caught_up,
            a.joined_after
        );
        let _ = writeln!(
            s,
            "propagation (commit → last Worker swap): {}",
            self.propagation_ms
        );
        let _ = writeln!(
            s,
            "change sent → first response on the new revision: {}",
            self.first_response_ms
        );
        let _ = writeln!(s, "latency around swaps:  {}", self.latency_ms.around_swaps);
        let _ = writeln!(
            s,
            "latency between swaps: {}",
            self.latency_ms.between_swaps
        );
        let _ = writeln!(
            s,
            "worker        requests  served  superseded  missed  backwards  swaps  ACKs missing  RSS start / after 100 / peak / end (KiB)  generations"
        );
        for w in &self.workers {
            let _ = writeln!(
                s,
                "{:<12} {:>9}  {:>6}  {:>10}  {:>6}  {:>9}  {:>5}  {:>12}  {} / {} / {} / {}  {}",
                w.id,
                w.requests,
                w.revisions_served,
                w.revisions_superseded,
                w.revisions_missed.len(),
                w.went_backwards,
                w.swaps_during_run.map_or("-".into(), |n| n.to_string()),
                w.acks_missing.len(),
                kib(w.rss_start_kb),
                kib(w.rss_after_100_swaps_kb),
                kib(w.rss_peak_kb),
                kib(w.rss_end_kb),
                w.live_generations_end
                    .map_or("?".into(), |g| format!("{g}")),
            );
        }
        if let Some(b) = self.workers.iter().find_map(|w| w.alloc_bytes_per_swap) {
            let _ = writeln!(s, "allocated per swap (first Worker): {b:.0} bytes");
        }
        if self.passed {
            let _ = writeln!(s, "PASS");
        } else {
            let _ = writeln!(s, "FAIL");
            for f in &self.failures {
                let _ = writeln!(s, "  - {f}");
            }
        }
        s
    }
}
