//! The Worker's build-and-swap path on its own, without sockets or a sync task: what the
//! scale benchmark measures. It serves generations exactly as a Worker does (same compile,
//! same `Runtime` build, same atomic store and bookkeeping).

use switchyard_config::{ConfigErrors, Located, Manifest};

use switchyard_engine::{Change, Numbering, Snapshot};

use crate::pool::Pools;
use crate::reload::{ReloadOutcome, Reloader};
use crate::runtime::Observability;

/// A Worker's [`Reloader`] without the rest of the Worker, so a benchmark can time swaps
/// exactly as a Worker makes them.
pub struct SwapPath {
    reloader: Reloader,
}

impl SwapPath {
    /// Serves the first generation, compiled from `manifests`.
    pub fn new(manifests: &[Located<Manifest>]) -> Result<SwapPath, ConfigErrors> {
        let obs = std::sync::Arc::new(Observability::new(crate::access_log::AccessLog::off()));
        let refs: Vec<&Located<Manifest>> = manifests.iter().collect();
        let reloader = Reloader::from_set(&refs, &Numbering::default(), obs, Pools::default())?;
        Ok(SwapPath { reloader })
    }

    /// Compiles `change` against the served generation and swaps it in, as a Worker does:
    /// a [`Change::Set`] in files mode, a [`Change::Delta`] in Manager mode.
    pub fn apply(&self, change: Change<'_>, numbering: &Numbering) -> ReloadOutcome {
        self.reloader.apply(change, numbering)
    }

    /// The snapshot being served (a copy sharing everything with it).
    pub fn snapshot(&self) -> Snapshot<impl Send + Sync + use<>> {
        self.reloader.current().load().snapshot.clone()
    }
}
