//! `kind: Credential`: secrets the gateway checks or sends. Stored sealed by the Manager,
//! redacted in every answer and log, referenced by name from policies.

use serde::{Deserialize, Deserializer, Serialize};

use super::Metadata;
use crate::Kind;

/// A secret the gateway uses or checks: API keys of consumers, users with password hashes,
/// a JWKS, or one secret value (e.g. an upstream's key or an HMAC secret).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialManifest {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: CredentialSpec,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyEntry {
    pub consumer: String,
    pub key: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
pub fn redact_json(kind: Kind, json: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(json).unwrap_or(serde_json::Value::Null);
    for_each_secret(kind, &mut v, |_, value| {
        *value = serde_json::Value::String(REDACTED.into());
    });
    v
}

/// One secret field of a credential, as [`for_each_secret`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretField {
    /// `spec.value` of a `secret`.
    Value,
    /// `spec.jwks` of a `jwks`.
    Jwks,
    /// `spec.keys[index].key` of an `api-keys`.
    ApiKey {
        index: usize,
        consumer: Option<String>,
    },
    /// `spec.users[index].passwordHash` of a `basic-users`.
    PasswordHash {
        index: usize,
        username: Option<String>,
    },
    /// `spec.privateKey` of a `Certificate`.
    PrivateKey,
}

impl SecretField {
    /// Where the field is in the manifest (`spec.keys[0].key`).
    pub fn path(&self) -> String {
        match self {
            SecretField::Value => "spec.value".into(),
            SecretField::Jwks => "spec.jwks".into(),
            SecretField::ApiKey { index, .. } => format!("spec.keys[{index}].key"),
            SecretField::PasswordHash { index, .. } => format!("spec.users[{index}].passwordHash"),
            SecretField::PrivateKey => "spec.privateKey".into(),
        }
    }

    /// The field as a JSON pointer (`/spec/keys/0/key`).
    pub fn pointer(&self) -> String {
        match self {
            SecretField::Value => "/spec/value".into(),
            SecretField::Jwks => "/spec/jwks".into(),
            SecretField::ApiKey { index, .. } => format!("/spec/keys/{index}/key"),
            SecretField::PasswordHash { index, .. } => format!("/spec/users/{index}/passwordHash"),
            SecretField::PrivateKey => "/spec/privateKey".into(),
        }
    }
}

/// Calls `f` on every secret field of a manifest (as JSON): the fields [`redact_json`]
/// hides and [`reference_secrets`] turns into `${env:…}` references. Other kinds have none.
pub fn for_each_secret(
    kind: Kind,
    manifest: &mut serde_json::Value,
    mut f: impl FnMut(SecretField, &mut serde_json::Value),
) {
    if !kind.is_secret() {
        return;
    }
    let Some(spec) = manifest.get_mut("spec") else {
        return;
    };
    if kind == Kind::Certificate {
        if let Some(value) = spec.get_mut("privateKey") {
            f(SecretField::PrivateKey, value);
        }
        return;
    }
    if let Some(value) = spec.get_mut("value") {
        f(SecretField::Value, value);
    }
    if let Some(value) = spec.get_mut("jwks") {
        f(SecretField::Jwks, value);
    }
    let text = |item: &serde_json::Value, field: &str| {
        item.get(field)
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
    };
    if let Some(items) = spec.get_mut("keys").and_then(|k| k.as_array_mut()) {
        for (index, item) in items.iter_mut().enumerate() {
            let consumer = text(item, "consumer");
            if let Some(secret) = item.get_mut("key") {
                f(SecretField::ApiKey { index, consumer }, secret);
            }
        }
    }
    if let Some(items) = spec.get_mut("users").and_then(|k| k.as_array_mut()) {
        for (index, item) in items.iter_mut().enumerate() {
            let username = text(item, "username");
            if let Some(secret) = item.get_mut("passwordHash") {
                f(SecretField::PasswordHash { index, username }, secret);
            }
        }
    }
}

/// A secret field replaced by an environment reference (see [`reference_secrets`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretReference {
    pub field: SecretField,
    /// `SWITCHYARD_CREDENTIAL_…`: the variable `switchyard apply` reads the value from.
    pub variable: String,
}

/// Replaces every secret field of a manifest (as JSON, redacted or not) with the text
/// `${env:VARIABLE}`, so the manifest can be written to a file and applied back with the
/// value taken from the environment (`env_refs`). Variable names are derived from the
/// credential's name and the field, deterministically:
///
/// - `secret`: `SWITCHYARD_CREDENTIAL_<NAME>`
/// - `jwks`: `SWITCHYARD_CREDENTIAL_<NAME>_JWKS` (the set as JSON text)
/// - `api-keys`: `SWITCHYARD_CREDENTIAL_<NAME>_KEY_<i>` (`i`: the entry's index from 0)
/// - `basic-users`: `SWITCHYARD_CREDENTIAL_<NAME>_<USERNAME>_HASH`
/// - a `Certificate`'s private key: `SWITCHYARD_CERTIFICATE_<NAME>_KEY`
///
/// where `<NAME>` is the name upper-cased with every character other than A-Z and 0-9
/// written `_`. A name already in `taken` (two names that differ only in punctuation) gets
/// `_2`, `_3`, … appended; every name returned is added to `taken`.
pub fn reference_secrets(
    kind: Kind,
    manifest: &mut serde_json::Value,
    taken: &mut std::collections::BTreeSet<String>,
) -> Vec<SecretReference> {
    let name = manifest
        .pointer("/metadata/name")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_string();
    let base = format!(
        "{}{}_{}",
        crate::env_refs::PREFIX,
        variable_part(kind.as_str()),
        variable_part(&name)
    );
    let mut out = Vec::new();
    for_each_secret(kind, manifest, |field, value| {
        let wanted = match &field {
            SecretField::Value => base.clone(),
            SecretField::Jwks => format!("{base}_JWKS"),
            SecretField::ApiKey { index, .. } => format!("{base}_KEY_{index}"),
            SecretField::PasswordHash { index, username } => match username {
                Some(u) => format!("{base}_{}_HASH", variable_part(u)),
                None => format!("{base}_USER_{index}_HASH"),
            },
            SecretField::PrivateKey => format!("{base}_KEY"),
        };
        let mut variable = wanted.clone();
        let mut n = 2;
        while taken.contains(&variable) {
            variable = format!("{wanted}_{n}");
            n += 1;
        }
        taken.insert(variable.clone());
        *value = serde_json::Value::String(format!("${{env:{variable}}}"));
        out.push(SecretReference { field, variable });
    });
    out
}

/// `openai-key` → `OPENAI_KEY`.
fn variable_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
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

    #[test]
    fn secret_fields_become_references_named_after_the_credential() {
        let mut taken = std::collections::BTreeSet::new();
        let mut v = serde_json::json!({"kind": "Credential", "metadata": {"name": "openai-key"},
            "spec": {"type": "secret", "value": "s3cret"}});
        let refs = reference_secrets(Kind::Credential, &mut v, &mut taken);
        assert_eq!(
            v["spec"]["value"],
            "${env:SWITCHYARD_CREDENTIAL_OPENAI_KEY}"
        );
        assert_eq!(refs[0].variable, "SWITCHYARD_CREDENTIAL_OPENAI_KEY");
        assert_eq!(refs[0].field.path(), "spec.value");

        // The same name with other punctuation gets a suffix, never the same variable.
        let mut v = serde_json::json!({"metadata": {"name": "openai.key"},
            "spec": {"type": "secret", "value": "<redacted>"}});
        let refs = reference_secrets(Kind::Credential, &mut v, &mut taken);
        assert_eq!(refs[0].variable, "SWITCHYARD_CREDENTIAL_OPENAI_KEY_2");

        let mut v = serde_json::json!({"metadata": {"name": "acme"},
            "spec": {"type": "api-keys", "keys": [
                {"consumer": "a", "key": "k-aaaaaaaa"}, {"consumer": "a", "key": "k-bbbbbbbb"}]}});
        let refs = reference_secrets(Kind::Credential, &mut v, &mut taken);
        assert_eq!(
            v["spec"]["keys"][1]["key"],
            "${env:SWITCHYARD_CREDENTIAL_ACME_KEY_1}"
        );
        assert_eq!(v["spec"]["keys"][1]["consumer"], "a");
        assert_eq!(refs[1].field.path(), "spec.keys[1].key");
        assert_eq!(
            v.pointer(&refs[1].field.pointer()).unwrap(),
            "${env:SWITCHYARD_CREDENTIAL_ACME_KEY_1}"
        );

        let mut v = serde_json::json!({"metadata": {"name": "ops"},
            "spec": {"type": "basic-users", "users": [{"username": "alice.b", "passwordHash": "$argon2id$x"}]}});
        reference_secrets(Kind::Credential, &mut v, &mut taken);
        assert_eq!(
            v["spec"]["users"][0]["passwordHash"],
            "${env:SWITCHYARD_CREDENTIAL_OPS_ALICE_B_HASH}"
        );

        // Exactly the fields redact_json hides: a JWKS too.
        let mut v = serde_json::json!({"metadata": {"name": "idp"},
            "spec": {"type": "jwks", "jwks": {"keys": [{"kty": "EC"}]}}});
        reference_secrets(Kind::Credential, &mut v, &mut taken);
        assert_eq!(v["spec"]["jwks"], "${env:SWITCHYARD_CREDENTIAL_IDP_JWKS}");

        // Other kinds pass through untouched.
        let mut v = serde_json::json!({"metadata": {"name": "p"}, "spec": {"value": "x"}});
        assert!(reference_secrets(Kind::Proxy, &mut v, &mut taken).is_empty());
        assert_eq!(v["spec"]["value"], "x");
    }

    #[test]
    fn redaction_hides_every_secret_field() {
        let json = r#"{"kind":"Credential","spec":{"type":"api-keys","keys":[{"consumer":"a","key":"k-aaaaaaaa"}]}}"#;
        let v = redact_json(Kind::Credential, json);
        assert_eq!(v["spec"]["keys"][0]["key"], REDACTED);
        assert_eq!(v["spec"]["keys"][0]["consumer"], "a");
        let v = redact_json(
            Kind::Credential,
            r#"{"spec":{"type":"secret","value":"s"}}"#,
        );
        assert_eq!(v["spec"]["value"], REDACTED);
    }
}
