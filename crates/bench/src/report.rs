//! The `bench swap` report: JSON for machines, text for people.

use std::fmt::Write;

use serde::Serialize;

use crate::stats::Percentiles;

#[derive(Debug, Clone, Serialize)]
pub struct SwapReport {
    pub requests: u64,
    pub responses: StatusClasses,
    pub connection_errors: ConnectionErrors,
    /// Requests that did not get the response their pinned config should give.
    pub dropped_requests: u64,
    /// Responses whose header, upstream and upstream credential did not all come from the
    /// one configuration that served the request. Must be 0.
    pub mixed_version_responses: u64,
    /// ACK records found / (changes × Workers), 0..1.
    pub audit_completeness: f64,
    /// Manager commit → the last Worker's swap (from ACKs), per change.
    pub propagation_ms: Percentiles,
    /// Change sent → first response carrying the new revision, per change and Worker.
    pub first_response_ms: Percentiles,
    pub swaps: u64,
    pub changes_by_kind: Vec<(String, u64)>,
    pub workers: Vec<WorkerReport>,
    pub latency_ms: LatencyReport,
    pub duration_s: f64,
    pub passed: bool,
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

#[derive(Debug, Clone, Serialize)]
pub struct WorkerReport {
    pub id: String,
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
    pub requests: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyReport {
    /// Requests sent within one second after a change was sent.
    pub around_swaps: Percentiles,
    pub between_swaps: Percentiles,
}

fn kib(k: Option<u64>) -> String {
    k.map_or("-".into(), |k| format!("{k} KiB"))
}

fn pct(p: &Percentiles) -> String {
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms (n={})",
        p.p50, p.p99, p.p999, p.max, p.count
    )
}

impl SwapReport {
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "bench swap: {:.1} s, {} swaps ({}), {} Workers",
            self.duration_s,
            self.swaps,
            self.changes_by_kind
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.workers.len()
        );
        let r = &self.responses;
        let c = &self.connection_errors;
        let _ = writeln!(
            s,
            "requests {}: 2xx {}, 3xx {}, 4xx {}, 5xx {}; connection errors: refused {}, reset {}, timeout {}, other {}",
            self.requests, r.s2xx, r.s3xx, r.s4xx, r.s5xx, c.refused, c.reset, c.timeout, c.other
        );
        let _ = writeln!(s, "dropped requests:        {}", self.dropped_requests);
        let _ = writeln!(
            s,
            "mixed-version responses: {}",
            self.mixed_version_responses
        );
        let _ = writeln!(
            s,
            "audit completeness:      {:.1}%",
            self.audit_completeness * 100.0
        );
        let _ = writeln!(
            s,
            "propagation (commit → last Worker swap): {}",
            pct(&self.propagation_ms)
        );
        let _ = writeln!(
            s,
            "commit → first response on the new revision: {}",
            pct(&self.first_response_ms)
        );
        let _ = writeln!(
            s,
            "latency around swaps:  {}",
            pct(&self.latency_ms.around_swaps)
        );
        let _ = writeln!(
            s,
            "latency between swaps: {}",
            pct(&self.latency_ms.between_swaps)
        );
        for w in &self.workers {
            let _ = writeln!(
                s,
                "worker {}: RSS start {}, after 100 swaps {}, peak {}, end {}; live generations at end {}; {}; {} requests",
                w.id,
                kib(w.rss_start_kb),
                kib(w.rss_after_100_swaps_kb),
                kib(w.rss_peak_kb),
                kib(w.rss_end_kb),
                w.live_generations_end
                    .map_or("?".into(), |g| format!("{g}")),
                w.alloc_bytes_per_swap.map_or_else(
                    || "allocations per swap not measured (build with --features alloc-stats)"
                        .to_string(),
                    |b| format!("{b:.0} bytes allocated per swap")
                ),
                w.requests
            );
        }
        let _ = writeln!(s, "{}", if self.passed { "PASS" } else { "FAIL" });
        s
    }
}
