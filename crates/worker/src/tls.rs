//! The HTTPS listener's TLS: rustls, with the certificate of each handshake chosen by SNI
//! from the snapshot current when the handshake starts. A certificate rotation is therefore
//! an ordinary swap: handshakes after it get the new certificate, and connections already
//! established keep the keys they negotiated (nothing is closed or re-handshaken).
//!
//! The ClientHello is read first (`LazyConfigAcceptor`) so that the configuration can
//! depend on the certificate it selects: a certificate without `spec.clientAuth` is served
//! by the listener's one shared configuration (its resolver reads the snapshot, so
//! rotations need no new configuration, and sessions resume across them); one with
//! `clientAuth` by the configuration of that certificate version (its client verifier,
//! its own session cache and ticket keys), built on its first handshake and kept in the
//! compiled certificate. A rotated certificate or CA is a new version: sessions of the old
//! one do not resume under it, so a client certificate the new CA would refuse cannot come
//! back in on an old session.

use std::fmt;
use std::io;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::{Acceptor, ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use switchyard_engine::tls::{Certificate, ClientIdentity};
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use crate::runtime::Runtime;

/// TLS sessions remembered for resumption by session id (tickets need no memory).
const SESSION_CACHE: usize = 16 * 1024;
/// The same for each certificate version with client authentication (a cache each).
const CLIENT_AUTH_SESSION_CACHE: usize = 1024;
/// ALPN: HTTP/2 preferred.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];
/// ALPN of a listener with `http2: false`.
const ALPN_HTTP1: [&[u8]; 1] = [b"http/1.1"];

/// What a listener's settings ask of its handshakes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TlsOptions {
    /// Offer `h2` in ALPN.
    pub http2: bool,
    /// Complete only handshakes whose certificate authenticates clients.
    pub require_client_certificate: bool,
}

/// Picks each handshake's certificate from the current snapshot. It exists so that the
/// one shared `ServerConfig` never has to change: what changes is the snapshot it reads.
struct SnapshotCertificates {
    current: Arc<ArcSwap<Runtime>>,
}

impl fmt::Debug for SnapshotCertificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SnapshotCertificates")
    }
}

impl ResolvesServerCert for SnapshotCertificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let rt = self.current.load();
        let chosen = rt.snapshot.tls().select_certificate(hello.server_name());
        match chosen {
            None => {
                rt.obs.metrics.tls_no_certificate.inc();
                tracing::debug!(
                    sni = hello.server_name().unwrap_or("-"),
                    "TLS handshake refused: no certificate covers this name and there is no default"
                );
                None
            }
            // A swap between reading the ClientHello and here gave this name a certificate
            // that asks for client certificates: never served without asking (the client
            // retries and gets the certificate's own configuration).
            Some(c) if c.client_auth.is_some() => {
                tracing::debug!(
                    sni = hello.server_name().unwrap_or("-"),
                    "TLS handshake refused: the certificate now requires client authentication"
                );
                None
            }
            Some(c) => Some(c.key.clone()),
        }
    }
}

/// Always the one certificate version a client-authenticating configuration is built for.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// The acceptor of an HTTPS listener: TLS 1.3 and 1.2, ALPN `h2` then `http/1.1`, session
/// resumption by tickets and by session id, client certificates where the selected
/// certificate asks for them.
#[derive(Clone)]
pub(crate) struct HttpsAcceptor {
    current: Arc<ArcSwap<Runtime>>,
    /// For certificates without client authentication.
    shared: Arc<ServerConfig>,
    /// The same without `h2` in ALPN (its session cache and ticket keys shared).
    shared_http1: Arc<ServerConfig>,
}

/// An accepted TLS connection and the identity of the client certificate its handshake
/// verified (computed once, here).
pub(crate) struct Accepted {
    pub stream: TlsStream<TcpStream>,
    pub client: Option<ClientIdentity>,
}

impl HttpsAcceptor {
    pub(crate) fn new(current: Arc<ArcSwap<Runtime>>) -> Result<HttpsAcceptor, rustls::Error> {
        let mut config = ServerConfig::builder_with_provider(switchyard_engine::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SnapshotCertificates {
                current: current.clone(),
            }));
        finish(&mut config, SESSION_CACHE)?;
        let mut http1 = config.clone();
        http1.alpn_protocols = ALPN_HTTP1.iter().map(|p| p.to_vec()).collect();
        Ok(HttpsAcceptor {
            current,
            shared: Arc::new(config),
            shared_http1: Arc::new(http1),
        })
    }

    /// The handshake: the ClientHello read, the configuration chosen by the certificate it
    /// selects in the current snapshot, the handshake completed with it.
    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
        options: TlsOptions,
    ) -> io::Result<Accepted> {
        let start = LazyConfigAcceptor::new(Acceptor::default(), stream).await?;
        let (config, ca) = {
            let hello = start.client_hello();
            let rt = self.current.load();
            let chosen = rt.snapshot.tls().select_certificate(hello.server_name());
            match chosen.and_then(|c| Some((c, c.client_auth.as_ref()?))) {
                Some((c, auth)) => {
                    let config = client_auth_config(c)?;
                    let config = if options.http2 {
                        config
                    } else {
                        let mut http1 = (*config).clone();
                        http1.alpn_protocols = ALPN_HTTP1.iter().map(|p| p.to_vec()).collect();
                        Arc::new(http1)
                    };
                    (config, Some(auth.ca.clone()))
                }
                None if options.require_client_certificate => {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "this listener requires client certificates, and the certificate for {:?} does not ask for one",
                            hello.server_name().unwrap_or("-")
                        ),
                    ));
                }
                // Without client authentication, or no certificate at all (the shared
                // configuration refuses the handshake and counts it).
                _ if options.http2 => (self.shared.clone(), None),
                _ => (self.shared_http1.clone(), None),
            }
        };
        let stream = start.into_stream(config).await?;
        let client = ca.and_then(|ca| {
            let leaf = stream.get_ref().1.peer_certificates()?.first()?;
            Some(ClientIdentity::from_leaf(ca, leaf))
        });
        Ok(Accepted { stream, client })
    }
}

/// The configuration of a certificate version with `clientAuth`: built on its first
/// handshake, kept in the compiled certificate for the next ones.
fn client_auth_config(c: &Certificate) -> io::Result<Arc<ServerConfig>> {
    let Some(auth) = &c.client_auth else {
        return Err(io::Error::other("internal: no client authentication"));
    };
    auth.server_config(|| {
        let mut config =
            ServerConfig::builder_with_provider(switchyard_engine::tls::provider())
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
                .with_client_cert_verifier(auth.verifier.clone())
                .with_cert_resolver(Arc::new(Fixed(c.key.clone())));
        finish(&mut config, CLIENT_AUTH_SESSION_CACHE)?;
        Ok::<_, rustls::Error>(config)
    })
    .map_err(|e| {
        tracing::warn!(certificate = %c.name, error = %e, "cannot build the TLS configuration of a certificate with client authentication");
        io::Error::other(e)
    })
}

/// What every configuration of the listener shares: ALPN, a session cache, ticket keys.
fn finish(config: &mut ServerConfig, sessions: usize) -> Result<(), rustls::Error> {
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    config.session_storage = ServerSessionMemoryCache::new(sessions);
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(())
}
