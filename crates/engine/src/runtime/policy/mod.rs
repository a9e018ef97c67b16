//! Compiled policies. Each file holds one policy: how its manifest form is checked and
//! compiled (against the credentials it names), and what it does to a request. Everything
//! is parsed and checked up front; the request path only applies ready-made values.
//!
//! Request-phase policies run in the order listed; a policy either lets the request go on
//! (possibly editing it, or naming its consumer) or answers it (a denial as a JSON error
//! with a stable code, a CORS preflight, a mock). Three need the Worker's help and are run
//! by it: `basic-auth` (password hashes are verified off the async threads),
//! `prompt-firewall` (needs the body) and `request-size` (limits the body as it streams).

pub mod api_key;
pub mod basic_auth;
pub mod cors;
pub mod ip_filter;
pub mod jwt;
pub mod mock_response;
pub mod mtls_auth;
pub mod prompt_firewall;
pub mod rate_limit;
pub mod request_size;
pub mod upstream_credential;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use switchyard_config::error::Reason;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};

use super::pipeline::HeadersPolicy;
use switchyard_config::manifest::CredentialSpec;

/// One compiled policy.
#[derive(Debug)]
pub enum Policy {
    Headers(HeadersPolicy),
    ApiKey(api_key::ApiKeyPolicy),
    BasicAuth(basic_auth::BasicAuthPolicy),
    Jwt(jwt::JwtPolicy),
    MtlsAuth(mtls_auth::MtlsAuthPolicy),
    IpFilter(ip_filter::IpFilterPolicy),
    RateLimit(rate_limit::RateLimitPolicy),
    RequestSize(request_size::RequestSizePolicy),
    Cors(cors::CorsPolicy),
    /// Boxed: the largest policy by far.
    PromptFirewall(Box<prompt_firewall::PromptFirewallPolicy>),
    MockResponse(mock_response::MockResponsePolicy),
    UpstreamCredential(upstream_credential::UpstreamCredentialPolicy),
}

impl Policy {
    /// The policy's `type` as written in manifests.
    pub fn type_name(&self) -> &'static str {
        use switchyard_config::manifest as spec;
        match self {
            Policy::Headers(_) => spec::HeadersPolicySpec::TYPE,
            Policy::ApiKey(_) => spec::ApiKeySpec::TYPE,
            Policy::BasicAuth(_) => spec::BasicAuthSpec::TYPE,
            Policy::Jwt(_) => spec::JwtSpec::TYPE,
            Policy::MtlsAuth(_) => spec::MtlsAuthSpec::TYPE,
            Policy::IpFilter(_) => spec::IpFilterSpec::TYPE,
            Policy::RateLimit(_) => spec::RateLimitSpec::TYPE,
            Policy::RequestSize(_) => spec::RequestSizeSpec::TYPE,
            Policy::Cors(_) => spec::CorsSpec::TYPE,
            Policy::PromptFirewall(_) => spec::PromptFirewallSpec::TYPE,
            Policy::MockResponse(_) => spec::MockResponseSpec::TYPE,
            Policy::UpstreamCredential(_) => spec::UpstreamCredentialSpec::TYPE,
        }
    }

    /// Whether the policy identifies a consumer (later policies may key on it).
    pub fn authenticates(&self) -> bool {
        matches!(
            self,
            Policy::ApiKey(_) | Policy::BasicAuth(_) | Policy::Jwt(_) | Policy::MtlsAuth(_)
        )
    }
}

/// The request as request-phase policies see it (the body is handled by the Worker).
pub struct RequestView<'a> {
    pub method: &'a Method,
    /// Policies may rewrite it (e.g. `api-key` removing the key from the query).
    pub uri: &'a mut Uri,
    pub headers: &'a mut HeaderMap,
    /// The TCP peer.
    pub peer: IpAddr,
    /// The client certificate the connection's TLS handshake verified, if any.
    pub client_cert: Option<&'a crate::tls::ClientIdentity>,
}

/// What policies learn about a request and leave for later ones and for the response.
#[derive(Debug, Default)]
pub struct Exchange {
    /// Set by an authentication policy.
    pub consumer: Option<Arc<str>>,
    /// The client address as resolved by `ip-filter` (trusted proxies), else the peer.
    pub client_ip: Option<IpAddr>,
    /// Headers added to the response, whoever answers (e.g. `RateLimit-*`, CORS).
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
    /// The `Origin` of a CORS request allowed by the `cors` policy.
    pub cors_origin: Option<HeaderValue>,
}

impl Exchange {
    pub fn client_ip(&self, peer: IpAddr) -> IpAddr {
        self.client_ip.unwrap_or(peer)
    }
}

/// What a request-phase policy asks of the Worker.
pub enum Step<'p> {
    Done(Verdict),
    /// `basic-auth`: verify this password off the async threads, then
    /// [`basic_auth::BasicAuthPolicy::finish`].
    VerifyPassword {
        policy: &'p basic_auth::BasicAuthPolicy,
        username: String,
        password: String,
    },
    /// `prompt-firewall`: read the body (up to the policy's limit) and inspect it.
    InspectBody(&'p prompt_firewall::PromptFirewallPolicy),
    /// `request-size`: cut the body off (413) beyond this many bytes.
    LimitBody(u64),
}

impl Policy {
    /// The request phase of this policy. `now` drives rate limits, `wall` token expiry.
    pub fn on_request(
        &self,
        req: &mut RequestView<'_>,
        ex: &mut Exchange,
        now: std::time::Instant,
        wall: std::time::SystemTime,
    ) -> Step<'_> {
        let verdict = match self {
            Policy::Headers(h) => {
                h.request.apply(req.headers);
                Verdict::Continue
            }
            Policy::ApiKey(p) => p.on_request(req, ex),
            Policy::BasicAuth(p) => {
                return match p.on_request(req, ex) {
                    basic_auth::BasicAuthStep::Done(v) => Step::Done(v),
                    basic_auth::BasicAuthStep::Verify { username, password } => {
                        Step::VerifyPassword {
                            policy: p,
                            username,
                            password,
                        }
                    }
                };
            }
            Policy::Jwt(p) => p.on_request(req, ex, wall),
            Policy::MtlsAuth(p) => p.on_request(req, ex),
            Policy::IpFilter(p) => p.on_request(req, ex),
            Policy::RateLimit(p) => p.on_request(req, ex, now),
            Policy::RequestSize(p) => match p.on_request(req, ex) {
                Verdict::Continue => return Step::LimitBody(p.max_bytes),
                reply => reply,
            },
            Policy::Cors(p) => p.on_request(req, ex),
            Policy::PromptFirewall(p) => return Step::InspectBody(p),
            Policy::MockResponse(p) => Verdict::Reply(p.reply.clone()),
            Policy::UpstreamCredential(p) => {
                req.headers.insert(p.header.clone(), p.value.clone());
                Verdict::Continue
            }
        };
        Step::Done(verdict)
    }
}

/// A request-phase decision.
#[derive(Debug)]
pub enum Verdict {
    Continue,
    Reply(Reply),
}

/// An answer the gateway gives itself.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    /// Stable code for logs and metrics (`invalid_api_key`, `rate_limited`, `mock`…).
    pub code: &'static str,
    /// What matched, for metrics (e.g. the prompt-firewall rule's name).
    pub detail: Option<Arc<str>>,
    /// A denial's message (`None` for answers that are not errors: mocks, preflights), so
    /// the Worker can write it in the proxy's error format.
    pub message: Option<String>,
}

impl Reply {
    /// A denial: `{"error": code, "message": …, "source": "policy", "policy": type}`.
    pub fn deny(
        status: StatusCode,
        code: &'static str,
        policy: &'static str,
        message: impl Into<String>,
    ) -> Reply {
        let message = message.into();
        let body = super::error_format::ErrorBody {
            status,
            code,
            message: &message,
            source: "policy",
            policy: Some(policy),
        }
        .render(super::error_format::ErrorFormat::Switchyard);
        Reply {
            status,
            headers: vec![(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
            code,
            detail: None,
            message: Some(message),
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Reply {
        self.headers.push((name, value));
        self
    }
}

/// Credentials by name, as policies are compiled against them.
pub type Credentials<'a> = HashMap<&'a str, &'a CredentialSpec>;

/// What compiling a policy may consult.
pub struct CompileCtx<'a> {
    pub proxy: &'a str,
    pub credentials: &'a Credentials<'a>,
    /// Rate-limit counters that outlive snapshots.
    pub limiters: &'a rate_limit::Limiters,
    /// Position of this policy among the proxy's rate-limit policies (for their identity).
    pub rate_limit_ordinal: usize,
    /// An authentication policy comes earlier in the pipeline.
    pub authenticated: bool,
}

impl CompileCtx<'_> {
    /// The credential `name`, which must be of type `want` (`field` names where it was asked).
    pub fn credential(
        &self,
        field: &str,
        name: &str,
        want: &'static str,
    ) -> Result<&CredentialSpec, FieldError> {
        match self.credentials.get(name) {
            // `switchyard apply` leaves these to the Manager, which knows the environment's
            // credentials (the files may not hold them).
            None => Err(FieldError::new(
                field,
                format!("no Credential named {name:?} in this environment"),
            )
            .because(Reason::UnknownCredential)),
            Some(c) if c.type_name() != want => Err(FieldError::new(
                field,
                format!(
                    "Credential {name:?} is of type {:?}; this field needs one of type {want:?}",
                    c.type_name()
                ),
            )),
            Some(c) => Ok(c),
        }
    }
}

/// A problem in one field of a policy (`field` relative to the policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
    pub reason: Reason,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
            reason: Reason::Invalid,
        }
    }

    pub fn because(mut self, reason: Reason) -> FieldError {
        self.reason = reason;
        self
    }
}

/// The most headers a proxy's policies may add to one request or response, in all (`set`
/// and `add` of every `headers` policy; a mock's headers). Common HTTP/1 parsers hold 100
/// headers (hyper's — the Worker's own, and many clients' and upstreams'); this leaves the
/// message's own headers room beside what policies add.
pub const MAX_ADDED_HEADERS: usize = 64;
/// Their names and values together: half of Node.js's 16 KiB header limit (HTTP/2's
/// default header list is 16 KiB too), the other half left for the message's own headers.
pub const MAX_ADDED_HEADER_BYTES: usize = 8 * 1024;

/// Headers added to one message, counted against [`MAX_ADDED_HEADERS`] and
/// [`MAX_ADDED_HEADER_BYTES`]: what the data plane can carry.
#[derive(Debug, Default, Clone, Copy)]
pub struct HeaderBudget {
    pub count: usize,
    pub bytes: usize,
    /// Already reported as over (once is enough).
    over: bool,
}

impl HeaderBudget {
    /// Adds `headers`; why not, the first time the budget is over.
    pub fn add<'a>(
        &mut self,
        headers: impl IntoIterator<Item = &'a (HeaderName, HeaderValue)>,
    ) -> Result<(), String> {
        for (n, v) in headers {
            self.count += 1;
            self.bytes += n.as_str().len() + v.len();
        }
        if self.over {
            return Ok(());
        }
        self.over = self.count > MAX_ADDED_HEADERS || self.bytes > MAX_ADDED_HEADER_BYTES;
        if self.count > MAX_ADDED_HEADERS {
            Err(format!(
                "{} headers added to one message in all; at most {MAX_ADDED_HEADERS} fit what HTTP clients and upstreams accept",
                self.count
            ))
        } else if self.bytes > MAX_ADDED_HEADER_BYTES {
            Err(format!(
                "{} bytes of headers added to one message in all; at most {MAX_ADDED_HEADER_BYTES} fit what HTTP clients and upstreams accept",
                self.bytes
            ))
        } else {
            Ok(())
        }
    }
}

/// A header name as written in a manifest.
pub fn header_name(field: &str, name: &str) -> Result<HeaderName, FieldError> {
    HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| FieldError::new(field, format!("invalid header name {name:?}")))
}

/// A header name a policy sets or adds, as written in a manifest: not a connection-level
/// header, not `Content-Length` (the data plane owns both).
pub fn settable_header_name(field: &str, name: &str) -> Result<HeaderName, FieldError> {
    let h = header_name(field, name)?;
    if super::hop_by_hop::is_hop_by_hop(&h) {
        return Err(FieldError::new(
            field,
            format!("{name:?} is a hop-by-hop header and cannot be changed by a policy"),
        ));
    }
    if super::hop_by_hop::is_framing(&h) {
        return Err(FieldError::new(
            field,
            format!(
                "{name:?} is written by the gateway from the body and cannot be changed by a policy"
            ),
        ));
    }
    Ok(h)
}

/// A header value as written in a manifest.
pub fn header_value(field: &str, value: &str) -> Result<HeaderValue, FieldError> {
    HeaderValue::from_str(value)
        .map_err(|_| FieldError::new(field, format!("invalid header value {value:?}")))
}
