//! `kind: Certificate` compiled: the chain and key parsed and checked once, when the
//! certificate is new or changed, into what a TLS handshake needs (a rustls
//! [`CertifiedKey`]), and the environment's certificates indexed by the host names they
//! cover, so that a handshake picks one by SNI with a hash lookup or two.
//!
//! Rotation is a swap like any other: the index is part of the snapshot, a handshake reads
//! the snapshot current when it starts, and established connections keep the keys they
//! negotiated.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use imbl::OrdMap;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use switchyard_config::Kind;
use switchyard_config::error::{ConfigError, Position};
use switchyard_config::load::Located;
use switchyard_config::manifest::{CertificateManifest, Manifest};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The crypto provider every TLS object of Switchyard is built with (ring: it builds with
/// a C compiler alone, nothing else to install). Cheap: tables of static references.
/// rustls marks ring's provider deprecated for its lack of post-quantum key exchange;
/// aws-lc-rs (which has it) is the candidate once its build is part of `.ci/run`.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// How a proxy's `https://` targets are verified (`spec.upstream.tls`), compiled: what the
/// Worker's upstream pool builds its TLS client from.
#[derive(Debug)]
pub struct UpstreamTls {
    /// The CA credential's certificates; `None`: the system's roots.
    pub roots: Option<Arc<RootCertStore>>,
    /// Sent as SNI and verified instead of the target's host.
    pub server_name: Option<ServerName<'static>>,
    pub insecure_skip_verify: bool,
    /// The certificate and key presented to upstreams that ask (mutual TLS).
    pub client: Option<Arc<CertifiedKey>>,
    /// Equal for equal settings: upstream connections are pooled per target and settings.
    pub key: String,
}

impl UpstreamTls {
    /// Compiles `spec` (absent: system roots, the target's host). `ca` is the value of the
    /// credential `spec.ca` names (looked up by the caller). Errors name the field.
    pub fn compile(
        spec: Option<&switchyard_config::manifest::UpstreamTlsSpec>,
        ca: Option<(&str, &str)>,
        client: Option<&Certificate>,
    ) -> Result<UpstreamTls, (String, String)> {
        let default = switchyard_config::manifest::UpstreamTlsSpec::default();
        let spec = spec.unwrap_or(&default);
        let roots = match ca {
            None => None,
            Some((name, pem)) => {
                Some(ca_roots(name, pem).map_err(|e| ("spec.upstream.tls.ca".to_string(), e))?)
            }
        };
        let server_name = match &spec.server_name {
            None => None,
            Some(n) => Some(ServerName::try_from(n.clone()).map_err(|_| {
                (
                    "spec.upstream.tls.serverName".to_string(),
                    format!("{n:?} is not a DNS name or IP address"),
                )
            })?),
        };
        let key = format!(
            "ca={};name={};insecure={};client={}",
            ca.map_or_else(
                || "system".to_string(),
                |(_, pem)| switchyard_config::manifest::sha256_hex(pem.as_bytes())
            ),
            spec.server_name.as_deref().unwrap_or(""),
            spec.insecure_skip_verify,
            client.map_or("", |c| c.digest.as_str())
        );
        Ok(UpstreamTls {
            roots,
            server_name,
            insecure_skip_verify: spec.insecure_skip_verify,
            client: client.map(|c| c.key.clone()),
            key,
        })
    }
}

/// The trust anchors of a CA credential (`name`, its PEM `value`): for upstream TLS
/// (`spec.upstream.tls.ca`) and client certificates (`spec.clientAuth.ca`). The error says
/// why, naming the credential; the caller names the field.
pub(crate) fn ca_roots(name: &str, pem: &str) -> Result<Arc<RootCertStore>, String> {
    let certs = parse_chain(pem)
        .map_err(|e| format!("Credential {name:?} holds no CA certificate: {e}"))?;
    let mut store = RootCertStore::empty();
    let (_, bad) = store.add_parsable_certificates(certs);
    if bad > 0 || store.is_empty() {
        return Err(format!(
            "Credential {name:?}: {bad} certificate(s) cannot be trust anchors"
        ));
    }
    Ok(Arc::new(store))
}

/// One compiled certificate: its key for handshakes, and what it covers.
#[derive(Debug)]
pub struct Certificate {
    pub name: Arc<str>,
    /// Digest of the manifest (unchanged digest: the same `Arc` is kept across compiles).
    pub digest: String,
    pub key: Arc<CertifiedKey>,
    /// The DNS names of the leaf's subjectAltName, lowercase (`*.example.com` as written).
    pub hosts: Vec<String>,
    /// The leaf's notAfter, seconds since the Unix epoch.
    pub not_after: i64,
    /// Served when no other certificate covers the SNI (or there is none).
    pub default: bool,
    /// `spec.clientAuth`: handshakes selecting this certificate verify client certificates.
    pub client_auth: Option<ClientAuth>,
}

/// The environment's certificates by the host names they cover.
#[derive(Debug, Default)]
pub struct CertificateIndex {
    exact: HashMap<String, Arc<Certificate>>,
    /// `example.com` for a certificate covering `*.example.com`.
    wildcard: HashMap<String, Arc<Certificate>>,
    default: Option<Arc<Certificate>>,
}

impl CertificateIndex {
    /// Indexes `certificates`. Where two cover the same name, the one that expires last
    /// wins (during a rotation that adds the new certificate before removing the old one,
    /// the new one is served), then the name that sorts first.
    pub fn build(certificates: &OrdMap<Arc<str>, Arc<Certificate>>) -> CertificateIndex {
        let mut ordered: Vec<&Arc<Certificate>> = certificates.values().collect();
        ordered.sort_by(|a, b| b.not_after.cmp(&a.not_after).then(a.name.cmp(&b.name)));
        let mut index = CertificateIndex::default();
        for c in ordered {
            for host in &c.hosts {
                let (map, key) = match host.strip_prefix("*.") {
                    Some(parent) => (&mut index.wildcard, parent),
                    None => (&mut index.exact, host.as_str()),
                };
                map.entry(key.to_string()).or_insert_with(|| c.clone());
            }
            if c.default && index.default.is_none() {
                index.default = Some(c.clone());
            }
        }
        index
    }

    /// The certificate for a handshake: the one naming `sni` exactly, else one whose
    /// wildcard covers it (one label), else the default; `None` (the handshake is refused)
    /// when none applies.
    pub fn select(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        self.select_certificate(sni).map(|c| c.key.clone())
    }

    /// [`CertificateIndex::select`], the compiled certificate (with its `clientAuth`).
    pub fn select_certificate(&self, sni: Option<&str>) -> Option<&Arc<Certificate>> {
        if let Some(sni) = sni {
            let sni = sni.trim_end_matches('.').to_ascii_lowercase();
            if let Some(c) = self.exact.get(&sni) {
                return Some(c);
            }
            if let Some((_, parent)) = sni.split_once('.')
                && let Some(c) = self.wildcard.get(parent)
            {
                return Some(c);
            }
        }
        self.default.as_ref()
    }

    /// Whether any certificate is known (an HTTPS listener without one refuses every
    /// handshake).
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty() && self.default.is_none()
    }

    /// Whether a route host (`api.example.com`, or `.example.com` for `*.example.com`)
    /// is named by a certificate: exactly, or by a wildcard certificate for the same
    /// parent (the default does not count).
    pub fn covers_pattern(&self, pattern: &crate::runtime::HostPattern) -> bool {
        match pattern {
            crate::runtime::HostPattern::Exact(h) => self.covers(h),
            crate::runtime::HostPattern::Wildcard(suffix) => self
                .wildcard
                .contains_key(suffix.trim_start_matches('.').to_ascii_lowercase().as_str()),
        }
    }

    /// Whether a handshake for `host` would get a certificate naming it (the default
    /// does not count).
    pub fn covers(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.exact.contains_key(&host)
            || host
                .split_once('.')
                .is_some_and(|(_, parent)| self.wildcard.contains_key(parent))
    }
}

/// [`compile`], and `spec.clientAuth` against the environment's credentials.
pub(crate) fn compile_with_credentials(
    m: &Located<Manifest>,
    c: &CertificateManifest,
    credentials: &OrdMap<Arc<str>, Arc<crate::runtime::Credential>>,
) -> Result<Certificate, Vec<ConfigError>> {
    let client_auth = tls_client::compile(m, c, credentials);
    match (compile(m, c), client_auth) {
        (Ok(mut cert), Ok(client_auth)) => {
            cert.client_auth = client_auth;
            Ok(cert)
        }
        (Ok(_), Err(e)) => Err(vec![e]),
        (Err(es), Ok(_)) => Err(es),
        (Err(mut es), Err(e)) => {
            es.push(e);
            Err(es)
        }
    }
}

/// Parses and checks a certificate document: the PEM chain and key, that the key is the
/// leaf's, that each certificate of the chain is signed by the next. Messages name the
/// field and never contain key material. Validity dates are [`check_validity`]'s.
/// `spec.clientAuth` is not compiled here (it needs the credentials): the result has none.
pub fn compile(
    m: &Located<Manifest>,
    c: &CertificateManifest,
) -> Result<Certificate, Vec<ConfigError>> {
    let name = c.metadata.name.value.as_str();
    let err = |field: &str, message: String| {
        ConfigError::new(
            &m.source,
            Position::from_location(&m.source, c.metadata.name.referenced),
            message,
        )
        .entity(Kind::Certificate, name)
        .field(field.to_string())
    };
    let chain = parse_chain(&c.spec.certificate).map_err(|e| vec![err("spec.certificate", e)])?;
    let key = PrivateKeyDer::from_pem_slice(c.spec.private_key.as_bytes()).map_err(|_| {
        vec![err(
            "spec.privateKey",
            "no private key found: expected a PEM block `PRIVATE KEY` (PKCS#8), \
             `EC PRIVATE KEY` (SEC1) or `RSA PRIVATE KEY` (PKCS#1)"
                .into(),
        )]
    })?;
    let parsed = parse_x509(&chain).map_err(|e| vec![err("spec.certificate", e)])?;
    let mut errors = Vec::new();
    for (i, pair) in parsed.windows(2).enumerate() {
        if pair[0]
            .verify_signature(Some(pair[1].public_key()))
            .is_err()
        {
            errors.push(err(
                "spec.certificate",
                format!(
                    "the chain does not verify: certificate {} ({}) is not signed by \
                     certificate {} ({})",
                    i + 1,
                    pair[0].subject(),
                    i + 2,
                    pair[1].subject()
                ),
            ));
        }
    }
    let leaf = &parsed[0];
    let hosts = dns_names(leaf);
    if hosts.is_empty() {
        errors.push(err(
            "spec.certificate",
            format!(
                "the certificate ({}) names no DNS host in its subjectAltName; clients \
                 verify the host against it",
                leaf.subject()
            ),
        ));
    }
    let not_after = leaf.validity().not_after.timestamp();
    let key = match CertifiedKey::from_der(chain.clone(), key, &provider()) {
        Ok(k) => Some(k),
        Err(rustls::Error::InconsistentKeys(_)) => {
            errors.push(err(
                "spec.privateKey",
                "the private key does not match the certificate (the leaf's public key is \
                 another key's)"
                    .into(),
            ));
            None
        }
        Err(e) => {
            errors.push(err(
                "spec.privateKey",
                format!("the private key cannot be used: {e}"),
            ));
            None
        }
    };
    match key {
        Some(key) if errors.is_empty() => Ok(Certificate {
            name: name.into(),
            digest: m.digest.clone(),
            key: Arc::new(key),
            hosts,
            not_after,
            default: c.spec.default,
            client_auth: None,
        }),
        _ => Err(errors),
    }
}

/// Refuses a certificate (any of its chain) that is expired or not yet valid at `now`.
/// Checked where a certificate is applied (the Manager's batch, a standalone Worker's
/// files), not where it is only served: a Worker keeps serving what was accepted.
pub fn check_validity(m: &Located<Manifest>, now: SystemTime) -> Vec<ConfigError> {
    let Manifest::Certificate(c) = &m.value else {
        return Vec::new();
    };
    let Ok(chain) = parse_chain(&c.spec.certificate) else {
        return Vec::new();
    };
    let Ok(parsed) = parse_x509(&chain) else {
        return Vec::new();
    };
    let now = unix_seconds(now);
    let mut errors = Vec::new();
    for (i, cert) in parsed.iter().enumerate() {
        let v = cert.validity();
        let problem = if v.not_after.timestamp() < now {
            Some(format!("expired on {}", v.not_after))
        } else if v.not_before.timestamp() > now {
            Some(format!("not valid before {}", v.not_before))
        } else {
            None
        };
        if let Some(problem) = problem {
            errors.push(
                ConfigError::new(
                    &m.source,
                    Position::from_location(&m.source, c.metadata.name.referenced),
                    format!(
                        "certificate {} of the chain ({}) is {problem}",
                        i + 1,
                        cert.subject()
                    ),
                )
                .entity(Kind::Certificate, &c.metadata.name.value)
                .field("spec.certificate"),
            );
        }
    }
    errors
}

/// How soon `plan` and `apply` warn that a certificate they send expires.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 86_400);

/// A warning for a certificate document whose leaf expires within `within` of `now` (and
/// has not yet: an expired one is refused where it is applied), naming where it was read.
pub fn expiry_warning(m: &Located<Manifest>, now: SystemTime, within: Duration) -> Option<String> {
    let Manifest::Certificate(c) = &m.value else {
        return None;
    };
    let chain = parse_chain(&c.spec.certificate).ok()?;
    let parsed = parse_x509(&chain).ok()?;
    let not_after = parsed.first()?.validity().not_after;
    let left = not_after.timestamp() - unix_seconds(now);
    let window = i64::try_from(within.as_secs()).unwrap_or(i64::MAX);
    if left < 0 || left > window {
        return None;
    }
    let position = Position::from_location(&m.source, c.metadata.name.referenced);
    Some(format!(
        "{}:{}: certificate {:?} expires in {} days ({not_after})",
        m.source.file,
        position.line,
        c.metadata.name.value,
        left / 86_400
    ))
}

fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Seconds from `now` until the certificate expires (negative once expired).
pub fn seconds_left(c: &Certificate, now: SystemTime) -> i64 {
    c.not_after.saturating_sub(unix_seconds(now))
}

/// A PEM certificate chain (leaf first); the error says what was expected.
pub fn parse_chain(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not a PEM certificate chain: {e}"))?;
    if chain.is_empty() {
        return Err(
            "no certificate found: expected PEM blocks `-----BEGIN CERTIFICATE-----`, \
                    the leaf first"
                .into(),
        );
    }
    Ok(chain)
}

fn parse_x509<'a>(
    chain: &'a [CertificateDer<'static>],
) -> Result<Vec<X509Certificate<'a>>, String> {
    chain
        .iter()
        .enumerate()
        .map(|(i, der)| {
            X509Certificate::from_der(der)
                .map(|(_, c)| c)
                .map_err(|e| format!("certificate {} of the chain is not valid X.509: {e}", i + 1))
        })
        .collect()
}

fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

#[path = "tls_client.rs"]
mod tls_client;
pub use tls_client::{ClientAuth, ClientIdentity};

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
