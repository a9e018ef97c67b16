//! The environment's Worker process settings (`kind: WorkerSettings`), as a snapshot holds
//! them. They are not read on the request path: a Worker takes them when it starts, and a
//! running Worker compares each new snapshot's settings with those it started with — a
//! snapshot whose settings differ is not swapped in (the change is restart-required, see
//! `crate::classify`), it waits for the successor a rollout starts.

use std::sync::Arc;

use switchyard_config::manifest::WorkerSettingsSpec;

/// The settings and the digest of the document they came from (`None`: no document, every
/// setting at the Worker's own default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessSettings {
    pub spec: WorkerSettingsSpec,
    pub digest: Option<String>,
}

impl ProcessSettings {
    pub(crate) fn from_document(spec: &WorkerSettingsSpec, digest: &str) -> Arc<ProcessSettings> {
        Arc::new(ProcessSettings {
            spec: spec.clone(),
            digest: Some(digest.to_string()),
        })
    }

    /// Whether a process started with `self` serves `other` as it is: equal settings
    /// (the digest aside: the same values written differently change nothing).
    pub fn same_process(&self, other: &ProcessSettings) -> bool {
        self.spec == other.spec
    }
}
