//! How a client verifies the Manager it talks to over `https://`, and, optionally, proves
//! who it is with a client certificate (a Worker's certificate from
//! `switchyard manager worker-cert create`).

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::ClientConfig;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::ClientError;

/// The trust (and identity) a [`Transport`](super::Transport) uses for an `https://`
/// Manager: a CA bundle (`--manager-ca`, `--ca`, `SWITCHYARD_CA`) or the system's roots,
/// and an optional client certificate. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ManagerTls {
    /// `None`: the system's roots.
    ca: Option<Arc<RootCertStore>>,
    identity: Option<Identity>,
}

#[derive(Clone)]
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Identity")
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl ManagerTls {
    /// Verifies the Manager against the system's root certificates.
    pub fn system() -> ManagerTls {
        ManagerTls::default()
    }

    /// Verifies the Manager against the CA certificates of a PEM file (e.g. the Manager's
    /// `DATA/ca.pem`).
    pub fn ca_file(path: &Path) -> Result<ManagerTls, ClientError> {
        let pem = std::fs::read(path).map_err(|e| {
            ClientError::Config(format!("CA file {}: cannot read it: {e}", path.display()))
        })?;
        ManagerTls::ca_pem(&pem, &path.display().to_string())
    }

    /// [`ManagerTls::ca_file`] from PEM text; `origin` names it in errors.
    pub fn ca_pem(pem: &[u8], origin: &str) -> Result<ManagerTls, ClientError> {
        let mut roots = RootCertStore::empty();
        for (i, cert) in CertificateDer::pem_slice_iter(pem).enumerate() {
            let cert = cert.map_err(|e| {
                ClientError::Config(format!(
                    "CA file {origin}: certificate {}: not valid PEM: {e}",
                    i + 1
                ))
            })?;
            roots.add(cert).map_err(|e| {
                ClientError::Config(format!(
                    "CA file {origin}: certificate {}: not a usable CA certificate: {e}",
                    i + 1
                ))
            })?;
        }
        if roots.is_empty() {
            return Err(ClientError::Config(format!(
                "CA file {origin}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it"
            )));
        }
        Ok(ManagerTls {
            ca: Some(Arc::new(roots)),
            identity: None,
        })
    }

    /// Also presents this client certificate (PEM chain, leaf first) and key (PEM) files.
    pub fn client_certificate(self, cert: &Path, key: &Path) -> Result<ManagerTls, ClientError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| {
                ClientError::Config(format!(
                    "client certificate file {}: cannot read it: {e}",
                    path.display()
                ))
            })
        };
        let chain = CertificateDer::pem_slice_iter(&read(cert)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClientError::Config(format!("{}: not valid PEM: {e}", cert.display())))?;
        if chain.is_empty() {
            return Err(ClientError::Config(format!(
                "{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
                cert.display()
            )));
        }
        // The parser's error never quotes the key.
        let key_der = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| {
            ClientError::Config(format!("{}: no usable PEM private key: {e}", key.display()))
        })?;
        let identity = Identity {
            chain,
            key: Arc::new(key_der),
        };
        // Checked now (key matches the certificate), not at the first connection.
        client_config(self.ca.clone(), Some(&identity))?;
        Ok(ManagerTls {
            identity: Some(identity),
            ..self
        })
    }

    /// Whether a client certificate is configured.
    pub fn has_client_certificate(&self) -> bool {
        self.identity.is_some()
    }

    /// The rustls client configuration (loads the system's roots when no CA was given).
    pub(super) fn config(&self) -> Result<ClientConfig, ClientError> {
        client_config(self.ca.clone(), self.identity.as_ref())
    }
}

fn provider() -> Arc<CryptoProvider> {
    // The same provider as the rest of Switchyard (see `switchyard_engine::tls::provider`).
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(
    ca: Option<Arc<RootCertStore>>,
    identity: Option<&Identity>,
) -> Result<ClientConfig, ClientError> {
    let roots = ca.unwrap_or_else(system_roots);
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    // ALPN (http/1.1) is set by the connector.
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(|e| {
                ClientError::Config(format!(
                    "the client certificate and key do not go together: {e}"
                ))
            })?,
    };
    Ok(config)
}

/// A configuration that trusts nothing: for a transport to an `http://` Manager, which
/// never uses it.
pub(super) fn empty_config() -> ClientConfig {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.with_root_certificates(RootCertStore::empty())
                .with_no_client_auth()
        })
        .unwrap_or_else(|_| {
            ClientConfig::builder()
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth()
        })
}

fn system_roots() -> Arc<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(found.certs);
    Arc::new(store)
}

/// The TLS error somewhere in a connection error's chain, if the failure was TLS's, with a
/// hint at the usual fix.
pub(super) fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(explain(tls));
        }
        // An `io::Error` hides what it wraps from `source()`: look inside (the connector
        // wraps tokio-rustls' io::Error, which wraps the rustls error, in another).
        next = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

fn explain(e: &rustls::Error) -> String {
    use rustls::{AlertDescription, CertificateError, Error};
    let hint = match e {
        Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => {
            "the Manager's certificate is not signed by a CA this client trusts: give the \
             Manager's CA (its DATA/ca.pem) with --manager-ca / --ca or SWITCHYARD_CA"
        }
        Error::InvalidCertificate(CertificateError::NotValidForName)
        | Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            "the Manager's certificate does not name the host in the URL: use the name or \
             address it was issued for (the Manager logs them), or re-issue it"
        }
        Error::InvalidCertificate(CertificateError::Expired)
        | Error::InvalidCertificate(CertificateError::ExpiredContext { .. }) => {
            "the Manager's certificate has expired"
        }
        Error::InvalidMessage(_) => {
            "the Manager does not speak TLS on this address: is it running with \
             --insecure-http (then use http://)?"
        }
        Error::AlertReceived(AlertDescription::CertificateRequired)
        | Error::AlertReceived(AlertDescription::BadCertificate)
        | Error::AlertReceived(AlertDescription::UnknownCA) => {
            "the Manager wants a client certificate it trusts: give this Worker's \
             certificate (switchyard manager worker-cert create)"
        }
        _ => "",
    };
    if hint.is_empty() {
        format!("TLS: {e}")
    } else {
        format!("TLS: {e} ({hint})")
    }
}
