//! `kind: Certificate`: a TLS certificate chain and its private key, which Workers' HTTPS
//! listeners present to clients whose SNI names a host the certificate covers. The key is a
//! secret: stored sealed by the Manager, redacted in every answer and log.

use serde::{Deserialize, Serialize};

use super::Metadata;

/// A certificate a Worker serves. Parsed and checked (the key matches, the chain verifies,
/// the certificate is valid now) when compiled; see `switchyard_engine::tls`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateManifest {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: CertificateSpec,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// Client certificates (mutual TLS): handshakes that select this certificate ask the
    /// client for one and verify it. Absent: no client certificate is asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuthSpec>,
}

/// `spec.clientAuth`: how handshakes selecting the certificate verify client certificates.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientAuthSpec {
    /// A Credential of type `secret` whose value is the PEM CA certificates a client
    /// certificate must chain to (like `spec.upstream.tls.ca`). A change of it is a hot
    /// change of the certificate.
    pub ca: String,
    /// `optional` (default): a client without a certificate completes the handshake (an
    /// `mtls-auth` policy answers its requests 401); `required`: it is refused in the
    /// handshake. A certificate presented but not valid (another CA, expired) fails the
    /// handshake either way.
    #[serde(default, skip_serializing_if = "ClientAuthMode::is_optional")]
    pub mode: ClientAuthMode,
}

/// Whether a client certificate is required in the handshake.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ClientAuthMode {
    #[default]
    Optional,
    Required,
}

impl ClientAuthMode {
    fn is_optional(&self) -> bool {
        *self == ClientAuthMode::Optional
    }
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
