//! Compiling against the previous snapshot: unchanged proxies are shared, changed ones get
//! a new version, and the snapshot revision moves only when something changed.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{PAYMENTS, docs, edit, parse, proxy};
use http::Method;
use switchyard_config::Manifest;
use switchyard_engine::compile::proxy_digest;
use switchyard_engine::{ChangeKind, Compiled, ProxyChange, Snapshot, compile};

const ORDERS: &str = "apiVersion: switchyard.dev/v1
kind: Proxy
metadata:
  name: orders
spec:
  routes:
    - pathPrefix: /orders
  upstream:
    targets:
      - url: http://127.0.0.1:9001
";

fn build(text: &str, prev: Option<&Snapshot>) -> Compiled {
    compile(&parse(text).unwrap(), prev).unwrap()
}

fn set_a() -> String {
    docs(&[PAYMENTS, ORDERS])
}

/// Set A with `orders` pointing at another target.
fn set_a2() -> String {
    docs(&[PAYMENTS, &edit(ORDERS, "127.0.0.1:9001", "127.0.0.1:9002")])
}

fn change(name: &str, kind: ChangeKind, old: Option<u64>, new: Option<u64>) -> ProxyChange {
    ProxyChange {
        name: name.into(),
        kind,
        old_version: old,
        new_version: new,
    }
}

#[test]
fn first_compile_adds_everything() {
    let c = build(&set_a(), None);
    assert_eq!(c.snapshot.revision, 1);
    assert_eq!(c.rebuilt, 2);
    assert_eq!(
        c.changes,
        [
            change("payments", ChangeKind::Added, None, Some(1)),
            change("orders", ChangeKind::Added, None, Some(1)),
        ]
    );
    // Proxies are kept sorted by name.
    let names: Vec<&str> = c.snapshot.proxies().map(|p| &*p.name).collect();
    assert_eq!(names, ["orders", "payments"]);
}

#[test]
fn only_the_changed_proxy_is_rebuilt() {
    let a = build(&set_a(), None);
    let b = build(&set_a2(), Some(&a.snapshot));

    let (pay_a, pay_b) = (
        a.snapshot.proxy("payments").unwrap(),
        b.snapshot.proxy("payments").unwrap(),
    );
    assert!(
        Arc::ptr_eq(pay_a, pay_b),
        "unchanged proxy must be the same Arc"
    );
    assert_eq!(pay_b.version, 1);

    let (ord_a, ord_b) = (
        a.snapshot.proxy("orders").unwrap(),
        b.snapshot.proxy("orders").unwrap(),
    );
    assert!(!Arc::ptr_eq(ord_a, ord_b));
    assert_eq!(ord_b.version, ord_a.version + 1);
    assert_ne!(ord_a.digest, ord_b.digest);
    assert_eq!(
        ord_b.upstream.targets[0].authority.as_str(),
        "127.0.0.1:9002"
    );

    assert_eq!(b.snapshot.revision, a.snapshot.revision + 1);
    assert_eq!(
        b.changes,
        [change("orders", ChangeKind::Updated, Some(1), Some(2))]
    );
    assert_eq!(b.rebuilt, 1);

    // The new route table serves the new version; the shared proxy is still served.
    let (_, served, _) = b.snapshot.route(None, "/orders/7", &Method::GET).unwrap();
    assert!(Arc::ptr_eq(served, ord_b));
    let (_, served, _) = b
        .snapshot
        .route(Some("api.example.com"), "/payments", &Method::GET)
        .unwrap();
    assert!(Arc::ptr_eq(served, pay_a));
}

#[test]
fn versions_keep_counting_across_updates() {
    let a = build(&set_a(), None);
    let b = build(&set_a2(), Some(&a.snapshot));
    let c = build(&set_a(), Some(&b.snapshot));
    assert_eq!(c.snapshot.revision, 3);
    assert_eq!(c.snapshot.proxy("orders").unwrap().version, 3);
    assert_eq!(
        c.changes,
        [change("orders", ChangeKind::Updated, Some(2), Some(3))]
    );
    assert!(Arc::ptr_eq(
        a.snapshot.proxy("payments").unwrap(),
        c.snapshot.proxy("payments").unwrap()
    ));
}

#[test]
fn identical_input_changes_nothing() {
    let a = build(&set_a(), None);
    let b = build(&set_a(), Some(&a.snapshot));
    assert!(b.changes.is_empty());
    assert_eq!(b.rebuilt, 0);
    assert_eq!(b.snapshot.revision, a.snapshot.revision);
    for (x, y) in a.snapshot.proxies().zip(b.snapshot.proxies()) {
        assert!(Arc::ptr_eq(x, y));
    }
}

#[test]
fn reformatting_does_not_change_the_digest() {
    // Same content: other comments, key order, flow style, quoting, and the document moved
    // to another line (after `orders`, below leading comments and blank lines).
    let payments = "# Payments, reformatted.
kind: Proxy
apiVersion: 'switchyard.dev/v1'
spec:
  policies:
    - type: headers
      request: { remove: [x-internal], set: { x-from-gateway: 'yes' } }
      response: { set: { \"x-release\": blue } }
  upstream:
    retries: { attempts: 1 }
    timeouts: { request: 30s, connect: 2s }
    loadBalancing: round-robin
    targets: [{ weight: 1, url: \"http://127.0.0.1:18081\" }]
  routes:
    - stripPrefix: false
      methods:
        - GET
        - POST
      hosts: [ api.example.com ]
      pathPrefix: /payments
metadata:
  labels:
    owner: payments-team
  name: payments
";
    let original = parse(PAYMENTS).unwrap();
    let moved = parse(&format!("{ORDERS}---\n\n\n{payments}")).unwrap();
    let (Manifest::Proxy(x), Manifest::Proxy(y)) = (&original[0].value, &moved[1].value) else {
        panic!("not proxies")
    };
    assert_eq!(proxy_digest(x), proxy_digest(y));
    assert_ne!(original[0].source.line_offset, moved[1].source.line_offset);

    let a = build(&set_a(), None);
    let b = compile(&moved, Some(&a.snapshot)).unwrap();
    assert!(b.changes.is_empty(), "{:?}", b.changes);
    assert_eq!(b.snapshot.revision, a.snapshot.revision);
    assert!(Arc::ptr_eq(
        a.snapshot.proxy("payments").unwrap(),
        b.snapshot.proxy("payments").unwrap()
    ));
}

#[test]
fn defaults_written_out_or_left_out_have_the_same_digest() {
    let mut bare = PAYMENTS.to_string();
    for line in [
        "      stripPrefix: false\n",
        "        weight: 1\n",
        "    loadBalancing: round-robin     # also least-requests, weighted\n",
        "    timeouts: { connect: 2s, request: 30s }\n",
        "    retries: { attempts: 1 }       # only on connect failure, to another target\n",
    ] {
        bare = edit(&bare, line, "");
    }
    let a = build(PAYMENTS, None);
    let b = build(&bare, Some(&a.snapshot));
    assert!(b.changes.is_empty(), "{:?}", b.changes);
    assert!(Arc::ptr_eq(
        a.snapshot.proxy("payments").unwrap(),
        b.snapshot.proxy("payments").unwrap()
    ));
}

#[test]
fn new_upstream_fields_left_out_do_not_change_the_digest() {
    // Manifests written before these fields existed keep their digest (no new version on
    // upgrade), and defaults written out equal defaults left out.
    let a = build(PAYMENTS, None);
    let written = edit(
        PAYMENTS,
        "retries: { attempts: 1 }",
        "retries: { attempts: 1, budget: { ratio: 0.2, minPerSecond: 3 } }",
    );
    let b = build(&written, Some(&a.snapshot));
    assert!(b.changes.is_empty(), "{:?}", b.changes);
    let json = Manifest::canonical_json(&parse(PAYMENTS).unwrap()[0].value);
    for field in ["hashOn", "healthCheck", "maxConcurrentRequests", "budget"] {
        assert!(!json.contains(field), "{field} in {json}");
    }
}

#[test]
fn a_changed_proxy_keeps_the_state_of_targets_it_still_has() {
    use switchyard_engine::{Change, Compiler, Numbering};
    // One compiler: its health registry is shared by the compiles.
    let compiler = Compiler::new();
    let compile_with = |text: &str, prev: Option<&Snapshot>| {
        let manifests = parse(text).unwrap();
        let refs: Vec<_> = manifests.iter().collect();
        compiler.compile(prev, Change::Set(&refs), &Numbering::default())
    };
    let a = compile_with(PAYMENTS, None).unwrap();
    let before = a.snapshot.proxy("payments").unwrap().clone();
    let edited = edit(PAYMENTS, "owner: payments-team", "owner: billing");
    let b = compile_with(&edited, Some(&a.snapshot)).unwrap();
    let after = b.snapshot.proxy("payments").unwrap();
    assert!(!Arc::ptr_eq(&before, after), "recompiled");
    assert!(Arc::ptr_eq(
        &before.upstream.targets[0].state,
        &after.upstream.targets[0].state
    ));
    // A target that changed URL starts afresh.
    let moved = edit(PAYMENTS, "127.0.0.1:18081", "127.0.0.1:18082");
    let c = compile_with(&moved, Some(&b.snapshot)).unwrap();
    assert!(!Arc::ptr_eq(
        &after.upstream.targets[0].state,
        &c.snapshot.proxy("payments").unwrap().upstream.targets[0].state
    ));
}

#[test]
fn a_label_change_is_an_update() {
    let a = build(PAYMENTS, None);
    let b = build(
        &edit(PAYMENTS, "owner: payments-team", "owner: billing"),
        Some(&a.snapshot),
    );
    assert_eq!(
        b.changes,
        [change("payments", ChangeKind::Updated, Some(1), Some(2))]
    );
    assert_eq!(
        b.snapshot.proxy("payments").unwrap().labels["owner"],
        "billing"
    );
}

#[test]
fn removing_a_proxy_reports_removed() {
    let a = build(&set_a(), None);
    let b = build(PAYMENTS, Some(&a.snapshot));
    assert_eq!(
        b.changes,
        [change("orders", ChangeKind::Removed, Some(1), None)]
    );
    assert_eq!(b.rebuilt, 0);
    assert_eq!(b.snapshot.revision, 2);
    assert!(b.snapshot.proxy("orders").is_none());
    assert!(b.snapshot.route(None, "/orders", &Method::GET).is_none());
    assert!(Arc::ptr_eq(
        a.snapshot.proxy("payments").unwrap(),
        b.snapshot.proxy("payments").unwrap()
    ));
}

#[test]
fn removing_everything() {
    let a = build(&set_a(), None);
    let b = compile(&[], Some(&a.snapshot)).unwrap();
    assert_eq!(
        b.changes,
        [
            change("orders", ChangeKind::Removed, Some(1), None),
            change("payments", ChangeKind::Removed, Some(1), None),
        ]
    );
    assert!(b.snapshot.proxy_count() == 0);
    assert_eq!(b.snapshot.revision, 2);
}

#[test]
fn adding_a_proxy_reports_added_with_version_one() {
    let a = build(&set_a(), None);
    let text = docs(&[&set_a(), &proxy("users", "{pathPrefix: /users}")]);
    let b = build(&text, Some(&a.snapshot));
    assert_eq!(
        b.changes,
        [change("users", ChangeKind::Added, None, Some(1))]
    );
    assert_eq!(b.rebuilt, 1);
    assert_eq!(b.snapshot.revision, 2);
    assert_eq!(b.snapshot.proxy("users").unwrap().version, 1);
    let names: Vec<&str> = b.snapshot.proxies().map(|p| &*p.name).collect();
    assert_eq!(names, ["orders", "payments", "users"]);
    let (_, served, route) = b.snapshot.route(None, "/users/1", &Method::GET).unwrap();
    assert_eq!((&*served.name, &*route.id), ("users", "users#0"));
}

#[test]
fn update_add_and_remove_in_one_compile() {
    let a = build(&set_a(), None);
    let text = docs(&[
        &edit(PAYMENTS, "weight: 1", "weight: 2"),
        &proxy("users", "{pathPrefix: /users}"),
    ]);
    let b = build(&text, Some(&a.snapshot));
    assert_eq!(
        b.changes,
        [
            change("payments", ChangeKind::Updated, Some(1), Some(2)),
            change("users", ChangeKind::Added, None, Some(1)),
            change("orders", ChangeKind::Removed, Some(1), None),
        ]
    );
    assert_eq!(b.rebuilt, 2);
    assert_eq!(b.snapshot.revision, 2);
}

#[test]
fn a_failed_compile_leaves_versions_to_the_previous_snapshot() {
    let a = build(&set_a(), None);
    let bad = docs(&[
        PAYMENTS,
        &edit(
            ORDERS,
            "127.0.0.1:9001",
            "127.0.0.1:9002\n        weight: 0",
        ),
    ]);
    assert!(compile(&parse(&bad).unwrap(), Some(&a.snapshot)).is_err());
    // The caller keeps `a`; the fixed change is version 2, not 3.
    let b = build(&set_a2(), Some(&a.snapshot));
    assert_eq!(
        b.changes,
        [change("orders", ChangeKind::Updated, Some(1), Some(2))]
    );
    assert_eq!(b.snapshot.revision, 2);
}

#[test]
fn shared_proxies_keep_their_load_balancer_state() {
    let a = build(&set_a(), None);
    let before = a.snapshot.proxy("payments").unwrap().clone();
    before.upstream.targets[0]
        .state
        .in_flight
        .store(5, std::sync::atomic::Ordering::Relaxed);
    let b = build(&set_a2(), Some(&a.snapshot));
    let after = b.snapshot.proxy("payments").unwrap();
    assert_eq!(
        after.upstream.targets[0]
            .state
            .in_flight
            .load(std::sync::atomic::Ordering::Relaxed),
        5
    );
}
