//! `switchyard bench scale`: what a one-proxy change costs when many proxies exist, through
//! the Worker's own build-and-swap path ([`SwapPath`]): in files mode (the full set, diffed
//! against the served snapshot) and in Manager mode (only the change, as each pull names
//! it), each compile + runtime build + atomic swap; plus memory per proxy and route lookup
//! time, at 10, 1,000 and 10,000 proxies (up to `--proxies`).

use std::time::Instant;

use serde::Serialize;
use switchyard_config::{Located, Manifest, parse_str};
use switchyard_engine::{Change, Numbering, Snapshot, compile};
use switchyard_worker::{ReloadOutcome, SwapPath};

use crate::BenchError;
use crate::stats::{Percentiles, percentiles};

#[derive(Debug, Clone, Serialize)]
pub struct ScaleStep {
    pub proxies: usize,
    /// Files mode: the full set compiled against the served snapshot (only the changed
    /// proxy is rebuilt), the runtime built, swapped.
    pub full_set_swap_ms: Percentiles,
    /// Manager mode: only the changed proxy compiled against the served snapshot, the
    /// runtime built, swapped.
    pub delta_swap_ms: Percentiles,
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
            "one-proxy swap (compile + runtime + swap), p50 / p99 / max in ms over --swaps changes per mode\n\
             (p99 is shown from 100 changes on, - below: with fewer, it would be the max):\n\
             proxies    full set (files mode)    delta (Manager mode)  full build (ms)  bytes/proxy  lookup (ns)\n",
        );
        for st in &self.steps {
            let (f, d) = (&st.full_set_swap_ms, &st.delta_swap_ms);
            s.push_str(&format!(
                "{:>7}  {:>7.3} / {:>6} / {:>6.3}  {:>6.3} / {:>6} / {:>6.3}  {:>15.1}  {:>11.0}  {:>11.0}\n",
                st.proxies, f.p50, f.p99_cell(3), f.max, d.p50, d.p99_cell(3), d.max,
                st.full_build_ms, st.bytes_per_proxy, st.lookup_ns
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
    let setup = |e: switchyard_config::ConfigErrors| BenchError::Setup(e.to_string());
    let mut steps = Vec::new();
    for n in counts {
        let rss_before = crate::procs::rss_kb(std::process::id()).unwrap_or(0);
        let mut set = (0..n).map(|i| parse(i, 0)).collect::<Result<Vec<_>, _>>()?;
        let started = Instant::now();
        let first = compile(&set, None).map_err(setup)?;
        let full_build_ms = started.elapsed().as_secs_f64() * 1e3;
        let rss_after = crate::procs::rss_kb(std::process::id()).unwrap_or(0);
        drop(first);

        let worker = SwapPath::new(&set).map_err(setup)?;
        let mut full_set = Vec::with_capacity(swaps);
        let mut delta = Vec::with_capacity(swaps);
        for k in 1..=2 * swaps {
            let i = (k * 7919) % n;
            set[i] = parse(i, k)?;
            let started = Instant::now();
            let outcome = if k <= swaps {
                let refs: Vec<&Located<Manifest>> = set.iter().collect();
                worker.apply(Change::Set(&refs), &Numbering::default())
            } else {
                let delta = Change::Delta {
                    upserts: &[&set[i]],
                    removed: &[],
                };
                worker.apply(delta, &Numbering::default())
            };
            let ms = started.elapsed().as_secs_f64() * 1e3;
            match outcome {
                ReloadOutcome::Applied { changed: 1, .. } => {}
                other => {
                    return Err(BenchError::Setup(format!(
                        "a one-proxy change was not applied as one: {other:?}"
                    )));
                }
            }
            if k <= swaps {
                full_set.push(ms);
            } else {
                delta.push(ms);
            }
        }
        let lookup_ns = lookup_ns(&worker.snapshot(), n)?;
        steps.push(ScaleStep {
            proxies: n,
            full_set_swap_ms: percentiles(&mut full_set),
            delta_swap_ms: percentiles(&mut delta),
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
fn lookup_ns<X>(snapshot: &Snapshot<X>, n: usize) -> Result<f64, BenchError> {
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
