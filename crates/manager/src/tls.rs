//! The Manager's own HTTPS: its certificate authority (`DATA/ca.pem`, key `DATA/ca.key`
//! mode 0600, created on first start), the server certificate it issues itself for the
//! address it listens on (or the operator's `--tls-cert/--tls-key`), the Workers' client
//! certificates it issues (`switchyard manager worker-cert create`) and verifies.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use switchyard_config::files::write_private;

/// How the Manager serves its API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ServeTls {
    /// HTTPS with a server certificate from the Manager's own CA, issued at each start for
    /// the address it listens on, loopback, `localhost`, this host's name and `names`.
    #[default]
    OwnCertificate,
    /// HTTPS with the operator's certificate (PEM chain, leaf first) and key files.
    Files { cert: PathBuf, key: PathBuf },
    /// Plain HTTP (`--insecure-http`): tokens and the Workers' credentials in clear.
    InsecureHttp,
}

/// Why the Manager's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("cannot issue a certificate: {0}")]
    Issue(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TlsSetupError {
    TlsSetupError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The Manager's certificate authority: signs its server certificate and the Workers'
/// client certificates, and is what Workers and the CLI are told to trust.
pub struct ManagerCa {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    /// `DATA/ca.pem`.
    pub path: PathBuf,
}

impl std::fmt::Debug for ManagerCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ManagerCa")
            .field("path", &self.path)
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// How long the CA is valid (renewing it means handing Workers a new `--manager-ca`).
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a server certificate is valid; a new one is issued at every start.
const SERVER_VALIDITY: Duration = Duration::from_secs(397 * 24 * 3600);
/// How long a Worker's client certificate is valid, unless the operator says otherwise.
pub const WORKER_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

impl ManagerCa {
    /// Loads `DATA/ca.pem` and `DATA/ca.key`, or creates them (the key mode 0600). Returns
    /// the CA and whether it was created now.
    pub fn load_or_create(data_dir: &Path) -> Result<(ManagerCa, bool), TlsSetupError> {
        let path = data_dir.join("ca.pem");
        let key_path = data_dir.join("ca.key");
        match (path.exists(), key_path.exists()) {
            (true, true) => Ok((ManagerCa::load(&path, &key_path)?, false)),
            (false, false) => Ok((ManagerCa::create(&path, &key_path)?, true)),
            (true, false) => Err(file_error(
                &key_path,
                "missing, although ca.pem exists: restore it from a backup, or remove ca.pem \
                 to create a new CA (Workers then need the new ca.pem)",
            )),
            (false, true) => Err(file_error(
                &path,
                "missing, although ca.key exists: restore it from a backup, or remove ca.key \
                 to create a new CA (Workers then need the new ca.pem)",
            )),
        }
    }

    fn load(path: &Path, key_path: &Path) -> Result<ManagerCa, TlsSetupError> {
        let pem = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
        let key_pem = std::fs::read_to_string(key_path).map_err(|e| file_error(key_path, e))?;
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| file_error(key_path, format!("not a usable private key: {e}")))?;
        let der = CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| file_error(path, format!("not a PEM certificate: {e}")))?;
        let issuer = Issuer::from_ca_cert_der(&der, key)
            .map_err(|e| file_error(path, format!("not a usable CA certificate: {e}")))?;
        Ok(ManagerCa {
            issuer,
            der,
            path: path.to_path_buf(),
        })
    }

    fn create(path: &Path, key_path: &Path) -> Result<ManagerCa, TlsSetupError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| TlsSetupError::Issue(e.to_string()))?;
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| TlsSetupError::Issue(e.to_string()))?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let mut tag = [0u8; 4];
        getrandom::fill(&mut tag).map_err(|e| TlsSetupError::Issue(e.to_string()))?;
        let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Switchyard Manager CA {tag}"));
        set_validity(&mut params, CA_VALIDITY);
        let cert = params
            .self_signed(&key)
            .map_err(|e| TlsSetupError::Issue(e.to_string()))?;
        // The key first: a ca.pem without its key is refused at the next start.
        write_private(key_path, key.serialize_pem().trim_end())
            .map_err(|e| file_error(key_path, e))?;
        std::fs::write(path, cert.pem()).map_err(|e| file_error(path, e))?;
        Ok(ManagerCa {
            issuer: Issuer::new(params, key),
            der: cert.der().clone(),
            path: path.to_path_buf(),
        })
    }

    /// The CA certificate's SHA-256 fingerprint (`AB:CD:…`), as `openssl x509 -fingerprint
    /// -sha256` shows it: what an operator compares before trusting `ca.pem`.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.der.as_ref());
        digest
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// A server certificate for `names` (DNS names and IP addresses).
    fn issue_server(&self, names: &[String]) -> Result<Issued, TlsSetupError> {
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| TlsSetupError::Issue(e.to_string()))?;
        for name in names {
            let san = match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    name.clone()
                        .try_into()
                        .map_err(|e| TlsSetupError::Issue(format!("host name {name:?}: {e}")))?,
                ),
            };
            params.subject_alt_names.push(san);
        }
        params
            .distinguished_name
            .push(DnType::CommonName, "Switchyard Manager");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        set_validity(&mut params, SERVER_VALIDITY);
        self.sign(params)
    }

    /// A Worker's client certificate: names its environment and itself, in the subject
    /// (CN = name, OU = environment) and in a URI `switchyard://worker/ENV/NAME`.
    pub fn issue_worker(
        &self,
        env: &str,
        name: &str,
        validity: Duration,
    ) -> Result<Issued, TlsSetupError> {
        let uri = WorkerIdentity::uri(env, name);
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| TlsSetupError::Issue(e.to_string()))?;
        params
            .subject_alt_names
            .push(SanType::URI(uri.try_into().map_err(|e| {
                TlsSetupError::Issue(format!("worker name {name:?}: {e}"))
            })?));
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, env);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        set_validity(&mut params, validity);
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Result<Issued, TlsSetupError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| TlsSetupError::Issue(e.to_string()))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| TlsSetupError::Issue(e.to_string()))?;
        Ok(Issued {
            chain: vec![cert.der().clone()],
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            key: PrivateKeyDer::try_from(key.serialize_der())
                .map_err(|e| TlsSetupError::Issue(e.to_string()))?,
        })
    }
}

/// A certificate this CA issued, and its key.
pub struct Issued {
    pub chain: Vec<CertificateDer<'static>>,
    pub chain_pem: String,
    /// PEM (PKCS#8). Written only to files of mode 0600.
    pub key_pem: String,
    key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").finish_non_exhaustive()
    }
}

fn set_validity(params: &mut CertificateParams, validity: Duration) {
    let now = time_now();
    // An hour of slack for clocks a little behind.
    params.not_before = now - time::Duration::hours(1);
    params.not_after =
        now + time::Duration::seconds(i64::try_from(validity.as_secs()).unwrap_or(i64::MAX / 2));
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// Who a verified client certificate says the Worker is (from its
/// `switchyard://worker/ENV/NAME` URI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerIdentity {
    pub env: String,
    pub name: String,
}

impl WorkerIdentity {
    const PREFIX: &'static str = "switchyard://worker/";

    fn uri(env: &str, name: &str) -> String {
        format!("{}{env}/{name}", Self::PREFIX)
    }

    /// The identity in a (verified) leaf certificate, if it is a Worker certificate.
    pub fn from_certificate(der: &CertificateDer<'_>) -> Option<WorkerIdentity> {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        let san = cert.subject_alternative_name().ok()??;
        san.value.general_names.iter().find_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(uri) => {
                let rest = uri.strip_prefix(Self::PREFIX)?;
                let (env, name) = rest.split_once('/')?;
                Some(WorkerIdentity {
                    env: env.to_string(),
                    name: name.to_string(),
                })
            }
            _ => None,
        })
    }
}

/// The names the Manager's own server certificate covers when it listens on `addr`:
/// that address (unless it is the unspecified one), loopback, `localhost`, this host's
/// name, and the operator's `extra` names.
pub fn server_names(addr: SocketAddr, extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut add = |n: String| {
        if !n.is_empty() && !names.contains(&n) {
            names.push(n);
        }
    };
    if !addr.ip().is_unspecified() {
        add(addr.ip().to_string());
    }
    add(IpAddr::V4(Ipv4Addr::LOCALHOST).to_string());
    add(IpAddr::V6(Ipv6Addr::LOCALHOST).to_string());
    add("localhost".to_string());
    if let Some(host) = host_name() {
        add(host);
    }
    for n in extra {
        add(n.clone());
    }
    names
}

fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())?;
    let name = name.trim().to_ascii_lowercase();
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    valid.then_some(name)
}

/// What the HTTPS listener serves: the rustls configuration (client certificates from the
/// Manager's CA are asked for, never required at the TLS level — the worker token is
/// still the authentication, a certificate binds it to a Worker), and what to log.
pub struct ServerSetup {
    pub config: Arc<ServerConfig>,
    /// The names the certificate covers (own certificate) or its file.
    pub describe: String,
}

/// The server configuration for `tls` (not [`ServeTls::InsecureHttp`]) with the CA whose
/// certificates Workers may present.
pub fn server_config(
    tls: &ServeTls,
    ca: &ManagerCa,
    addr: SocketAddr,
    extra_names: &[String],
) -> Result<ServerSetup, TlsSetupError> {
    let provider = switchyard_engine::tls::provider();
    let (chain, key, describe) = match tls {
        ServeTls::InsecureHttp => {
            return Err(TlsSetupError::Config(
                "plain HTTP has no TLS configuration".into(),
            ));
        }
        ServeTls::OwnCertificate => {
            let names = server_names(addr, extra_names);
            let issued = ca.issue_server(&names)?;
            let describe = format!("own certificate for {}", names.join(", "));
            (issued.chain, issued.key, describe)
        }
        ServeTls::Files { cert, key } => {
            let pem = std::fs::read_to_string(cert).map_err(|e| file_error(cert, e))?;
            let chain =
                switchyard_engine::tls::parse_chain(&pem).map_err(|e| file_error(cert, e))?;
            let key_pem = std::fs::read(key).map_err(|e| file_error(key, e))?;
            let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| file_error(key, format!("no usable PEM private key: {e}")))?;
            (chain, key_der, format!("certificate {}", cert.display()))
        }
    };
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
        TlsSetupError::Config(format!(
            "the certificate and its key do not go together: {e}"
        ))
    })?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca.der().clone())
        .map_err(|e| file_error(&ca.path, e))?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsSetupError::Config(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServerSetup {
        config: Arc::new(config),
        describe,
    })
}
