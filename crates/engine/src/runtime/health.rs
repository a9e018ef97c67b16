//! Per-target state that must outlive configuration snapshots: health (active checks and
//! passive ejection) and the number of requests in flight.
//!
//! Snapshots are immutable and replaced on every swap, but a target's health is a fact
//! about the target, not about a configuration version: an unrelated edit must not mark
//! every target healthy again, and a swap must not forget how many requests a target is
//! already serving (or `maxConcurrentRequests` would let a burst through). So each
//! [`Target`](super::Target) holds an `Arc<TargetState>` found in a [`HealthRegistry`] by
//! identity — proxy name and target URL — which a Worker keeps for its whole life and
//! passes to every compile (like the rate-limit `Limiters`). The registry holds states
//! weakly: a state lives as long as some snapshot (or a request pinning an old one) uses it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use http::uri::PathAndQuery;

/// Identity of a target's state: the proxy it belongs to and its URL as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetKey {
    pub proxy: Arc<str>,
    pub url: Arc<str>,
}

/// Target states by identity, shared by every compile of one Worker.
#[derive(Debug, Clone)]
pub struct HealthRegistry {
    inner: Arc<Mutex<HashMap<TargetKey, Weak<TargetState>>>>,
    /// Times in states are milliseconds since this instant (so they fit in an atomic).
    epoch: Instant,
}

impl Default for HealthRegistry {
    fn default() -> Self {
        HealthRegistry {
            inner: Arc::default(),
            epoch: Instant::now(),
        }
    }
}

impl HealthRegistry {
    /// The state of `url` in `proxy`: the existing one while any snapshot still uses it,
    /// else a fresh one (healthy, nothing in flight).
    pub fn get(&self, proxy: &Arc<str>, url: &Arc<str>) -> Arc<TargetState> {
        let mut map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let key = TargetKey {
            proxy: proxy.clone(),
            url: url.clone(),
        };
        if let Some(s) = map.get(&key).and_then(Weak::upgrade) {
            return s;
        }
        // Dead entries are swept when the map reaches a power of two (amortised O(1) per
        // insert; a full sweep on every insert made building n entries O(n²)).
        if map.len() >= 64 && map.len().is_power_of_two() {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let s = Arc::new(TargetState::new(self.epoch));
        map.insert(key, Arc::downgrade(&s));
        s
    }

    /// States alive.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How an upstream checks its targets (from `healthCheck`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthConfig {
    pub active: Option<ActiveCheck>,
    pub passive: Option<PassiveCheck>,
}

impl HealthConfig {
    pub fn is_enabled(&self) -> bool {
        self.active.is_some() || self.passive.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveCheck {
    pub path: PathAndQuery,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassiveCheck {
    pub consecutive_failures: u32,
    pub cool_off: Duration,
}

/// What `/status` and metrics say about a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetHealth {
    Healthy,
    /// Marked down by active checks.
    Unhealthy,
    /// Ejected by passive checks for this much longer.
    Ejected(Duration),
}

impl TargetHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetHealth::Healthy => "healthy",
            TargetHealth::Unhealthy => "unhealthy",
            TargetHealth::Ejected(_) => "ejected",
        }
    }

    pub fn is_healthy(self) -> bool {
        self == TargetHealth::Healthy
    }
}

/// What an active check concluded, when it changed the target's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    BecameHealthy,
    BecameUnhealthy,
}

/// One target's state across snapshots. Only atomics: the request path reads and bumps
/// them without locks.
#[derive(Debug)]
pub struct TargetState {
    epoch: Instant,
    /// Requests sent to this target and not finished yet, whatever snapshot sent them.
    pub in_flight: AtomicUsize,
    /// Set by active checks (targets start healthy).
    active_down: AtomicBool,
    active_successes: AtomicU32,
    active_failures: AtomicU32,
    /// When the next active check is due (ms since the epoch; 0: now).
    next_check_ms: AtomicU64,
    /// An active check is running (never two at once for one target).
    checking: AtomicBool,
    passive_failures: AtomicU32,
    /// Ejected until this time (ms since the epoch; 0: never ejected).
    ejected_until_ms: AtomicU64,
}

impl TargetState {
    pub fn new(epoch: Instant) -> TargetState {
        TargetState {
            epoch,
            in_flight: AtomicUsize::new(0),
            active_down: AtomicBool::new(false),
            active_successes: AtomicU32::new(0),
            active_failures: AtomicU32::new(0),
            next_check_ms: AtomicU64::new(0),
            checking: AtomicBool::new(false),
            passive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
        }
    }

    fn ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn ms_of(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }

    /// Healthy as far as the checks `config` enables are concerned. A flag left by a check
    /// that is no longer configured is ignored.
    pub fn health(&self, config: &HealthConfig, now: Instant) -> TargetHealth {
        if config.passive.is_some() {
            let until = self.ejected_until_ms.load(Ordering::Relaxed);
            let now = self.ms(now);
            if until > now {
                return TargetHealth::Ejected(Duration::from_millis(until - now));
            }
        }
        if config.active.is_some() && self.active_down.load(Ordering::Relaxed) {
            return TargetHealth::Unhealthy;
        }
        TargetHealth::Healthy
    }

    /// A request to this target succeeded: resets the passive failure count.
    pub fn passive_success(&self) {
        // Read first: most requests succeed, and a store would dirty a shared cache line.
        if self.passive_failures.load(Ordering::Relaxed) != 0 {
            self.passive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// A request to this target failed. Returns true when this failure ejected it.
    pub fn passive_failure(&self, check: &PassiveCheck, now: Instant) -> bool {
        let n = self.passive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n < check.consecutive_failures.max(1) {
            return false;
        }
        self.passive_failures.store(0, Ordering::Relaxed);
        let now = self.ms(now);
        let until = now.saturating_add(Self::ms_of(check.cool_off)).max(1);
        let before = self.ejected_until_ms.swap(until, Ordering::Relaxed);
        before <= now
    }

    /// Claims the next active check if it is due: true means the caller runs it (and
    /// calls [`TargetState::active_result`] then [`TargetState::check_finished`]).
    pub fn begin_check(&self, interval: Duration, now: Instant) -> bool {
        let now = self.ms(now);
        if self.next_check_ms.load(Ordering::Relaxed) > now {
            return false;
        }
        if self.checking.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.next_check_ms
            .store(now.saturating_add(Self::ms_of(interval)), Ordering::Relaxed);
        true
    }

    /// When the next active check is due.
    pub fn next_check(&self) -> Instant {
        self.epoch + Duration::from_millis(self.next_check_ms.load(Ordering::Relaxed))
    }

    pub fn check_finished(&self) {
        self.checking.store(false, Ordering::Release);
    }

    /// Records an active check's result; returns the change of health it caused, if any.
    pub fn active_result(&self, check: &ActiveCheck, ok: bool) -> Option<Transition> {
        if ok {
            self.active_failures.store(0, Ordering::Relaxed);
            let n = self.active_successes.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= check.healthy_threshold.max(1)
                && self.active_down.swap(false, Ordering::Relaxed)
            {
                return Some(Transition::BecameHealthy);
            }
        } else {
            self.active_successes.store(0, Ordering::Relaxed);
            let n = self.active_failures.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= check.unhealthy_threshold.max(1)
                && !self.active_down.swap(true, Ordering::Relaxed)
            {
                return Some(Transition::BecameUnhealthy);
            }
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn active(healthy: u32, unhealthy: u32) -> ActiveCheck {
        ActiveCheck {
            path: PathAndQuery::from_static("/healthz"),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            healthy_threshold: healthy,
            unhealthy_threshold: unhealthy,
        }
    }

    #[test]
    fn the_registry_hands_back_the_same_state_while_it_is_used() {
        let r = HealthRegistry::default();
        let (p, q): (Arc<str>, Arc<str>) = ("chat".into(), "orders".into());
        let u: Arc<str> = "http://10.0.0.1:80".into();
        let a = r.get(&p, &u);
        let b = r.get(&p, &u);
        assert!(Arc::ptr_eq(&a, &b));
        // Another proxy with the same URL has its own state.
        assert!(!Arc::ptr_eq(&a, &r.get(&q, &u)));
        drop((a, b));
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn active_thresholds_flip_health_both_ways() {
        let s = TargetState::new(Instant::now());
        let check = active(2, 3);
        let config = HealthConfig {
            active: Some(check.clone()),
            passive: None,
        };
        let now = Instant::now();
        assert_eq!(s.health(&config, now), TargetHealth::Healthy);
        assert_eq!(s.active_result(&check, false), None);
        assert_eq!(s.active_result(&check, false), None);
        // A success in between restarts the count.
        assert_eq!(s.active_result(&check, true), None);
        assert_eq!(s.active_result(&check, false), None);
        assert_eq!(s.active_result(&check, false), None);
        assert_eq!(
            s.active_result(&check, false),
            Some(Transition::BecameUnhealthy)
        );
        assert_eq!(s.active_result(&check, false), None);
        assert_eq!(s.health(&config, now), TargetHealth::Unhealthy);
        // Ignored once active checks are no longer configured.
        assert_eq!(
            s.health(&HealthConfig::default(), now),
            TargetHealth::Healthy
        );
        assert_eq!(s.active_result(&check, true), None);
        assert_eq!(
            s.active_result(&check, true),
            Some(Transition::BecameHealthy)
        );
        assert_eq!(s.health(&config, now), TargetHealth::Healthy);
    }

    #[test]
    fn passive_failures_eject_for_the_cool_off() {
        let t0 = Instant::now();
        let s = TargetState::new(t0);
        let check = PassiveCheck {
            consecutive_failures: 3,
            cool_off: Duration::from_secs(30),
        };
        let config = HealthConfig {
            active: None,
            passive: Some(check),
        };
        assert!(!s.passive_failure(&check, t0));
        assert!(!s.passive_failure(&check, t0));
        s.passive_success();
        assert!(!s.passive_failure(&check, t0));
        assert!(!s.passive_failure(&check, t0));
        assert!(s.passive_failure(&check, t0));
        assert_eq!(
            s.health(&config, t0 + Duration::from_secs(10)),
            TargetHealth::Ejected(Duration::from_secs(20))
        );
        assert_eq!(
            s.health(&config, t0 + Duration::from_secs(30)),
            TargetHealth::Healthy
        );
    }

    #[test]
    fn one_check_at_a_time_and_at_the_interval() {
        let t0 = Instant::now();
        let s = TargetState::new(t0);
        let every = Duration::from_secs(5);
        assert!(s.begin_check(every, t0));
        // Due again only after the interval, and only once the running one finished.
        assert!(!s.begin_check(every, t0 + Duration::from_secs(1)));
        assert!(!s.begin_check(every, t0 + Duration::from_secs(6)));
        s.check_finished();
        assert!(s.begin_check(every, t0 + Duration::from_secs(6)));
        assert_eq!(s.next_check(), t0 + Duration::from_secs(11));
    }
}
