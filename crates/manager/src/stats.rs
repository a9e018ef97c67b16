//! The dashboard's traffic charts: each environment's Workers' running totals
//! (`POST /v1/envs/{env}/stats`, every `STATS_INTERVAL`) over the last hour, kept in memory
//! and bounded, turned into rates per bucket on demand (`GET /v1/envs/{env}/stats`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use switchyard_api::admin::{EnvStats, StatsPoint, WorkerMemory};
use switchyard_api::records::Millis;
use switchyard_api::sync::{ServedFrom, StatsBody, StatusClasses};

/// How far back samples are kept.
pub const WINDOW_MS: Millis = 3_600_000;
/// At most this many samples per environment (an hour of 10 s reports from 100 Workers);
/// the oldest go first.
pub const MAX_SAMPLES: usize = 36_000;

/// One report.
struct Sample {
    at: Millis,
    worker: String,
    totals: StatsBody,
}

/// Per environment, the reports of the last hour, oldest first. One per Manager.
#[derive(Default)]
pub struct StatsRing {
    envs: Mutex<HashMap<String, VecDeque<Sample>>>,
}

impl StatsRing {
    /// Keeps `worker`'s totals received at `at`. True when they say something the
    /// environment's views show that its previous ones did not: where it serves from.
    pub fn record(&self, env: &str, worker: &str, at: Millis, totals: StatsBody) -> bool {
        let mut envs = self.envs.lock().unwrap_or_else(PoisonError::into_inner);
        let samples = envs.entry(env.to_string()).or_default();
        let before = samples
            .iter()
            .rev()
            .find(|s| s.worker == worker)
            .and_then(|s| s.totals.served_from);
        let news = totals.served_from != before;
        samples.push_back(Sample {
            at,
            worker: worker.to_string(),
            totals,
        });
        while samples
            .front()
            .is_some_and(|s| s.at < at - WINDOW_MS || samples.len() > MAX_SAMPLES)
        {
            samples.pop_front();
        }
        news
    }

    /// Where each Worker of `env` said, in its latest report of the last hour, that what it
    /// serves came from (Workers that do not say are left out).
    pub fn served_from(&self, env: &str) -> HashMap<String, ServedFrom> {
        let envs = self.envs.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = HashMap::new();
        for s in envs.get(env).into_iter().flatten() {
            match s.totals.served_from {
                Some(from) => out.insert(s.worker.clone(), from),
                None => out.remove(&s.worker),
            };
        }
        out
    }

    /// `env`'s rates in buckets of `interval_ms` over the last hour before `now`.
    pub fn series(&self, env: &str, now: Millis, interval_ms: u64) -> EnvStats {
        let interval = Millis::try_from(interval_ms.max(1)).unwrap_or(Millis::MAX);
        let envs = self.envs.lock().unwrap_or_else(PoisonError::into_inner);
        let mut buckets: BTreeMap<Millis, Bucket> = BTreeMap::new();
        if let Some(samples) = envs.get(env) {
            let mut last: HashMap<&str, &Sample> = HashMap::new();
            for s in samples.iter().filter(|s| s.at >= now - WINDOW_MS) {
                let bucket = buckets.entry(s.at - s.at.rem_euclid(interval)).or_default();
                let worker = bucket.workers.entry(s.worker.clone()).or_default();
                worker.memory = (s.totals.resident_bytes, s.totals.live_generations);
                if let Some(prev) = last.insert(&s.worker, s)
                    && let Some(delta) = Delta::between(prev, s)
                {
                    worker.elapsed_ms += delta.elapsed_ms;
                    for (sum, d) in worker.requests.iter_mut().zip(delta.requests) {
                        *sum += d;
                    }
                    worker.errors += delta.errors;
                }
            }
        }
        EnvStats {
            interval_ms,
            points: buckets.into_iter().map(|(at, b)| b.point(at)).collect(),
        }
    }
}

/// What one Worker did between two of its reports.
struct Delta {
    elapsed_ms: u64,
    requests: [u64; 5],
    errors: u64,
}

impl Delta {
    /// `None` when no time passed or a counter went down (a new process: its first totals
    /// start a new series).
    fn between(prev: &Sample, cur: &Sample) -> Option<Delta> {
        let elapsed_ms = u64::try_from(cur.at - prev.at).ok().filter(|ms| *ms > 0)?;
        let (a, b) = (
            prev.totals.requests.to_array(),
            cur.totals.requests.to_array(),
        );
        let mut requests = [0; 5];
        for i in 0..5 {
            requests[i] = b[i].0.checked_sub(a[i].0)?;
        }
        let errors = cur
            .totals
            .gateway_errors
            .checked_sub(prev.totals.gateway_errors)?;
        Some(Delta {
            elapsed_ms,
            requests,
            errors,
        })
    }
}

#[derive(Default)]
struct Bucket {
    workers: BTreeMap<String, WorkerBucket>,
}

/// One Worker's part of a bucket: its counts over the time its reports in the bucket cover.
#[derive(Default)]
struct WorkerBucket {
    elapsed_ms: u64,
    requests: [u64; 5],
    errors: u64,
    /// (resident bytes, live generations) of its last report in the bucket.
    memory: (u64, u64),
}

impl Bucket {
    /// Each Worker's rate over the time its reports cover, summed over Workers.
    fn point(self, at: Millis) -> StatsPoint {
        let mut requests = [0.0; 5];
        let mut errors = 0.0;
        let mut workers = Vec::with_capacity(self.workers.len());
        for (id, w) in self.workers {
            if w.elapsed_ms > 0 {
                let per_second = |n: u64| n as f64 * 1000.0 / w.elapsed_ms as f64;
                for (sum, n) in requests.iter_mut().zip(w.requests) {
                    *sum += per_second(n);
                }
                errors += per_second(w.errors);
            }
            workers.push(WorkerMemory {
                id,
                resident_bytes: w.memory.0,
                live_generations: w.memory.1,
            });
        }
        StatsPoint {
            at,
            requests_per_second: StatusClasses::from_array(requests),
            gateway_errors_per_second: errors,
            workers,
        }
    }
}

#[cfg(test)]
mod tests {
    use switchyard_api::sync::{Count, ServedFrom};

    use super::*;

    fn totals(ok: u64, errors: u64, rss: u64) -> StatsBody {
        StatsBody {
            revision: 1,
            requests: StatusClasses::from_array([0, ok, 0, 0, errors].map(Count)),
            gateway_errors: errors,
            resident_bytes: rss,
            live_generations: 1,
            served_from: Some(ServedFrom::Manager),
            generations: Vec::new(),
        }
    }

    #[test]
    fn each_workers_latest_report_says_where_it_serves_from() {
        let ring = StatsRing::default();
        let cache = StatsBody {
            served_from: Some(ServedFrom::Cache),
            ..totals(0, 0, 1)
        };
        assert!(ring.record("dev", "w1", 1_000, cache.clone()), "news");
        assert!(ring.record("dev", "w2", 1_000, cache.clone()));
        assert!(
            !ring.record("dev", "w2", 1_500, cache),
            "the same as before"
        );
        assert!(
            ring.record("dev", "w1", 2_000, totals(0, 0, 1)),
            "from the Manager now"
        );
        assert!(!ring.record("dev", "w3", 2_000, StatsBody::default()));
        let from = ring.served_from("dev");
        assert_eq!(from.get("w1"), Some(&ServedFrom::Manager));
        assert_eq!(from.get("w2"), Some(&ServedFrom::Cache));
        assert_eq!(from.get("w3"), None, "an older Worker does not say");
        assert!(ring.served_from("prod").is_empty());
    }

    #[test]
    fn totals_become_rates_per_bucket_summed_over_workers() {
        let ring = StatsRing::default();
        let t0 = 1_000_000_000;
        // w1: 100 req/s; w2: 50 req/s with 1 error/s; reports every second.
        for i in 0..=20 {
            ring.record("dev", "w1", t0 + i * 1000, totals(100 * i as u64, 0, 10));
            ring.record(
                "dev",
                "w2",
                t0 + i * 1000,
                totals(50 * i as u64, i as u64, 20),
            );
        }
        let s = ring.series("dev", t0 + 20_000, 10_000);
        assert_eq!(s.points.len(), 3, "t0, t0+10s, t0+20s");
        let full = &s.points[0];
        assert_eq!(full.at, t0);
        assert!((full.requests_per_second.success - 150.0).abs() < 1e-9);
        assert!((full.gateway_errors_per_second - 1.0).abs() < 1e-9);
        assert!((full.requests_per_second.server_error - 1.0).abs() < 1e-9);
        let ids: Vec<_> = full
            .workers
            .iter()
            .map(|w| (w.id.as_str(), w.resident_bytes))
            .collect();
        assert_eq!(ids, [("w1", 10), ("w2", 20)]);
        assert!(ring.series("other", t0, 10_000).points.is_empty());
    }

    #[test]
    fn a_restarted_worker_starts_a_new_series_and_old_samples_go() {
        let ring = StatsRing::default();
        let t0 = 1_000_000_000;
        ring.record("dev", "w1", t0, totals(1000, 0, 1));
        // Restarted: its counters start again; no negative rate, no huge one.
        ring.record("dev", "w1", t0 + 1000, totals(10, 0, 1));
        ring.record("dev", "w1", t0 + 2000, totals(20, 0, 1));
        let s = ring.series("dev", t0 + 2000, 10_000);
        assert!(
            (s.points[0].requests_per_second.success - 10.0).abs() < 1e-9,
            "{s:?}"
        );
        // An hour later only the new sample counts.
        ring.record("dev", "w1", t0 + WINDOW_MS + 5000, totals(30, 0, 1));
        let s = ring.series("dev", t0 + WINDOW_MS + 5000, 10_000);
        assert_eq!(s.points.len(), 1, "{s:?}");
        assert_eq!(s.points[0].requests_per_second.success, 0.0);
    }
}
