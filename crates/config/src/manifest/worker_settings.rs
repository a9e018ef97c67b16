//! `kind: WorkerSettings`: the settings a Worker process takes when it starts, one document
//! per environment (named `default`). Unlike everything else an environment holds, a change
//! here cannot be swapped into a running process: the data-plane threads and the file
//! descriptors a process is sized for are fixed when it starts. Such a change is refused by
//! `apply` and rolled out by `switchyard rollout` (each Worker hands its sockets to a
//! successor that starts with the new settings); see `docs/classification.md`.

use serde::{Deserialize, Serialize};

use super::Metadata;
use crate::Kind;
use crate::error::{ConfigError, Position, SourceRef};

/// The one name a `kind: WorkerSettings` document may have: there is one per environment.
pub const WORKER_SETTINGS_NAME: &str = "default";

/// An environment's Worker process settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerSettingsManifest {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: WorkerSettingsSpec,
}

/// `spec` of `kind: WorkerSettings`. Every field is optional: absent, the Worker's own
/// flag or default applies. A Worker's command-line flag, when given, wins over the
/// environment's setting (flags are the per-host override).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerSettingsSpec {
    /// Data-plane threads, each with its own runtime (default: one per CPU; the Worker's
    /// `--threads` overrides). 1 to 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u16>,
    /// The client connections a Worker process is sized for: at start it raises its
    /// open-file limit (`RLIMIT_NOFILE`, up to the hard limit) to hold this many plus
    /// headroom. The hot cap under it is the Environment's `spec.gateway.connections.max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
}

impl WorkerSettingsSpec {
    /// What is wrong with the values, if anything: `(field, problem)`.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if let Some(t) = self.threads
            && !(1..=1024).contains(&t)
        {
            return Some(("spec.threads", format!("{t} threads: give 1 to 1024")));
        }
        if let Some(c) = self.max_connections
            && !(1..=10_000_000).contains(&c)
        {
            return Some((
                "spec.maxConnections",
                format!("{c} connections: give 1 to 10000000"),
            ));
        }
        None
    }
}

impl WorkerSettingsManifest {
    pub(crate) fn check(&self, source: &SourceRef) -> Result<(), ConfigError> {
        let at = Position::from_location(source, self.metadata.name.referenced);
        let name = &self.metadata.name.value;
        let error = |field: &str, message: String| {
            ConfigError::new(source, at, message)
                .entity(Kind::WorkerSettings, name)
                .field(field.to_string())
        };
        if name != WORKER_SETTINGS_NAME {
            return Err(error(
                "metadata.name",
                format!(
                    "a WorkerSettings document is named {WORKER_SETTINGS_NAME:?} (there is one per environment), not {name:?}"
                ),
            ));
        }
        match self.spec.problem() {
            Some((field, problem)) => Err(error(field, problem)),
            None => Ok(()),
        }
    }
}
