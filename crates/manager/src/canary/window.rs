//! A canary step's numbers and the verdict on them, with no I/O: each Worker's running
//! totals per generation turned into what grew over the step (summed over Workers), and
//! the comparison of the canary with the stable generation against the canary's limits.

use std::collections::HashMap;

use switchyard_api::canary::{
    CanarySpec, GenerationCounters, MIN_JUDGED_REQUESTS, MIN_P99_REQUESTS, P99_NOISE_FLOOR_SECONDS,
    PPM, WindowNumbers, duration_bounds, percent,
};

/// One Worker's totals for one generation at the step's start, and the latest.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub baseline: GenerationCounters,
    pub latest: GenerationCounters,
}

/// What grew between `baseline` and `latest` (a new process, whose totals went down, counts
/// from zero).
fn growth(t: &Totals) -> GenerationCounters {
    let (b, l) = (&t.baseline, &t.latest);
    if l.requests < b.requests {
        return l.clone();
    }
    GenerationCounters {
        revision: l.revision,
        requests: l.requests - b.requests,
        errors: l.errors.saturating_sub(b.errors),
        denials: l.denials.saturating_sub(b.denials),
        duration_buckets: l
            .duration_buckets
            .iter()
            .enumerate()
            .map(|(i, c)| c.saturating_sub(b.duration_buckets.get(i).copied().unwrap_or(0)))
            .collect(),
    }
}

/// The numbers of generation `revision` over the step, summed over `workers`.
pub fn numbers(revision: u64, workers: &HashMap<String, HashMap<u64, Totals>>) -> WindowNumbers {
    let mut n = WindowNumbers {
        revision,
        ..WindowNumbers::default()
    };
    let mut buckets = vec![0u64; duration_bounds().len() + 1];
    for totals in workers.values().filter_map(|gens| gens.get(&revision)) {
        let g = growth(totals);
        n.requests += g.requests;
        n.errors += g.errors;
        n.denials += g.denials;
        n.workers += 1;
        for (sum, c) in buckets.iter_mut().zip(&g.duration_buckets) {
            *sum += c;
        }
    }
    n.error_rate_ppm = rate_ppm(n.errors, n.requests);
    n.p99_seconds = quantile(&buckets, 0.99);
    n
}

fn rate_ppm(part: u64, whole: u64) -> Option<u32> {
    (whole > 0).then(|| {
        let r = u128::from(part) * u128::from(PPM) / u128::from(whole);
        u32::try_from(r).unwrap_or(PPM)
    })
}

/// The `q` quantile of a histogram (counts per bucket of [`duration_bounds`], then +Inf),
/// interpolated linearly within its bucket as Prometheus' `histogram_quantile` does; in the
/// +Inf bucket, the last bound.
pub fn quantile(buckets: &[u64], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let bounds = duration_bounds();
    #[allow(clippy::cast_precision_loss)]
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, c) in buckets.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        if (below + c) as f64 >= rank && *c > 0 {
            let Some(upper) = bounds.get(i).copied() else {
                return bounds.last().copied();
            };
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
            #[allow(clippy::cast_precision_loss)]
            let within = (rank - below as f64) / *c as f64;
            return Some(lower + (upper - lower) * within.clamp(0.0, 1.0));
        }
        below += c;
    }
    bounds.last().copied()
}

/// What the Manager makes of a step so far.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// A limit is breached: roll it back, for this reason (the numbers).
    Breach(String),
    /// The step's time is up and the canary stayed within its limits with enough traffic.
    Held(String),
    /// Within limits so far, or not enough traffic to tell: keep going.
    Wait(String),
}

/// The verdict on a step `elapsed_ms` into its `spec.step_secs`.
pub fn judge(
    spec: &CanarySpec,
    canary: &WindowNumbers,
    stable: &WindowNumbers,
    elapsed_ms: i64,
) -> Verdict {
    let step_ms = i64::try_from(spec.step_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    // What counts as failing: errors, and policy denials too when the spec says so.
    let failing = |n: &WindowNumbers| {
        n.errors
            + if spec.denials_are_errors {
                n.denials
            } else {
                0
            }
    };
    let what = if spec.denials_are_errors {
        "error and denial rate"
    } else {
        "error rate"
    };
    let stable_rate = if stable.requests >= MIN_JUDGED_REQUESTS {
        rate_ppm(failing(stable), stable.requests).unwrap_or(0)
    } else {
        0
    };
    if canary.requests >= MIN_JUDGED_REQUESTS {
        let rate = rate_ppm(failing(canary), canary.requests).unwrap_or(0);
        if u64::from(rate) > u64::from(stable_rate) + u64::from(spec.max_error_rate_ppm) {
            return Verdict::Breach(format!(
                "{what} {} ({} of {} requests) on r{}, over the stable r{}'s {} + {} allowed",
                percent(rate),
                failing(canary),
                canary.requests,
                canary.revision,
                stable.revision,
                percent(stable_rate),
                percent(spec.max_error_rate_ppm)
            ));
        }
    }
    if canary.requests >= MIN_P99_REQUESTS
        && stable.requests >= MIN_P99_REQUESTS
        && let (Some(c), Some(s)) = (canary.p99_seconds, stable.p99_seconds)
        && c > s * (1.0 + f64::from(spec.max_p99_increase_ppm) / f64::from(PPM))
        && c - s > P99_NOISE_FLOOR_SECONDS
    {
        return Verdict::Breach(format!(
            "p99 {:.1} ms on r{} over {} requests, over the stable r{}'s {:.1} ms + {} allowed",
            c * 1000.0,
            canary.revision,
            canary.requests,
            stable.revision,
            s * 1000.0,
            percent(spec.max_p99_increase_ppm)
        ));
    }
    let side = |name: &str, n: &WindowNumbers| match n.error_rate_ppm {
        Some(rate) => format!(
            "{name} {} errors over {} requests",
            percent(rate),
            n.requests
        ),
        None => format!("{name} no requests yet"),
    };
    let summary = format!("{}, {}", side("canary", canary), side("stable", stable));
    if elapsed_ms < step_ms {
        return Verdict::Wait(format!(
            "holding: {} s of {} s, {summary}",
            elapsed_ms.max(0) / 1000,
            spec.step_secs
        ));
    }
    if canary.requests < MIN_JUDGED_REQUESTS {
        return Verdict::Wait(format!(
            "waiting for traffic: the step's time is up but the canary saw {} requests, \
             fewer than the {MIN_JUDGED_REQUESTS} it takes to judge it ({summary})",
            canary.requests
        ));
    }
    Verdict::Held(format!("held {} s: {summary}", spec.step_secs))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn counters(revision: u64, requests: u64, errors: u64, bucket: usize) -> GenerationCounters {
        let mut duration_buckets = vec![0; 17];
        duration_buckets[bucket] = requests;
        GenerationCounters {
            revision,
            requests,
            errors,
            denials: 0,
            duration_buckets,
        }
    }

    fn window(revision: u64, requests: u64, errors: u64, bucket: usize) -> WindowNumbers {
        let mut workers = HashMap::new();
        let totals = Totals {
            baseline: counters(revision, 0, 0, bucket),
            latest: counters(revision, requests, errors, bucket),
        };
        workers.insert("w1".to_string(), HashMap::from([(revision, totals)]));
        numbers(revision, &workers)
    }

    fn spec() -> CanarySpec {
        CanarySpec {
            step_secs: 60,
            ..CanarySpec::at(200_000)
        }
    }

    #[test]
    fn growth_is_counted_from_the_baseline_and_a_restart_from_zero() {
        let t = Totals {
            baseline: counters(2, 100, 1, 3),
            latest: counters(2, 150, 4, 3),
        };
        let g = growth(&t);
        assert_eq!((g.requests, g.errors, g.duration_buckets[3]), (50, 3, 50));
        let restarted = Totals {
            baseline: counters(2, 100, 1, 3),
            latest: counters(2, 10, 0, 3),
        };
        assert_eq!(growth(&restarted).requests, 10);
    }

    #[test]
    fn a_failing_canary_is_a_breach_at_once_and_a_healthy_one_holds_when_time_is_up() {
        let bad = window(7, 40, 40, 2);
        let good = window(6, 400, 0, 2);
        match judge(&spec(), &bad, &good, 1_000) {
            Verdict::Breach(why) => assert!(why.contains("100%"), "{why}"),
            other => panic!("{other:?}"),
        }
        let fine = window(7, 40, 0, 2);
        assert!(matches!(
            judge(&spec(), &fine, &good, 1_000),
            Verdict::Wait(_)
        ));
        assert!(matches!(
            judge(&spec(), &fine, &good, 60_000),
            Verdict::Held(_)
        ));
        // Too little canary traffic judges nothing, even once the time is up.
        let few = window(7, 5, 5, 2);
        match judge(&spec(), &few, &good, 60_000) {
            Verdict::Wait(why) => assert!(why.contains("waiting for traffic"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_are_compared_with_the_stables_and_latency_by_p99() {
        // The upstream fails 5% for both: the canary is not to blame.
        let both = judge(
            &spec(),
            &window(7, 1000, 50, 2),
            &window(6, 4000, 200, 2),
            60_000,
        );
        assert!(matches!(both, Verdict::Held(_)), "{both:?}");
        // Canary 8x slower: 16-32 ms against 2-4 ms.
        let slow = judge(
            &spec(),
            &window(7, 1000, 0, 6),
            &window(6, 4000, 0, 3),
            1_000,
        );
        assert!(
            matches!(slow, Verdict::Breach(ref w) if w.contains("p99")),
            "{slow:?}"
        );
        // Twice as slow but under the noise floor (1-2 ms against 0.5-1 ms): not a breach.
        let noise = judge(
            &spec(),
            &window(7, 1000, 0, 2),
            &window(6, 4000, 0, 1),
            1_000,
        );
        assert!(matches!(noise, Verdict::Wait(_)), "{noise:?}");
        // Denials are not errors, unless the spec says they are.
        let mut denying = window(7, 1000, 0, 2);
        denying.denials = 300;
        let stable = window(6, 4000, 0, 2);
        assert!(matches!(
            judge(&spec(), &denying, &stable, 1_000),
            Verdict::Wait(_)
        ));
        let strict = CanarySpec {
            denials_are_errors: true,
            ..spec()
        };
        let v = judge(&strict, &denying, &stable, 1_000);
        assert!(
            matches!(v, Verdict::Breach(ref w) if w.contains("denial rate 30%")),
            "{v:?}"
        );
    }

    #[test]
    fn the_quantile_interpolates_within_its_bucket() {
        let mut b = vec![0u64; 17];
        b[1] = 100; // 0.5 ms .. 1 ms
        let p = quantile(&b, 0.5).unwrap();
        assert!((p - 0.00075).abs() < 1e-9, "{p}");
        assert_eq!(quantile(&[0; 17], 0.99), None);
        let mut inf = vec![0u64; 17];
        inf[16] = 3;
        assert_eq!(quantile(&inf, 0.99), Some(duration_bounds()[15]));
    }
}
