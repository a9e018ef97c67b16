//! Percentiles and small summaries.

use std::fmt;

use serde::Serialize;

/// Nearest-rank percentiles of a set of measurements. A tail percentile is given only when
/// there are enough values for it to be something other than the maximum (100 for p99,
/// 1,000 for p99.9): with 50 values, "p99" would be the largest one under another name.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: usize,
    pub p50: f64,
    /// `None` with fewer than 100 values.
    pub p99: Option<f64>,
    /// `None` with fewer than 1,000 values.
    pub p999: Option<f64>,
    pub max: f64,
}

/// Nearest-rank percentiles of `values` (sorted in place).
pub fn percentiles(values: &mut [f64]) -> Percentiles {
    if values.is_empty() {
        return Percentiles::default();
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let at = |p: f64| {
        // The small epsilon keeps 99.9% of 1000 at rank 999 despite floating-point error.
        let rank = ((p / 100.0) * n as f64 - 1e-9).ceil() as usize;
        values[rank.clamp(1, n) - 1]
    };
    Percentiles {
        count: n,
        p50: at(50.0),
        p99: (n >= 100).then(|| at(99.0)),
        p999: (n >= 1000).then(|| at(99.9)),
        max: values[n - 1],
    }
}

impl Percentiles {
    /// The p99 for a table cell: `decimals` places, or `-` when there are too few values.
    pub fn p99_cell(&self, decimals: usize) -> String {
        self.p99
            .map_or_else(|| "-".to_string(), |p| format!("{p:.decimals$}"))
    }
}

impl fmt::Display for Percentiles {
    /// `p50 1.20 ms, p99 3.40 ms, p99.9 5.00 ms, max 7.10 ms (n=1234)`, leaving out the
    /// tail percentiles that too few values cannot give.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 0 {
            return write!(f, "no values");
        }
        write!(f, "p50 {:.2} ms", self.p50)?;
        if let Some(p) = self.p99 {
            write!(f, ", p99 {p:.2} ms")?;
        }
        if let Some(p) = self.p999 {
            write!(f, ", p99.9 {p:.2} ms")?;
        }
        write!(f, ", max {:.2} ms (n={})", self.max, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut v: Vec<f64> = (1..=1000).map(f64::from).collect();
        let p = percentiles(&mut v);
        assert_eq!(
            (p.p50, p.p99, p.p999, p.max),
            (500.0, Some(990.0), Some(999.0), 1000.0)
        );
        assert_eq!(percentiles(&mut []).count, 0);
    }

    #[test]
    fn tails_need_enough_values_to_differ_from_the_max() {
        let mut v: Vec<f64> = (1..=50).map(f64::from).collect();
        let p = percentiles(&mut v);
        assert_eq!((p.p50, p.p99, p.p999, p.max), (25.0, None, None, 50.0));
        assert_eq!(p.to_string(), "p50 25.00 ms, max 50.00 ms (n=50)");
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = percentiles(&mut v);
        assert_eq!((p.p99, p.p999), (Some(99.0), None));
    }
}
