//! A compiled upstream: parsed targets, timeouts, retries and their budget, health
//! checking, the concurrency limit and load-balancer state.
//!
//! Picking a target is cheap: a counter bump (or, for `consistent-hash`, one hash mix per
//! target), a few atomic loads for health and load, and one atomic update to claim an
//! in-flight slot. Per-target health and in-flight counts live in each target's
//! [`TargetState`], shared across snapshots (see [`super::health`]).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Uri};

pub use switchyard_config::manifest::UpstreamProtocol;

use super::health::{HealthConfig, TargetHealth, TargetState};
pub use switchyard_config::manifest::{LoadBalancing, RequestKey};

/// A proxy's upstream, compiled: everything the request path needs to pick a target and
/// send to it, checked and parsed once, with the load balancer's state.
#[derive(Debug)]
pub struct Upstream {
    pub targets: Vec<Target>,
    pub load_balancing: LoadBalancing,
    /// What `consistent-hash` hashes (set exactly when that is the load balancing; never
    /// `Consumer`, which the compiler refuses).
    pub hash_on: Option<RequestKey>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Extra attempts, each on a target not tried yet, when retrying is safe.
    pub retry_attempts: u32,
    /// Tokens for retries. Belongs to this compiled upstream: a swap that changes the
    /// proxy starts a new budget.
    pub budget: RetryBudget,
    pub health: HealthConfig,
    /// Requests each target may have in flight (`None`: unlimited).
    pub max_concurrent_requests: Option<usize>,
    /// How `https://` targets are verified (set when there is one).
    pub tls: Option<Arc<crate::tls::UpstreamTls>>,
    /// The HTTP version spoken to the targets.
    pub protocol: UpstreamProtocol,
    cursor: AtomicUsize,
    /// Smooth weighted round-robin order (indices into `targets`), for `weighted`.
    schedule: Vec<u32>,
    /// All weights equal: `consistent-hash` compares raw hashes (no floating point).
    equal_weights: bool,
}

/// How an upstream is set up, apart from its targets.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub load_balancing: LoadBalancing,
    pub hash_on: Option<RequestKey>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub retry_attempts: u32,
    pub budget_ratio: f64,
    pub budget_min_per_second: u32,
    pub health: HealthConfig,
    pub max_concurrent_requests: Option<usize>,
    pub tls: Option<Arc<crate::tls::UpstreamTls>>,
    pub protocol: UpstreamProtocol,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            load_balancing: LoadBalancing::RoundRobin,
            hash_on: None,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
            retry_attempts: 1,
            budget_ratio: 0.2,
            budget_min_per_second: 3,
            health: HealthConfig::default(),
            max_concurrent_requests: None,
            tls: None,
            protocol: UpstreamProtocol::Http1,
        }
    }
}

/// One target of an upstream, its URL parsed once (the request path only assembles URIs
/// from the parts), with the state it shares with other snapshots.
#[derive(Debug)]
pub struct Target {
    /// As written in the manifest; used in logs and the access log.
    pub url: Arc<str>,
    pub scheme: Scheme,
    pub authority: Authority,
    /// Path prefix of the target URL without a trailing slash (often empty).
    pub base_path: String,
    pub weight: u32,
    /// Health and requests in flight, shared with this target in other snapshots.
    pub state: Arc<TargetState>,
    /// Where active health checks go (`None` without active checks).
    pub check_uri: Option<Uri>,
    /// This target's seed in rendezvous hashing (a stable hash of its URL).
    hash_seed: u64,
}

impl Target {
    /// A target at `uri` (an `http://host:port[/base]` URL, checked by the caller).
    /// `None` when it has no scheme or authority.
    pub fn new(url: Arc<str>, uri: &Uri, weight: u32, state: Arc<TargetState>) -> Option<Target> {
        let scheme = uri.scheme()?.clone();
        let authority = uri.authority()?.clone();
        Some(Target {
            hash_seed: stable_hash(url.as_bytes()),
            url,
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_string(),
            weight,
            state,
            check_uri: None,
        })
    }

    /// Sets where active checks of this target go: `path` below its base path.
    pub fn with_check(mut self, path: &PathAndQuery) -> Target {
        let mut pq = String::with_capacity(self.base_path.len() + path.as_str().len());
        pq.push_str(&self.base_path);
        pq.push_str(path.as_str());
        self.check_uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
            .ok();
        self
    }
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

/// What [`Upstream::pick`] found.
#[derive(Debug)]
pub enum Pick {
    /// A target, with an in-flight slot claimed for the caller.
    Target(InFlight),
    /// Every target that could take the request is at `maxConcurrentRequests`.
    Overloaded,
    /// No target left to try.
    Exhausted,
}

/// An in-flight slot claimed on a target by [`Upstream::pick`]. It exists so the slot is
/// given back exactly once, however the attempt or the request ends: dropping it gives
/// the slot back (to the target's shared state, so to the same counter whatever
/// generation is current by then).
#[derive(Debug)]
pub struct InFlight {
    target: usize,
    state: Arc<TargetState>,
}

impl InFlight {
    /// The target's index in its upstream.
    pub fn target(&self) -> usize {
        self.target
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Methods whose requests may be sent twice (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &http::Method) -> bool {
    use http::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::PUT,
        Method::DELETE,
        Method::TRACE,
    ]
    .contains(method)
}

impl Upstream {
    pub fn new(targets: Vec<Target>, config: UpstreamConfig) -> Self {
        let schedule = smooth_weighted_schedule(&targets);
        let equal_weights = targets.windows(2).all(|w| w[0].weight == w[1].weight);
        Upstream {
            targets,
            load_balancing: config.load_balancing,
            hash_on: config.hash_on,
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            retry_attempts: config.retry_attempts,
            budget: RetryBudget::new(
                config.budget_ratio,
                f64::from(config.budget_min_per_second),
                Instant::now(),
            ),
            health: config.health,
            max_concurrent_requests: config.max_concurrent_requests,
            tls: config.tls,
            protocol: config.protocol,
            cursor: AtomicUsize::new(0),
            schedule,
            equal_weights,
        }
    }

    /// The `consistent-hash` key of a request (0 for other load balancing: unused).
    pub fn hash_key(&self, headers: &HeaderMap, client: IpAddr) -> u64 {
        let ip = |ip: IpAddr| match ip.to_canonical() {
            IpAddr::V4(v4) => stable_hash(&v4.octets()),
            IpAddr::V6(v6) => stable_hash(&v6.octets()),
        };
        match &self.hash_on {
            None => 0,
            // (`Consumer` is refused by the compiler; it would hash as the client.)
            Some(RequestKey::ClientIp | RequestKey::Consumer) => ip(client),
            // Requests without the header hash on the client address.
            Some(RequestKey::Header(name)) => match headers.get(name) {
                Some(v) => stable_hash(v.as_bytes()),
                None => ip(client),
            },
        }
    }

    /// Picks a target for the next attempt and claims an in-flight slot on it (given back
    /// when the returned [`InFlight`] is dropped).
    ///
    /// Never a target in `tried`. Only healthy targets while any target is healthy; when
    /// none is (every one unhealthy or ejected), any target: trying one is better than a
    /// certain error ("panic mode"). A target at `maxConcurrentRequests` is skipped.
    /// `key` is the request's [`Upstream::hash_key`] (used by `consistent-hash` only).
    pub fn pick(&self, tried: Tried, key: u64, now: Instant) -> Pick {
        let n = self.targets.len();
        if n == 0 {
            return Pick::Exhausted;
        }
        let start = match self.load_balancing {
            LoadBalancing::ConsistentHash => 0,
            _ => self.cursor.fetch_add(1, Ordering::Relaxed),
        };
        let checks = self.health.is_enabled();
        let mut panic = false;
        let mut skip = tried;
        let mut saw_candidate = false;
        // Each round claims a target, skips one found at its limit, or enters panic mode.
        for _ in 0..n + 2 {
            let usable = |i: usize| {
                !skip.contains(i) && (!checks || panic || self.target_health(i, now).is_healthy())
            };
            match self.choose(start, key, usable) {
                Some(i) => {
                    saw_candidate = true;
                    if let Some(slot) = self.acquire(i) {
                        return Pick::Target(slot);
                    }
                    skip.insert(i);
                }
                None if checks && !panic => {
                    if (0..n).any(|i| self.target_health(i, now).is_healthy()) {
                        break;
                    }
                    panic = true;
                }
                None => break,
            }
        }
        if saw_candidate {
            Pick::Overloaded
        } else {
            Pick::Exhausted
        }
    }

    /// The load balancer's choice among the targets `usable` accepts.
    fn choose(&self, start: usize, key: u64, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.targets.len();
        let from = |first: usize| (0..n).map(move |k| (first + k) % n);
        match self.load_balancing {
            LoadBalancing::RoundRobin => from(start % n).find(|&i| usable(i)),
            LoadBalancing::Weighted => {
                let len = self.schedule.len().max(1);
                let first = self.schedule.get(start % len).map_or(0, |&i| i as usize) % n;
                from(first).find(|&i| usable(i))
            }
            LoadBalancing::LeastRequests => from(start % n)
                .filter(|&i| usable(i))
                .map(|i| (i, self.targets[i].state.in_flight.load(Ordering::Relaxed)))
                .fold(None::<(usize, usize)>, |best, (i, load)| match best {
                    Some((_, b)) if b <= load => best,
                    _ => Some((i, load)),
                })
                .map(|(i, _)| i),
            LoadBalancing::ConsistentHash => {
                let scored = (0..n).filter(|&i| usable(i));
                if self.equal_weights {
                    scored.max_by_key(|&i| (mix64(key ^ self.targets[i].hash_seed), i))
                } else {
                    scored
                        .map(|i| {
                            let t = &self.targets[i];
                            (i, weighted_score(mix64(key ^ t.hash_seed), t.weight))
                        })
                        .fold(None::<(usize, f64)>, |best, (i, s)| match best {
                            Some((_, b)) if b >= s => best,
                            _ => Some((i, s)),
                        })
                        .map(|(i, _)| i)
                }
            }
        }
    }

    fn acquire(&self, i: usize) -> Option<InFlight> {
        let state = &self.targets[i].state;
        let count = &state.in_flight;
        let claimed = match self.max_concurrent_requests {
            None => {
                count.fetch_add(1, Ordering::Relaxed);
                true
            }
            Some(max) => count
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |c| {
                    (c < max).then_some(c + 1)
                })
                .is_ok(),
        };
        claimed.then(|| InFlight {
            target: i,
            state: state.clone(),
        })
    }

    /// Target `i` as `pick` sees it now.
    pub fn target_health(&self, i: usize, now: Instant) -> TargetHealth {
        self.targets
            .get(i)
            .map_or(TargetHealth::Healthy, |t| t.state.health(&self.health, now))
    }

    /// Records how an attempt on target `i` went, for passive health checking: `ok` is an
    /// answer below 500; a connect failure, reset, timeout or 5xx is not. Returns true
    /// when this failure ejected the target.
    pub fn report(&self, i: usize, ok: bool, now: Instant) -> bool {
        let (Some(passive), Some(t)) = (&self.health.passive, self.targets.get(i)) else {
            return false;
        };
        if ok {
            t.state.passive_success();
            false
        } else {
            t.state.passive_failure(passive, now)
        }
    }
}

/// The retry budget: a token bucket. Every request deposits `ratio` tokens, `min_per_second`
/// tokens are added each second, and a retry withdraws one. The bucket holds at most
/// 10 seconds of `min_per_second`, and at least 10 tokens when `ratio` is not 0 (with both
/// 0, nothing: no retries at all). It starts full, so a quiet upstream can retry a short
/// burst of failures at once.
///
/// The request path only bumps a counter ([`RetryBudget::deposit`]); deposits and the
/// refill are settled when a retry asks for a token (rare), under a short lock. Settling
/// late gives the same balance as adding each deposit as it comes, because additions
/// between two withdrawals only ever add up to the cap.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    min_per_second: f64,
    cap: f64,
    requests: AtomicU64,
    state: Mutex<BudgetState>,
}

#[derive(Debug)]
struct BudgetState {
    tokens: f64,
    /// `requests` when last settled.
    settled: u64,
    at: Instant,
}

impl RetryBudget {
    pub fn new(ratio: f64, min_per_second: f64, now: Instant) -> RetryBudget {
        let ratio = if ratio.is_finite() {
            ratio.max(0.0)
        } else {
            0.0
        };
        let min_per_second = if min_per_second.is_finite() {
            min_per_second.max(0.0)
        } else {
            0.0
        };
        let floor = if ratio > 0.0 { 10.0 } else { 0.0 };
        let cap = (10.0 * min_per_second).max(floor);
        RetryBudget {
            ratio,
            min_per_second,
            cap,
            requests: AtomicU64::new(0),
            state: Mutex::new(BudgetState {
                tokens: cap,
                settled: 0,
                at: now,
            }),
        }
    }

    /// Counts a request (worth `ratio` tokens).
    pub fn deposit(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes a token for one retry, if there is one.
    pub fn withdraw(&self, now: Instant) -> bool {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.settle(&mut s, now);
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Gives back a token taken for a retry that could not be made (no target left).
    pub fn refund(&self) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.tokens = (s.tokens + 1.0).min(self.cap);
    }

    /// Tokens available now.
    pub fn tokens(&self, now: Instant) -> f64 {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.settle(&mut s, now);
        s.tokens
    }

    fn settle(&self, s: &mut BudgetState, now: Instant) {
        let requests = self.requests.load(Ordering::Relaxed);
        let new = requests.wrapping_sub(s.settled);
        s.settled = requests;
        let elapsed = now.saturating_duration_since(s.at).as_secs_f64();
        if now > s.at {
            s.at = now;
        }
        s.tokens =
            (s.tokens + new as f64 * self.ratio + elapsed * self.min_per_second).min(self.cap);
    }
}

/// A hash that never changes across builds, platforms or processes, so every Worker sends
/// a key to the same target: FNV-1a, then a 64-bit finaliser for avalanche. (Not a general
/// `Hasher`: keys are short, and the randomly seeded hashers of the standard library, or
/// hashers that do not promise stable output across versions, would not do.)
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// SplitMix64's finaliser: a bijection with good avalanche.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Weighted rendezvous score: `weight / -ln(u)` with `u` uniform in (0, 1) from the hash.
/// The highest score wins; a target wins a share of keys proportional to its weight.
fn weighted_score(h: u64, weight: u32) -> f64 {
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    f64::from(weight.max(1)) / -u.ln()
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
mod tests;
