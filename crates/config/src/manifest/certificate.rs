//! `kind: Certificate`: a TLS certificate chain and its private key, which Workers' HTTPS
//! listeners present to clients whose SNI names a host the certificate covers. The key is a
//! secret: stored sealed by the Manager, redacted in every answer and log.

use serde::{Deserialize, Serialize};

use super::Metadata;

/// A certificate a Worker serves. Parsed and checked (the key matches, the chain verifies,
/// the certificate is valid now) when compiled; see `switchyard_engine::tls`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateManifest {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: CertificateSpec,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateSpec {
    /// PEM: the leaf certificate first, then the intermediates that lead to a root.
    pub certificate: String,
    /// PEM: PKCS#8, SEC1 (EC) or PKCS#1 (RSA). A secret.
    pub private_key: String,
    /// The certificate for handshakes whose SNI no certificate covers (or without SNI).
    /// At most one per environment.
    #[serde(default, skip_serializing_if = "is_false")]
    pub default: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl CertificateManifest {
    /// The same certificate with its private key replaced by [`super::REDACTED`].
    pub fn redacted(&self) -> CertificateManifest {
        let mut c = self.clone();
        c.spec.private_key = super::REDACTED.to_string();
        c
    }
}
