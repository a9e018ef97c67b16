//! The Worker's build-and-swap path on its own, without sockets or a sync task: what the
//! scale benchmark measures. It serves generations exactly as a Worker does (same compile,
//! same `Runtime` build, same atomic store and bookkeeping).

use switchyard_config::{ConfigErrors, Kind, Located, Manifest};

use switchyard_engine::{Numbering, Snapshot};

use crate::reload::{ReloadOutcome, Reloader};
use crate::runtime::{ClientPool, Observability};

pub struct SwapPath {
    reloader: Reloader,
}

impl SwapPath {
    /// Serves the first generation, compiled from `manifests`.
    pub fn new(manifests: &[Located<Manifest>]) -> Result<SwapPath, ConfigErrors> {
        let obs = std::sync::Arc::new(Observability {
            metrics: crate::metrics::Metrics::new(),
            access_log: crate::access_log::AccessLog::off(),
        });
        let reloader =
            Reloader::from_set(manifests, &Numbering::default(), obs, ClientPool::default())?;
        Ok(SwapPath { reloader })
    }

    /// Files mode: the full set, diffed against the served generation, compiled, swapped.
    pub fn apply_set(&self, manifests: &[&Located<Manifest>]) -> ReloadOutcome {
        self.reloader.apply_refs(manifests, &Numbering::default())
    }

    /// Manager mode: only the change, compiled against the served generation, swapped.
    pub fn apply_changes(
        &self,
        upserts: &[&Located<Manifest>],
        removed: &[(Kind, &str)],
        numbering: &Numbering,
    ) -> ReloadOutcome {
        self.reloader.apply_changes(upserts, removed, numbering)
    }

    /// The snapshot being served (a copy sharing everything with it).
    pub fn snapshot(&self) -> Snapshot {
        self.reloader.current().load().snapshot.clone()
    }
}
