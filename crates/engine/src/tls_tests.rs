//! Certificates compiled from PEM (made by rcgen): what is refused and why, SNI selection,
//! and rotation as a swap.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256,
};
use switchyard_config::load::parse_str;

use super::*;
use crate::compile::{Numbering, compile, compile_changes};

/// A chain (leaf first) and the leaf's key, PEM.
struct Pem {
    chain: String,
    key: String,
}

fn leaf_params(hosts: &[&str]) -> CertificateParams {
    let mut p =
        CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, hosts[0]);
    p
}

fn self_signed(hosts: &[&str]) -> Pem {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = leaf_params(hosts).self_signed(&key).unwrap();
    Pem {
        chain: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// A leaf signed by an intermediate CA, with the intermediate in the chain.
fn with_intermediate(hosts: &[&str], signed_by_other: bool) -> Pem {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Test Intermediate");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let signer_key = if signed_by_other {
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap()
    } else {
        ca_key
    };
    let issuer = Issuer::from_params(&ca, &signer_key);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = leaf_params(hosts).signed_by(&key, &issuer).unwrap();
    Pem {
        chain: format!("{}{}", cert.pem(), ca_cert.pem()),
        key: key.serialize_pem(),
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

fn doc(name: &str, pem: &Pem, default: bool) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Certificate\nmetadata: {{ name: {name} }}\nspec:\n  default: {default}\n  certificate: |\n{}  privateKey: |\n{}",
        indent(&pem.chain),
        indent(&pem.key)
    )
}

fn one(name: &str, pem: &Pem, default: bool) -> Located<Manifest> {
    parse_str(format!("{name}.yaml").into(), &doc(name, pem, default))
        .unwrap()
        .pop()
        .unwrap()
}

fn refused(m: &Located<Manifest>) -> String {
    match compile(std::slice::from_ref(m), None) {
        Ok(_) => panic!("compiled"),
        Err(e) => e.to_string(),
    }
}

/// The leaf certificate a handshake for `sni` would be given, as its first DNS name.
fn served(index: &CertificateIndex, sni: Option<&str>) -> Option<String> {
    let key = index.select(sni)?;
    let (_, cert) = X509Certificate::from_der(&key.cert[0]).unwrap();
    Some(dns_names(&cert).remove(0))
}

#[test]
fn sni_selects_exact_then_wildcard_then_default() {
    let set = [
        one("api", &self_signed(&["api.example.com"]), false),
        one("wild", &self_signed(&["*.example.com"]), false),
        one("fallback", &self_signed(&["fallback.test"]), true),
    ];
    let s = compile(&set, None).unwrap().snapshot;
    let tls = s.tls();
    assert_eq!(
        served(tls, Some("api.example.com")).as_deref(),
        Some("api.example.com")
    );
    assert_eq!(
        served(tls, Some("API.Example.com.")).as_deref(),
        Some("api.example.com")
    );
    assert_eq!(
        served(tls, Some("www.example.com")).as_deref(),
        Some("*.example.com")
    );
    // A wildcard covers one label only.
    assert_eq!(
        served(tls, Some("a.b.example.com")).as_deref(),
        Some("fallback.test")
    );
    assert_eq!(
        served(tls, Some("other.org")).as_deref(),
        Some("fallback.test")
    );
    assert_eq!(served(tls, None).as_deref(), Some("fallback.test"));
    assert!(tls.covers("www.example.com") && !tls.covers("other.org"));
}

#[test]
fn without_a_default_an_unknown_name_gets_no_certificate() {
    let s = compile(
        &[one("api", &self_signed(&["api.example.com"]), false)],
        None,
    )
    .unwrap()
    .snapshot;
    assert!(s.tls().select(Some("other.org")).is_none());
    assert!(s.tls().select(None).is_none());
}

#[test]
fn rotation_is_a_change_and_an_unchanged_certificate_is_shared() {
    let first = one("api", &self_signed(&["api.example.com"]), false);
    let a = compile(std::slice::from_ref(&first), None)
        .unwrap()
        .snapshot;
    let same = compile_changes(&a, &[&first], &[], &Numbering::default()).unwrap();
    assert_eq!(same.snapshot.revision, a.revision, "nothing changed");

    let rotated = one("api", &self_signed(&["api.example.com"]), false);
    let b = compile_changes(&a, &[&rotated], &[], &Numbering::default())
        .unwrap()
        .snapshot;
    assert_eq!(b.revision, a.revision + 1);
    let old = a.tls().select(Some("api.example.com")).unwrap();
    let new = b.tls().select(Some("api.example.com")).unwrap();
    assert_ne!(
        old.cert[0], new.cert[0],
        "the new snapshot serves the new certificate"
    );

    let gone = compile_changes(
        &b,
        &[],
        &[(Kind::Certificate, "api")],
        &Numbering::default(),
    )
    .unwrap()
    .snapshot;
    assert!(gone.tls().is_empty());
    assert_eq!(gone.revision, b.revision + 1);
}

#[test]
fn a_chain_with_its_intermediate_compiles_and_a_wrongly_signed_one_is_refused() {
    let good = one(
        "api",
        &with_intermediate(&["api.example.com"], false),
        false,
    );
    let s = compile(&[good], None).unwrap().snapshot;
    assert_eq!(
        s.tls().select(Some("api.example.com")).unwrap().cert.len(),
        2
    );

    let bad = one("api", &with_intermediate(&["api.example.com"], true), false);
    let e = refused(&bad);
    assert!(
        e.contains("api.yaml")
            && e.contains("spec.certificate")
            && e.contains("chain does not verify"),
        "{e}"
    );
}

#[test]
fn a_key_of_another_certificate_is_refused_without_showing_it() {
    let a = self_signed(&["api.example.com"]);
    let b = self_signed(&["api.example.com"]);
    let mismatched = Pem {
        chain: a.chain,
        key: b.key.clone(),
    };
    let e = refused(&one("api", &mismatched, false));
    assert!(
        e.contains("spec.privateKey") && e.contains("does not match"),
        "{e}"
    );
    let body: String = b.key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!e.contains(&body[..20]), "the key is not echoed: {e}");
}

/// RSA: ring cannot generate RSA keys, so the pair is a fixture made once with
/// `openssl req -x509 -newkey rsa:2048 -nodes -days 36500` (a test key, used nowhere else).
#[test]
fn an_rsa_certificate_compiles() {
    let pem = Pem {
        chain: include_str!("testdata/rsa-cert.pem").into(),
        key: include_str!("testdata/rsa-key.pem").into(),
    };
    let s = compile(&[one("rsa", &pem, false)], None).unwrap().snapshot;
    assert_eq!(
        served(s.tls(), Some("rsa.example.com")).as_deref(),
        Some("rsa.example.com")
    );
}

#[test]
fn bad_pem_is_refused_naming_the_field() {
    let mut pem = self_signed(&["api.example.com"]);
    pem.chain = "not a certificate\n".into();
    let e = refused(&one("api", &pem, false));
    assert!(
        e.contains("spec.certificate") && e.contains("no certificate found"),
        "{e}"
    );

    let mut pem = self_signed(&["api.example.com"]);
    pem.key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into();
    let e = refused(&one("api", &pem, false));
    assert!(e.contains("spec.privateKey"), "{e}");
}

#[test]
fn two_defaults_are_refused() {
    let set = [
        one("a", &self_signed(&["a.example.com"]), true),
        one("b", &self_signed(&["b.example.com"]), true),
    ];
    let e = compile(&set, None).unwrap_err().to_string();
    assert!(
        e.contains("spec.default") && e.contains("more than one default"),
        "{e}"
    );
}

#[test]
fn validity_is_checked_where_a_certificate_is_applied() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = leaf_params(&["old.example.com"]);
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = p.self_signed(&key).unwrap();
    let expired = one(
        "old",
        &Pem {
            chain: cert.pem(),
            key: key.serialize_pem(),
        },
        false,
    );
    // Served if accepted (a Worker keeps serving what its Manager accepted)…
    compile(std::slice::from_ref(&expired), None).unwrap();
    // …but refused where it is applied.
    let e = check_validity(&expired, SystemTime::now());
    assert_eq!(e.len(), 1);
    let e = e[0].to_string();
    assert!(e.contains("old.yaml") && e.contains("expired on"), "{e}");

    let fresh = one("new", &self_signed(&["new.example.com"]), false);
    assert!(check_validity(&fresh, SystemTime::now()).is_empty());
    let before = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400);
    let e = check_validity(&fresh, before);
    assert!(e[0].to_string().contains("not valid before"), "{}", e[0]);
}

#[test]
fn a_certificate_expiring_soon_is_warned_about_with_its_place() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = leaf_params(&["soon.example.com"]);
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2030, 1, 10);
    let cert = p.self_signed(&key).unwrap();
    let soon = one(
        "soon",
        &Pem {
            chain: cert.pem(),
            key: key.serialize_pem(),
        },
        false,
    );
    let at = |y, m, d| -> SystemTime {
        let t = rcgen::date_time_ymd(y, m, d).unix_timestamp();
        SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap())
    };
    let w = expiry_warning(&soon, at(2030, 1, 1), EXPIRY_WARNING).unwrap();
    assert!(
        w.starts_with("soon.yaml:3: certificate \"soon\" expires in 9 days"),
        "{w}"
    );
    assert!(expiry_warning(&soon, at(2029, 12, 1), EXPIRY_WARNING).is_none());
    assert!(
        expiry_warning(&soon, at(2030, 2, 1), EXPIRY_WARNING).is_none(),
        "expired: refused, not warned"
    );
}
