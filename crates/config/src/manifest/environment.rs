//! `kind: Environment`: an environment's variables and its gateway settings. `${NAME}` in
//! the other manifests is replaced by `spec.variables.NAME` of the Environment document
//! named like the environment being applied to, so one set of files serves dev, stage and
//! prod. `spec.gateway` is how that environment's Workers treat traffic (paths, timeouts);
//! it is hot: it applies to requests and connections accepted after the change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Metadata;
use crate::Kind;
use crate::duration::HumanDuration;
use crate::error::{ConfigError, Position, SourceRef};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvironmentManifest {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: EnvironmentSpec,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvironmentSpec {
    /// `NAME: value`; names are letters, digits and `_`, not starting with a digit.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// The environment's data-plane settings; absent = the defaults.
    #[serde(default, skip_serializing_if = "GatewaySpec::is_default")]
    pub gateway: GatewaySpec,
}

/// `spec.gateway`: how an environment's Workers treat traffic. Every field is optional and
/// has a default; written out (canonical JSON) only when set, so an Environment without it
/// keeps its digest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewaySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<PathsSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<TrafficTimeoutsSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<ConnectionsSpec>,
    /// A response header carrying the revision each request ran on (e.g.
    /// `x-switchyard-revision`), on every response, the gateway's own included; absent
    /// (default): none. Shows which side of a canary answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_header: Option<String>,
}

/// `spec.gateway.connections`: how many client connections one Worker keeps open.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionsSpec {
    /// At most this many client connections per Worker (never more than its file
    /// descriptors allow, less headroom). Absent: what the descriptors allow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
}

impl GatewaySpec {
    pub fn is_default(&self) -> bool {
        *self == GatewaySpec::default()
    }
}

/// `spec.gateway.paths`: how request paths are normalised before routing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathsSpec {
    /// `//a///b` → `/a/b` (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_slashes: Option<bool>,
    /// What to do with `%2F` and `%5C` in a path (default `reject`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoded_slashes: Option<EncodedSlashes>,
}

/// An encoded slash or backslash (`%2F`, `%5C`) in a request path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum EncodedSlashes {
    /// 400: such a path cannot be routed without guessing what the upstream makes of it.
    #[default]
    Reject,
    /// Kept encoded: routed and forwarded as `%2F` / `%5C`.
    Keep,
    /// Decoded, then the client is redirected to the normalised path.
    DecodeAndRedirect,
}

/// `spec.gateway.timeouts`: how long a Worker waits on clients and upstreams that stall.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficTimeoutsSpec {
    /// A connection (new or kept alive) that sends no request byte for this long is closed
    /// (default 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<HumanDuration>,
    /// A response the client stops reading for this long is cut (default 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<HumanDuration>,
    /// A request body that sends no byte for this long gets 408 (default 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body_idle: Option<HumanDuration>,
    /// An upstream response body that sends no byte for this long is cut and logged as an
    /// upstream error (default 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_body_idle: Option<HumanDuration>,
}

impl EnvironmentManifest {
    pub(crate) fn check(&self, source: &SourceRef) -> Result<(), ConfigError> {
        for name in self.spec.variables.keys() {
            let mut bytes = name.bytes();
            let ok = bytes
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !ok {
                return Err(ConfigError::new(
                    source,
                    Position::from_location(source, self.metadata.name.referenced),
                    format!(
                        "invalid variable name {name:?}: use letters, digits and '_', not starting with a digit"
                    ),
                )
                .entity(Kind::Environment, &self.metadata.name.value)
                .field(format!("spec.variables.{name}")));
            }
        }
        Ok(())
    }

    pub fn variable(&self, name: &str) -> Option<String> {
        self.spec.variables.get(name).cloned()
    }
}
