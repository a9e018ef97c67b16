//! Client certificates on the HTTPS listener (mutual TLS): `spec.clientAuth` of a `kind:
//! Certificate` compiled into the verifier of the handshakes that select it, and the
//! identity a verified client certificate gives the connection (what `mtls-auth` reads).
//!
//! The CA is a credential the certificate references: a change of it recompiles the
//! certificate (a new version, with a new verifier and a new TLS configuration), which is
//! how a CA rotation is a hot change. Connections already established keep what their
//! handshake verified.

use std::fmt;
use std::sync::{Arc, OnceLock};

use imbl::OrdMap;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use switchyard_config::Kind;
use switchyard_config::error::{ConfigError, Position, Reason};
use switchyard_config::load::Located;
use switchyard_config::manifest::{
    CertificateManifest, ClientAuthMode, CredentialSpec, Manifest, MtlsIdentity,
};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::runtime::Credential;

/// `spec.clientAuth` compiled: what the handshakes selecting the certificate verify client
/// certificates with, and the TLS configuration built for them (once per certificate
/// version, by the serving process).
pub struct ClientAuth {
    /// The name of the CA credential (`spec.clientAuth.ca`); a verified identity carries it.
    pub ca: Arc<str>,
    /// The digest of that credential when compiled: another digest recompiles.
    pub(crate) ca_digest: String,
    /// A client without a certificate is refused in the handshake.
    pub required: bool,
    /// Verifies client certificates against the CA (and, when not `required`, lets clients
    /// without one through).
    pub verifier: Arc<dyn ClientCertVerifier>,
    /// The certificate's document, kept to recompile it when the CA credential changes
    /// (it holds the private key: never shown, see `Debug`).
    pub(crate) manifest: Arc<Located<Manifest>>,
    server_config: OnceLock<Arc<ServerConfig>>,
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAuth")
            .field("ca", &self.ca)
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

impl ClientAuth {
    /// The TLS configuration of the handshakes selecting this certificate version: built by
    /// `build` the first time, the same `Arc` afterwards (a handshake builds nothing). A
    /// new version (the certificate or its CA changed) has its own, so sessions and tickets
    /// of one version do not resume under another (they carry the client certificate
    /// verified then).
    pub fn server_config<E>(
        &self,
        build: impl FnOnce() -> Result<ServerConfig, E>,
    ) -> Result<Arc<ServerConfig>, E> {
        if let Some(c) = self.server_config.get() {
            return Ok(c.clone());
        }
        let built = Arc::new(build()?);
        // Two handshakes may race to build it: the first one set wins, both use it.
        Ok(self.server_config.get_or_init(|| built).clone())
    }
}

/// Compiles `spec.clientAuth` of `c` against the environment's credentials. Errors name the
/// field and the credential, never key material.
pub(crate) fn compile(
    m: &Located<Manifest>,
    c: &CertificateManifest,
    credentials: &OrdMap<Arc<str>, Arc<Credential>>,
) -> Result<Option<ClientAuth>, ConfigError> {
    let Some(spec) = &c.spec.client_auth else {
        return Ok(None);
    };
    let cert_name = c.metadata.name.value.as_str();
    let err = |message: String| {
        ConfigError::new(
            &m.source,
            Position::from_location(&m.source, c.metadata.name.referenced),
            message,
        )
        .entity(Kind::Certificate, cert_name)
        .field("spec.clientAuth.ca")
    };
    let name = spec.ca.as_str();
    let credential = credentials.get(name).ok_or_else(|| {
        err(format!("no Credential named {name:?} in this environment"))
            .because(Reason::UnknownCredential)
    })?;
    let CredentialSpec::Secret { value } = &credential.spec else {
        return Err(err(format!(
            "Credential {name:?} is of type {:?}; a CA bundle is a `secret` holding PEM certificates",
            credential.spec.type_name()
        )));
    };
    let roots = super::ca_roots(name, value).map_err(err)?;
    let required = spec.mode == ClientAuthMode::Required;
    let builder = WebPkiClientVerifier::builder_with_provider(roots, super::provider());
    let builder = if required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    let verifier = builder
        .build()
        .map_err(|e| err(format!("Credential {name:?}: cannot verify with it: {e}")))?;
    Ok(Some(ClientAuth {
        ca: credential.name.clone(),
        ca_digest: credential.digest.clone(),
        required,
        verifier,
        manifest: Arc::new(m.clone()),
        server_config: OnceLock::new(),
    }))
}

/// What a verified client certificate says about its holder: computed once per
/// connection, read by `mtls-auth` on each request (clones are reference counts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The CA credential that verified it (`spec.clientAuth.ca` of the certificate the
    /// handshake selected).
    pub ca: Arc<str>,
    /// The subject's common name.
    pub subject_cn: Option<Arc<str>>,
    /// The first DNS name of the subjectAltName.
    pub san_dns: Option<Arc<str>>,
    /// The first URI of the subjectAltName.
    pub san_uri: Option<Arc<str>>,
}

impl ClientIdentity {
    /// The identity of a verified leaf certificate (DER). A certificate that does not parse
    /// (it was verified, so it does) gives an identity naming nothing.
    pub fn from_leaf(ca: Arc<str>, der: &[u8]) -> ClientIdentity {
        let mut id = ClientIdentity {
            ca,
            subject_cn: None,
            san_dns: None,
            san_uri: None,
        };
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            return id;
        };
        id.subject_cn = cert
            .subject()
            .iter_common_name()
            .find_map(|cn| cn.as_str().ok())
            .filter(|cn| !cn.is_empty())
            .map(Arc::from);
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    GeneralName::DNSName(d) if id.san_dns.is_none() => {
                        id.san_dns = Some(Arc::from(*d));
                    }
                    GeneralName::URI(u) if id.san_uri.is_none() => {
                        id.san_uri = Some(Arc::from(*u));
                    }
                    _ => {}
                }
            }
        }
        id
    }

    /// The part `which` names, if the certificate has it.
    pub fn get(&self, which: MtlsIdentity) -> Option<&Arc<str>> {
        match which {
            MtlsIdentity::SubjectCn => self.subject_cn.as_ref(),
            MtlsIdentity::SanDns => self.san_dns.as_ref(),
            MtlsIdentity::SanUri => self.san_uri.as_ref(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "tls_client_tests.rs"]
mod tests;
