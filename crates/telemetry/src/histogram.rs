//! A histogram a request path can afford: fixed buckets of atomic counters, so observing is
//! a few relaxed atomic adds and no lock. prometheus-client's own `Histogram` takes a write
//! lock per observation, shared by every thread observing it; this one is exported the same
//! way (the same bucket bounds give the same series).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Shared by its clones (as prometheus-client's metrics are), so a family can hand one out
/// and keep exporting it.
#[derive(Clone, Debug)]
pub struct AtomicHistogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Upper bounds, increasing; a last bucket (+Inf) follows them in `counts`.
    bounds: Box<[f64]>,
    /// Observations per bucket (not cumulative), one more than `bounds`.
    counts: Box<[AtomicU64]>,
    /// Sum of the observations, in nanounits (a second observed is 1e9).
    sum_nanos: AtomicU64,
}

impl AtomicHistogram {
    /// A histogram with these upper bounds (increasing), plus +Inf.
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> AtomicHistogram {
        let bounds: Box<[f64]> = bounds.into_iter().collect();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        AtomicHistogram {
            inner: Arc::new(Inner {
                bounds,
                counts,
                sum_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// Counts `v` (negative and NaN values count as 0).
    pub fn observe(&self, v: f64) {
        let v = if v.is_nan() { 0.0 } else { v.max(0.0) };
        let i = self
            .inner
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.inner.bounds.len());
        self.inner.counts[i].fetch_add(1, Ordering::Relaxed);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let nanos = (v * 1e9).min(u64::MAX as f64) as u64;
        self.inner.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// (sum, count, per bucket: (upper bound, observations in it)), +Inf last. Read without
    /// a lock: under concurrent observations the parts may be a few observations apart.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets: Vec<(f64, u64)> = self
            .inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(self.inner.counts.iter())
            .map(|(b, c)| (b, c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, c)| c).sum();
        let sum = self.inner.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, count, buckets)
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;

    use super::*;

    #[test]
    fn it_exports_what_prometheus_clients_histogram_exports() {
        let bounds = || prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 16);
        let (ours, theirs) = (AtomicHistogram::new(bounds()), Histogram::new(bounds()));
        for v in [0.0001, 0.0005, 0.0007, 0.003, 0.25, 1.5, 40.0, 1e6] {
            ours.observe(v);
            theirs.observe(v);
        }
        let text = |r: &Registry| {
            let mut out = String::new();
            encode(&mut out, r).unwrap();
            out
        };
        let (mut ra, mut rb) = (Registry::default(), Registry::default());
        ra.register("h", "h", ours.clone());
        rb.register("h", "h", theirs);
        let (a, b) = (text(&ra), text(&rb));
        // The sums are rounded differently in their last digits; everything else is equal.
        let strip = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| !l.starts_with("h_sum"))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(strip(&a), strip(&b), "{a}\n{b}");
        let (sum, count, buckets) = ours.snapshot();
        assert_eq!(count, 8);
        assert!((sum - (0.0001 + 0.0005 + 0.0007 + 0.003 + 0.25 + 1.5 + 40.0 + 1e6)).abs() < 1e-3);
        assert_eq!(
            buckets.first().unwrap().1,
            2,
            "0.0001 and 0.0005 (bounds are inclusive)"
        );
        assert_eq!(
            buckets.last().unwrap().1,
            2,
            "40 and 1e6: above every bound (16.4 s)"
        );
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let h = AtomicHistogram::new([1.0, 2.0]);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| (0..10_000).for_each(|i| h.observe(f64::from(i % 3))));
            }
        });
        let (_, count, buckets) = h.snapshot();
        assert_eq!(count, 40_000);
        assert_eq!(
            buckets.iter().map(|b| b.1).collect::<Vec<_>>(),
            [26_668, 13_332, 0]
        );
    }
}
