//! Proxies that reference credentials (through the unit-test label, until a policy does):
//! a changed credential recompiles exactly its users.

use std::sync::Arc;
use switchyard_config::Kind;

use super::credentials::TEST_REFERENCE_LABEL;
use super::*;
use switchyard_config::load::parse_str;

fn proxy(name: &str, path: &str, credential: Option<&str>) -> String {
    let labels = match credential {
        Some(c) => format!("{{ {TEST_REFERENCE_LABEL}: {c} }}"),
        None => "{}".into(),
    };
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: {name}, labels: {labels} }}\nspec:\n  routes:\n    - pathPrefix: {path}\n  upstream:\n    targets:\n      - url: http://127.0.0.1:9000\n"
    )
}

fn credential(name: &str, value: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Credential\nmetadata: {{ name: {name} }}\nspec:\n  type: secret\n  value: {value}\n"
    )
}

fn one(file: &str, text: &str) -> Located<Manifest> {
    parse_str(file.into(), text).unwrap().pop().unwrap()
}

/// `a` uses credential `k`; `b` uses nothing.
fn base() -> Compiled {
    let set = [
        one("k.yaml", &credential("k", "one")),
        one("a.yaml", &proxy("a", "/a", Some("k"))),
        one("b.yaml", &proxy("b", "/b", None)),
    ];
    compile(&set, None).unwrap()
}

#[test]
fn a_changed_credential_recompiles_its_users_only() {
    let a = base().snapshot;
    assert_eq!(
        a.users
            .get(&(Kind::Credential, "k".into()))
            .map(|u| u.iter().map(|n| n.to_string()).collect::<Vec<_>>()),
        Some(vec!["a".to_string()])
    );
    let k2 = one("k.yaml", &credential("k", "two"));
    let b = compile_changes(&a, &[&k2], &[], &Numbering::default()).unwrap();
    assert_eq!(
        b.changes,
        [ProxyChange {
            name: "a".into(),
            kind: ChangeKind::Updated,
            old_version: Some(1),
            new_version: Some(2),
        }]
    );
    assert_eq!(b.rebuilt, 1);
    assert_eq!(b.snapshot.revision, a.revision + 1);
    let s = &b.snapshot;
    assert!(!Arc::ptr_eq(a.proxy("a").unwrap(), s.proxy("a").unwrap()));
    assert!(Arc::ptr_eq(a.proxy("b").unwrap(), s.proxy("b").unwrap()));
    let (_, served, _) = s.route(None, "/a", &http::Method::GET).unwrap();
    assert!(Arc::ptr_eq(served, s.proxy("a").unwrap()));
    assert_eq!(s.credential("k").unwrap().digest, k2.digest);
}

#[test]
fn the_full_set_path_recompiles_users_of_a_changed_credential_too() {
    let a = base().snapshot;
    let set = [
        one("k.yaml", &credential("k", "two")),
        one("a.yaml", &proxy("a", "/a", Some("k"))),
        one("b.yaml", &proxy("b", "/b", None)),
    ];
    let b = compile(&set, Some(&a)).unwrap();
    assert_eq!(b.rebuilt, 1);
    assert_eq!(b.changes.len(), 1);
    assert_eq!(b.changes[0].name, "a");
    assert!(Arc::ptr_eq(
        a.proxy("b").unwrap(),
        b.snapshot.proxy("b").unwrap()
    ));
}

#[test]
fn removing_a_used_credential_is_rejected() {
    let a = base().snapshot;
    let e =
        compile_changes(&a, &[], &[(Kind::Credential, "k")], &Numbering::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "a.yaml:3:19: proxy \"a\": spec: references credential \"k\", which does not exist"
    );
    // Without its user, it goes.
    let b = compile_changes(
        &a,
        &[],
        &[(Kind::Credential, "k"), (Kind::Proxy, "a")],
        &Numbering::default(),
    )
    .unwrap();
    assert!(b.snapshot.credential("k").is_none());
    assert!(b.snapshot.users.is_empty());
}

#[test]
fn a_reference_to_a_missing_credential_is_an_error_in_a_full_set_too() {
    let set = [one("a.yaml", &proxy("a", "/a", Some("nope")))];
    let e = compile(&set, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "a.yaml:3:19: proxy \"a\": spec: references credential \"nope\", which does not exist"
    );
}

#[test]
fn an_unused_credential_changes_the_revision_but_no_proxy() {
    let a = base().snapshot;
    let other = one("o.yaml", &credential("other", "x"));
    let b = compile_changes(&a, &[&other], &[], &Numbering::default()).unwrap();
    assert!(b.changes.is_empty());
    assert_eq!(b.rebuilt, 0);
    assert_eq!(b.snapshot.revision, a.revision + 1);
    // The same credential again changes nothing.
    let c = compile_changes(&b.snapshot, &[&other], &[], &Numbering::default()).unwrap();
    assert_eq!(c.snapshot.revision, b.snapshot.revision);
}

#[test]
fn moving_a_user_to_another_credential_moves_it_in_the_index() {
    let a = base().snapshot;
    let set = [
        one("k.yaml", &credential("k", "one")),
        one("j.yaml", &credential("j", "one")),
        one("a.yaml", &proxy("a", "/a", Some("j"))),
        one("b.yaml", &proxy("b", "/b", None)),
    ];
    let b = compile(&set, Some(&a)).unwrap().snapshot;
    assert!(b.users.get(&(Kind::Credential, "k".into())).is_none());
    assert_eq!(
        b.users
            .get(&(Kind::Credential, "j".into()))
            .map(|u| u.len()),
        Some(1)
    );
    // `k` has no users left: changing it recompiles nothing.
    let k2 = one("k.yaml", &credential("k", "two"));
    let c = compile_changes(&b, &[&k2], &[], &Numbering::default()).unwrap();
    assert_eq!(c.rebuilt, 0);
}
