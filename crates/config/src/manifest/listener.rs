//! `kind: Listener`: an address an environment's Workers accept traffic on, and how they
//! treat the connections that arrive there. Workers following a Manager without
//! `--listen`/`--listen-tls` bind the environment's listeners (flags remain the per-host
//! override, and standalone Workers read the kind from their files too).
//!
//! A listener's settings are connection-level: a connection lives by those current when
//! it was accepted. Adding a listener binds a socket; removing one stops accepting on it
//! and drains its connections; moving one (a new `address` or `port`) binds the new socket
//! first, then drains the old one (hot-with-drain, see `docs/classification.md`). Every
//! other field applies to the connections (and TLS handshakes) accepted after the change.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::Metadata;
use crate::Kind;
use crate::duration::HumanDuration;
use crate::error::{ConfigError, Position, SourceRef};

/// One listener of an environment.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerManifest {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: ListenerSpec,
}

/// `spec` of `kind: Listener`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerSpec {
    /// The IP address to bind (default `0.0.0.0`: every IPv4 address; `::` for IPv6).
    #[serde(default = "any_address")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub address: IpAddr,
    /// The TCP port. `0` lets each Worker's system choose one (the Worker's `/status`
    /// shows the bound address): for tests and for Workers found by discovery.
    pub port: u16,
    /// `http` (HTTP/1.1, and HTTP/2 with prior knowledge) or `https` (TLS, with the
    /// certificate of each handshake chosen by SNI from the environment's `kind:
    /// Certificate` entities; HTTP/2 by ALPN).
    #[serde(default)]
    pub protocol: ListenerProtocol,
    /// Whether HTTP/2 is served (default true). Off: HTTP/1.1 only, and `h2` is not
    /// offered in ALPN.
    #[serde(default = "yes")]
    pub http2: bool,
    /// TLS settings of an `https` listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTlsSpec>,
    /// Connection limits of this listener (the Worker-wide cap is the Environment's
    /// `spec.gateway.connections.max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<ListenerConnectionsSpec>,
    /// Read timeouts of this listener's connections (default: the Environment's
    /// `spec.gateway.timeouts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<ListenerTimeoutsSpec>,
    /// When the listener is removed or moved: how long its old socket goes on accepting
    /// (each connection then answers one request with `Connection: close`), so clients
    /// and load balancers that have not learned the change yet are not refused. Default
    /// `0s`: it stops accepting at once (its queued connections are still served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_accepting_for: Option<HumanDuration>,
}

fn any_address() -> IpAddr {
    IpAddr::from([0, 0, 0, 0])
}

fn yes() -> bool {
    true
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ListenerProtocol {
    #[default]
    Http,
    Https,
}

/// `spec.tls` of an `https` listener.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerTlsSpec {
    /// Mutual TLS required on this listener: a handshake is completed only with a
    /// certificate that has `spec.clientAuth` (and so only with a client certificate its
    /// CA verifies). Off (default): each certificate's own `clientAuth` decides.
    #[serde(default)]
    pub require_client_certificate: bool,
}

/// `spec.connections` of a listener.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerConnectionsSpec {
    /// Open connections this listener admits; past it a new connection is answered 503
    /// (`connection_limit`) and closed. 1 to 10000000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
}

/// `spec.timeouts` of a listener.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerTimeoutsSpec {
    /// How long a request's headers may take to arrive once its first byte has (default:
    /// the Environment's `spec.gateway.timeouts.idle`); a client too slow gets 408.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HumanDuration>,
    /// A request body that sends no byte for this long gets 408 (default: the
    /// Environment's `spec.gateway.timeouts.requestBodyIdle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body_idle: Option<HumanDuration>,
}

impl ListenerSpec {
    /// What is wrong with the values, if anything: `(field, problem)`.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if self.tls.is_some() && self.protocol == ListenerProtocol::Http {
            return Some((
                "spec.tls",
                "TLS settings on an `http` listener: set `protocol: https` or remove `tls`".into(),
            ));
        }
        if let Some(max) = self.connections.as_ref().and_then(|c| c.max)
            && !(1..=10_000_000).contains(&max)
        {
            return Some((
                "spec.connections.max",
                format!("{max} connections: give 1 to 10000000"),
            ));
        }
        let timeouts = self.timeouts.as_ref();
        for (field, t) in [
            ("spec.timeouts.header", timeouts.and_then(|t| t.header)),
            (
                "spec.timeouts.requestBodyIdle",
                timeouts.and_then(|t| t.request_body_idle),
            ),
        ] {
            if t.is_some_and(|t| t.as_duration().is_zero()) {
                return Some((field, "a timeout of 0: give a positive duration".into()));
            }
        }
        None
    }
}

impl ListenerManifest {
    pub(crate) fn check(&self, source: &SourceRef) -> Result<(), ConfigError> {
        match self.spec.problem() {
            Some((field, problem)) => Err(ConfigError::new(
                source,
                Position::from_location(source, self.metadata.name.referenced),
                problem,
            )
            .entity(Kind::Listener, &self.metadata.name.value)
            .field(field.to_string())),
            None => Ok(()),
        }
    }
}
