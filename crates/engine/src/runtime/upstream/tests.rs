use super::*;
use crate::runtime::health::{ActiveCheck, PassiveCheck};
use http::HeaderName;

fn target(i: usize, weight: u32) -> Target {
    let url = format!("http://10.0.0.{i}:8080");
    let uri: Uri = url.parse().unwrap();
    Target::new(
        url.as_str().into(),
        &uri,
        weight,
        Arc::new(TargetState::new(Instant::now())),
    )
    .unwrap()
}

fn upstream_with(weights: &[u32], config: UpstreamConfig) -> Upstream {
    Upstream::new(
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| target(i + 1, *w))
            .collect(),
        config,
    )
}

fn upstream(lb: LoadBalancing, weights: &[u32]) -> Upstream {
    upstream_with(
        weights,
        UpstreamConfig {
            load_balancing: lb,
            hash_on: (lb == LoadBalancing::ConsistentHash).then_some(RequestKey::ClientIp),
            ..UpstreamConfig::default()
        },
    )
}

/// A [`Pick`] by target index, as the tests compare them (the slot stays with the `Pick`).
#[derive(Debug, PartialEq, Eq)]
enum Picked {
    Target(usize),
    Overloaded,
    Exhausted,
}

fn index(p: &Pick) -> Picked {
    match p {
        Pick::Target(slot) => Picked::Target(slot.target()),
        Pick::Overloaded => Picked::Overloaded,
        Pick::Exhausted => Picked::Exhausted,
    }
}

/// Picks and gives the slot back at once (a request that finished).
fn pick_one(u: &Upstream, key: u64) -> Picked {
    index(&u.pick(Tried::default(), key, Instant::now()))
}

fn picked(u: &Upstream, key: u64) -> usize {
    match pick_one(u, key) {
        Picked::Target(i) => i,
        other => panic!("expected a target, got {other:?}"),
    }
}

fn key(i: u32) -> u64 {
    stable_hash(format!("user-{i}").as_bytes())
}

#[test]
fn round_robin_cycles() {
    let u = upstream(LoadBalancing::RoundRobin, &[1, 1, 1]);
    let picks: Vec<_> = (0..6).map(|_| picked(&u, 0)).collect();
    assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
}

#[test]
fn weighted_is_smooth_and_proportional() {
    let u = upstream(LoadBalancing::Weighted, &[5, 1, 1]);
    let picks: Vec<_> = (0..7).map(|_| picked(&u, 0)).collect();
    assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 5);
    assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
}

#[test]
fn least_requests_prefers_idle_target() {
    let u = upstream(LoadBalancing::LeastRequests, &[1, 1]);
    u.targets[0].state.in_flight.store(3, Ordering::Relaxed);
    assert_eq!(pick_one(&u, 0), Picked::Target(1));
}

#[test]
fn retries_avoid_tried_targets() {
    let u = upstream(LoadBalancing::RoundRobin, &[1, 1]);
    let now = Instant::now();
    let mut tried = Tried::default();
    let Pick::Target(first) = u.pick(tried, 0, now) else {
        panic!()
    };
    tried.insert(first.target());
    let Pick::Target(second) = u.pick(tried, 0, now) else {
        panic!()
    };
    assert_ne!(first.target(), second.target());
    tried.insert(second.target());
    assert_eq!(index(&u.pick(tried, 0, now)), Picked::Exhausted);
}

#[test]
fn pick_claims_an_in_flight_slot_and_release_returns_it() {
    let u = upstream(LoadBalancing::RoundRobin, &[1]);
    let slot = u.pick(Tried::default(), 0, Instant::now());
    assert_eq!(index(&slot), Picked::Target(0));
    assert_eq!(u.targets[0].state.in_flight.load(Ordering::Relaxed), 1);
    drop(slot);
    assert_eq!(u.targets[0].state.in_flight.load(Ordering::Relaxed), 0);
}

// ---- consistent hash ----

#[test]
fn consistent_hash_is_stable_and_deterministic() {
    let a = upstream(LoadBalancing::ConsistentHash, &[1, 1, 1, 1, 1]);
    let b = upstream(LoadBalancing::ConsistentHash, &[1, 1, 1, 1, 1]);
    for i in 0..1000 {
        let k = key(i);
        let first = picked(&a, k);
        // Same key, same target: every time, and in another instance (another Worker).
        assert_eq!(picked(&a, k), first);
        assert_eq!(picked(&b, k), first);
    }
}

#[test]
fn removing_one_of_five_targets_moves_only_its_keys() {
    const KEYS: u32 = 10_000;
    let five = upstream(LoadBalancing::ConsistentHash, &[1, 1, 1, 1, 1]);
    // The same targets without the third one (10.0.0.3).
    let four = Upstream::new(
        [1, 2, 4, 5].iter().map(|&i| target(i, 1)).collect(),
        UpstreamConfig {
            load_balancing: LoadBalancing::ConsistentHash,
            hash_on: Some(RequestKey::ClientIp),
            ..UpstreamConfig::default()
        },
    );
    let mut per_target = [0u32; 5];
    let mut moved = 0;
    for i in 0..KEYS {
        let k = key(i);
        let before = &five.targets[picked(&five, k)].url;
        let after = &four.targets[picked(&four, k)].url;
        per_target[picked(&five, k)] += 1;
        if before != after {
            moved += 1;
            assert_eq!(
                &**before, "http://10.0.0.3:8080",
                "key {i} moved off a kept target"
            );
        }
    }
    // Exactly the removed target's keys moved, and that is about a fifth of them.
    assert_eq!(moved, per_target[2]);
    for (i, n) in per_target.iter().enumerate() {
        assert!(
            (1700..=2300).contains(n),
            "target {i} got {n} of {KEYS} keys"
        );
    }
}

#[test]
fn consistent_hash_follows_weights() {
    const KEYS: u32 = 20_000;
    let u = upstream(LoadBalancing::ConsistentHash, &[1, 1, 2]);
    let mut per_target = [0u32; 3];
    for i in 0..KEYS {
        per_target[picked(&u, key(i))] += 1;
    }
    let share = |n: u32| f64::from(n) / f64::from(KEYS);
    assert!((share(per_target[0]) - 0.25).abs() < 0.02, "{per_target:?}");
    assert!((share(per_target[1]) - 0.25).abs() < 0.02, "{per_target:?}");
    assert!((share(per_target[2]) - 0.50).abs() < 0.02, "{per_target:?}");

    // Changing one target's weight only moves keys to or from that target.
    let heavier = upstream(LoadBalancing::ConsistentHash, &[1, 1, 4]);
    for i in 0..KEYS {
        let (before, after) = (picked(&u, key(i)), picked(&heavier, key(i)));
        assert!(
            before == after || after == 2,
            "key {i}: {before} -> {after}"
        );
    }
}

#[test]
fn consistent_hash_moves_a_key_only_while_its_target_is_unavailable() {
    let u = upstream_with(
        &[1, 1, 1],
        UpstreamConfig {
            load_balancing: LoadBalancing::ConsistentHash,
            hash_on: Some(RequestKey::ClientIp),
            health: HealthConfig {
                active: None,
                passive: Some(PassiveCheck {
                    consecutive_failures: 1,
                    cool_off: Duration::from_secs(30),
                }),
            },
            ..UpstreamConfig::default()
        },
    );
    let k = key(7);
    let home = picked(&u, k);
    let now = Instant::now();
    assert!(u.report(home, false, now));
    let elsewhere = picked(&u, k);
    assert_ne!(elsewhere, home);
    // Another key whose home is elsewhere is not disturbed.
    let other = (0..1000)
        .map(key)
        .find(|&k2| picked(&u, k2) != home && picked(&u, k2) != elsewhere)
        .unwrap();
    let other_home = picked(&u, other);
    // Back once the cool-off is over.
    let slot = u.pick(Tried::default(), k, now + Duration::from_secs(31));
    assert_eq!(index(&slot), Picked::Target(home));
    drop(slot);
    assert_eq!(picked(&u, other), other_home);
}

#[test]
fn hash_key_uses_the_header_or_falls_back_to_the_client_address() {
    let u = upstream_with(
        &[1, 1],
        UpstreamConfig {
            load_balancing: LoadBalancing::ConsistentHash,
            hash_on: Some(RequestKey::Header(HeaderName::from_static("x-user"))),
            ..UpstreamConfig::default()
        },
    );
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
    let mut headers = HeaderMap::new();
    assert_eq!(u.hash_key(&headers, ip), u.hash_key(&headers, mapped));
    headers.insert("x-user", "alice".parse().unwrap());
    assert_eq!(u.hash_key(&headers, ip), stable_hash(b"alice"));
    assert_ne!(u.hash_key(&headers, ip), u.hash_key(&HeaderMap::new(), ip));
    // Other load balancing: no key is computed.
    let rr = upstream(LoadBalancing::RoundRobin, &[1]);
    assert_eq!(rr.hash_key(&headers, ip), 0);
}

#[test]
fn the_stable_hash_does_not_change() {
    // Pinned: every Worker, on every build, must agree.
    assert_eq!(stable_hash(b""), mix64(0xcbf2_9ce4_8422_2325));
    assert_eq!(stable_hash(b"alice"), 0xc5d1_556d_6677_4a5c);
    assert_ne!(stable_hash(b"alice"), stable_hash(b"bob"));
    assert_eq!(mix64(1), 0x5692_161d_100b_05e5);
}

// ---- health ----

fn active_check() -> ActiveCheck {
    ActiveCheck {
        path: PathAndQuery::from_static("/healthz"),
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(1),
        healthy_threshold: 1,
        unhealthy_threshold: 1,
    }
}

fn checked(lb: LoadBalancing, n: usize) -> Upstream {
    upstream_with(
        &vec![1; n],
        UpstreamConfig {
            load_balancing: lb,
            hash_on: (lb == LoadBalancing::ConsistentHash).then_some(RequestKey::ClientIp),
            health: HealthConfig {
                active: Some(active_check()),
                passive: Some(PassiveCheck {
                    consecutive_failures: 2,
                    cool_off: Duration::from_secs(30),
                }),
            },
            ..UpstreamConfig::default()
        },
    )
}

fn mark_down(u: &Upstream, i: usize) {
    u.targets[i].state.active_result(&active_check(), false);
}

#[test]
fn pick_skips_unhealthy_and_ejected_targets() {
    for lb in [
        LoadBalancing::RoundRobin,
        LoadBalancing::Weighted,
        LoadBalancing::LeastRequests,
        LoadBalancing::ConsistentHash,
    ] {
        let u = checked(lb, 3);
        mark_down(&u, 0);
        let now = Instant::now();
        // Passive: two failures in a row eject target 1.
        assert!(!u.report(1, false, now));
        assert!(u.report(1, false, now));
        assert_eq!(u.target_health(0, now), TargetHealth::Unhealthy);
        assert!(matches!(u.target_health(1, now), TargetHealth::Ejected(_)));
        for i in 0..50 {
            assert_eq!(pick_one(&u, key(i)), Picked::Target(2), "{lb:?}");
        }
    }
}

#[test]
fn a_success_resets_the_passive_count() {
    let u = checked(LoadBalancing::RoundRobin, 2);
    let now = Instant::now();
    assert!(!u.report(0, false, now));
    assert!(!u.report(0, true, now));
    assert!(!u.report(0, false, now));
    assert_eq!(u.target_health(0, now), TargetHealth::Healthy);
}

#[test]
fn with_no_healthy_target_pick_uses_them_all() {
    let u = checked(LoadBalancing::RoundRobin, 3);
    for i in 0..3 {
        mark_down(&u, i);
    }
    let mut seen = [false; 3];
    for _ in 0..3 {
        seen[picked(&u, 0)] = true;
    }
    assert_eq!(seen, [true; 3], "panic mode spreads over every target");
    // Retries still avoid tried targets in panic mode.
    let now = Instant::now();
    let mut tried = Tried::default();
    for _ in 0..3 {
        let Pick::Target(slot) = u.pick(tried, 0, now) else {
            panic!()
        };
        tried.insert(slot.target());
    }
    assert_eq!(index(&u.pick(tried, 0, now)), Picked::Exhausted);
}

#[test]
fn retries_do_not_go_to_unhealthy_targets_while_a_healthy_one_exists() {
    let u = checked(LoadBalancing::RoundRobin, 2);
    mark_down(&u, 1);
    let now = Instant::now();
    let mut tried = Tried::default();
    assert_eq!(index(&u.pick(tried, 0, now)), Picked::Target(0));
    tried.insert(0);
    assert_eq!(index(&u.pick(tried, 0, now)), Picked::Exhausted);
}

// ---- concurrency limit ----

fn limited(lb: LoadBalancing, n: usize, max: usize) -> Upstream {
    upstream_with(
        &vec![1; n],
        UpstreamConfig {
            load_balancing: lb,
            hash_on: (lb == LoadBalancing::ConsistentHash).then_some(RequestKey::ClientIp),
            max_concurrent_requests: Some(max),
            ..UpstreamConfig::default()
        },
    )
}

#[test]
fn a_target_at_its_limit_is_skipped_and_all_at_the_limit_is_overloaded() {
    for lb in [
        LoadBalancing::RoundRobin,
        LoadBalancing::Weighted,
        LoadBalancing::LeastRequests,
        LoadBalancing::ConsistentHash,
    ] {
        let u = limited(lb, 2, 2);
        let now = Instant::now();
        let mut held = Vec::new();
        for _ in 0..4 {
            match u.pick(Tried::default(), key(1), now) {
                Pick::Target(slot) => held.push(slot),
                other => panic!("{lb:?}: {other:?}"),
            }
        }
        held.sort_unstable_by_key(InFlight::target);
        let targets: Vec<usize> = held.iter().map(InFlight::target).collect();
        assert_eq!(targets, [0, 0, 1, 1], "{lb:?}");
        assert_eq!(
            index(&u.pick(Tried::default(), key(1), now)),
            Picked::Overloaded
        );
        drop(held.pop());
        assert_eq!(
            index(&u.pick(Tried::default(), key(1), now)),
            Picked::Target(1),
            "{lb:?}"
        );
    }
}

#[test]
fn overloaded_only_counts_targets_that_could_take_the_request() {
    // Target 0 is healthy and full, target 1 unhealthy: not panic mode, so overloaded.
    let u = upstream_with(
        &[1, 1],
        UpstreamConfig {
            health: HealthConfig {
                active: Some(active_check()),
                passive: None,
            },
            max_concurrent_requests: Some(1),
            ..UpstreamConfig::default()
        },
    );
    mark_down(&u, 1);
    let now = Instant::now();
    let held = u.pick(Tried::default(), 0, now);
    assert_eq!(index(&held), Picked::Target(0));
    assert_eq!(index(&u.pick(Tried::default(), 0, now)), Picked::Overloaded);
    // A retry with target 0 already tried finds nothing: exhausted, not overloaded.
    let mut tried = Tried::default();
    tried.insert(0);
    assert_eq!(index(&u.pick(tried, 0, now)), Picked::Exhausted);
}

#[test]
fn the_limit_holds_under_concurrent_picks() {
    let u = Arc::new(limited(LoadBalancing::RoundRobin, 1, 8));
    // Every claimed slot is held until the end.
    let claimed: Vec<Pick> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let u = u.clone();
                s.spawn(move || {
                    (0..100)
                        .map(|_| u.pick(Tried::default(), 0, Instant::now()))
                        .filter(|p| index(p) == Picked::Target(0))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(claimed.len(), 8);
    assert_eq!(u.targets[0].state.in_flight.load(Ordering::Relaxed), 8);
    drop(claimed);
    assert_eq!(u.targets[0].state.in_flight.load(Ordering::Relaxed), 0);
}

// ---- retry budget ----

/// Takes every token there is now; returns how many.
fn drain(b: &RetryBudget, now: Instant) -> usize {
    std::iter::from_fn(|| b.withdraw(now).then_some(())).count()
}

#[test]
fn the_budget_starts_full() {
    let t0 = Instant::now();
    // Cap: 10 seconds of minPerSecond...
    assert_eq!(drain(&RetryBudget::new(0.2, 3.0, t0), t0), 30);
    // ... and at least 10 when requests earn retries.
    assert_eq!(drain(&RetryBudget::new(0.2, 0.0, t0), t0), 10);
    assert_eq!(drain(&RetryBudget::new(0.0, 0.5, t0), t0), 5);
}

#[test]
fn requests_deposit_the_ratio_and_time_refills() {
    let t0 = Instant::now();
    let b = RetryBudget::new(0.2, 0.0, t0);
    drain(&b, t0);
    assert!(!b.withdraw(t0));
    for _ in 0..10 {
        b.deposit();
    }
    // 10 requests × 0.2 = 2 retries.
    assert!((b.tokens(t0) - 2.0).abs() < 1e-9);
    assert!(b.withdraw(t0));
    assert!(b.withdraw(t0));
    assert!(!b.withdraw(t0));
    // No time-based refill with minPerSecond 0.
    assert!(!b.withdraw(t0 + Duration::from_secs(60)));

    let b = RetryBudget::new(0.0, 4.0, t0);
    assert_eq!(drain(&b, t0), 40);
    // A quarter of a second later: one more.
    let later = t0 + Duration::from_millis(250);
    assert!(b.withdraw(later));
    assert!(!b.withdraw(later));
    // Deposits and refill add up.
    let b = RetryBudget::new(0.5, 2.0, t0);
    drain(&b, t0);
    b.deposit();
    b.deposit();
    let later = t0 + Duration::from_millis(1500);
    assert!((b.tokens(later) - 4.0).abs() < 1e-9);
}

#[test]
fn a_refund_gives_a_token_back_within_the_cap() {
    let t0 = Instant::now();
    let b = RetryBudget::new(0.2, 0.0, t0);
    b.refund();
    assert!((b.tokens(t0) - 10.0).abs() < 1e-9);
    assert!(b.withdraw(t0));
    b.refund();
    assert_eq!(drain(&b, t0), 10);
}

#[test]
fn the_budget_is_capped() {
    let t0 = Instant::now();
    let b = RetryBudget::new(0.5, 3.0, t0);
    drain(&b, t0);
    for _ in 0..1000 {
        b.deposit();
    }
    // However much was deposited or how long it was quiet: 30.
    assert!((b.tokens(t0 + Duration::from_secs(3600)) - 30.0).abs() < 1e-9);
    let b = RetryBudget::new(0.2, 0.0, t0);
    drain(&b, t0);
    for _ in 0..1000 {
        b.deposit();
    }
    assert!((b.tokens(t0) - 10.0).abs() < 1e-9);
}

#[test]
fn a_zero_budget_never_retries() {
    let t0 = Instant::now();
    let b = RetryBudget::new(0.0, 0.0, t0);
    for _ in 0..100 {
        b.deposit();
    }
    assert!(!b.withdraw(t0 + Duration::from_secs(60)));
}

#[test]
fn idempotent_methods() {
    use http::Method;
    for m in [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::PUT,
        Method::DELETE,
        Method::TRACE,
    ] {
        assert!(is_idempotent(&m), "{m}");
    }
    for m in [Method::POST, Method::PATCH, Method::CONNECT] {
        assert!(!is_idempotent(&m), "{m}");
    }
}

#[test]
fn the_check_uri_is_below_the_base_path() {
    let uri: Uri = "http://10.0.0.1:8080/api/".parse().unwrap();
    let t = Target::new(
        "http://10.0.0.1:8080/api/".into(),
        &uri,
        1,
        Arc::new(TargetState::new(Instant::now())),
    )
    .unwrap()
    .with_check(&PathAndQuery::from_static("/healthz?deep=1"));
    assert_eq!(
        t.check_uri.unwrap().to_string(),
        "http://10.0.0.1:8080/api/healthz?deep=1"
    );
}
