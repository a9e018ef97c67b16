//! Manifests → runtime snapshot. Only new or changed entities are compiled and checked;
//! everything else is carried over from the previous snapshot, shared (the same `Arc`s, the
//! same persistent map nodes).
//!
//! Two entry points: [`compile_refs`] (and its wrappers) takes the full manifest set and
//! diffs it against the previous snapshot; [`compile_changes`] takes only what changed,
//! so its cost grows with the change and not with the number of proxies.

mod credentials;
mod diff;
mod engine;
mod proxy;

use std::collections::HashMap;
use std::time::Duration;
use switchyard_config::Kind;

use crate::runtime::Snapshot;
use crate::runtime::health::HealthRegistry;
use crate::runtime::policy::rate_limit::Limiters;
use switchyard_config::error::ConfigErrors;
use switchyard_config::load::Located;
use switchyard_config::manifest::{Manifest, ProxyManifest};

use self::diff::Diff;
use self::engine::Batch;
pub use self::proxy::is_hop_by_hop;

/// Longest connect timeout accepted.
pub const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest request timeout accepted (long polls and slow reports fit; typos like `30000h` don't).
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The most retry attempts a proxy may ask for.
pub const MAX_RETRY_ATTEMPTS: u32 = 10;
/// Bounds of `retries.budget.minPerSecond`.
pub const MAX_BUDGET_MIN_PER_SECOND: u32 = 10_000;
/// Bounds of an active health check's `interval`.
pub const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(100);
pub const MAX_CHECK_INTERVAL: Duration = Duration::from_secs(3600);
/// Longest active health check `timeout`.
pub const MAX_CHECK_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest health check threshold (`healthyThreshold`, `unhealthyThreshold`,
/// `consecutiveFailures`).
pub const MAX_HEALTH_THRESHOLD: u32 = 1000;
/// Longest passive `coolOff`.
pub const MAX_COOL_OFF: Duration = Duration::from_secs(24 * 3600);

/// What a compile produced, and how it differs from the previous snapshot.
#[derive(Debug)]
pub struct Compiled {
    pub snapshot: Snapshot,
    /// Added and updated proxies in the order compiled, then removed ones by name.
    pub changes: Vec<ProxyChange>,
    /// Proxies compiled by this call (the rest were shared with the previous snapshot).
    pub rebuilt: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyChange {
    pub name: String,
    pub kind: ChangeKind,
    pub old_version: Option<u64>,
    pub new_version: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Updated,
    Removed,
}

/// SHA-256 (hex) of a proxy manifest's canonical JSON form: equal for equal content,
/// whatever the formatting, comments or position in the file.
pub fn proxy_digest(m: &ProxyManifest) -> String {
    switchyard_config::manifest::sha256_hex(&serde_json::to_vec(m).unwrap_or_default())
}

/// Versions and revision decided elsewhere (by the Manager) instead of counted locally.
#[derive(Debug, Default, Clone)]
pub struct CompileOptions {
    /// The revision the new snapshot carries (default: previous + 1 when anything changed).
    pub revision: Option<u64>,
    /// Proxy versions by name (default: previous version + 1 for changed proxies). A proxy
    /// recompiled only because a credential it uses changed keeps the version given here.
    pub versions: HashMap<String, u64>,
    /// Rate-limit counters kept across compiles (a Worker passes the same registry to every
    /// compile so counters survive swaps).
    pub limiters: Limiters,
    /// Per-target health and in-flight counts kept across compiles (a Worker passes the
    /// same registry to every compile so a swap keeps the state of unchanged targets).
    pub health: HealthRegistry,
}

/// Compiles a full manifest set. With `prev`, unchanged proxies are reused and versions
/// continue from it; the new snapshot's revision is `prev.revision + 1` when anything
/// changed (a proxy or a credential), and equal to `prev.revision` when nothing did: the
/// caller should then keep `prev`.
pub fn compile(
    manifests: &[Located<Manifest>],
    prev: Option<&Snapshot>,
) -> Result<Compiled, ConfigErrors> {
    compile_with(manifests, prev, &CompileOptions::default())
}

/// [`compile`] with the revision and proxy versions given by the caller. A proxy is reused
/// from `prev` only when both its digest and its version are unchanged.
pub fn compile_with(
    manifests: &[Located<Manifest>],
    prev: Option<&Snapshot>,
    options: &CompileOptions,
) -> Result<Compiled, ConfigErrors> {
    let refs: Vec<&Located<Manifest>> = manifests.iter().collect();
    compile_refs(&refs, prev, options)
}

/// [`compile_with`] over borrowed manifests (callers that keep parsed manifests across
/// compiles avoid copying them). The set is diffed against `prev` (one lookup per manifest;
/// digests are computed when manifests are read) and only the difference is compiled, as
/// by [`compile_changes`]. Errors are reported in manifest order: a rejected set is checked
/// again as a whole, so a rejection costs a full compile.
pub fn compile_refs(
    manifests: &[&Located<Manifest>],
    prev: Option<&Snapshot>,
    options: &CompileOptions,
) -> Result<Compiled, ConfigErrors> {
    let whole = Batch {
        upserts: manifests,
        removed: &[],
    };
    let Some(prev) = prev else {
        return engine::apply(None, Snapshot::default(), whole, options).map_err(ConfigErrors);
    };
    let whole_errors = |delta_errors| match engine::apply(None, Snapshot::default(), whole, options)
    {
        Err(errors) => ConfigErrors(errors),
        Ok(_) => ConfigErrors(delta_errors),
    };
    match diff::diff(manifests, prev, options) {
        Diff::Duplicates => Err(whole_errors(Vec::new())),
        Diff::Changes { upserts, removed } => {
            let batch = Batch {
                upserts: &upserts,
                removed: &removed,
            };
            engine::apply(Some(prev), prev.clone(), batch, options).map_err(whole_errors)
        }
    }
}

/// Compiles a change against `prev`. `upserts` are new or changed manifests (one equal to
/// what `prev` holds, by digest and version, changes nothing); `removed` names deleted
/// entities as `(kind, name)`, e.g. `(Kind::Proxy, "payments")` (unknown ones are ignored).
///
/// Cost grows with the change, not with the snapshot: only the given proxies, and those
/// using a changed credential, are compiled and checked (against the persistent indexes
/// of `prev`, in O(log n) each), and the result shares everything else with `prev`.
/// Errors are those a full compile of the resulting set would report with the unchanged
/// entities listed before `upserts`: an unchanged proxy keeps the routes it owns, and a
/// conflicting upsert is reported against it.
pub fn compile_changes(
    prev: &Snapshot,
    upserts: &[&Located<Manifest>],
    removed: &[(Kind, &str)],
    options: &CompileOptions,
) -> Result<Compiled, ConfigErrors> {
    let batch = Batch { upserts, removed };
    engine::apply(Some(prev), prev.clone(), batch, options).map_err(ConfigErrors)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod credential_tests;
