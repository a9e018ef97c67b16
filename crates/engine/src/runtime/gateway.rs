//! An environment's gateway settings, compiled: how its Workers normalise request paths and
//! how long they wait on clients and upstreams that stall. Read from the served snapshot
//! (per request, and per connection when it is accepted), so a change is hot.

use std::sync::Arc;
use std::time::Duration;

use switchyard_config::Kind;
use switchyard_config::error::{ConfigError, Position};
use switchyard_config::load::Located;
use switchyard_config::manifest::{EncodedSlashes, EnvironmentManifest, GatewaySpec, Manifest};

/// The settings every request and connection of a generation uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    pub paths: PathSettings,
    pub timeouts: TrafficTimeouts,
    /// `connections.max`: the most client connections a Worker keeps open (it also stays
    /// under what its file descriptors allow). `None`: only that.
    pub max_connections: Option<u32>,
    /// `revisionHeader`: the response header naming the revision a request ran on.
    pub revision_header: Option<http::HeaderName>,
}

/// How request paths are normalised before routing and forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathSettings {
    pub merge_slashes: bool,
    pub encoded_slashes: EncodedSlashes,
}

/// How long a Worker waits on a peer that stalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrafficTimeouts {
    /// A connection that sends no request byte (new, or between keep-alive requests).
    pub idle: Duration,
    /// A response the client stops reading.
    pub send: Duration,
    /// A request body that sends no byte.
    pub request_body_idle: Duration,
    /// An upstream response body that sends no byte.
    pub upstream_body_idle: Duration,
}

/// The default for every traffic timeout, as nginx's (`client_body_timeout`,
/// `send_timeout`, `keepalive_timeout`-like).
pub const DEFAULT_TRAFFIC_TIMEOUT: Duration = Duration::from_secs(60);
/// Bounds of a traffic timeout.
pub const MIN_TRAFFIC_TIMEOUT: Duration = Duration::from_millis(100);
pub const MAX_TRAFFIC_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Bounds of `connections.max`.
pub const MAX_CONNECTIONS: u32 = 10_000_000;

impl Default for Gateway {
    fn default() -> Self {
        Gateway {
            paths: PathSettings {
                merge_slashes: true,
                encoded_slashes: EncodedSlashes::Reject,
            },
            timeouts: TrafficTimeouts {
                idle: DEFAULT_TRAFFIC_TIMEOUT,
                send: DEFAULT_TRAFFIC_TIMEOUT,
                request_body_idle: DEFAULT_TRAFFIC_TIMEOUT,
                upstream_body_idle: DEFAULT_TRAFFIC_TIMEOUT,
            },
            max_connections: None,
            revision_header: None,
        }
    }
}

/// Where a snapshot's settings came from: the Environment document (name and digest) they
/// were compiled from, or none (the defaults).
#[derive(Debug, Clone, Default)]
pub struct GatewayState {
    pub source: Option<(Arc<str>, String)>,
    pub settings: Arc<Gateway>,
}

impl GatewayState {
    /// Whether the settings came from the Environment document named `name`.
    pub(crate) fn is_named(&self, name: &str) -> bool {
        self.source.as_ref().is_some_and(|(n, _)| **n == *name)
    }

    /// Whether `m` is the document these settings came from, unchanged.
    pub(crate) fn is_from(&self, m: &Located<Manifest>) -> bool {
        self.source
            .as_ref()
            .is_some_and(|(name, digest)| **name == *m.value.name() && *digest == m.digest)
    }
}

/// Compiles `spec.gateway` of an Environment document, checking every bound.
pub(crate) fn compile(
    m: &Located<Manifest>,
    env: &EnvironmentManifest,
) -> Result<Gateway, Vec<ConfigError>> {
    let spec: &GatewaySpec = &env.spec.gateway;
    let mut out = Gateway::default();
    let mut errors = Vec::new();
    if let Some(p) = &spec.paths {
        if let Some(v) = p.merge_slashes {
            out.paths.merge_slashes = v;
        }
        if let Some(v) = p.encoded_slashes {
            out.paths.encoded_slashes = v;
        }
    }
    if let Some(t) = &spec.timeouts {
        let fields = [
            ("idle", t.idle, &mut out.timeouts.idle),
            ("send", t.send, &mut out.timeouts.send),
            (
                "requestBodyIdle",
                t.request_body_idle,
                &mut out.timeouts.request_body_idle,
            ),
            (
                "upstreamBodyIdle",
                t.upstream_body_idle,
                &mut out.timeouts.upstream_body_idle,
            ),
        ];
        for (field, value, slot) in fields {
            let Some(v) = value else { continue };
            let d = v.as_duration();
            if d < MIN_TRAFFIC_TIMEOUT || d > MAX_TRAFFIC_TIMEOUT {
                errors.push(
                    ConfigError::new(
                        &m.source,
                        Position::from_location(&m.source, env.metadata.name.referenced),
                        format!(
                            "{v} is out of range: use {} to {}",
                            humanize(MIN_TRAFFIC_TIMEOUT),
                            humanize(MAX_TRAFFIC_TIMEOUT)
                        ),
                    )
                    .entity(Kind::Environment, m.value.name())
                    .field(format!("spec.gateway.timeouts.{field}")),
                );
            } else {
                *slot = d;
            }
        }
    }
    if let Some(max) = spec.connections.as_ref().and_then(|c| c.max) {
        if max == 0 || max > MAX_CONNECTIONS {
            errors.push(
                ConfigError::new(
                    &m.source,
                    Position::from_location(&m.source, env.metadata.name.referenced),
                    format!("{max} is out of range: use 1 to {MAX_CONNECTIONS}"),
                )
                .entity(Kind::Environment, m.value.name())
                .field("spec.gateway.connections.max"),
            );
        } else {
            out.max_connections = Some(max);
        }
    }
    if let Some(name) = &spec.revision_header {
        match http::HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) if !RESERVED.contains(&h.as_str()) => out.revision_header = Some(h),
            Ok(_) | Err(_) => errors.push(
                ConfigError::new(
                    &m.source,
                    Position::from_location(&m.source, env.metadata.name.referenced),
                    format!(
                        "{name:?} is not a header a response can carry the revision in: \
                         use a valid name, not one HTTP gives a meaning (e.g. \
                         x-switchyard-revision)"
                    ),
                )
                .entity(Kind::Environment, m.value.name())
                .field("spec.gateway.revisionHeader"),
            ),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Headers a revision header may not replace: framing, connection management, caching.
const RESERVED: [&str; 12] = [
    "connection",
    "content-length",
    "content-type",
    "transfer-encoding",
    "keep-alive",
    "upgrade",
    "trailer",
    "te",
    "date",
    "server",
    "location",
    "x-request-id",
];

fn humanize(d: Duration) -> String {
    switchyard_config::duration::HumanDuration(d).to_string()
}
