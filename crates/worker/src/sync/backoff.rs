//! How long a Worker waits before reconnecting to its Manager.

use std::time::Duration;

/// Exponential backoff with full jitter: 100 ms doubling up to 5 s. Seeded from the
/// Worker's id and the clock, so Workers that lost the Manager together do not all come
/// back at the same moment.
pub(super) struct Backoff {
    pub(super) attempts: u32,
    seed: u64,
}

impl Backoff {
    pub(super) fn new(worker_id: &str) -> Backoff {
        let mut seed = super::now_millis() as u64 ^ 0x9e37_79b9_7f4a_7c15;
        for b in worker_id.bytes() {
            seed = seed.rotate_left(5) ^ u64::from(b);
        }
        Backoff {
            attempts: 0,
            seed: seed | 1,
        }
    }

    pub(super) fn next(&mut self) -> Duration {
        let cap_ms = (100u64 << self.attempts.min(6)).min(5_000);
        self.attempts += 1;
        // xorshift64
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        Duration::from_millis(cap_ms / 2 + self.seed % (cap_ms / 2 + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_in_the_upper_half() {
        let mut b = Backoff::new("w1");
        for cap in [100, 200, 400, 800, 1600, 3200, 5000, 5000] {
            let d = b.next().as_millis() as u64;
            assert!((cap / 2..=cap).contains(&d), "{d} ms for a cap of {cap} ms");
        }
    }
}
