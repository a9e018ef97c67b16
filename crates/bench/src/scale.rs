//! `switchyard bench scale`: what a one-proxy change costs when many proxies exist — time to
//! compile the new snapshot (unchanged proxies reused) and swap it, memory per proxy, and
//! route lookup time, at 10, 1,000 and 10,000 proxies (up to `--proxies`).

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use serde::Serialize;
use switchyard_model::{Located, Manifest, Snapshot, compile, parse_str};

use crate::BenchError;
use crate::stats::{Percentiles, percentiles};

#[derive(Debug, Clone, Serialize)]
pub struct ScaleStep {
    pub proxies: usize,
    /// Compile of the full set after one proxy changed, plus the atomic swap.
    pub one_proxy_swap_ms: Percentiles,
    /// Proxies compiled by that change (the rest were reused).
    pub rebuilt: usize,
    /// The first, full compile.
    pub full_build_ms: f64,
    /// Resident memory added per proxy by the snapshot (manifests and snapshot).
    pub bytes_per_proxy: f64,
    /// Average time of one route lookup (host + path + method), best of 5 rounds.
    pub lookup_ns: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScaleReport {
    pub steps: Vec<ScaleStep>,
}

impl ScaleReport {
    pub fn to_text(&self) -> String {
        let mut s = String::from(
            "proxies  one-proxy swap p50 / p99 / max (ms)  rebuilt  full build (ms)  bytes/proxy  lookup (ns)\n",
        );
        for st in &self.steps {
            s.push_str(&format!(
                "{:>7}  {:>10.3} / {:>7.3} / {:>7.3}            {:>7}  {:>15.1}  {:>11.0}  {:>11.0}\n",
                st.proxies,
                st.one_proxy_swap_ms.p50,
                st.one_proxy_swap_ms.p99,
                st.one_proxy_swap_ms.max,
                st.rebuilt,
                st.full_build_ms,
                st.bytes_per_proxy,
                st.lookup_ns
            ));
        }
        s
    }
}

fn proxy(i: usize, release: usize) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: p{i}, labels: {{ team: t{} }} }}\nspec:\n  routes:\n    - pathPrefix: /api/p{i}\n      methods: [GET, POST]\n  upstream:\n    targets:\n      - url: http://10.0.{}.{}:8080\n  policies:\n    - type: headers\n      response:\n        set: {{ x-release: r{release} }}\n",
        i % 50,
        (i / 250) % 250,
        i % 250
    )
}

fn parse(i: usize, release: usize) -> Result<Located<Manifest>, BenchError> {
    let mut docs = parse_str(format!("p{i}.yaml").into(), &proxy(i, release))
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    docs.pop()
        .ok_or_else(|| BenchError::Setup("no document".into()))
}

pub fn run(max: usize, swaps: usize) -> Result<ScaleReport, BenchError> {
    let mut counts: Vec<usize> = [10, 1_000, 10_000, 100_000]
        .into_iter()
        .filter(|n| *n <= max)
        .collect();
    if counts.last() != Some(&max) {
        counts.push(max);
    }
    let mut steps = Vec::new();
    for n in counts {
        let rss_before = crate::procs::rss_kb(std::process::id()).unwrap_or(0);
        let mut set = (0..n).map(|i| parse(i, 0)).collect::<Result<Vec<_>, _>>()?;
        let started = Instant::now();
        let first = compile(&set, None).map_err(|e| BenchError::Setup(e.to_string()))?;
        let full_build_ms = started.elapsed().as_secs_f64() * 1e3;
        let current = ArcSwap::from_pointee(first.snapshot);
        let rss_after = crate::procs::rss_kb(std::process::id()).unwrap_or(0);

        let mut times = Vec::with_capacity(swaps);
        let mut rebuilt = 0;
        for k in 1..=swaps {
            let i = (k * 7919) % n;
            set[i] = parse(i, k)?;
            let started = Instant::now();
            let prev = current.load_full();
            let next = compile(&set, Some(&prev)).map_err(|e| BenchError::Setup(e.to_string()))?;
            rebuilt = next.rebuilt;
            current.store(Arc::new(next.snapshot));
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let snapshot: Arc<Snapshot> = current.load_full();
        let lookup_ns = lookup_ns(&snapshot, n)?;
        steps.push(ScaleStep {
            proxies: n,
            one_proxy_swap_ms: percentiles(&mut times),
            rebuilt,
            full_build_ms,
            bytes_per_proxy: (rss_after.saturating_sub(rss_before) as f64 * 1024.0) / n as f64,
            lookup_ns,
        });
        drop(set);
    }
    Ok(ScaleReport { steps })
}

/// Average time of one route lookup: the best of 5 rounds of 200,000 (the least disturbed by
/// other work on the machine), over paths built beforehand.
fn lookup_ns(snapshot: &Snapshot, n: usize) -> Result<f64, BenchError> {
    let paths: Vec<String> = (0..4096)
        .map(|k| format!("/api/p{}/items", (k * 104_729) % n))
        .collect();
    let lookups = 200_000usize;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        let mut found = 0usize;
        for k in 0..lookups {
            let path = std::hint::black_box(paths[k % paths.len()].as_str());
            if snapshot
                .route(Some("api.example.com"), path, &http::Method::GET)
                .is_some()
            {
                found += 1;
            }
        }
        best = best.min(started.elapsed().as_secs_f64() * 1e9 / lookups as f64);
        if found != lookups {
            return Err(BenchError::Setup(format!(
                "only {found} of {lookups} lookups matched"
            )));
        }
    }
    Ok(best)
}
