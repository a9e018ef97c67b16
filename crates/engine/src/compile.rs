//! Manifests → runtime snapshot. Only new or changed entities are compiled and checked;
//! everything else is carried over from the previous snapshot, shared (the same `Arc`s, the
//! same persistent map nodes).
//!
//! A [`Compiler`] owns the registries a serving process keeps across compiles; each compile
//! is given a [`Change`] — the full manifest set, diffed against the previous snapshot, or
//! only what changed, so its cost grows with the change and not with the number of proxies
//! — and the [`Numbering`] of its result. [`compile`], [`compile_refs`] and
//! [`compile_changes`] do the same with registries of their own.

mod credentials;
mod diff;
mod engine;
mod proxy;

use std::collections::HashMap;
use std::marker::PhantomData;
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
pub struct Compiled<X = ()> {
    pub snapshot: Snapshot<X>,
    /// Added and updated proxies in the order compiled, then removed ones by name.
    pub changes: Vec<ProxyChange>,
    /// Proxies compiled by this call (the rest were shared with the previous snapshot).
    pub rebuilt: usize,
}

/// How one proxy changed in a compile: what the Worker logs and reports for a swap, and
/// which proxies' attachments a new generation builds.
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

/// The numbers a compile stamps on its result when someone else decides them (the Manager,
/// for a Worker): the revision and the proxies' versions. Decided per compile, unlike the
/// [`Compiler`]'s registries, which live as long as the serving process.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Numbering {
    /// The revision the new snapshot carries (default: previous + 1 when anything changed).
    pub revision: Option<u64>,
    /// Proxy versions by name (default: previous version + 1 for changed proxies). A proxy
    /// recompiled only because a credential it uses changed keeps the version given here.
    pub versions: HashMap<String, u64>,
}

/// What a compile is given: the whole manifest set, or only what changed.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// The full set. Diffed against the previous snapshot (one lookup per manifest; digests
    /// are computed when manifests are read) and only the difference is compiled, as for a
    /// [`Change::Delta`]. Errors are reported in manifest order: a rejected set is checked
    /// again as a whole, so a rejection costs a full compile.
    Set(&'a [&'a Located<Manifest>]),
    /// New or changed manifests (one equal to what the previous snapshot holds, by digest
    /// and version, changes nothing), and deleted entities as `(kind, name)`, e.g.
    /// `(Kind::Proxy, "payments")` (unknown ones are ignored).
    ///
    /// Cost grows with the change, not with the snapshot: only the given proxies, and those
    /// using a changed credential, are compiled and checked (against the persistent indexes
    /// of the previous snapshot, in O(log n) each), and the result shares everything else
    /// with it. Errors are those a full compile of the resulting set would report with the
    /// unchanged entities listed before `upserts`: an unchanged proxy keeps the routes it
    /// owns, and a conflicting upsert is reported against it.
    Delta {
        upserts: &'a [&'a Located<Manifest>],
        removed: &'a [(Kind, &'a str)],
    },
}

/// The state a compile shares with every other compile of the same [`Compiler`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Registries {
    /// Rate-limit counters: they survive swaps.
    pub limiters: Limiters,
    /// Per-target health and in-flight counts: a swap keeps the state of unchanged targets.
    pub health: HealthRegistry,
}

/// Compiles manifests into snapshots for one serving process. It exists to own what must
/// outlive snapshots — rate-limit counters and per-target health — so that every compile
/// made through it (a Worker makes all of its compiles through one) shares them and a swap
/// keeps them. `X` is what the process attaches to each proxy version (see
/// [`Attachment`](crate::runtime::Attachment)); `()` when nothing is attached.
#[derive(Debug)]
pub struct Compiler<X = ()> {
    registries: Registries,
    _attachment: PhantomData<fn() -> X>,
}

impl<X> Default for Compiler<X> {
    fn default() -> Self {
        Compiler {
            registries: Registries::default(),
            _attachment: PhantomData,
        }
    }
}

impl<X> Compiler<X> {
    /// A compiler with fresh registries.
    pub fn new() -> Self {
        Compiler::default()
    }

    /// The rate-limit counters every compile of this compiler shares.
    pub fn limiters(&self) -> &Limiters {
        &self.registries.limiters
    }

    /// The target states every compile of this compiler shares.
    pub fn health(&self) -> &HealthRegistry {
        &self.registries.health
    }

    /// Compiles `change` against `prev`. With `prev`, unchanged proxies are reused (a proxy
    /// is reused only when both its digest and its version are unchanged) and versions
    /// continue from it; the new snapshot's revision is `prev.revision + 1` when anything
    /// changed (a proxy or a credential), and equal to `prev.revision` when nothing did:
    /// the caller should then keep `prev`. `numbering` overrides both.
    pub fn compile(
        &self,
        prev: Option<&Snapshot<X>>,
        change: Change<'_>,
        numbering: &Numbering,
    ) -> Result<Compiled<X>, ConfigErrors> {
        let ctx = engine::Ctx {
            registries: &self.registries,
            numbering,
        };
        match change {
            Change::Set(manifests) => compile_set(manifests, prev, ctx),
            Change::Delta { upserts, removed } => {
                let batch = Batch { upserts, removed };
                let base = prev.cloned().unwrap_or_default();
                engine::apply(prev, base, batch, ctx).map_err(ConfigErrors)
            }
        }
    }
}

fn compile_set<X>(
    manifests: &[&Located<Manifest>],
    prev: Option<&Snapshot<X>>,
    ctx: engine::Ctx<'_>,
) -> Result<Compiled<X>, ConfigErrors> {
    let whole = Batch {
        upserts: manifests,
        removed: &[],
    };
    let Some(prev) = prev else {
        return engine::apply(None, Snapshot::default(), whole, ctx).map_err(ConfigErrors);
    };
    let whole_errors =
        |delta_errors| match engine::apply::<X>(None, Snapshot::default(), whole, ctx) {
            Err(errors) => ConfigErrors(errors),
            Ok(_) => ConfigErrors(delta_errors),
        };
    match diff::diff(manifests, prev, ctx.numbering) {
        Diff::Duplicates => Err(whole_errors(Vec::new())),
        Diff::Changes { upserts, removed } => {
            let batch = Batch {
                upserts: &upserts,
                removed: &removed,
            };
            engine::apply(Some(prev), prev.clone(), batch, ctx).map_err(whole_errors)
        }
    }
}

/// Compiles a full manifest set, with registries of its own (for callers that only check
/// or inspect a set: the Manager, the CLI, tests). See [`Compiler::compile`].
pub fn compile(
    manifests: &[Located<Manifest>],
    prev: Option<&Snapshot>,
) -> Result<Compiled, ConfigErrors> {
    let refs: Vec<&Located<Manifest>> = manifests.iter().collect();
    compile_refs(&refs, prev, &Numbering::default())
}

/// [`compile`] over borrowed manifests, numbered as `numbering` says.
pub fn compile_refs(
    manifests: &[&Located<Manifest>],
    prev: Option<&Snapshot>,
    numbering: &Numbering,
) -> Result<Compiled, ConfigErrors> {
    Compiler::new().compile(prev, Change::Set(manifests), numbering)
}

/// Compiles a change against `prev`, with registries of its own. See [`Change::Delta`].
pub fn compile_changes(
    prev: &Snapshot,
    upserts: &[&Located<Manifest>],
    removed: &[(Kind, &str)],
    numbering: &Numbering,
) -> Result<Compiled, ConfigErrors> {
    Compiler::new().compile(Some(prev), Change::Delta { upserts, removed }, numbering)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod credential_tests;
