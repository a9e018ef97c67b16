//! A compiled upstream: parsed targets, timeouts, retry budget and load-balancer state.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::uri::{Authority, Scheme};

pub use crate::manifest::LoadBalancing;

#[derive(Debug)]
pub struct Upstream {
    pub targets: Vec<Target>,
    pub load_balancing: LoadBalancing,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Extra attempts on connect failure, each on a target not tried yet.
    pub retry_attempts: u32,
    cursor: AtomicUsize,
    /// Smooth weighted round-robin order (indices into `targets`), for `weighted`.
    schedule: Vec<u32>,
}

#[derive(Debug)]
pub struct Target {
    /// As written in the manifest; used in logs and the access log.
    pub url: Arc<str>,
    pub scheme: Scheme,
    pub authority: Authority,
    /// Path prefix of the target URL without a trailing slash (often empty).
    pub base_path: String,
    pub weight: u32,
    /// Requests currently sent to this target by this version (for least-requests).
    pub in_flight: AtomicUsize,
}

/// Targets tried so far by one request; retries go to a target not in the set.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tried(u128);

impl Tried {
    pub fn insert(&mut self, i: usize) {
        if i < 128 {
            self.0 |= 1 << i;
        }
    }

    pub fn contains(&self, i: usize) -> bool {
        i < 128 && self.0 & (1 << i) != 0
    }
}

impl Upstream {
    pub fn new(
        targets: Vec<Target>,
        load_balancing: LoadBalancing,
        connect_timeout: Duration,
        request_timeout: Duration,
        retry_attempts: u32,
    ) -> Self {
        let schedule = smooth_weighted_schedule(&targets);
        Upstream {
            targets,
            load_balancing,
            connect_timeout,
            request_timeout,
            retry_attempts,
            cursor: AtomicUsize::new(0),
            schedule,
        }
    }

    /// Picks a target for the next attempt, avoiding those already tried when possible.
    /// Returns `None` only when every target has been tried.
    pub fn pick(&self, tried: Tried) -> Option<usize> {
        let n = self.targets.len();
        if n == 0 {
            return None;
        }
        let first = match self.load_balancing {
            LoadBalancing::RoundRobin => self.cursor.fetch_add(1, Ordering::Relaxed) % n,
            LoadBalancing::Weighted => {
                let k = self.cursor.fetch_add(1, Ordering::Relaxed) % self.schedule.len();
                self.schedule[k] as usize
            }
            LoadBalancing::LeastRequests => {
                let start = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
                let mut best = None::<(usize, usize)>;
                for k in 0..n {
                    let i = (start + k) % n;
                    if tried.contains(i) {
                        continue;
                    }
                    let load = self.targets[i].in_flight.load(Ordering::Relaxed);
                    if best.is_none_or(|(_, b)| load < b) {
                        best = Some((i, load));
                    }
                }
                return best.map(|(i, _)| i);
            }
        };
        (0..n)
            .map(|k| (first + k) % n)
            .find(|&i| !tried.contains(i))
    }
}

/// Nginx's smooth weighted round-robin, unrolled into a fixed order at compile time so the
/// request path only bumps a counter. Weights are reduced by their gcd and the order is
/// capped at 4096 entries (weights scaled down proportionally beyond that).
fn smooth_weighted_schedule(targets: &[Target]) -> Vec<u32> {
    if targets.is_empty() {
        return Vec::new();
    }
    let g = targets.iter().map(|t| t.weight.max(1)).fold(0, gcd);
    let mut weights: Vec<u64> = targets
        .iter()
        .map(|t| u64::from(t.weight.max(1) / g.max(1)))
        .collect();
    let total: u64 = weights.iter().sum();
    const CAP: u64 = 4096;
    if total > CAP {
        for w in &mut weights {
            *w = (*w * CAP / total).max(1);
        }
    }
    let total: u64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut order = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += *w as i64;
        }
        let (best, _) = current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
            .unwrap_or((0, &0));
        current[best] -= total as i64;
        order.push(best as u32);
    }
    order
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn target(weight: u32) -> Target {
        Target {
            url: "http://127.0.0.1:1".into(),
            scheme: Scheme::HTTP,
            authority: Authority::from_static("127.0.0.1:1"),
            base_path: String::new(),
            weight,
            in_flight: AtomicUsize::new(0),
        }
    }

    fn upstream(lb: LoadBalancing, weights: &[u32]) -> Upstream {
        Upstream::new(
            weights.iter().map(|w| target(*w)).collect(),
            lb,
            Duration::from_secs(1),
            Duration::from_secs(1),
            1,
        )
    }

    #[test]
    fn round_robin_cycles() {
        let u = upstream(LoadBalancing::RoundRobin, &[1, 1, 1]);
        let picks: Vec<_> = (0..6).map(|_| u.pick(Tried::default()).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weighted_is_smooth_and_proportional() {
        let u = upstream(LoadBalancing::Weighted, &[5, 1, 1]);
        let picks: Vec<_> = (0..7).map(|_| u.pick(Tried::default()).unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 5);
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn least_requests_prefers_idle_target() {
        let u = upstream(LoadBalancing::LeastRequests, &[1, 1]);
        u.targets[0].in_flight.store(3, Ordering::Relaxed);
        assert_eq!(u.pick(Tried::default()), Some(1));
    }

    #[test]
    fn retries_avoid_tried_targets() {
        let u = upstream(LoadBalancing::RoundRobin, &[1, 1]);
        let mut tried = Tried::default();
        let first = u.pick(tried).unwrap();
        tried.insert(first);
        let second = u.pick(tried).unwrap();
        assert_ne!(first, second);
        tried.insert(second);
        assert_eq!(u.pick(tried), None);
    }
}
