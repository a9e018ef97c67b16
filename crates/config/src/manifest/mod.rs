//! The public manifest schema: what operators write. Kubernetes-style documents in the
//! `switchyard.dev/v1` group. Nothing here is used on the request path; manifests are
//! compiled into the runtime model (`crate::runtime`) first.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_saphyr::Spanned;

use crate::Kind;
use crate::duration::HumanDuration;

mod certificate;
mod credential;
mod environment;
pub mod json_text;
mod lenient;
mod listener;
mod policy;
mod tagged;
mod worker_settings;

pub use certificate::*;
pub use credential::*;
pub use environment::*;
pub use listener::*;
pub use policy::*;
pub use worker_settings::*;

pub const API_VERSION: &str = "switchyard.dev/v1";

/// A manifest document of any kind, once its `kind` is known.
#[derive(Debug, Clone)]
pub enum Manifest {
    Proxy(ProxyManifest),
    Credential(CredentialManifest),
    /// An environment's variables; read by `apply` and the Manager, ignored by the compiler.
    Environment(EnvironmentManifest),
    Certificate(CertificateManifest),
    /// Worker process settings: applied when a Worker starts, so changed by a rollout.
    WorkerSettings(WorkerSettingsManifest),
    /// An address Workers accept traffic on: bound, moved and drained without a restart.
    Listener(ListenerManifest),
}

impl Manifest {
    pub fn kind(&self) -> Kind {
        match self {
            Manifest::Proxy(_) => Kind::Proxy,
            Manifest::Credential(_) => Kind::Credential,
            Manifest::Environment(_) => Kind::Environment,
            Manifest::Certificate(_) => Kind::Certificate,
            Manifest::WorkerSettings(_) => Kind::WorkerSettings,
            Manifest::Listener(_) => Kind::Listener,
        }
    }

    pub fn name(&self) -> &str {
        &self.metadata().name.value
    }

    pub fn metadata(&self) -> &Metadata {
        match self {
            Manifest::Proxy(p) => &p.metadata,
            Manifest::Credential(c) => &c.metadata,
            Manifest::Environment(e) => &e.metadata,
            Manifest::Certificate(c) => &c.metadata,
            Manifest::WorkerSettings(w) => &w.metadata,
            Manifest::Listener(l) => &l.metadata,
        }
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.metadata().labels
    }

    /// Whether the manifest carries secret values (stored encrypted, shown redacted).
    pub fn is_secret(&self) -> bool {
        self.kind().is_secret()
    }

    /// The canonical form stored by the Manager and sent to Workers: compact JSON with
    /// defaults filled in and maps sorted. JSON is YAML (characters YAML refuses raw are
    /// escaped, [`json_text`]), so Workers read it with the same parser as files. Equal
    /// content gives equal text, whatever the original formatting.
    pub fn canonical_json(&self) -> String {
        let json = match self {
            Manifest::Proxy(p) => json_text::to_string(p),
            Manifest::Credential(c) => json_text::to_string(c),
            Manifest::Environment(e) => json_text::to_string(e),
            Manifest::Certificate(c) => json_text::to_string(c),
            Manifest::WorkerSettings(w) => json_text::to_string(w),
            Manifest::Listener(l) => json_text::to_string(l),
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyManifest {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: ProxySpec,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub name: Spanned<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxySpec {
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<RouteSpec>))]
    pub routes: Spanned<Vec<Spanned<RouteSpec>>>,
    pub upstream: Box<UpstreamSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicySpec>,
    /// How the proxy's policy denials and gateway errors are written; absent: Switchyard's
    /// own JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<ErrorsSpec>,
    /// Requests that came in over plain HTTP are answered `308` to the same URL over
    /// `https://` (the host's name, port 443) instead of being proxied.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub https_redirect: bool,
}

/// `spec.errors`: the error format of one proxy, for clients that expect another API's
/// errors (an OpenAI SDK behind an AI route). Struct variants, so that unknown fields beside
/// `format` are refused (serde ignores them for unit variants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "format", rename_all = "lowercase", deny_unknown_fields)]
pub enum ErrorsSpec {
    /// `{"error": code, "message", "source", "policy"}` (the default).
    Switchyard {},
    /// `{"error": {"message", "type", "code", "param"}}`.
    Openai {},
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// How long a long-lived stream on this route (a WebSocket, a streamed response) may
    /// stay open once its configuration generation is no longer the current one: past it,
    /// the stream is closed gracefully (WebSocket close 1001, end of the response body).
    /// A stream on the current generation is never closed for its age. Absent: only the
    /// Worker-wide cap (`--max-pinned-age`, default 1h) applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stream_age: Option<HumanDuration>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamSpec {
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<TargetSpec>))]
    pub targets: Spanned<Vec<TargetSpec>>,
    #[serde(default)]
    pub load_balancing: LoadBalancing,
    /// The HTTP version spoken to the targets: `http1` (default), `http2` (cleartext
    /// targets: h2c with prior knowledge; `https://` targets: ALPN `h2` only) or `auto`
    /// (`https://` targets: ALPN offers `h2` and `http/1.1` and the target chooses;
    /// cleartext targets: HTTP/1.1). gRPC needs `http2` (or `auto` over TLS).
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub retries: Retries,
    /// `client-ip` or `header:<name>`: what `consistent-hash` hashes (required for it,
    /// refused with any other `loadBalancing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_on: Option<RequestKeySpec>,
    /// Active and/or passive health checking of the targets. Absent: every target is
    /// always considered healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckSpec>,
    /// Requests one target may have in flight at once (applies to each target). A target
    /// at its limit is skipped; when every target is, the request is refused with 503
    /// `upstream_overloaded`. Absent: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_requests: Option<u32>,
    /// How `https://` targets are verified. Absent: against the system's root
    /// certificates, for the target's host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTlsSpec>,
}

/// `spec.upstream.tls`: the verification of `https://` targets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamTlsSpec {
    /// A Credential of type `secret` whose value is the PEM certificates to trust instead
    /// of the system's roots (a private CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// The name sent as SNI and verified in the certificate (default: the target's host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Labs only: accept any certificate. Logged loudly when compiled.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
    /// A `kind: Certificate` presented to upstreams that ask for one (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetSpec {
    pub url: TargetUrl,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// An upstream base URL: `http://host:port` or `https://host:port` with an optional path
/// prefix. Checked when read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct TargetUrl(pub String);

impl TargetUrl {
    pub fn parse(s: &str) -> Result<http::Uri, String> {
        let uri: http::Uri = s.parse().map_err(|e| format!("invalid URL {s:?}: {e}"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            Some(other) => {
                return Err(format!(
                    "invalid URL {s:?}: unsupported scheme {other:?}, expected http or https"
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

/// What identifies the sender of a request, for whatever keys on it: the buckets of a
/// `rate-limit` and the target `consistent-hash` picks. Written `consumer`, `client-ip` or
/// `header:<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestKey {
    /// The consumer an authentication policy identified.
    Consumer,
    /// The client address (as resolved by `ip-filter` when it trusts proxies).
    ClientIp,
    /// A request header's first value.
    Header(http::HeaderName),
}

/// Why a text is not a [`RequestKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRequestKey {
    /// Neither `consumer`, `client-ip` nor `header:<name>`.
    #[error("not consumer, client-ip or header:<name>")]
    Unknown,
    /// `header:<name>` with an invalid name (as written).
    #[error("invalid header name {0:?}")]
    HeaderName(String),
}

impl RequestKey {
    /// Reads `consumer`, `client-ip` or `header:<name>` (spaces around the name allowed).
    pub fn parse(text: &str) -> Result<RequestKey, BadRequestKey> {
        match text {
            "consumer" => Ok(RequestKey::Consumer),
            "client-ip" => Ok(RequestKey::ClientIp),
            other => match other.strip_prefix("header:") {
                Some(name) => http::HeaderName::from_bytes(name.trim().as_bytes())
                    .map(RequestKey::Header)
                    .map_err(|_| BadRequestKey::HeaderName(name.to_string())),
                None => Err(BadRequestKey::Unknown),
            },
        }
    }
}

/// A [`RequestKey`] as a manifest writes it, read once, when the manifest is read. It
/// exists to keep two things a bare key would lose: the text as written (it is written
/// back unchanged, so canonical forms and digests do not move, and it names rate-limit
/// counters), and, for a text that is not a key, why not — so the compiler reports it at
/// its place in the proxy along with every other error, as it reports other fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestKeySpec {
    written: String,
    key: Result<RequestKey, BadRequestKey>,
}

impl RequestKeySpec {
    pub fn new(written: impl Into<String>) -> RequestKeySpec {
        let written = written.into();
        let key = RequestKey::parse(&written);
        RequestKeySpec { written, key }
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.written
    }

    /// The key, or why the text is not one.
    pub fn key(&self) -> Result<&RequestKey, &BadRequestKey> {
        self.key.as_ref()
    }

    /// The `<name>` of a `header:<name>` key exactly as written (spaces included).
    pub fn header_as_written(&self) -> Option<&str> {
        self.written.strip_prefix("header:")
    }
}

impl Serialize for RequestKeySpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.written)
    }
}

impl<'de> Deserialize<'de> for RequestKeySpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(RequestKeySpec::new)
    }
}

/// Written as text: `consumer`, `client-ip` or `header:<name>`.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for RequestKeySpec {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^(consumer|client-ip|header:.+)$"))
            .description(Some(
                "What identifies the sender of a request: `consumer`, `client-ip` or `header:<name>`.",
            ))
            .examples(["client-ip", "header:x-tenant"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for RequestKeySpec {}

/// `spec.upstream.protocol`: the HTTP version spoken to an upstream's targets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    Http2,
    Auto,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum LoadBalancing {
    #[default]
    RoundRobin,
    LeastRequests,
    Weighted,
    /// Rendezvous hashing on `hashOn`: a key keeps its target while that target is
    /// healthy; removing a target only moves the keys it had.
    ConsistentHash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retries {
    /// Extra attempts, each on another target. Made only when it is safe: connecting failed
    /// (nothing was sent), or an idempotent request (GET, HEAD, OPTIONS, PUT, DELETE, TRACE)
    /// whose body was not started was reset before any response byte. Each retry also
    /// needs a token from the `budget`.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "RetryBudgetSpec::is_default")]
    pub budget: RetryBudgetSpec,
}

fn default_attempts() -> u32 {
    1
}

impl Default for Retries {
    fn default() -> Self {
        Self {
            attempts: default_attempts(),
            budget: RetryBudgetSpec::default(),
        }
    }
}

/// A token bucket per upstream: every request adds `ratio` tokens, `minPerSecond` tokens
/// are added each second whatever the traffic, a retry takes one token; no token, no retry.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryBudgetSpec {
    #[serde(default = "default_budget_ratio")]
    pub ratio: f64,
    #[serde(default = "default_budget_min_per_second")]
    pub min_per_second: u32,
}

fn default_budget_ratio() -> f64 {
    0.2
}

fn default_budget_min_per_second() -> u32 {
    3
}

impl RetryBudgetSpec {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for RetryBudgetSpec {
    fn default() -> Self {
        Self {
            ratio: default_budget_ratio(),
            min_per_second: default_budget_min_per_second(),
        }
    }
}

/// `healthCheck`: `active` probes, `passive` ejection on failed requests, or both.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheckSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<ActiveHealthCheckSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive: Option<PassiveHealthCheckSpec>,
}

/// Every `interval`, `GET path` on each target; 2xx and 3xx answers within `timeout` are
/// successes. `unhealthyThreshold` failures in a row mark a target unhealthy,
/// `healthyThreshold` successes in a row mark it healthy again.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActiveHealthCheckSpec {
    /// Path (and optional query) below the target's URL, e.g. `/healthz`.
    pub path: String,
    #[serde(default = "default_check_interval")]
    pub interval: HumanDuration,
    #[serde(default = "default_check_timeout")]
    pub timeout: HumanDuration,
    #[serde(default = "default_healthy_threshold")]
    pub healthy_threshold: u32,
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: u32,
}

fn default_check_interval() -> HumanDuration {
    HumanDuration::from_secs(5)
}

fn default_check_timeout() -> HumanDuration {
    HumanDuration::from_secs(1)
}

fn default_healthy_threshold() -> u32 {
    2
}

fn default_unhealthy_threshold() -> u32 {
    3
}

/// `consecutiveFailures` failed requests in a row (connect failure, reset, timeout, or a
/// 5xx answer) eject a target for `coolOff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PassiveHealthCheckSpec {
    #[serde(default = "default_consecutive_failures")]
    pub consecutive_failures: u32,
    #[serde(default = "default_cool_off")]
    pub cool_off: HumanDuration,
}

fn default_consecutive_failures() -> u32 {
    5
}

fn default_cool_off() -> HumanDuration {
    HumanDuration::from_secs(30)
}

impl Default for PassiveHealthCheckSpec {
    fn default() -> Self {
        Self {
            consecutive_failures: default_consecutive_failures(),
            cool_off: default_cool_off(),
        }
    }
}
