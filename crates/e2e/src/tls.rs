//! TLS for end-to-end tests: a test CA issuing certificates (rcgen), their `kind:
//! Certificate` manifests, and a real rustls client that reports what the handshake gave it
//! (the leaf certificate, the ALPN protocol, whether the session was resumed).

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, HandshakeKind, RootCertStore, ServerConfig};
use switchyard_worker::upstream_tls::AcceptAnyCertificate;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A certificate authority for one test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    root: CertificateDer<'static>,
    /// The CA certificate, PEM (what a `tls.ca` credential holds).
    pub root_pem: String,
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
        let root = params.self_signed(&key).unwrap();
        TestCa {
            issuer: Issuer::new(params, key),
            root_pem: root.pem(),
            root: root.der().clone(),
        }
    }

    /// A fresh ECDSA P-256 certificate for `hosts` (each issue is a new key).
    pub fn issue(&self, hosts: &[&str]) -> Issued {
        self.issue_with(hosts, |_| {})
    }

    /// [`TestCa::issue`] with the parameters adjusted by `edit` (validity, say).
    pub fn issue_with(&self, hosts: &[&str], edit: impl FnOnce(&mut CertificateParams)) -> Issued {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params =
            CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, hosts[0]);
        edit(&mut params);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            leaf: cert.der().clone(),
        }
    }

    /// A client certificate: subject CN `cn`, no subjectAltName unless `edit` adds one.
    pub fn issue_client(&self, cn: &str, edit: impl FnOnce(&mut CertificateParams)) -> Issued {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        edit(&mut params);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            leaf: cert.der().clone(),
        }
    }

    /// A client trusting this CA only, offering `alpn`.
    pub fn client(&self, alpn: &[&str]) -> TlsClient {
        let config = ClientConfig::builder_with_provider(switchyard_engine::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(self.roots())
            .with_no_client_auth();
        TlsClient::with(config, alpn)
    }

    /// [`TestCa::client`], presenting `cert` to servers that ask for a client certificate.
    pub fn client_presenting(&self, alpn: &[&str], cert: &Issued) -> TlsClient {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
        let config = ClientConfig::builder_with_provider(switchyard_engine::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(self.roots())
            .with_client_auth_cert(chain, key)
            .unwrap();
        TlsClient::with(config, alpn)
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.root.clone()).unwrap();
        roots
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

/// A `kind: Certificate` document asking clients for a certificate verified against the
/// CA in Credential `ca` (`spec.clientAuth`), `required` in the handshake or optional.
pub fn client_auth_certificate_manifest(
    name: &str,
    cert: &Issued,
    ca: &str,
    required: bool,
) -> String {
    let mode = if required { "required" } else { "optional" };
    format!(
        "{}  clientAuth:\n    ca: {ca}\n    mode: {mode}\n",
        certificate_manifest(name, cert, false)
    )
}

/// A Credential of type `secret` holding `pem` (a CA bundle, say).
pub fn secret_credential(name: &str, pem: &str) -> String {
    let indented: String = pem.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Credential\nmetadata: {{ name: {name} }}\nspec:\n  type: secret\n  value: |\n{indented}"
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
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate))
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

/// An HTTPS upstream serving `cert`: answers every request 200 with `x-upstream-id: id` and
/// `x-upstream-version` (the HTTP version it was asked in: `HTTP/1.1` or `HTTP/2.0`), counts
/// the TLS connections it accepted, and keeps the client certificates presented. It offers
/// `http/1.1` in ALPN, or what [`TlsUpstream::start_alpn`] says.
pub struct TlsUpstream {
    pub addr: SocketAddr,
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
    pub client_certificates: Arc<std::sync::Mutex<Vec<CertificateDer<'static>>>>,
}

impl TlsUpstream {
    pub async fn start(cert: &Issued, id: &str) -> TlsUpstream {
        Self::start_inner(cert, id, None, &["http/1.1"]).await
    }

    /// An upstream offering `alpn` in its handshakes (and serving HTTP/1.1 or HTTP/2 by
    /// what the client speaks).
    pub async fn start_alpn(cert: &Issued, id: &str, alpn: &[&str]) -> TlsUpstream {
        Self::start_inner(cert, id, None, alpn).await
    }

    /// An upstream that requires a client certificate issued by `clients`.
    pub async fn requiring_client_certificates(
        cert: &Issued,
        id: &str,
        clients: &TestCa,
    ) -> TlsUpstream {
        Self::start_inner(cert, id, Some(clients), &["http/1.1"]).await
    }

    async fn start_inner(
        cert: &Issued,
        id: &str,
        clients: Option<&TestCa>,
        alpn: &[&str],
    ) -> TlsUpstream {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
        let builder = ServerConfig::builder_with_provider(switchyard_engine::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match clients {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots.add(ca.root.clone()).unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    switchyard_engine::tls::provider(),
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, key).unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        let client_certificates = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = client_certificates.clone();
        let id = http::HeaderValue::from_str(id).unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let count = count.clone();
                let seen = seen.clone();
                let id = id.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if let Some(c) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
                        seen.lock().unwrap().push(c.clone().into_owned());
                    }
                    let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                        let id = id.clone();
                        let version = format!("{:?}", req.version());
                        async move {
                            let mut resp = http::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from_static(b"ok"),
                            ));
                            let h = resp.headers_mut();
                            h.insert("x-upstream-id", id);
                            h.insert("x-upstream-version", version.parse().unwrap());
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
                });
            }
        });
        TlsUpstream {
            addr,
            accepted,
            client_certificates,
        }
    }
}
