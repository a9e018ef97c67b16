//! Policies as operators write them: one tagged mapping per policy, selected by `type`,
//! unknown fields refused. Compiled (and checked against credentials) in
//! `crate::runtime::policy`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::lenient;
use crate::duration::HumanDuration;
use crate::size::ByteSize;

/// Buffered YAML scalars such as `5` or `true` back to the strings they were written as, as
/// the streaming reader would read them; numeric and boolean fields read either form
/// (`lenient`), text fields take the text.
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

macro_rules! policies {
    ($($variant:ident($spec:ty) = $name:literal,)*) => {
        /// A policy in a proxy's pipeline, selected by `type`.
        #[derive(Debug, Clone, Serialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(tag = "type", rename_all = "kebab-case")]
        pub enum PolicySpec {
            $($variant($spec),)*
        }

        /// The `type` of a policy.
        #[derive(Debug, Clone, Copy, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        enum PolicyType {
            $($variant,)*
        }

        impl super::tagged::Tag for PolicyType {
            type Out = PolicySpec;

            fn read<'de, D: Deserializer<'de>>(self, d: D) -> Result<PolicySpec, D::Error> {
                match self {
                    $(PolicyType::$variant => <$spec>::deserialize(d).map(PolicySpec::$variant),)*
                }
            }
        }

        impl PolicySpec {
            /// The policy's `type` as written.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(PolicySpec::$variant(_) => <$spec>::TYPE,)*
                }
            }
        }

        $(impl $spec {
            /// The policy's `type` as written in manifests.
            pub const TYPE: &'static str = $name;
        })*
    };
}

policies! {
    Headers(HeadersPolicySpec) = "headers",
    ApiKey(ApiKeySpec) = "api-key",
    BasicAuth(BasicAuthSpec) = "basic-auth",
    Jwt(JwtSpec) = "jwt",
    MtlsAuth(MtlsAuthSpec) = "mtls-auth",
    IpFilter(IpFilterSpec) = "ip-filter",
    RateLimit(RateLimitSpec) = "rate-limit",
    RequestSize(RequestSizeSpec) = "request-size",
    Cors(CorsSpec) = "cors",
    PromptFirewall(PromptFirewallSpec) = "prompt-firewall",
    MockResponse(MockResponseSpec) = "mock-response",
    UpstreamCredential(UpstreamCredentialSpec) = "upstream-credential",
}

impl PolicySpec {
    /// The credentials this policy names: a change to any of them changes the policy.
    pub fn credential_refs(&self) -> Vec<&str> {
        match self {
            PolicySpec::ApiKey(p) => p.credentials.iter().map(String::as_str).collect(),
            PolicySpec::BasicAuth(p) => p.credentials.iter().map(String::as_str).collect(),
            PolicySpec::Jwt(p) => p.jwks.iter().chain(&p.secret).map(String::as_str).collect(),
            PolicySpec::MtlsAuth(p) => p.cas.iter().map(String::as_str).collect(),
            PolicySpec::UpstreamCredential(p) => vec![p.credential.as_str()],
            _ => Vec::new(),
        }
    }
}

/// Read by hand (see `tagged`) so errors inside a policy keep their line, column and field
/// path; entries buffered before `type` get their scalars back as text (`scalars_as_strings`).
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

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<PolicySpec, A::Error> {
        super::tagged::visit::<A, PolicyType>(map, scalars_as_strings)
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

// ---- headers ----

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeadersPolicySpec {
    #[serde(default)]
    pub request: HeaderOpsSpec,
    #[serde(default)]
    pub response: HeaderOpsSpec,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

// ---- authentication ----

/// `api-key`: the key from a header (default `x-api-key`) or a query parameter, checked
/// against `kind: Credential` entities of type `api-keys`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Names of `api-keys` credentials.
    pub credentials: Vec<String>,
    /// Remove the key from the request before it goes upstream (default true).
    #[serde(
        default = "yes",
        deserialize_with = "lenient::bool",
        skip_serializing_if = "is_true"
    )]
    pub hide_credentials: bool,
}

/// `basic-auth`: users from `basic-users` credentials (password hashes).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicAuthSpec {
    pub credentials: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    #[serde(
        default = "yes",
        deserialize_with = "lenient::bool",
        skip_serializing_if = "is_true"
    )]
    pub hide_credentials: bool,
}

/// `jwt`: a bearer token (from `Authorization`, or `header`) checked for signature,
/// issuer, audience and time.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// HS256, RS256, ES256.
    pub algorithms: Vec<String>,
    /// A credential of type `jwks` (RS256/ES256 keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// A credential of type `secret` (HS256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The claim that names the consumer (default `sub`).
    #[serde(default = "default_consumer_claim")]
    pub consumer_claim: String,
    /// Clock skew allowed on `exp` and `nbf` (default 0s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leeway: Option<HumanDuration>,
    /// Where the token is read from (default `authorization`, with a `Bearer ` prefix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

fn default_consumer_claim() -> String {
    "sub".into()
}

/// `mtls-auth`: the client certificate verified in the TLS handshake (a `kind:
/// Certificate` with `spec.clientAuth`) identifies the consumer.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MtlsAuthSpec {
    /// What of the certificate names the consumer (default `subject-cn`).
    #[serde(default)]
    pub identity: MtlsIdentity,
    /// Only these consumers are let in (absent: any verified certificate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Only certificates verified against these CA credentials (the `spec.clientAuth.ca`
    /// of the certificate the connection was made with). Absent: any of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cas: Vec<String>,
}

/// The part of a client certificate that names the consumer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum MtlsIdentity {
    /// The subject's common name (CN).
    #[default]
    SubjectCn,
    /// The first DNS name of the subjectAltName.
    SanDns,
    /// The first URI of the subjectAltName (e.g. a SPIFFE ID).
    SanUri,
}

// ---- traffic control ----

/// `ip-filter`: CIDR allow and deny lists (IPv4 and IPv6). Deny wins; with an allow list,
/// anything not on it is denied. The client address is the peer's, or — when the peer is
/// in `trustedProxies` — the right-most untrusted address of `X-Forwarded-For`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpFilterSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<String>,
}

/// `rate-limit`: `limit` requests `per` period for each key (`consumer`, `client-ip` or
/// `header:<name>`). Counters belong to the policy's identity (proxy, `id` or position
/// among the proxy's rate limits, and key), not to a configuration version: they survive
/// swaps, and a changed limit applies to them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Names the counters explicitly (keeps them when policies are reordered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub key: super::RequestKeySpec,
    #[serde(deserialize_with = "lenient::u64")]
    pub limit: u64,
    pub per: HumanDuration,
}

/// `request-size`: 413 for bodies over `maxBytes`, chunked ones included, without buffering.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestSizeSpec {
    pub max_bytes: ByteSize,
}

/// `cors`: preflights answered at the gateway; CORS headers on actual responses.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorsSpec {
    /// Origins (`https://app.example.com`) or `*`.
    pub allow_origins: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    #[serde(
        default,
        deserialize_with = "lenient::bool",
        skip_serializing_if = "is_false"
    )]
    pub allow_credentials: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<HumanDuration>,
}

// ---- content ----

/// `prompt-firewall`: inspects the text of LLM requests against named rules.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromptFirewallSpec {
    /// JSONPath expressions selecting the text to inspect (default
    /// `$.messages[*].content` and `$.prompt`).
    #[serde(default = "default_prompt_paths")]
    pub paths: Vec<String>,
    pub rules: Vec<PromptRuleSpec>,
    /// Bodies larger than this are not inspected (default 1MiB): see `onUninspectable`.
    #[serde(default = "default_inspect_limit")]
    pub max_body_bytes: ByteSize,
    #[serde(default)]
    pub on_uninspectable: Uninspectable,
}

fn default_prompt_paths() -> Vec<String> {
    vec!["$.messages[*].content".into(), "$.prompt".into()]
}

fn default_inspect_limit() -> ByteSize {
    ByteSize::mib(1)
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromptRuleSpec {
    pub name: String,
    pub pattern: String,
    #[serde(
        default,
        deserialize_with = "lenient::bool",
        skip_serializing_if = "is_false"
    )]
    pub regex: bool,
    #[serde(
        default,
        deserialize_with = "lenient::bool",
        skip_serializing_if = "is_false"
    )]
    pub case_insensitive: bool,
}

/// What to do with a body the firewall cannot inspect (too large, not JSON).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Uninspectable {
    #[default]
    Deny,
    Allow,
}

/// `mock-response`: a fixed answer, no upstream call.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MockResponseSpec {
    #[serde(default = "default_status", deserialize_with = "lenient::u16")]
    pub status: u16,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "lenient::text",
        skip_serializing_if = "String::is_empty"
    )]
    pub body: String,
}

fn default_status() -> u16 {
    200
}

/// `upstream-credential`: a `secret` credential put into a request header on its way
/// upstream (`format` with `{}` where the value goes). Clients never see it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamCredentialSpec {
    pub credential: String,
    #[serde(default = "default_credential_header")]
    pub header: String,
    #[serde(default = "default_format")]
    pub format: String,
}

fn default_credential_header() -> String {
    "authorization".into()
}

fn default_format() -> String {
    "{}".into()
}
