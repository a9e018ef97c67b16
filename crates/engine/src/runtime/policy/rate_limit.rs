//! `rate-limit`: a token bucket per key (consumer, client IP or a header's value): `limit`
//! requests, refilled evenly over `per`. 429 with `Retry-After` when empty; `RateLimit-Limit`,
//! `RateLimit-Remaining` and `RateLimit-Reset` on every answer.
//!
//! The buckets do not belong to a snapshot. They live in a [`Limiter`] found by the policy's
//! identity — proxy, `id` (or position among the proxy's rate limits) and key — in a
//! [`Limiters`] registry the Worker keeps across compiles. An edit elsewhere in the config
//! therefore hands nobody a fresh bucket, and a changed `limit` or `per` applies to the
//! existing buckets at their next request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue, StatusCode};

use super::{CompileCtx, Exchange, FieldError, Reply, RequestView, Verdict};
use switchyard_config::manifest::{BadRequestKey, RateLimitSpec, RequestKey};

const SHARDS: usize = 16;
/// A shard sweeps out full (idle) buckets every this many new keys.
const SWEEP_EVERY: u32 = 1024;

/// Which counters a policy uses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LimiterId {
    pub proxy: String,
    pub id: String,
    pub key: String,
}

/// Limiters by identity, shared by every compile of one Worker. Holds them weakly: a
/// limiter lives as long as some snapshot's policy uses it.
#[derive(Debug, Clone, Default)]
pub struct Limiters {
    inner: Arc<Mutex<HashMap<LimiterId, Weak<Limiter>>>>,
}

impl Limiters {
    /// The limiter of `id`, the existing one if any snapshot still uses it.
    pub fn get(&self, id: LimiterId) -> Arc<Limiter> {
        let mut map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(l) = map.get(&id).and_then(Weak::upgrade) {
            return l;
        }
        // Dead entries are swept when the map reaches a power of two (amortised O(1) per
        // insert; a full sweep on every insert made building n entries O(n²)).
        if map.len() >= 64 && map.len().is_power_of_two() {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let l = Arc::new(Limiter::default());
        map.insert(id, Arc::downgrade(&l));
        l
    }

    /// Limiters alive.
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

/// The buckets of one rate-limit identity.
#[derive(Debug, Default)]
pub struct Limiter {
    shards: [Mutex<Shard>; SHARDS],
}

#[derive(Debug, Default)]
struct Shard {
    buckets: HashMap<Box<str>, Bucket, foldhash::fast::RandomState>,
    inserts: u32,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The outcome of taking one token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Taken {
    pub allowed: bool,
    pub remaining: u64,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
    /// Seconds until one token is available (when not allowed).
    pub retry_after_secs: u64,
}

impl Limiter {
    /// Takes a token for `key` from a bucket of `limit` tokens refilled over `per`.
    pub fn take(&self, key: &str, limit: u64, per: Duration, now: Instant) -> Taken {
        let cap = limit as f64;
        let rate = cap / per.as_secs_f64().max(1e-3);
        let shard = &self.shards[shard_of(key)];
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = match shard.buckets.get_mut(key) {
            Some(b) => b,
            None => {
                shard.inserts += 1;
                if shard.inserts.is_multiple_of(SWEEP_EVERY) {
                    // Buckets that have refilled completely carry no information.
                    shard.buckets.retain(|_, b| {
                        b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < cap
                    });
                }
                shard.buckets.entry(key.into()).or_insert(Bucket {
                    tokens: cap,
                    at: now,
                })
            }
        };
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        let mut tokens = (bucket.tokens + elapsed * rate).min(cap);
        let allowed = tokens >= 1.0;
        if allowed {
            tokens -= 1.0;
        }
        bucket.tokens = tokens;
        bucket.at = now;
        let secs = |t: f64| if t <= 0.0 { 0 } else { t.ceil() as u64 };
        Taken {
            allowed,
            remaining: tokens.max(0.0).floor() as u64,
            reset_secs: secs((cap - tokens) / rate),
            retry_after_secs: if allowed {
                0
            } else {
                secs((1.0 - tokens) / rate).max(1)
            },
        }
    }

    /// Keys with a bucket.
    pub fn keys(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .buckets
                    .len()
            })
            .sum()
    }
}

fn shard_of(key: &str) -> usize {
    let mut h: u32 = 2_166_136_261;
    for b in key.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(16_777_619);
    }
    h as usize % SHARDS
}

/// A compiled `rate-limit`: its key, its limits, and the limiter (shared across snapshots)
/// holding its buckets.
#[derive(Debug)]
pub struct RateLimitPolicy {
    pub limiter: Arc<Limiter>,
    pub key: RequestKey,
    pub limit: u64,
    pub per: Duration,
    limit_value: HeaderValue,
}

/// The longest period accepted (a day).
const MAX_PER: Duration = Duration::from_secs(86_400);

pub fn compile(
    spec: &RateLimitSpec,
    ctx: &CompileCtx<'_>,
) -> Result<RateLimitPolicy, Vec<FieldError>> {
    let mut errors = Vec::new();
    let key = match spec.key.key() {
        Ok(RequestKey::Consumer) if !ctx.authenticated => {
            errors.push(FieldError::new(
                "key",
                "`key: consumer` needs an authentication policy (api-key, basic-auth or jwt) earlier in the pipeline",
            ));
            Some(RequestKey::Consumer)
        }
        Ok(key) => Some(key.clone()),
        Err(BadRequestKey::HeaderName(name)) => {
            errors.push(FieldError::new(
                "key",
                format!("invalid header name {name:?}"),
            ));
            None
        }
        Err(BadRequestKey::Unknown) => {
            errors.push(FieldError::new(
                "key",
                format!(
                    "invalid key {:?}: use consumer, client-ip or header:<name>",
                    spec.key.as_str()
                ),
            ));
            None
        }
    };
    if spec.limit == 0 {
        errors.push(FieldError::new("limit", "must be at least 1"));
    }
    let per = spec.per.as_duration();
    if per.is_zero() || per > MAX_PER {
        errors.push(FieldError::new("per", "must be between 1ms and 24h"));
    }
    let Some(key) = key else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let id = spec
        .id
        .clone()
        .unwrap_or_else(|| format!("#{}", ctx.rate_limit_ordinal));
    Ok(RateLimitPolicy {
        limiter: ctx.limiters.get(LimiterId {
            proxy: ctx.proxy.to_string(),
            id,
            key: spec.key.as_str().to_string(),
        }),
        key,
        limit: spec.limit,
        per,
        limit_value: HeaderValue::from(spec.limit),
    })
}

/// An IP address as text, on the stack: the bucket key, without an allocation per request
/// (the longest IPv6 text form is 45 bytes).
struct IpText {
    buf: [u8; 48],
    len: usize,
}

impl IpText {
    fn new(ip: std::net::IpAddr) -> IpText {
        use std::io::Write;
        let mut buf = [0u8; 48];
        let mut cursor = std::io::Cursor::new(&mut buf[..]);
        let _ = write!(cursor, "{ip}");
        let len = usize::try_from(cursor.position()).unwrap_or(0);
        IpText { buf, len }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

impl RateLimitPolicy {
    pub fn on_request(
        &self,
        req: &mut RequestView<'_>,
        ex: &mut Exchange,
        now: Instant,
    ) -> Verdict {
        let ip;
        let key: &str = match &self.key {
            RequestKey::Consumer => ex.consumer.as_deref().unwrap_or(""),
            RequestKey::Header(h) => match req.headers.get(h).and_then(|v| v.to_str().ok()) {
                Some(v) => v,
                None => {
                    ip = IpText::new(ex.client_ip(req.peer));
                    ip.as_str()
                }
            },
            RequestKey::ClientIp => {
                ip = IpText::new(ex.client_ip(req.peer));
                ip.as_str()
            }
        };
        let t = self.limiter.take(key, self.limit, self.per, now);
        let headers = [
            (RATELIMIT_LIMIT.clone(), self.limit_value.clone()),
            (RATELIMIT_REMAINING.clone(), HeaderValue::from(t.remaining)),
            (RATELIMIT_RESET.clone(), HeaderValue::from(t.reset_secs)),
        ];
        if t.allowed {
            ex.response_headers.extend(headers);
            return Verdict::Continue;
        }
        let mut reply = Reply::deny(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            RateLimitSpec::TYPE,
            format!(
                "rate limit of {} requests per {:?} exceeded; retry in {} s",
                self.limit, self.per, t.retry_after_secs
            ),
        )
        .with_header(
            http::header::RETRY_AFTER,
            HeaderValue::from(t.retry_after_secs),
        );
        reply.headers.extend(headers);
        Verdict::Reply(reply)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ip_keys_are_the_addresses_text() {
        for ip in [
            "203.0.113.7",
            "2001:db8::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(IpText::new(ip).as_str(), ip.to_string());
        }
    }

    #[test]
    fn a_bucket_empties_refills_and_reports() {
        let l = Limiter::default();
        let t0 = Instant::now();
        let per = Duration::from_secs(10);
        for i in 0..5 {
            let t = l.take("acme", 5, per, t0);
            assert!(t.allowed);
            assert_eq!(t.remaining, 4 - i);
        }
        let t = l.take("acme", 5, per, t0);
        assert!(!t.allowed);
        assert_eq!(t.retry_after_secs, 2);
        // Other keys have their own bucket.
        assert!(l.take("globex", 5, per, t0).allowed);
        // One token per 2 s.
        assert!(l.take("acme", 5, per, t0 + Duration::from_secs(2)).allowed);
        assert!(!l.take("acme", 5, per, t0 + Duration::from_secs(2)).allowed);
    }

    #[test]
    fn a_changed_limit_applies_to_existing_buckets() {
        let l = Limiter::default();
        let t0 = Instant::now();
        let per = Duration::from_secs(60);
        for _ in 0..10 {
            assert!(l.take("k", 10, per, t0).allowed);
        }
        assert!(!l.take("k", 10, per, t0).allowed);
        // Raised: the spent tokens stay spent, the refill is faster.
        assert!(!l.take("k", 20, per, t0).allowed);
        assert!(l.take("k", 20, per, t0 + Duration::from_secs(3)).allowed);
        // Lowered below what is left: clamped to the new size.
        let t = l.take("fresh", 3, per, t0);
        assert_eq!(t.remaining, 2);
    }

    #[test]
    fn the_registry_hands_back_the_same_limiter_while_it_is_used() {
        let r = Limiters::default();
        let id = |key: &str| LimiterId {
            proxy: "chat".into(),
            id: "#0".into(),
            key: key.into(),
        };
        let a = r.get(id("consumer"));
        let b = r.get(id("consumer"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &r.get(id("client-ip"))));
        drop((a, b));
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn idle_full_buckets_are_swept() {
        let l = Limiter::default();
        let t0 = Instant::now();
        let per = Duration::from_secs(1);
        for i in 0..(SWEEP_EVERY as usize * SHARDS * 2) {
            l.take(&format!("k{i}"), 10, per, t0);
        }
        let before = l.keys();
        for i in 0..(SWEEP_EVERY as usize * SHARDS * 2) {
            l.take(&format!("n{i}"), 10, per, t0 + Duration::from_secs(5));
        }
        assert!(l.keys() < before * 2, "{} vs {before}", l.keys());
    }
}
