//! The internal runtime model: immutable, versioned, built from manifests by
//! [`crate::compile`], and read by the Worker on the request path. Nothing in here is
//! part of the public manifest schema.

pub mod error_format;
pub mod gateway;
pub mod health;
pub mod hop_by_hop;
pub mod host;
pub mod listener;
mod methods;
pub mod path;
pub mod pipeline;
pub mod policy;
pub mod process;
pub mod routes;
pub mod snapshot;
pub mod upstream;

pub use error_format::{ErrorBody, ErrorFormat};
pub use gateway::{Gateway, PathSettings, TrafficTimeouts};
pub use health::{HealthConfig, HealthRegistry, TargetHealth, TargetState};
pub use hop_by_hop::{is_hop_by_hop, remove_hop_by_hop};
pub use listener::{Listener, ListenerSettings};
pub use pipeline::{HeaderOps, HeadersPolicy, Pipeline, Policy};
pub use process::ProcessSettings;
pub use routes::{HostPattern, PathPattern, RouteRule, RouteTable};
pub use snapshot::{Attachment, Credential, Proxy, Route, RouteMatch, Snapshot};
pub use upstream::{
    InFlight, LoadBalancing, Pick, RequestKey, Target, Tried, Upstream, UpstreamConfig,
    UpstreamProtocol,
};

/// A persistent hash map: clones share structure and an update copies O(log n) nodes.
/// Seeded hashing: hosts and paths are attacker-chosen.
pub(crate) type PMap<K, V> =
    imbl::GenericHashMap<K, V, foldhash::fast::RandomState, imbl::shared_ptr::DefaultSharedPtr>;
