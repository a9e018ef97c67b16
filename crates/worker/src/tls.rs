//! The HTTPS listener's TLS: rustls, with the certificate of each handshake chosen by SNI
//! from the snapshot current when the handshake starts. A certificate rotation is therefore
//! an ordinary swap: handshakes after it get the new certificate, and connections already
//! established keep the keys they negotiated (nothing is closed or re-handshaken).

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::runtime::Runtime;

/// TLS sessions remembered for resumption by session id (tickets need no memory).
const SESSION_CACHE: usize = 16 * 1024;

/// Picks each handshake's certificate from the current snapshot. It exists so that the
/// one `ServerConfig` a listener is built with never has to change: what changes is the
/// snapshot it reads.
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
        let chosen = rt.snapshot.tls().select(hello.server_name());
        if chosen.is_none() {
            rt.obs.metrics.tls_no_certificate.inc();
            tracing::debug!(
                sni = hello.server_name().unwrap_or("-"),
                "TLS handshake refused: no certificate covers this name and there is no default"
            );
        }
        chosen
    }
}

/// The acceptor of an HTTPS listener: TLS 1.3 and 1.2, ALPN `h2` then `http/1.1`, session
/// resumption by tickets and by session id.
pub(crate) fn acceptor(current: Arc<ArcSwap<Runtime>>) -> Result<TlsAcceptor, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(switchyard_engine::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SnapshotCertificates { current }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
