//! Data-plane errors. Each knows where it came from (client, upstream, internal), so it maps
//! to the right status, JSON body, log field and metric.

use std::fmt;

use http::StatusCode;
use switchyard_engine::runtime::{ErrorBody, ErrorFormat};

use super::body::ClientBodyError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    Client,
    /// A policy answered (a denial).
    Policy,
    Upstream,
    Internal,
}

impl ErrorSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorSource::Client => "client",
            ErrorSource::Policy => "policy",
            ErrorSource::Upstream => "upstream",
            ErrorSource::Internal => "internal",
        }
    }
}

/// Why an upstream attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// The TCP connection could not be opened (refused, unreachable).
    ConnectFailed,
    /// Opening the connection took longer than `timeouts.connect`.
    ConnectTimeout,
    /// The connection was closed or reset before a response head arrived.
    Reset,
    /// No response head within `timeouts.request`.
    Timeout,
    /// The upstream answered with something that is not valid HTTP.
    Protocol,
    /// The response body sent nothing for `upstreamBodyIdle` (the response was cut).
    BodyTimeout,
    /// The TLS handshake with an `https://` target failed (its certificate not trusted or
    /// not for its name, expired, no common protocol).
    Tls,
}

impl UpstreamErrorKind {
    pub const COUNT: usize = 7;
    pub const ALL: [UpstreamErrorKind; Self::COUNT] = [
        UpstreamErrorKind::ConnectFailed,
        UpstreamErrorKind::ConnectTimeout,
        UpstreamErrorKind::Reset,
        UpstreamErrorKind::Timeout,
        UpstreamErrorKind::Protocol,
        UpstreamErrorKind::BodyTimeout,
        UpstreamErrorKind::Tls,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamErrorKind::ConnectFailed => "connect_failed",
            UpstreamErrorKind::ConnectTimeout => "connect_timeout",
            UpstreamErrorKind::Reset => "reset",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Protocol => "protocol",
            UpstreamErrorKind::BodyTimeout => "body_timeout",
            UpstreamErrorKind::Tls => "tls",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Connect failures happen before anything was sent: safe to retry elsewhere.
    pub fn is_connect(self) -> bool {
        matches!(
            self,
            UpstreamErrorKind::ConnectFailed
                | UpstreamErrorKind::ConnectTimeout
                | UpstreamErrorKind::Tls
        )
    }

    /// Classifies a failed exchange with an upstream (after the connection was made).
    pub fn classify(e: &hyper::Error) -> UpstreamErrorKind {
        if e.is_parse() || e.is_parse_status() {
            UpstreamErrorKind::Protocol
        } else if tls_alert(e) {
            // With TLS 1.3 the client's handshake ends before the server has checked the
            // client certificate: its refusal (an alert) arrives instead of the response.
            // The upstream's application never saw the request.
            UpstreamErrorKind::Tls
        } else {
            UpstreamErrorKind::Reset
        }
    }

    /// Classifies a failure to connect.
    pub fn from_connect(e: &std::io::Error) -> UpstreamErrorKind {
        if e.kind() == std::io::ErrorKind::TimedOut {
            UpstreamErrorKind::ConnectTimeout
        } else if crate::upstream_tls::UpstreamTlsError::is(e) {
            UpstreamErrorKind::Tls
        } else {
            UpstreamErrorKind::ConnectFailed
        }
    }
}

/// Whether a TLS error (an alert from the upstream, say) is somewhere in `e`'s causes.
fn tls_alert(e: &hyper::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && io.get_ref().is_some_and(|i| i.is::<rustls::Error>())
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// An error answered by the gateway itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    NoRoute,
    /// The request itself is refused before routing (its path or host).
    BadRequest {
        code: &'static str,
        message: &'static str,
    },
    /// The client's request body failed on its way upstream.
    ClientBody(ClientBodyError),
    Upstream(UpstreamErrorKind),
    /// Every target that could take the request is at `maxConcurrentRequests`.
    Overloaded,
    Internal(&'static str),
}

impl GatewayError {
    pub fn source(&self) -> ErrorSource {
        match self {
            GatewayError::NoRoute
            | GatewayError::BadRequest { .. }
            | GatewayError::ClientBody(_) => ErrorSource::Client,
            GatewayError::Upstream(_) | GatewayError::Overloaded => ErrorSource::Upstream,
            GatewayError::Internal(_) => ErrorSource::Internal,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            GatewayError::ClientBody(ClientBodyError::IdleTimeout) => StatusCode::REQUEST_TIMEOUT,
            GatewayError::ClientBody(ClientBodyError::Malformed) => StatusCode::BAD_REQUEST,
            // Nobody reads it; it is what the access log says (as nginx logs it).
            GatewayError::ClientBody(ClientBodyError::Aborted) => {
                StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
            }
            GatewayError::Upstream(UpstreamErrorKind::Timeout)
            | GatewayError::Upstream(UpstreamErrorKind::ConnectTimeout)
            | GatewayError::Upstream(UpstreamErrorKind::BodyTimeout) => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Upstream(_) => StatusCode::BAD_GATEWAY,
            GatewayError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::NoRoute => "no_route",
            GatewayError::BadRequest { code, .. } => code,
            GatewayError::ClientBody(ClientBodyError::IdleTimeout) => "client_body_timeout",
            GatewayError::ClientBody(ClientBodyError::Malformed) => "client_body_malformed",
            GatewayError::ClientBody(ClientBodyError::Aborted) => "client_aborted",
            GatewayError::Upstream(k) => match k {
                UpstreamErrorKind::ConnectFailed => "upstream_connect_failed",
                UpstreamErrorKind::ConnectTimeout => "upstream_connect_timeout",
                UpstreamErrorKind::Reset => "upstream_reset",
                UpstreamErrorKind::Timeout => "upstream_timeout",
                UpstreamErrorKind::Protocol => "upstream_protocol_error",
                UpstreamErrorKind::BodyTimeout => "upstream_body_timeout",
                UpstreamErrorKind::Tls => "upstream_tls_failed",
            },
            GatewayError::Overloaded => "upstream_overloaded",
            GatewayError::Internal(_) => "internal_error",
        }
    }

    /// The JSON body sent to the client, in `format` (the proxy's, when there is one).
    pub fn body(&self, format: ErrorFormat) -> bytes::Bytes {
        ErrorBody {
            status: self.status(),
            code: self.code(),
            message: &self.to_string(),
            source: self.source().as_str(),
            policy: None,
        }
        .render(format)
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewayError::NoRoute => f.write_str("no route matches this host, path and method"),
            GatewayError::BadRequest { message, .. } => f.write_str(message),
            GatewayError::ClientBody(e) => write!(f, "{e}"),
            GatewayError::Upstream(k) => match k {
                UpstreamErrorKind::ConnectFailed => {
                    f.write_str("could not connect to any upstream target")
                }
                UpstreamErrorKind::ConnectTimeout => {
                    f.write_str("timed out connecting to the upstream")
                }
                UpstreamErrorKind::Reset => {
                    f.write_str("the upstream closed the connection before responding")
                }
                UpstreamErrorKind::Timeout => {
                    f.write_str("the upstream did not respond within the request timeout")
                }
                UpstreamErrorKind::Protocol => f.write_str("the upstream sent an invalid response"),
                UpstreamErrorKind::BodyTimeout => {
                    f.write_str("the upstream response body stalled")
                }
                UpstreamErrorKind::Tls => f.write_str(
                    "TLS with the upstream failed: its certificate is not trusted, not for its \
                     name, or expired (the Worker's log has the details)",
                ),
            },
            GatewayError::Overloaded => f.write_str(
                "every upstream target is at its concurrent-request limit (maxConcurrentRequests); retry later",
            ),
            GatewayError::Internal(what) => write!(f, "internal error: {what}"),
        }
    }
}
