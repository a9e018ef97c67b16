//! `kind: Credential`: secrets the gateway checks or sends. Stored sealed by the Manager,
//! redacted in every answer and log, referenced by name from policies.

use serde::{Deserialize, Serialize};

use super::Metadata;

/// A secret the gateway uses or checks: API keys of consumers, users with password hashes,
/// a JWKS, or one secret value (e.g. an upstream's key or an HMAC secret).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialManifest {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: CredentialSpec,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum CredentialSpec {
    /// One secret value.
    Secret { value: String },
    /// API keys, each naming the consumer it identifies.
    ApiKeys { keys: Vec<ApiKeyEntry> },
    /// Users for `basic-auth`, with password hashes (argon2 PHC strings or bcrypt).
    BasicUsers { users: Vec<BasicUser> },
    /// A JSON Web Key Set for `jwt` (the JSON text, or the set written as YAML).
    Jwks { jwks: serde_json::Value },
}

impl CredentialSpec {
    pub fn type_name(&self) -> &'static str {
        match self {
            CredentialSpec::Secret { .. } => "secret",
            CredentialSpec::ApiKeys { .. } => "api-keys",
            CredentialSpec::BasicUsers { .. } => "basic-users",
            CredentialSpec::Jwks { .. } => "jwks",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyEntry {
    pub consumer: String,
    pub key: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicUser {
    pub username: String,
    /// `$argon2id$…` (PHC string) or `$2b$…` (bcrypt). Never a clear password.
    pub password_hash: String,
}

/// What every secret value is replaced with when shown.
pub const REDACTED: &str = "<redacted>";

impl CredentialManifest {
    /// The same credential with every secret value replaced by [`REDACTED`].
    pub fn redacted(&self) -> CredentialManifest {
        let mut c = self.clone();
        match &mut c.spec {
            CredentialSpec::Secret { value } => *value = REDACTED.to_string(),
            CredentialSpec::ApiKeys { keys } => {
                for k in keys {
                    k.key = REDACTED.to_string();
                }
            }
            CredentialSpec::BasicUsers { users } => {
                for u in users {
                    u.password_hash = REDACTED.to_string();
                }
            }
            CredentialSpec::Jwks { jwks } => *jwks = serde_json::Value::String(REDACTED.into()),
        }
        c
    }
}

/// Replaces the secret values in a credential's canonical JSON with [`REDACTED`]; other
/// kinds pass through. Used wherever stored manifests are shown.
pub fn redact_json(kind: &str, json: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(json).unwrap_or(serde_json::Value::Null);
    if kind == "Credential"
        && let Some(spec) = v.get_mut("spec")
    {
        let redacted = || serde_json::Value::String(REDACTED.into());
        for field in ["value", "jwks"] {
            if let Some(value) = spec.get_mut(field) {
                *value = redacted();
            }
        }
        for (list, field) in [("keys", "key"), ("users", "passwordHash")] {
            if let Some(items) = spec.get_mut(list).and_then(|k| k.as_array_mut()) {
                for item in items {
                    if let Some(secret) = item.get_mut(field) {
                        *secret = redacted();
                    }
                }
            }
        }
    }
    v
}
