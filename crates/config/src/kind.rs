//! The kinds of entity a manifest document (and a stored entity) can be.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An entity's kind, as written in `kind:` and stored by the Manager.
///
/// Adding a kind is a matter of adding a variant here and following the compiler's
/// exhaustive-match errors (manifest parsing, redaction, hotness, compile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Kind {
    Proxy,
    Credential,
    /// An environment's variables; read by `apply` and the Manager, ignored by the compiler.
    Environment,
    /// A TLS certificate chain and its private key, served by SNI.
    Certificate,
    /// The settings a Worker process takes when it starts (one per environment): a change
    /// needs a rollout, never a swap.
    WorkerSettings,
    /// An address the environment's Workers accept traffic on, and how (http or https).
    Listener,
}

impl Kind {
    /// Every kind, in the order they are listed to users.
    pub const ALL: [Kind; 6] = [
        Kind::Proxy,
        Kind::Credential,
        Kind::Environment,
        Kind::Certificate,
        Kind::WorkerSettings,
        Kind::Listener,
    ];

    /// The name as written in manifests (`Proxy`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Proxy => "Proxy",
            Kind::Credential => "Credential",
            Kind::Environment => "Environment",
            Kind::Certificate => "Certificate",
            Kind::WorkerSettings => "WorkerSettings",
            Kind::Listener => "Listener",
        }
    }

    /// The lowercase form used in entity references (`proxy/payments`).
    pub const fn lower(self) -> &'static str {
        match self {
            Kind::Proxy => "proxy",
            Kind::Credential => "credential",
            Kind::Environment => "environment",
            Kind::Certificate => "certificate",
            Kind::WorkerSettings => "workersettings",
            Kind::Listener => "listener",
        }
    }

    /// Whether entities of this kind carry secret values (stored sealed, shown redacted).
    pub const fn is_secret(self) -> bool {
        match self {
            Kind::Credential | Kind::Certificate => true,
            Kind::Proxy | Kind::Environment | Kind::WorkerSettings | Kind::Listener => false,
        }
    }

    /// Exactly as written in a manifest's `kind:` (`Proxy`).
    pub fn parse_written(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// `Proxy` or `proxy` (as in `proxy/payments`).
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s || k.lower() == s)
    }

    /// `Proxy, Credential, Environment, Certificate, WorkerSettings, Listener`: for error messages.
    pub fn list() -> String {
        Kind::ALL.map(Kind::as_str).join(", ")
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of [`Kind::from_str`]: names what was given and what is known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown kind {0:?} (expected one of {list})", list = Kind::list())]
pub struct UnknownKind(pub String);

impl FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Kind, UnknownKind> {
        Kind::parse(s).ok_or_else(|| UnknownKind(s.to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::Kind;

    #[test]
    fn kinds_read_back_as_written_and_as_serialized() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
            assert_eq!(Kind::parse(k.lower()), Some(k));
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::Value::String(k.as_str().into())
            );
        }
        assert_eq!(
            "Route".parse::<Kind>().unwrap_err().to_string(),
            "unknown kind \"Route\" (expected one of Proxy, Credential, Environment, Certificate, WorkerSettings, Listener)"
        );
    }
}
