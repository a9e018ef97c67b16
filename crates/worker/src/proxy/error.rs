//! Data-plane errors. Each knows where it came from (client, upstream, internal), so it maps
//! to the right status, JSON body, log field and metric.

use std::error::Error as StdError;
use std::fmt;

use http::StatusCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    Client,
    Upstream,
    Internal,
}

impl ErrorSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorSource::Client => "client",
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
}

impl UpstreamErrorKind {
    pub const COUNT: usize = 5;
    pub const ALL: [UpstreamErrorKind; Self::COUNT] = [
        UpstreamErrorKind::ConnectFailed,
        UpstreamErrorKind::ConnectTimeout,
        UpstreamErrorKind::Reset,
        UpstreamErrorKind::Timeout,
        UpstreamErrorKind::Protocol,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamErrorKind::ConnectFailed => "connect_failed",
            UpstreamErrorKind::ConnectTimeout => "connect_timeout",
            UpstreamErrorKind::Reset => "reset",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Protocol => "protocol",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Connect failures happen before anything was sent: safe to retry elsewhere.
    pub fn is_connect(self) -> bool {
        matches!(
            self,
            UpstreamErrorKind::ConnectFailed | UpstreamErrorKind::ConnectTimeout
        )
    }

    /// Classifies a client error from hyper-util.
    pub fn classify(e: &hyper_util::client::legacy::Error) -> UpstreamErrorKind {
        let timed_out = source_chain(e).any(|s| {
            s.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        });
        if e.is_connect() {
            return if timed_out {
                UpstreamErrorKind::ConnectTimeout
            } else {
                UpstreamErrorKind::ConnectFailed
            };
        }
        let parse_error = source_chain(e).any(|s| {
            s.downcast_ref::<hyper::Error>()
                .is_some_and(|h| h.is_parse() || h.is_parse_status())
        });
        if parse_error {
            UpstreamErrorKind::Protocol
        } else {
            UpstreamErrorKind::Reset
        }
    }
}

fn source_chain<'a>(
    e: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(e), |e: &&'a (dyn StdError + 'static)| (*e).source())
}

/// An error answered by the gateway itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    NoRoute,
    Upstream(UpstreamErrorKind),
    /// Every target that could take the request is at `maxConcurrentRequests`.
    Overloaded,
    Internal(&'static str),
}

impl GatewayError {
    pub fn source(&self) -> ErrorSource {
        match self {
            GatewayError::NoRoute => ErrorSource::Client,
            GatewayError::Upstream(_) | GatewayError::Overloaded => ErrorSource::Upstream,
            GatewayError::Internal(_) => ErrorSource::Internal,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::Upstream(UpstreamErrorKind::Timeout)
            | GatewayError::Upstream(UpstreamErrorKind::ConnectTimeout) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            GatewayError::Upstream(_) => StatusCode::BAD_GATEWAY,
            GatewayError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::NoRoute => "no_route",
            GatewayError::Upstream(k) => match k {
                UpstreamErrorKind::ConnectFailed => "upstream_connect_failed",
                UpstreamErrorKind::ConnectTimeout => "upstream_connect_timeout",
                UpstreamErrorKind::Reset => "upstream_reset",
                UpstreamErrorKind::Timeout => "upstream_timeout",
                UpstreamErrorKind::Protocol => "upstream_protocol_error",
            },
            GatewayError::Overloaded => "upstream_overloaded",
            GatewayError::Internal(_) => "internal_error",
        }
    }

    /// The JSON body sent to the client.
    pub fn body(&self) -> bytes::Bytes {
        let v = serde_json::json!({
            "error": self.code(),
            "message": self.to_string(),
            "source": self.source().as_str(),
        });
        let mut out = serde_json::to_vec(&v).unwrap_or_default();
        out.push(b'\n');
        out.into()
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewayError::NoRoute => f.write_str("no route matches this host, path and method"),
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
            },
            GatewayError::Overloaded => f.write_str(
                "every upstream target is at its concurrent-request limit (maxConcurrentRequests); retry later",
            ),
            GatewayError::Internal(what) => write!(f, "internal error: {what}"),
        }
    }
}
