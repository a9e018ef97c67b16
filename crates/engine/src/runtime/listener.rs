//! The environment's listeners (`kind: Listener`), as a snapshot holds them. Not read on
//! the request path: a Worker binds, moves and drains its sockets when a snapshot with
//! other listeners is swapped in, and reads a listener's settings once per accepted
//! connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use imbl::OrdMap;
use switchyard_config::Kind;
use switchyard_config::error::{ConfigError, Position};
use switchyard_config::load::Located;
use switchyard_config::manifest::{ListenerManifest, ListenerProtocol};

/// One compiled listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: Arc<str>,
    /// What to bind (port 0: the system chooses).
    pub address: SocketAddr,
    pub settings: ListenerSettings,
    /// The digest of the document it came from.
    pub digest: String,
}

/// How a listener treats its connections: read when one is accepted. A Worker's
/// `--listen` and `--listen-tls` flags have these too ([`ListenerSettings::http`],
/// [`ListenerSettings::https`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSettings {
    pub tls: bool,
    pub http2: bool,
    /// A handshake completes only with a certificate that authenticates clients.
    pub require_client_certificate: bool,
    /// Open connections this listener admits.
    pub max_connections: Option<u32>,
    /// Overrides the gateway's idle timeout as the header read timeout.
    pub header_timeout: Option<Duration>,
    /// Overrides the gateway's `requestBodyIdle`.
    pub request_body_idle: Option<Duration>,
    /// How long the old socket of a removed or moved listener goes on accepting.
    pub drain_accepting_for: Duration,
}

impl ListenerSettings {
    /// `--listen`: HTTP/1.1 and HTTP/2 with prior knowledge, the gateway's limits.
    pub fn http() -> ListenerSettings {
        ListenerSettings {
            tls: false,
            http2: true,
            require_client_certificate: false,
            max_connections: None,
            header_timeout: None,
            request_body_idle: None,
            drain_accepting_for: Duration::ZERO,
        }
    }

    /// `--listen-tls`: the same over TLS.
    pub fn https() -> ListenerSettings {
        ListenerSettings {
            tls: true,
            ..ListenerSettings::http()
        }
    }
}

impl Listener {
    pub(crate) fn compile(
        m: &Located<switchyard_config::manifest::Manifest>,
        l: &ListenerManifest,
    ) -> Listener {
        let s = &l.spec;
        let timeouts = s.timeouts.as_ref();
        Listener {
            name: Arc::from(l.metadata.name.value.as_str()),
            address: SocketAddr::new(s.address, s.port),
            settings: ListenerSettings {
                tls: s.protocol == ListenerProtocol::Https,
                http2: s.http2,
                require_client_certificate: s
                    .tls
                    .as_ref()
                    .is_some_and(|t| t.require_client_certificate),
                max_connections: s.connections.as_ref().and_then(|c| c.max),
                header_timeout: timeouts.and_then(|t| t.header).map(|d| d.as_duration()),
                request_body_idle: timeouts
                    .and_then(|t| t.request_body_idle)
                    .map(|d| d.as_duration()),
                drain_accepting_for: s
                    .drain_accepting_for
                    .map_or(Duration::ZERO, |d| d.as_duration()),
            },
            digest: m.digest.clone(),
        }
    }
}

/// Whether two listeners would need the same socket: the same port (not 0), and the same
/// address or one of them every address.
fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// The error for a listener whose address another one of `listeners` already takes.
pub(crate) fn conflicts(
    listeners: &OrdMap<Arc<str>, Arc<Listener>>,
    m: &Located<switchyard_config::manifest::Manifest>,
    l: &Listener,
) -> Option<ConfigError> {
    let other = listeners
        .values()
        .find(|o| o.name != l.name && overlap(o.address, l.address))?;
    Some(
        ConfigError::new(
            &m.source,
            Position::from_location(&m.source, m.value.metadata().name.referenced),
            format!(
                "listener {:?} on {} and listener {:?} on {} need the same port; give each listener its own",
                l.name, l.address, other.name, other.address
            ),
        )
        .entity(Kind::Listener, &l.name)
        .field("spec.port"),
    )
}
