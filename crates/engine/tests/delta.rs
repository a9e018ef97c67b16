//! The delta compile (`compile_changes`) against full compiles of the same set: over random
//! sequences of adds, updates and removals (route conflicts, duplicates, invalid entities
//! included), both accept or reject alike, report the same errors, and route every request
//! to the same proxy and route.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{rendered, single};
use http::Method;
use switchyard_config::Kind;
use switchyard_config::{ConfigErrors, Located, Manifest, parse_str};
use switchyard_engine::{ChangeKind, Compiled, Numbering, Snapshot, compile, compile_changes};

type Key = (String, String);

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const PROXY_NAMES: [&str; 8] = ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "shared"];
const CREDENTIAL_NAMES: [&str; 3] = ["c0", "c1", "shared"];

fn random_route(rng: &mut Rng) -> String {
    let path = rng.pick(&["/a", "/b", "/c", "/a/x"]);
    let kind = rng.pick(&["path", "pathPrefix"]);
    let hosts = rng.pick(&[
        "",
        ", hosts: [h1.com]",
        ", hosts: [\"*.h.com\"]",
        ", hosts: [h1.com, h2.com]",
    ]);
    let methods = rng.pick(&[
        "",
        "",
        ", methods: [GET]",
        ", methods: [GET, POST]",
        ", methods: [post]",
    ]);
    format!("{{{kind}: {path}{hosts}{methods}}}")
}

fn random_proxy(rng: &mut Rng, name: &str) -> String {
    let routes: Vec<String> = (0..1 + rng.below(2))
        .map(|_| format!("    - {}\n", random_route(rng)))
        .collect();
    let weight = if rng.chance(4) { 0 } else { 1 };
    let port = 9000 + rng.below(3);
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata:\n  name: {name}\nspec:\n  routes:\n{}  upstream:\n    targets:\n      - url: http://127.0.0.1:{port}\n        weight: {weight}\n",
        routes.concat()
    )
}

fn random_credential(rng: &mut Rng, name: &str) -> String {
    let value = if rng.chance(5) {
        "\"\"".to_string()
    } else {
        format!("secret-{}", rng.below(3))
    };
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Credential\nmetadata:\n  name: {name}\nspec:\n  type: secret\n  value: {value}\n"
    )
}

fn located(kind: &str, name: &str, text: &str) -> Located<Manifest> {
    parse_str(Arc::from(format!("{kind}-{name}.yaml")), text)
        .unwrap()
        .pop()
        .unwrap()
}

/// Every probe request and what serves it: `proxy#route` (or `-`).
fn routing(s: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for host in [
        None,
        Some("h1.com"),
        Some("H2.com:8080"),
        Some("a.h.com"),
        Some("b.a.h.com"),
        Some("other.com"),
    ] {
        for path in [
            "/", "/a", "/a/x", "/a/x/y", "/a/y", "/b", "/b/1", "/c", "/cc",
        ] {
            for method in [Method::GET, Method::POST, Method::DELETE] {
                out.push(match s.route(host, path, &method) {
                    Some((_, p, r)) => format!("{}@{}", r.id, p.digest),
                    None => "-".into(),
                });
            }
        }
    }
    out
}

/// Every proxy and credential, as `kind name digest`.
fn content(s: &Snapshot) -> Vec<String> {
    let proxies = s
        .proxies()
        .map(|p| format!("Proxy {} {}", p.name, p.digest));
    let credentials = s
        .credentials()
        .map(|c| format!("Credential {} {}", c.name, c.digest));
    proxies.chain(credentials).collect()
}

/// One random step: upserts (sometimes two of one name, sometimes a new entity of a name
/// used by the other kind) and removals, against the current entities.
fn random_batch(rng: &mut Rng, current: &BTreeMap<Key, String>) -> (Vec<(Key, String)>, Vec<Key>) {
    let mut upserts = Vec::new();
    let mut removed = Vec::new();
    for _ in 0..1 + rng.below(3) {
        match rng.below(10) {
            0..=4 => {
                let name = *rng.pick(&PROXY_NAMES);
                upserts.push((
                    ("Proxy".to_string(), name.to_string()),
                    random_proxy(rng, name),
                ));
            }
            5 | 6 => {
                let name = *rng.pick(&CREDENTIAL_NAMES);
                upserts.push((
                    ("Credential".to_string(), name.to_string()),
                    random_credential(rng, name),
                ));
            }
            7 | 8 if !current.is_empty() => {
                let keys: Vec<&Key> = current.keys().collect();
                removed.push((*rng.pick(&keys)).clone());
            }
            _ => removed.push(("Proxy".to_string(), rng.pick(&PROXY_NAMES).to_string())),
        }
    }
    if rng.chance(5)
        && let Some(first) = upserts.first().cloned()
    {
        upserts.push(first);
    }
    (upserts, removed)
}

/// The full set after a batch, with the unchanged entities first (by kind and name) and the
/// upserts after them, in order: the order whose full compile the delta must match.
fn full_set(
    current: &BTreeMap<Key, String>,
    upserts: &[(Key, String)],
    removed: &[Key],
) -> Vec<Located<Manifest>> {
    let touched = |k: &Key| removed.contains(k) || upserts.iter().any(|(u, _)| u == k);
    current
        .iter()
        .filter(|(k, _)| !touched(k))
        .chain(upserts.iter().map(|(k, t)| (k, t)))
        .map(|((kind, name), text)| located(kind, name, text))
        .collect()
}

fn errors(r: &Result<Compiled, ConfigErrors>) -> Option<Vec<String>> {
    r.as_ref().err().map(rendered)
}

fn run(seed: u64, steps: usize) -> (usize, usize) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut current: BTreeMap<Key, String> = BTreeMap::new();
    let mut snapshot = Snapshot::default();
    let (mut applied, mut rejected) = (0, 0);
    for step in 0..steps {
        let (upserts, removed) = random_batch(&mut rng, &current);
        let parsed: Vec<Located<Manifest>> = upserts
            .iter()
            .map(|((kind, name), text)| located(kind, name, text))
            .collect();
        let refs: Vec<&Located<Manifest>> = parsed.iter().collect();
        let removed_refs: Vec<(Kind, &str)> = removed
            .iter()
            .map(|(k, n)| (Kind::parse(k).unwrap(), n.as_str()))
            .collect();
        let routing_before = routing(&snapshot);

        let delta = compile_changes(&snapshot, &refs, &removed_refs, &Numbering::default());
        let set = full_set(&current, &upserts, &removed);
        let scratch = compile(&set, None);
        let against_prev = compile(&set, Some(&snapshot));
        let ctx = format!("seed {seed} step {step}: upserts {upserts:?} removed {removed:?}");

        assert_eq!(errors(&delta), errors(&scratch), "{ctx}");
        assert_eq!(errors(&against_prev), errors(&scratch), "{ctx}");
        // Building the next snapshot leaves the previous one as it was.
        assert_eq!(routing(&snapshot), routing_before, "{ctx}");
        let (Ok(delta), Ok(scratch), Ok(against_prev)) = (delta, scratch, against_prev) else {
            rejected += 1;
            continue;
        };
        applied += 1;
        let next = &delta.snapshot;
        assert_eq!(routing(next), routing(&scratch.snapshot), "{ctx}");
        assert_eq!(content(next), content(&scratch.snapshot), "{ctx}");
        // The full-set API reports the same change as the delta.
        assert_eq!(delta.changes, against_prev.changes, "{ctx}");
        assert_eq!(delta.rebuilt, against_prev.rebuilt, "{ctx}");
        assert_eq!(next.revision, against_prev.snapshot.revision, "{ctx}");
        assert_eq!(routing(next), routing(&against_prev.snapshot), "{ctx}");
        // Versions: +1 per update, kept otherwise; unchanged proxies are shared.
        for p in next.proxies() {
            let change = delta.changes.iter().find(|c| *c.name == *p.name);
            match (change, snapshot.proxy(&p.name)) {
                (None, Some(old)) => assert!(Arc::ptr_eq(old, p), "{ctx}"),
                (Some(c), old) => {
                    assert_eq!(c.new_version, Some(p.version), "{ctx}");
                    assert_eq!(c.old_version, old.map(|o| o.version), "{ctx}");
                }
                (None, None) => panic!("{ctx}: {} appeared without a change", p.name),
            }
        }
        for c in delta
            .changes
            .iter()
            .filter(|c| c.kind == ChangeKind::Removed)
        {
            assert!(next.proxy(&c.name).is_none(), "{ctx}");
        }
        for (k, n) in &removed {
            current.remove(&(k.clone(), n.clone()));
        }
        for (k, text) in upserts {
            current.insert(k, text);
        }
        snapshot = delta.snapshot;
    }
    (applied, rejected)
}

#[test]
fn random_changes_compile_as_the_full_set_would() {
    let (mut applied, mut rejected) = (0, 0);
    for seed in 1..=12 {
        let (a, r) = run(seed, 150);
        applied += a;
        rejected += r;
    }
    // Both outcomes are exercised, many times.
    assert!(
        applied > 300 && rejected > 300,
        "{applied} applied, {rejected} rejected"
    );
}

fn proxy(name: &str, route: &str) -> Located<Manifest> {
    located("Proxy", name, &common::proxy(name, route))
}

fn apply(prev: &Snapshot, upserts: &[&Located<Manifest>], removed: &[(Kind, &str)]) -> Compiled {
    compile_changes(prev, upserts, removed, &Numbering::default()).unwrap()
}

#[test]
fn a_changed_proxy_conflicting_with_an_unchanged_one_is_the_one_reported() {
    let a = proxy("a", "{path: /x}");
    let b = proxy("b", "{path: /y}");
    let s = compile(&[a, b], None).unwrap().snapshot;
    let b2 = proxy("b", "{path: /x}");
    let e = compile_changes(&s, &[&b2], &[], &Numbering::default()).unwrap_err();
    assert_eq!(
        single(&e),
        "Proxy-b.yaml:7:7: proxy \"b\": spec.routes[0]: route conflict: \
         any host + path /x + any method is already claimed by proxy \"a\" \
         (spec.routes[0] at Proxy-a.yaml:7:7)"
    );
}

#[test]
fn a_removed_proxy_frees_its_routes_and_a_returning_one_conflicts() {
    let a = proxy("a", "{pathPrefix: /x, methods: [GET]}");
    let s = compile(std::slice::from_ref(&a), None).unwrap().snapshot;
    let b = proxy("b", "{pathPrefix: /x, methods: [GET]}");
    let s2 = apply(&s, &[&b], &[(Kind::Proxy, "a")]).snapshot;
    let (_, served, _) = s2.route(None, "/x/1", &Method::GET).unwrap();
    assert_eq!(&*served.name, "b");
    let e = compile_changes(&s2, &[&a], &[], &Numbering::default()).unwrap_err();
    assert_eq!(
        single(&e),
        "Proxy-a.yaml:7:7: proxy \"a\": spec.routes[0]: route conflict: \
         any host + pathPrefix /x + GET is already claimed by proxy \"b\" \
         (spec.routes[0] at Proxy-b.yaml:7:7)"
    );
    // The failed compile left `s2` as it was.
    let (_, served, _) = s2.route(None, "/x/1", &Method::GET).unwrap();
    assert_eq!(&*served.name, "b");
}

#[test]
fn names_are_unique_per_kind_only() {
    let p = proxy("same", "{path: /x}");
    let c = located(
        "Credential",
        "same",
        "apiVersion: switchyard.dev/v1\nkind: Credential\nmetadata:\n  name: same\nspec:\n  type: secret\n  value: v\n",
    );
    let s = apply(&Snapshot::default(), &[&p, &c], &[]).snapshot;
    assert!(s.proxy("same").is_some() && s.credential("same").is_some());
    let p2 = proxy("same", "{path: /y}");
    let e = compile_changes(&s, &[&p2, &p2], &[], &Numbering::default()).unwrap_err();
    assert_eq!(
        e.first().unwrap().to_string(),
        "Proxy-same.yaml:4:9: proxy \"same\": metadata.name: duplicate name: \
         proxy \"same\" is already defined at Proxy-same.yaml:4:9"
    );
}

#[test]
fn upserting_what_is_already_there_changes_nothing() {
    let a = proxy("a", "{path: /x}");
    let s = compile(std::slice::from_ref(&a), None).unwrap().snapshot;
    // (An unknown kind can no longer be named: `Kind` has only the known ones.)
    let c = apply(&s, &[&a], &[(Kind::Proxy, "nope")]);
    assert!(c.changes.is_empty());
    assert_eq!(c.rebuilt, 0);
    assert_eq!(c.snapshot.revision, s.revision);
    assert!(Arc::ptr_eq(
        s.proxy("a").unwrap(),
        c.snapshot.proxy("a").unwrap()
    ));
}

#[test]
fn manager_versions_are_taken_as_given() {
    let a = proxy("a", "{path: /x}");
    let s = compile(std::slice::from_ref(&a), None).unwrap().snapshot;
    let a2 = proxy("a", "{path: /z}");
    let options = Numbering {
        revision: Some(40),
        versions: [("a".to_string(), 7)].into(),
    };
    let c = compile_changes(&s, &[&a2], &[], &options).unwrap();
    assert_eq!(c.snapshot.revision, 40);
    assert_eq!(c.snapshot.proxy("a").unwrap().version, 7);
    assert_eq!(c.changes[0].old_version, Some(1));
}
