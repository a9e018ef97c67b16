//! `kind: Credential`: secrets the gateway checks or sends. Stored sealed by the Manager,
//! redacted in every answer and log, referenced by name from policies.

use serde::{Deserialize, Deserializer, Serialize};

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

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
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

/// The `type` of a credential.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum CredentialType {
    Secret,
    ApiKeys,
    BasicUsers,
    Jwks,
}

/// The fields of each type, as written after `type`.
mod fields {
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Secret {
        pub value: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ApiKeys {
        pub keys: Vec<super::ApiKeyEntry>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct BasicUsers {
        pub users: Vec<super::BasicUser>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Jwks {
        pub jwks: serde_json::Value,
    }
}

impl super::tagged::Tag for CredentialType {
    type Out = CredentialSpec;

    fn read<'de, D: Deserializer<'de>>(self, d: D) -> Result<CredentialSpec, D::Error> {
        Ok(match self {
            CredentialType::Secret => CredentialSpec::Secret {
                value: fields::Secret::deserialize(d)?.value,
            },
            CredentialType::ApiKeys => CredentialSpec::ApiKeys {
                keys: fields::ApiKeys::deserialize(d)?.keys,
            },
            CredentialType::BasicUsers => CredentialSpec::BasicUsers {
                users: fields::BasicUsers::deserialize(d)?.users,
            },
            CredentialType::Jwks => CredentialSpec::Jwks {
                jwks: fields::Jwks::deserialize(d)?.jwks,
            },
        })
    }
}

/// Read by hand (see `tagged`): serde's internally tagged enums would also read the keys
/// `n` (RSA modulus) and `y` (EC coordinate) of a JWKS written as YAML as booleans. Buffered
/// entries keep their keys as text and their values as written.
impl<'de> Deserialize<'de> for CredentialSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(CredentialVisitor)
    }
}

struct CredentialVisitor;

impl<'de> serde::de::Visitor<'de> for CredentialVisitor {
    type Value = CredentialSpec;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a credential mapping with a `type`")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<CredentialSpec, A::Error> {
        super::tagged::visit::<A, CredentialType>(map, |v| v)
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn read(yaml: &str) -> Result<CredentialSpec, String> {
        serde_saphyr::from_str::<CredentialSpec>(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn a_jwks_written_as_yaml_keeps_its_n_and_y_keys() {
        for yaml in [
            "type: jwks\njwks:\n  keys:\n    - {kty: RSA, n: abc, e: AQAB}\n    - {kty: EC, crv: P-256, x: xx, y: yy}\n",
            "jwks:\n  keys:\n    - {kty: RSA, n: abc, e: AQAB}\n    - {kty: EC, crv: P-256, x: xx, y: yy}\ntype: jwks\n",
        ] {
            let CredentialSpec::Jwks { jwks } = read(yaml).unwrap() else {
                panic!("not a jwks")
            };
            assert_eq!(jwks["keys"][0]["n"], "abc", "{yaml}");
            assert_eq!(jwks["keys"][1]["y"], "yy", "{yaml}");
        }
    }

    #[test]
    fn every_type_reads_its_fields_in_any_order() {
        let c = read("type: secret\nvalue: s3cret\n").unwrap();
        assert!(matches!(c, CredentialSpec::Secret { value } if value == "s3cret"));
        let c = read("value: s3cret\ntype: secret\n").unwrap();
        assert!(matches!(c, CredentialSpec::Secret { value } if value == "s3cret"));
        let c = read("type: api-keys\nkeys: [{consumer: a, key: k-aaaaaaaa}]\n").unwrap();
        assert!(matches!(c, CredentialSpec::ApiKeys { keys } if keys[0].consumer == "a"));
        let c = read("users: [{username: u, passwordHash: h}]\ntype: basic-users\n").unwrap();
        assert!(matches!(c, CredentialSpec::BasicUsers { users } if users[0].username == "u"));
        let c = read("type: jwks\njwks: '{\"keys\": []}'\n").unwrap();
        assert!(matches!(c, CredentialSpec::Jwks { jwks } if jwks.is_string()));
    }

    #[test]
    fn unknown_types_and_fields_and_a_missing_type_are_refused() {
        let e = read("type: password\nvalue: x\n").unwrap_err();
        assert!(e.contains("unknown variant `password`"), "{e}");
        let e = read("type: secret\nvalue: x\nextra: 1\n").unwrap_err();
        assert!(e.contains("unknown field `extra`"), "{e}");
        let e = read("value: x\nextra: 1\ntype: secret\n").unwrap_err();
        assert!(e.contains("unknown field `extra`"), "{e}");
        let e = read("value: x\n").unwrap_err();
        assert!(e.contains("missing field `type`"), "{e}");
    }

    #[test]
    fn serialised_credentials_read_back() {
        let c = CredentialSpec::Jwks {
            jwks: serde_json::json!({"keys": [{"kty": "EC", "y": "yy", "n": "nn"}]}),
        };
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.starts_with("{\"type\":\"jwks\""), "{json}");
        let CredentialSpec::Jwks { jwks } = read(&json).unwrap() else {
            panic!("not a jwks")
        };
        assert_eq!(jwks["keys"][0]["y"], "yy");
        let again: CredentialSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&again).unwrap(), json);
    }
}
