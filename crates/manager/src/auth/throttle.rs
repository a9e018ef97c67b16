//! Slowing down a peer that keeps presenting wrong tokens.
//!
//! Per peer IP address, consecutive authentication failures are counted: the first
//! [`FREE_FAILURES`] are answered at once (a typo is not an attack), each one after that
//! waits longer before its 401, doubling from [`BASE_DELAY`] up to [`MAX_DELAY`]. A peer with
//! [`MAX_WAITING`] failed requests already waiting is refused at once with 429, *without
//! its token being checked*, so opening more connections does not buy more guesses. A
//! peer's count is forgotten [`FORGET_AFTER`] after its last failure; a success does not
//! reset it (a valid low-privilege token must not launder guesses).
//!
//! Memory is bounded: at most [`CAPACITY`] peers are tracked; when full, forgotten peers,
//! then the one whose last failure is oldest (and that has nothing waiting), make room.
//! Nothing here is held across an await: the caller sleeps after the lock is released, so a
//! slowed-down peer never blocks another one.
//!
//! Log lines are rate-limited too: one per peer per [`LOG_EVERY`] (with how many were
//! suppressed since), and at most [`LOG_BUDGET`] in all per [`LOG_EVERY`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Failures answered without delay.
pub const FREE_FAILURES: u32 = 3;
/// The delay of the first slowed-down failure; it doubles with each one after.
pub const BASE_DELAY: Duration = Duration::from_millis(100);
/// The longest delay.
pub const MAX_DELAY: Duration = Duration::from_secs(2);
/// Failed requests of one peer that may wait at the same time; more are refused at once.
pub const MAX_WAITING: u32 = 4;
/// A peer's failures are forgotten this long after the last one.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Peers tracked at most.
pub const CAPACITY: usize = 4096;
/// At most one log line per peer, and [`LOG_BUDGET`] in all, per this period.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
pub const LOG_BUDGET: u32 = 20;

/// How long failure number `failures` (1-based) of a peer waits before its answer.
pub fn delay_for(failures: u32) -> Duration {
    match failures.checked_sub(FREE_FAILURES + 1) {
        None => Duration::ZERO,
        // 2^5 × 100 ms is past the cap already: no need to shift further.
        Some(n) => BASE_DELAY.saturating_mul(1u32 << n.min(5)).min(MAX_DELAY),
    }
}

/// What one failure costs its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Consecutive failures of this peer, this one included.
    pub failures: u32,
    /// How long to wait before answering. When non-zero, call [`AuthThrottle::done_waiting`]
    /// after the wait.
    pub delay: Duration,
    /// `Some(n)`: log this failure, saying that `n` earlier ones were not logged.
    pub log: Option<u64>,
}

/// One peer's failures.
#[derive(Debug)]
struct Peer {
    failures: u32,
    last: Instant,
    /// Failed requests sleeping before their answer.
    waiting: u32,
    logged: Option<Instant>,
    suppressed: u64,
}

/// The log lines allowed in the current period, across peers.
#[derive(Debug)]
struct LogBudget {
    since: Instant,
    lines: u32,
}

/// Failed authentications per peer (see the module documentation). One per Manager.
#[derive(Debug)]
pub struct AuthThrottle {
    peers: Mutex<HashMap<IpAddr, Peer>>,
    budget: Mutex<LogBudget>,
}

impl Default for AuthThrottle {
    fn default() -> Self {
        AuthThrottle {
            peers: Mutex::new(HashMap::new()),
            budget: Mutex::new(LogBudget {
                since: Instant::now(),
                lines: 0,
            }),
        }
    }
}

impl AuthThrottle {
    /// `Err(retry_after)` when `peer` already has [`MAX_WAITING`] failed requests waiting:
    /// refuse this one without looking at its token.
    pub fn admit(&self, peer: IpAddr, now: Instant) -> Result<(), Duration> {
        let peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        match peers.get(&peer) {
            Some(p) if p.waiting >= MAX_WAITING && now.duration_since(p.last) < FORGET_AFTER => {
                Err(delay_for(p.failures).max(Duration::from_secs(1)))
            }
            _ => Ok(()),
        }
    }

    /// Records a failed authentication of `peer` at `now`.
    pub fn fail(&self, peer: IpAddr, now: Instant) -> Verdict {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        if !peers.contains_key(&peer) && !make_room(&mut peers, now) {
            // Every tracked peer has requests waiting: this one is not tracked (bounded
            // memory first); it is still answered 401, and logged within the budget.
            drop(peers);
            return Verdict {
                failures: 1,
                delay: Duration::ZERO,
                log: self.take_budget(now).then_some(0),
            };
        }
        let p = peers.entry(peer).or_insert(Peer {
            failures: 0,
            last: now,
            waiting: 0,
            logged: None,
            suppressed: 0,
        });
        if now.duration_since(p.last) >= FORGET_AFTER {
            p.failures = 0;
        }
        p.failures = p.failures.saturating_add(1);
        p.last = now;
        let delay = delay_for(p.failures);
        if !delay.is_zero() {
            p.waiting += 1;
        }
        let due = p
            .logged
            .is_none_or(|at| now.duration_since(at) >= LOG_EVERY);
        let log = if due && self.take_budget(now) {
            p.logged = Some(now);
            Some(std::mem::take(&mut p.suppressed))
        } else {
            p.suppressed += 1;
            None
        };
        Verdict {
            failures: p.failures,
            delay,
            log,
        }
    }

    /// A failed request of `peer` that waited (a non-zero [`Verdict::delay`]) is answered.
    pub fn done_waiting(&self, peer: IpAddr) {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = peers.get_mut(&peer) {
            p.waiting = p.waiting.saturating_sub(1);
        }
    }

    /// Peers tracked now.
    pub fn len(&self) -> usize {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes one line of the log budget, if any is left in the current period.
    fn take_budget(&self, now: Instant) -> bool {
        let mut b = self.budget.lock().unwrap_or_else(PoisonError::into_inner);
        if now.duration_since(b.since) >= LOG_EVERY {
            b.since = now;
            b.lines = 0;
        }
        if b.lines < LOG_BUDGET {
            b.lines += 1;
            true
        } else {
            false
        }
    }
}

/// Makes room for one more peer; false when every tracked peer has requests waiting.
fn make_room(peers: &mut HashMap<IpAddr, Peer>, now: Instant) -> bool {
    if peers.len() < CAPACITY {
        return true;
    }
    peers.retain(|_, p| p.waiting > 0 || now.duration_since(p.last) < FORGET_AFTER);
    if peers.len() < CAPACITY {
        return true;
    }
    let oldest = peers
        .iter()
        .filter(|(_, p)| p.waiting == 0)
        .min_by_key(|(_, p)| p.last)
        .map(|(ip, _)| *ip);
    match oldest {
        Some(ip) => {
            peers.remove(&ip);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn the_delay_grows_after_the_free_failures_up_to_the_cap() {
        let delays: Vec<u64> = (1..=10).map(|n| delay_for(n).as_millis() as u64).collect();
        assert_eq!(delays, [0, 0, 0, 100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(delay_for(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn failures_are_counted_per_peer_and_forgotten_after_a_while() {
        let t = AuthThrottle::default();
        let now = Instant::now();
        for n in 1..=5 {
            let v = t.fail(ip(1), now);
            assert_eq!(v.failures, n);
            if !v.delay.is_zero() {
                t.done_waiting(ip(1));
            }
        }
        // Another peer starts from nothing: one peer's failures never slow another.
        assert_eq!(t.fail(ip(2), now).delay, Duration::ZERO);
        assert_eq!(t.fail(ip(1), now).delay, delay_for(6));
        t.done_waiting(ip(1));
        let later = now + FORGET_AFTER;
        let v = t.fail(ip(1), later);
        assert_eq!((v.failures, v.delay), (1, Duration::ZERO));
    }

    #[test]
    fn a_peer_with_too_many_waiting_is_refused_before_its_token_is_checked() {
        let t = AuthThrottle::default();
        let now = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert!(t.admit(ip(1), now).is_ok());
            t.fail(ip(1), now);
        }
        for _ in 0..MAX_WAITING {
            assert!(t.admit(ip(1), now).is_ok());
            assert!(!t.fail(ip(1), now).delay.is_zero());
        }
        let retry = t.admit(ip(1), now).unwrap_err();
        assert!(retry >= Duration::from_secs(1), "{retry:?}");
        assert!(t.admit(ip(2), now).is_ok(), "other peers are not affected");
        t.done_waiting(ip(1));
        assert!(t.admit(ip(1), now).is_ok());
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_idle_peer_makes_room() {
        let t = AuthThrottle::default();
        let start = Instant::now();
        let cap = u32::try_from(CAPACITY).unwrap();
        for n in 0..cap {
            t.fail(ip(n), start + Duration::from_millis(u64::from(n)));
        }
        assert_eq!(t.len(), CAPACITY);
        let later = start + Duration::from_secs(5);
        t.fail(ip(cap + 1), later);
        assert_eq!(t.len(), CAPACITY);
        // ip(0) had the oldest failure: it was dropped, so it starts again at 1.
        assert_eq!(t.fail(ip(0), later).failures, 1);
    }

    #[test]
    fn log_lines_are_rate_limited_per_peer_and_in_all() {
        let t = AuthThrottle::default();
        let now = Instant::now();
        assert_eq!(t.fail(ip(1), now).log, Some(0));
        for _ in 0..9 {
            assert_eq!(t.fail(ip(1), now).log, None);
        }
        // The next line, a period later, says how many were not logged.
        assert_eq!(t.fail(ip(1), now + LOG_EVERY).log, Some(9));
        // Many peers at once: no more than the budget per period.
        let logged = (10..10 + 3 * LOG_BUDGET)
            .filter(|n| t.fail(ip(*n), now + LOG_EVERY).log.is_some())
            .count();
        assert_eq!(logged, usize::try_from(LOG_BUDGET).unwrap() - 1);
    }
}
