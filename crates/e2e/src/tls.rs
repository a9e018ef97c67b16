//! TLS for end-to-end tests: a test CA issuing certificates (rcgen), their `kind:
//! Certificate` manifests, and a real rustls client that reports what the handshake gave it
//! (the leaf certificate, the ALPN protocol, whether the session was resumed).

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, HandshakeKind, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A certificate authority for one test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    root: CertificateDer<'static>,
}

/// A certificate issued by a [`TestCa`]: the PEM chain and key, and the leaf as DER (to
/// compare with what a handshake presented).
#[derive(Clone)]
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
    pub leaf: CertificateDer<'static>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Switchyard test CA");
        let root = params.self_signed(&key).unwrap().der().clone();
        TestCa {
            issuer: Issuer::new(params, key),
            root,
        }
    }

    /// A fresh ECDSA P-256 certificate for `hosts` (each issue is a new key).
    pub fn issue(&self, hosts: &[&str]) -> Issued {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params =
            CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, hosts[0]);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            leaf: cert.der().clone(),
        }
    }

    /// A client trusting this CA only, offering `alpn`.
    pub fn client(&self, alpn: &[&str]) -> TlsClient {
        let mut roots = RootCertStore::empty();
        roots.add(self.root.clone()).unwrap();
        let config = ClientConfig::builder_with_provider(switchyard_engine::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsClient::with(config, alpn)
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// A `kind: Certificate` document.
pub fn certificate_manifest(name: &str, cert: &Issued, default: bool) -> String {
    let indent = |t: &str| -> String { t.lines().map(|l| format!("    {l}\n")).collect() };
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Certificate\nmetadata: {{ name: {name} }}\nspec:\n  default: {default}\n  certificate: |\n{}  privateKey: |\n{}",
        indent(&cert.chain_pem),
        indent(&cert.key_pem)
    )
}

/// A TLS client with one configuration (and so one session cache: a second connection to
/// the same name can resume).
#[derive(Clone)]
pub struct TlsClient {
    connector: TlsConnector,
}

/// What a handshake gave the client.
pub struct Handshake {
    pub stream: TlsStream<TcpStream>,
    pub leaf: CertificateDer<'static>,
    pub alpn: Option<String>,
    pub resumed: bool,
}

impl TlsClient {
    fn with(mut config: ClientConfig, alpn: &[&str]) -> TlsClient {
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
        }
    }

    /// A client that accepts any certificate: to see which one a server presents for a
    /// name it has no certificate for (its default). Never for anything else.
    pub fn accepting_any(alpn: &[&str]) -> TlsClient {
        let config = ClientConfig::builder_with_provider(switchyard_engine::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny))
            .with_no_client_auth();
        TlsClient::with(config, alpn)
    }

    /// Connects and completes the handshake for `sni`.
    pub async fn connect(&self, addr: SocketAddr, sni: &str) -> std::io::Result<Handshake> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(sni.to_string()).map_err(std::io::Error::other)?;
        let stream = self.connector.connect(name, tcp).await?;
        let (_, conn) = stream.get_ref();
        let leaf = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .cloned()
            .ok_or_else(|| std::io::Error::other("no peer certificate"))?;
        let alpn = conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        let resumed = conn.handshake_kind() == Some(HandshakeKind::Resumed);
        Ok(Handshake {
            stream,
            leaf,
            alpn,
            resumed,
        })
    }
}

#[derive(Debug)]
struct AcceptAny;

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        switchyard_engine::tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
