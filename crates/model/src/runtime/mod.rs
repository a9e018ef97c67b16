//! The internal runtime model: immutable, versioned, built from manifests by
//! [`crate::compile`], and read by the Worker on the request path. Nothing in here is
//! part of the public manifest schema.

pub mod health;
pub mod pipeline;
pub mod policy;
pub mod routes;
pub mod snapshot;
pub mod upstream;

pub use health::{HealthConfig, HealthRegistry, TargetHealth, TargetState};
pub use pipeline::{HeaderOps, HeadersPolicy, Pipeline, Policy};
pub use routes::{HostPattern, PathPattern, RouteMatch, RouteRule, RouteTable};
pub use snapshot::{Proxy, Route, Snapshot};
pub use upstream::{HashOn, LoadBalancing, Pick, Target, Tried, Upstream, UpstreamConfig};
