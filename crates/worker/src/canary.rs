//! Canary revisions on a Worker (issue #21, first slice): a second generation kept live
//! beside the stable one, and the choice, per request, of the one it runs on.
//!
//! The choice is made once, when the request is accepted, right after the one atomic load
//! of the current generation (which carries the canary, if any): the request then runs
//! wholly on the generation chosen, as every request runs wholly on the generation it
//! loaded. With a key (a header, the client's address) the choice is a hash of the key
//! compared with the share, the same on every Worker and for every request with that key;
//! without one it is a fresh random draw.

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName};

use crate::runtime::Runtime;

/// Shares are in parts per million: 5% is 50_000.
pub const PPM: u32 = 1_000_000;

/// What decides which generation a request runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitKey {
    /// A random draw per request.
    Random,
    /// A hash of this request header's value (a request without it gets a random draw).
    Header(HeaderName),
    /// A hash of the client's IP address.
    ClientIp,
}

/// The share of requests the canary gets, and how requests are assigned to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    share_ppm: u32,
    key: SplitKey,
}

impl Split {
    /// `share_ppm` parts per million of requests to the canary (at most [`PPM`]).
    pub fn new(share_ppm: u32, key: SplitKey) -> Split {
        Split {
            share_ppm: share_ppm.min(PPM),
            key,
        }
    }

    pub fn share_ppm(&self) -> u32 {
        self.share_ppm
    }

    pub fn key(&self) -> &SplitKey {
        &self.key
    }

    /// Whether a request with `headers` from `client` runs on the canary.
    pub fn picks_canary(&self, headers: &HeaderMap, client: IpAddr) -> bool {
        let point = match &self.key {
            SplitKey::Header(name) => match headers.get(name) {
                Some(value) => point(value.as_bytes()),
                None => random_point(),
            },
            SplitKey::ClientIp => match client {
                IpAddr::V4(a) => point(&a.octets()),
                IpAddr::V6(a) => point(&a.octets()),
            },
            SplitKey::Random => random_point(),
        };
        point < self.share_ppm
    }
}

/// Where `key` falls in `0..PPM`: FNV-1a (64 bits, fixed offset basis), so every Worker, of
/// every version, puts a key at the same point.
pub fn point(key: &[u8]) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV's low bits mix poorly for short keys: fold the high half in first.
    let folded = h ^ (h >> 32);
    u32::try_from(folded % u64::from(PPM)).unwrap_or(0)
}

fn random_point() -> u32 {
    u32::try_from(switchyard_telemetry::trace_context::random_u64() % u64::from(PPM)).unwrap_or(0)
}

/// A canary generation and the split that sends requests to it. Held by the stable
/// generation it was compiled against (`Runtime::canary`), so one load of the current
/// generation gives both.
pub struct Canary {
    pub runtime: Arc<Runtime>,
    pub split: Split,
}

/// Why a configuration cannot be served as a canary.
#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    /// It does not compile (or is refused as any change would be).
    #[error("the canary's configuration is invalid:\n{0}")]
    Invalid(switchyard_config::ConfigErrors),
    /// It changes what one process serves for every request: its sockets, its process
    /// settings, its gateway settings or its certificates (chosen per connection, before
    /// any request is assigned).
    #[error("a canary cannot change {0}: apply it, or roll it out")]
    NotPerRequest(String),
    /// It is what is served already.
    #[error("the canary's configuration is the one served (revision {0})")]
    Unchanged(u64),
    /// Promote or abort: there is none.
    #[error("no canary is live")]
    NoCanary,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(user: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-user-id", user.parse().unwrap());
        h
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn a_keyed_split_is_the_same_for_a_key_on_every_worker() {
        let a = Split::new(
            200_000,
            SplitKey::Header(HeaderName::from_static("x-user-id")),
        );
        let b = a.clone();
        let mut canary = 0;
        for i in 0..10_000 {
            let h = headers(&format!("user-{i}"));
            let first = a.picks_canary(&h, IP);
            for _ in 0..3 {
                assert_eq!(a.picks_canary(&h, IP), first, "user-{i} moved");
                assert_eq!(b.picks_canary(&h, IP), first, "user-{i} elsewhere");
            }
            canary += usize::from(first);
        }
        // 20% of 10 000 keys; the hash spreads them (binomial sd = 40).
        assert!((1_800..=2_200).contains(&canary), "{canary}");
        // A fixed point: a change of hash would move every user between generations.
        assert_eq!(point(b"user-42"), point(b"user-42"));
        assert_eq!(point(b""), point(b""));
    }

    #[test]
    fn a_random_split_gives_the_share_and_the_ends_are_exact() {
        let s = Split::new(250_000, SplitKey::Random);
        let n = 40_000;
        let canary = (0..n)
            .filter(|_| s.picks_canary(&HeaderMap::new(), IP))
            .count();
        // sd = sqrt(40000 * .25 * .75) ≈ 87.
        assert!((9_500..=10_500).contains(&canary), "{canary}");
        let none = Split::new(0, SplitKey::Random);
        let all = Split::new(PPM + 5, SplitKey::ClientIp);
        assert_eq!(all.share_ppm(), PPM);
        for i in 0..1_000u32 {
            let ip = IpAddr::V4(i.into());
            assert!(!none.picks_canary(&HeaderMap::new(), ip));
            assert!(all.picks_canary(&HeaderMap::new(), ip));
        }
    }

    #[test]
    fn by_client_ip_every_request_of_a_client_goes_one_way() {
        let s = Split::new(500_000, SplitKey::ClientIp);
        let mut canary = 0;
        for i in 0..2_000u32 {
            let ip = IpAddr::V4((0x0a00_0000 + i).into());
            let first = s.picks_canary(&HeaderMap::new(), ip);
            assert!((0..5).all(|_| s.picks_canary(&HeaderMap::new(), ip) == first));
            canary += usize::from(first);
        }
        assert!((850..=1_150).contains(&canary), "{canary}");
    }
}
