//! The public manifest schema: what operators write. Kubernetes-style documents in the
//! `switchyard.dev/v1` group. Nothing here is used on the request path; manifests are
//! compiled into the runtime model (`crate::runtime`) first.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_saphyr::Spanned;

use crate::duration::HumanDuration;

pub const API_VERSION: &str = "switchyard.dev/v1";

/// A manifest document of any kind, once its `kind` is known.
#[derive(Debug, Clone)]
pub enum Manifest {
    Proxy(ProxyManifest),
    Credential(CredentialManifest),
}

impl Manifest {
    /// Every kind a manifest document can have.
    pub const KINDS: [&'static str; 2] = ["Proxy", "Credential"];

    pub fn kind(&self) -> &'static str {
        match self {
            Manifest::Proxy(_) => "Proxy",
            Manifest::Credential(_) => "Credential",
        }
    }

    pub fn name(&self) -> &str {
        &self.metadata().name.value
    }

    pub fn metadata(&self) -> &Metadata {
        match self {
            Manifest::Proxy(p) => &p.metadata,
            Manifest::Credential(c) => &c.metadata,
        }
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.metadata().labels
    }

    /// Whether the manifest carries secret values (stored encrypted, shown redacted).
    pub fn is_secret(&self) -> bool {
        matches!(self, Manifest::Credential(_))
    }

    /// The canonical form stored by the Manager and sent to Workers: compact JSON with
    /// defaults filled in and maps sorted. JSON is YAML, so Workers read it with the same
    /// parser as files. Equal content gives equal text, whatever the original formatting.
    pub fn canonical_json(&self) -> String {
        let json = match self {
            Manifest::Proxy(p) => serde_json::to_string(p),
            Manifest::Credential(c) => serde_json::to_string(c),
        };
        json.unwrap_or_default()
    }

    /// SHA-256 (hex) of [`Manifest::canonical_json`].
    pub fn digest(&self) -> String {
        sha256_hex(self.canonical_json().as_bytes())
    }
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in hash {
        out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
    }
    out
}

/// The fields every document has, read first to decide how to read the rest.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DocumentHeader {
    #[serde(default)]
    pub api_version: Option<Spanned<String>>,
    #[serde(default)]
    pub kind: Option<Spanned<String>>,
    #[serde(default)]
    pub metadata: Option<HeaderMetadata>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct HeaderMetadata {
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyManifest {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: ProxySpec,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    pub name: Spanned<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxySpec {
    pub routes: Spanned<Vec<Spanned<RouteSpec>>>,
    pub upstream: UpstreamSpec,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicySpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteSpec {
    /// Matches this path and everything below it (segment-aware: `/a` matches `/a` and `/a/b`,
    /// not `/ab`). Longest prefix wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Matches exactly this path. An exact match beats any prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `api.example.com` or `*.example.com`; absent means any host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    /// Absent means any method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// Remove the matched prefix before forwarding upstream.
    #[serde(default, skip_serializing_if = "is_false")]
    pub strip_prefix: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamSpec {
    pub targets: Spanned<Vec<TargetSpec>>,
    #[serde(default)]
    pub load_balancing: LoadBalancing,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub retries: Retries,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetSpec {
    pub url: TargetUrl,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// An upstream base URL: `http://host:port` with an optional path prefix. Checked when read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TargetUrl(pub String);

impl TargetUrl {
    pub fn parse(s: &str) -> Result<http::Uri, String> {
        let uri: http::Uri = s.parse().map_err(|e| format!("invalid URL {s:?}: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(format!(
                    "invalid URL {s:?}: https upstreams are not supported yet; use http://"
                ));
            }
            Some(other) => {
                return Err(format!(
                    "invalid URL {s:?}: unsupported scheme {other:?}, expected http"
                ));
            }
            None => {
                return Err(format!(
                    "invalid URL {s:?}: missing scheme, expected e.g. http://10.0.0.1:8080"
                ));
            }
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(format!("invalid URL {s:?}: missing host"));
        }
        if uri.query().is_some() {
            return Err(format!(
                "invalid URL {s:?}: a target URL cannot carry a query"
            ));
        }
        Ok(uri)
    }
}

impl<'de> Deserialize<'de> for TargetUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        TargetUrl::parse(&s).map_err(serde::de::Error::custom)?;
        Ok(TargetUrl(s))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadBalancing {
    #[default]
    RoundRobin,
    LeastRequests,
    Weighted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timeouts {
    /// Time allowed to open a TCP connection to a target.
    #[serde(default = "default_connect")]
    pub connect: HumanDuration,
    /// Time allowed from sending the request to receiving the response head.
    #[serde(default = "default_request")]
    pub request: HumanDuration,
}

fn default_connect() -> HumanDuration {
    HumanDuration::from_secs(2)
}

fn default_request() -> HumanDuration {
    HumanDuration::from_secs(30)
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: default_connect(),
            request: default_request(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retries {
    /// Extra attempts, each on another target, made only when connecting failed (the request
    /// was never sent, so retrying is always safe).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
}

fn default_attempts() -> u32 {
    1
}

impl Default for Retries {
    fn default() -> Self {
        Self {
            attempts: default_attempts(),
        }
    }
}

/// Buffered YAML scalars such as `5` or `true` back to the strings they were written as, as
/// the streaming reader would read them: every field of a policy is a string (a policy type
/// with other fields must be read some other way when `type` is not its first key).
fn scalars_as_strings(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Number(n) => Value::String(n.to_string()),
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Array(a) => Value::Array(a.into_iter().map(scalars_as_strings).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (k, scalars_as_strings(v)))
                .collect(),
        ),
        Value::Null | Value::String(_) => v,
    }
}

/// A policy in a proxy's pipeline, selected by `type`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum PolicySpec {
    Headers(HeadersPolicySpec),
}

/// The `type` of a policy.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum PolicyType {
    Headers,
}

/// Read by hand rather than with `#[serde(tag = "type")]`: serde's internally tagged enums
/// buffer the whole mapping before reading it, which loses the line, column and field path
/// of any error inside a policy. When `type` is the first key (the usual way to write it) the
/// rest of the mapping is read straight from the parser, so errors keep their place.
impl<'de> Deserialize<'de> for PolicySpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(PolicyVisitor)
    }
}

struct PolicyVisitor;

impl<'de> serde::de::Visitor<'de> for PolicyVisitor {
    type Value = PolicySpec;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a policy mapping with a `type`")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<PolicySpec, A::Error> {
        use serde::de::Error;
        use serde::de::value::MapAccessDeserializer;

        let Some(first) = map.next_key::<String>()? else {
            return Err(A::Error::missing_field("type"));
        };
        if first == "type" {
            return match map.next_value::<PolicyType>()? {
                PolicyType::Headers => {
                    HeadersPolicySpec::deserialize(MapAccessDeserializer::new(map))
                        .map(PolicySpec::Headers)
                }
            };
        }
        // `type` comes later: buffer the other keys until it is known.
        let mut kind = None;
        let mut rest = serde_json::Map::new();
        let mut key = Some(first);
        while let Some(k) = key {
            if k == "type" {
                kind = Some(map.next_value::<PolicyType>()?);
            } else {
                rest.insert(k, map.next_value::<serde_json::Value>()?);
            }
            key = map.next_key::<String>()?;
        }
        let rest = scalars_as_strings(serde_json::Value::Object(rest));
        match kind {
            None => Err(A::Error::missing_field("type")),
            Some(PolicyType::Headers) => HeadersPolicySpec::deserialize(rest)
                .map(PolicySpec::Headers)
                .map_err(A::Error::custom),
        }
    }
}

impl PolicySpec {
    pub fn type_name(&self) -> &'static str {
        match self {
            PolicySpec::Headers(_) => "headers",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeadersPolicySpec {
    #[serde(default)]
    pub request: HeaderOpsSpec,
    #[serde(default)]
    pub response: HeaderOpsSpec,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderOpsSpec {
    /// Replace (or create) these headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Append these headers, keeping existing values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Remove these headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// A secret the gateway uses or checks: API keys of consumers, or one secret value (e.g. an
/// upstream's key). Stored encrypted by the Manager, redacted in every answer and log.
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
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyEntry {
    pub consumer: String,
    pub key: String,
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
        if let Some(value) = spec.get_mut("value") {
            *value = serde_json::Value::String(REDACTED.into());
        }
        if let Some(keys) = spec.get_mut("keys").and_then(|k| k.as_array_mut()) {
            for k in keys {
                if let Some(key) = k.get_mut("key") {
                    *key = serde_json::Value::String(REDACTED.into());
                }
            }
        }
    }
    v
}
