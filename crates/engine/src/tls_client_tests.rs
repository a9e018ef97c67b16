//! `spec.clientAuth` compiled (certificates from rcgen): the verifier it builds, what is
//! refused and why, a CA change recompiling the certificate, and the identity of a client
//! certificate.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256,
    SanType,
};
use rustls::pki_types::{CertificateDer, UnixTime};
use switchyard_config::error::Reason;
use switchyard_config::load::parse_str;

use super::*;
use crate::compile::{Numbering, compile as compile_set, compile_changes};
use crate::runtime::Snapshot;
use switchyard_config::Kind;

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn ca() -> Ca {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "Clients CA");
    let cert = p.self_signed(&key).unwrap();
    Ca {
        issuer: Issuer::new(p, key),
        pem: cert.pem(),
    }
}

/// A leaf issued by `ca`: (chain PEM, key PEM, DER).
fn issue(ca: &Ca, cn: &str, sans: Vec<SanType>) -> (String, String, CertificateDer<'static>) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.subject_alt_names = sans;
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().clone())
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// The server certificate `api` for api.example.com, with `client_auth` (YAML lines under
/// `clientAuth:`, or none).
fn server_doc(server: &(String, String, CertificateDer<'static>), client_auth: &str) -> String {
    let auth = if client_auth.is_empty() {
        String::new()
    } else {
        format!("  clientAuth:\n{client_auth}")
    };
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Certificate\nmetadata: {{ name: api }}\nspec:\n{auth}  certificate: |\n{}  privateKey: |\n{}",
        indent(&server.0),
        indent(&server.1)
    )
}

fn credential_doc(name: &str, pem: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Credential\nmetadata: {{ name: {name} }}\nspec:\n  type: secret\n  value: |\n{}",
        indent(pem)
    )
}

fn docs(file: &str, texts: &[String]) -> Vec<Located<Manifest>> {
    parse_str(file.into(), &texts.join("---\n")).unwrap()
}

fn server() -> (String, String, CertificateDer<'static>) {
    let ca = ca();
    issue(
        &ca,
        "api.example.com",
        vec![SanType::DnsName("api.example.com".try_into().unwrap())],
    )
}

fn api(s: &Snapshot) -> &Arc<crate::tls::Certificate> {
    s.certificates().find(|c| &*c.name == "api").unwrap()
}

#[test]
fn client_auth_verifies_against_the_ca_credential() {
    let clients = ca();
    let other = ca();
    let set = docs(
        "tls.yaml",
        &[
            credential_doc("clients-ca", &clients.pem),
            server_doc(&server(), "    ca: clients-ca\n"),
        ],
    );
    let s = compile_set(&set, None).unwrap().snapshot;
    let auth = api(&s).client_auth.as_ref().unwrap();
    assert_eq!(&*auth.ca, "clients-ca");
    assert!(!auth.required, "optional unless asked");
    assert!(!auth.verifier.client_auth_mandatory());
    let selected = s.tls().select_certificate(Some("api.example.com")).unwrap();
    assert!(selected.client_auth.is_some());
    let now = UnixTime::now();
    let (_, _, good) = issue(&clients, "acme", vec![]);
    assert!(auth.verifier.verify_client_cert(&good, &[], now).is_ok());
    let (_, _, bad) = issue(&other, "acme", vec![]);
    assert!(auth.verifier.verify_client_cert(&bad, &[], now).is_err());
    // The debug form names the CA, never the document (which holds the key).
    let shown = format!("{:?}", api(&s));
    assert!(shown.contains("clients-ca") && !shown.contains("PRIVATE KEY"));

    let set = docs(
        "tls.yaml",
        &[
            credential_doc("clients-ca", &clients.pem),
            server_doc(&server(), "    ca: clients-ca\n    mode: required\n"),
        ],
    );
    let s = compile_set(&set, None).unwrap().snapshot;
    let auth = api(&s).client_auth.as_ref().unwrap();
    assert!(auth.required && auth.verifier.client_auth_mandatory());
}

#[test]
fn a_missing_or_unfit_ca_credential_is_refused_naming_the_field() {
    let refused = |texts: &[String]| {
        let e = compile_set(&docs("tls.yaml", texts), None).unwrap_err();
        let first = e.first().unwrap().clone();
        (first.to_string(), first.reason)
    };
    let (e, reason) = refused(&[server_doc(&server(), "    ca: nope\n")]);
    assert!(
        e.contains("tls.yaml")
            && e.contains("spec.clientAuth.ca")
            && e.contains("no Credential named \"nope\""),
        "{e}"
    );
    assert_eq!(reason, Reason::UnknownCredential);

    let (e, _) = refused(&[
        credential_doc("clients-ca", "not a certificate"),
        server_doc(&server(), "    ca: clients-ca\n"),
    ]);
    assert!(
        e.contains("spec.clientAuth.ca") && e.contains("holds no CA certificate"),
        "{e}"
    );

    let keys = "apiVersion: switchyard.dev/v1\nkind: Credential\nmetadata: { name: keys }\nspec:\n  type: api-keys\n  keys: [{ consumer: a, key: k-long-enough }]\n";
    let (e, _) = refused(&[keys.to_string(), server_doc(&server(), "    ca: keys\n")]);
    assert!(
        e.contains("spec.clientAuth.ca") && e.contains("of type \"api-keys\""),
        "{e}"
    );

    let text = server_doc(&server(), "    ca: clients-ca\n    mode: sometimes\n");
    let e = parse_str("tls.yaml".into(), &text).unwrap_err().to_string();
    assert!(e.contains("tls.yaml") && e.contains("mode"), "{e}");
}

#[test]
fn a_changed_ca_credential_recompiles_the_certificate_and_a_removed_one_is_refused() {
    let first = ca();
    let set = docs(
        "tls.yaml",
        &[
            credential_doc("clients-ca", &first.pem),
            server_doc(&server(), "    ca: clients-ca\n"),
        ],
    );
    let a = compile_set(&set, None).unwrap().snapshot;

    // Another credential: the certificate is shared.
    let unrelated = docs("x.yaml", &[credential_doc("unrelated", &first.pem)]);
    let b = compile_changes(&a, &[&unrelated[0]], &[], &Numbering::default())
        .unwrap()
        .snapshot;
    assert!(Arc::ptr_eq(api(&a), api(&b)));

    // The CA rotated: the certificate alone is recompiled and verifies with the new CA.
    let second = ca();
    let rotated = docs("ca.yaml", &[credential_doc("clients-ca", &second.pem)]);
    let c = compile_changes(&b, &[&rotated[0]], &[], &Numbering::default())
        .unwrap()
        .snapshot;
    assert_eq!(c.revision, b.revision + 1);
    assert!(!Arc::ptr_eq(api(&b), api(&c)));
    let now = UnixTime::now();
    let (_, _, new_client) = issue(&second, "acme", vec![]);
    let (_, _, old_client) = issue(&first, "acme", vec![]);
    let verifier = &api(&c).client_auth.as_ref().unwrap().verifier;
    assert!(verifier.verify_client_cert(&new_client, &[], now).is_ok());
    assert!(verifier.verify_client_cert(&old_client, &[], now).is_err());
    let selected = c.tls().select_certificate(Some("api.example.com")).unwrap();
    assert!(
        Arc::ptr_eq(selected, api(&c)),
        "the SNI index has the new one"
    );

    // The CA credential removed: refused, naming the certificate's field.
    let e = compile_changes(
        &c,
        &[],
        &[(Kind::Credential, "clients-ca")],
        &Numbering::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("tls.yaml") && e.contains("spec.clientAuth.ca") && e.contains("clients-ca"),
        "{e}"
    );
}

#[test]
fn the_identity_of_a_client_certificate() {
    let clients = ca();
    let (_, _, der) = issue(
        &clients,
        "acme",
        vec![
            SanType::URI("spiffe://example.org/acme".try_into().unwrap()),
            SanType::DnsName("acme.clients.test".try_into().unwrap()),
            SanType::DnsName("second.clients.test".try_into().unwrap()),
        ],
    );
    let id = ClientIdentity::from_leaf("clients-ca".into(), &der);
    assert_eq!(id.subject_cn.as_deref(), Some("acme"));
    assert_eq!(id.san_dns.as_deref(), Some("acme.clients.test"));
    assert_eq!(id.san_uri.as_deref(), Some("spiffe://example.org/acme"));
    use switchyard_config::manifest::MtlsIdentity;
    assert_eq!(id.get(MtlsIdentity::SanDns), id.san_dns.as_ref());

    let id = ClientIdentity::from_leaf("clients-ca".into(), b"not DER");
    assert_eq!((id.subject_cn, id.san_dns, id.san_uri), (None, None, None));
}
