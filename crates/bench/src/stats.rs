//! Percentiles and small summaries.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// Nearest-rank percentiles of `values` (sorted in place).
pub fn percentiles(values: &mut [f64]) -> Percentiles {
    if values.is_empty() {
        return Percentiles::default();
    }
    values.sort_by(f64::total_cmp);
    let at = |p: f64| {
        // The small epsilon keeps 99.9% of 1000 at rank 999 despite floating-point error.
        let rank = ((p / 100.0) * values.len() as f64 - 1e-9).ceil() as usize;
        values[rank.clamp(1, values.len()) - 1]
    };
    Percentiles {
        count: values.len(),
        p50: at(50.0),
        p99: at(99.0),
        p999: at(99.9),
        max: values[values.len() - 1],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut v: Vec<f64> = (1..=1000).map(f64::from).collect();
        let p = percentiles(&mut v);
        assert_eq!((p.p50, p.p99, p.p999, p.max), (500.0, 990.0, 999.0, 1000.0));
        assert_eq!(percentiles(&mut []).count, 0);
    }
}
