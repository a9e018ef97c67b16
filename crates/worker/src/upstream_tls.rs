//! TLS to `https://` upstream targets: the client configuration of a target's pool (the
//! system's roots or the proxy's CA credential, SNI and host-name verification, HTTP/1.1
//! by ALPN), and the one stream type upstream connections use, plain or TLS.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use switchyard_engine::tls::UpstreamTls;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// What a pool needs to open TLS connections to one target.
#[derive(Clone)]
pub(crate) struct TlsTarget {
    pub connector: TlsConnector,
    /// Sent as SNI and verified (`tls.serverName`, or the target's host).
    pub name: ServerName<'static>,
}

impl TlsTarget {
    /// The TLS client for `host` with `settings`; `system` gives the system's roots (read
    /// once per Worker, when the first target without a CA needs them).
    pub fn new(
        settings: &UpstreamTls,
        host: &str,
        alpn: Vec<Vec<u8>>,
        system: impl FnOnce() -> Arc<RootCertStore>,
    ) -> Result<TlsTarget, String> {
        let builder = ClientConfig::builder_with_provider(switchyard_engine::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = if settings.insecure_skip_verify {
            tracing::warn!(
                host,
                "upstream TLS certificate verification is OFF for this target \
                 (tls.insecureSkipVerify): labs only"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate))
        } else {
            let roots = settings.roots.clone().unwrap_or_else(system);
            builder.with_root_certificates(roots)
        };
        let mut config = match &settings.client {
            Some(key) => {
                builder.with_client_cert_resolver(Arc::new(ClientCertificate(key.clone())))
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn;
        let name = match &settings.server_name {
            Some(n) => n.clone(),
            None => ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
                .map_err(|e| format!("{host:?} cannot be verified: {e}"))?
                .to_owned(),
        };
        Ok(TlsTarget {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }
}

/// The certificate a pool presents to upstreams that ask for one
/// (`tls.clientCertificate`).
#[derive(Debug)]
struct ClientCertificate(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for ClientCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The system's trusted roots (`/etc/ssl/certs` and the like); empty if none can be read,
/// which makes every verification fail with an error saying so.
pub(crate) fn system_roots() -> Arc<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "cannot read some of the system's root certificates");
    }
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        tracing::warn!("no system root certificates: https upstreams need tls.ca");
    }
    Arc::new(store)
}

/// A TLS handshake with an upstream failed (certificate not trusted, wrong name, expired,
/// no common protocol): carried inside the connect error so that it is counted as its own
/// kind of upstream error.
#[derive(Debug, thiserror::Error)]
#[error("TLS with the upstream failed: {0}")]
pub(crate) struct UpstreamTlsError(pub io::Error);

impl UpstreamTlsError {
    pub fn is(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|i| i.is::<UpstreamTlsError>())
    }
}

/// An upstream connection's stream.
pub(crate) enum UpstreamIo {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl UpstreamIo {
    /// Whether the TLS handshake chose HTTP/2 (ALPN `h2`).
    pub fn alpn_h2(&self) -> bool {
        match self {
            UpstreamIo::Plain(_) => false,
            UpstreamIo::Tls(s) => s.get_ref().1.alpn_protocol() == Some(b"h2"),
        }
    }
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamIo::Plain(s) => s.is_write_vectored(),
            UpstreamIo::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Accepts any server certificate. For `tls.insecureSkipVerify` (labs) and for tests that
/// need to see what a server presents; never a default.
#[derive(Debug)]
pub struct AcceptAnyCertificate;

impl ServerCertVerifier for AcceptAnyCertificate {
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
