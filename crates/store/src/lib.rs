//! The Manager's source of truth, behind the [`Store`] trait so that SQLite (embedded, the
//! default) and PostgreSQL (several Managers) are two implementations of one contract.
//!
//! Every accepted change to an environment is one transaction that writes the entities, a
//! new environment revision, and one audit record per changed entity. If any part fails —
//! the audit write included — nothing is written.

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_api::canary::{CanarySpec, CanaryState};
use switchyard_api::records::{
    AppliedChange, AuditRecord, EnvInfo, Millis, Operation, ReportStatus, RevisionRecord, Role,
    TokenRecord, WorkerReport, now_millis,
};
use switchyard_config::Kind;

pub mod database;
mod sql;
#[cfg(feature = "testing")]
pub mod testing;

pub use database::canary::describe_spec;
pub use database::{Backend, SqlStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The change was planned against `expected`, but the environment is at `actual`.
    #[error(
        "environment {env:?} is at revision {actual}, the change was planned against {expected}"
    )]
    Conflict {
        env: String,
        expected: u64,
        actual: u64,
    },
    #[error("unknown environment {0:?}")]
    NoSuchEnv(String),
    /// A revision whose state can no longer be rebuilt: the history before `history_from`
    /// was pruned ([`Store::prune_history`]).
    #[error(
        "revision {revision} of environment {env:?} is older than the retained history, which \
         starts at revision {history_from}"
    )]
    Pruned {
        env: String,
        revision: u64,
        history_from: u64,
    },
    #[error("environment {0:?} already exists")]
    EnvExists(String),
    /// A plain commit while canary `revision` runs: it is promoted or aborted first.
    #[error("canary revision {revision} of environment {env:?} is running")]
    CanaryRunning { env: String, revision: u64 },
    /// A commit that ends a canary when that canary is not running (any more).
    #[error("environment {env:?} has no running canary revision {revision}")]
    NoCanary { env: String, revision: u64 },
    /// The audit record could not be written: the change was refused.
    #[error("audit record could not be written, change refused: {0}")]
    AuditFailed(String),
    #[error("store error: {0}")]
    Database(String),
    /// The database cannot be reached (connection refused or lost, the pool timed out):
    /// nothing was written — a write whose commit cannot be confirmed is never reported
    /// as done. Retryable.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// One entity (a proxy, a credential, …) as stored: its latest version in an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityRecord {
    pub kind: Kind,
    pub name: String,
    /// Starts at 1, +1 on every change of this entity in this environment.
    pub version: u64,
    /// The environment revision that produced this version.
    pub revision: u64,
    /// SHA-256 (hex) of `manifest`.
    pub digest: String,
    /// The canonical JSON of the manifest. Empty for a deletion tombstone.
    pub manifest: String,
    pub labels: BTreeMap<String, String>,
    /// A tombstone: the entity was deleted at `revision`.
    pub deleted: bool,
    /// The manifest as written, `${NAME}` variables unresolved (`None` when it uses none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// SHA-256 (hex) of the template's clear text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_digest: Option<String>,
}

/// One entity change in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Create or replace. Skipped (no new version) when `digest` and `template_digest`
    /// equal the stored ones.
    Upsert {
        kind: Kind,
        name: String,
        digest: String,
        manifest: String,
        labels: BTreeMap<String, String>,
        /// The manifest as written, when it uses environment variables.
        template: Option<String>,
        /// SHA-256 of the template's clear text: an upsert whose `digest` and
        /// `template_digest` both equal the stored ones changes nothing.
        template_digest: Option<String>,
    },
    /// Delete. Skipped when the entity does not exist.
    Delete { kind: Kind, name: String },
}

/// A batch of changes to one environment: all applied in one transaction, or none.
#[derive(Debug, Clone)]
pub struct CommitRequest {
    pub env: String,
    pub actor: String,
    pub operation: Operation,
    /// When set, the commit fails with [`StoreError::Conflict`] unless the environment is
    /// still at this revision.
    pub expected_revision: Option<u64>,
    pub changes: Vec<Change>,
    /// Free text kept in the audit records (e.g. "promoted from stage r12").
    pub detail: Option<String>,
    /// What the commit does to the environment's canary.
    pub canary: CanaryCommit,
}

/// What a commit does to the environment's canary, decided in its transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CanaryCommit {
    /// A plain commit: refused ([`StoreError::CanaryRunning`]) while a canary runs.
    #[default]
    None,
    /// The new revision is a canary of the one before it.
    Start(CanarySpec),
    /// The new revision returns to the stable content and ends running canary `revision`
    /// (rolled back or aborted) — [`StoreError::NoCanary`] when it is not running.
    End {
        revision: u64,
        state: CanaryState,
        reason: String,
    },
}

/// A canary as stored: one row per canary, written with its revision's commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryRecord {
    pub env: String,
    pub revision: u64,
    pub stable_revision: u64,
    pub spec: CanarySpec,
    /// 0-based index into `spec.steps_ppm`.
    pub step: u32,
    pub state: CanaryState,
    pub actor: String,
    pub started_at: Millis,
    pub step_started_at: Millis,
    pub ended_at: Option<Millis>,
    pub reason: Option<String>,
    /// The revision that returned to the stable content (rolled back, aborted).
    pub rollback_revision: Option<u64>,
}

/// The result of a commit. When `changes` is empty nothing was written and `revision`
/// equals `previous_revision` (an idempotent re-apply).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitOutcome {
    pub env: String,
    pub revision: u64,
    pub previous_revision: u64,
    pub committed_at: Millis,
    pub changes: Vec<AppliedChange>,
}

/// What [`Store::delete_env`] deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvDeletion {
    /// The revision the environment was at.
    pub revision: u64,
    /// Its live entities.
    pub entities: u64,
    /// Its revisions.
    pub revisions: u64,
}

/// An audit record of an action that writes no entity: each step of a rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub env: String,
    pub actor: String,
    pub operation: Operation,
    /// What was acted on: `Worker` and its id, or `Environment` and its name.
    pub subject_kind: String,
    pub subject_name: String,
    pub revision: Option<u64>,
    pub detail: String,
}

/// How much of an environment's history to keep: one value for the Manager's options, the
/// background task that prunes and the store that interprets it. A revision is pruned only
/// when every limit given lets it go (the last `revisions` revisions *and* those younger
/// than `max_age` are kept); the current revision is always kept. Both `None` (the
/// default): everything is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryRetention {
    /// Keep the last N revisions.
    pub revisions: Option<NonZeroU64>,
    /// Keep the revisions committed within this long.
    pub max_age: Option<Duration>,
}

impl HistoryRetention {
    /// Whether no limit is given: nothing is ever pruned.
    pub fn keeps_everything(&self) -> bool {
        self.revisions.is_none() && self.max_age.is_none()
    }
}

/// What one [`Store::prune_history`] removed, for the log and the audit record's detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneOutcome {
    pub env: String,
    /// The oldest revision whose state can still be rebuilt, after the pruning.
    pub history_from: u64,
    /// What it was before.
    pub previous_history_from: u64,
    /// Revision records deleted (those before `history_from`).
    pub revisions: u64,
    /// Entity versions deleted from the history: superseded at `history_from`, or
    /// tombstones older than it.
    pub entity_versions: u64,
    /// Entities deleted before `history_from` and never re-created, whose tombstone was
    /// removed (such an entity, created again, starts again at version 1).
    pub tombstones: u64,
    /// Worker reports on pruned revisions deleted (each Worker's latest report and its
    /// latest ACK are kept).
    pub reports: u64,
}

/// A revision committed to an environment, as the Managers sharing a database hear of it
/// (a hint: a Manager that misses one still finds the revision by polling).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitNotice {
    pub env: String,
    pub revision: u64,
}

impl CommitNotice {
    /// `REVISION ENV`: the revision first (environment names have no spaces, but need not
    /// be parsed for it).
    pub fn payload(env: &str, revision: u64) -> String {
        format!("{revision} {env}")
    }

    pub fn parse(payload: &str) -> Option<CommitNotice> {
        let (revision, env) = payload.split_once(' ')?;
        Some(CommitNotice {
            env: env.to_string(),
            revision: revision.parse().ok()?,
        })
    }
}

/// How long a [`WorkerConnection`] counts without being refreshed: a Manager refreshes its
/// connections every [`PRESENCE_REFRESH_MS`], so a row older than this belongs to a Manager
/// that went away (its Workers have reconnected elsewhere, or are gone). Assumes the
/// Managers' clocks agree to well within this.
pub const PRESENCE_TTL_MS: Millis = 30_000;

/// How often a Manager refreshes the connections it holds (see [`PRESENCE_TTL_MS`]).
pub const PRESENCE_REFRESH_MS: Millis = 10_000;

/// A Worker's event stream as the Manager holding it writes it down. Stored so that who is
/// connected — and so who is expected to pick up a revision — is the same answer from every
/// Manager on the database, and from a restarted one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConnection {
    pub env: String,
    pub worker_id: String,
    /// The Manager holding the stream (its `--name`).
    pub manager: String,
    /// Distinguishes one stream of this Worker on this Manager from the next: a late
    /// "disconnected" of an old stream never removes a newer one.
    pub session: String,
    pub address: Option<String>,
    pub version: Option<String>,
    pub connected_at: Millis,
    /// The last time the Manager said it still holds the stream.
    pub last_seen: Millis,
}

/// Where a revision stands after ACKs for it were stored: how many of the Workers expected
/// to pick it up have ACKed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionProgress {
    pub env: String,
    pub revision: u64,
    /// Workers connected (to any Manager) when it was committed.
    pub expected: u64,
    /// Expected Workers that have ACKed it.
    pub done: u64,
    pub committed_at: Millis,
    /// The latest swap time among the expected Workers' ACKs.
    pub last_swap: Millis,
    /// This write completed the set (true for exactly one write, whichever Manager made it).
    pub completed_now: bool,
}

/// Filters for [`Store::audit`]; newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub env: Option<String>,
    pub entity_kind: Option<String>,
    pub entity_name: Option<String>,
    pub actor: Option<String>,
    pub since: Option<Millis>,
    /// Only records at or before this instant.
    pub until: Option<Millis>,
    /// Only records with a smaller id: the cursor of the next (older) page.
    pub before: Option<i64>,
    pub limit: u32,
}

/// The store contract. All methods are transactional on their own.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The store's identity: created with the database, changed when it is found restored
    /// from a backup. Sent with every pull, so a Worker can tell another history (the same
    /// revision numbers, other content) from its own.
    fn store_id(&self) -> String;

    /// Creates an environment at revision 0 and audits it.
    /// Whether the database answers (a round trip).
    async fn ping(&self) -> Result<()>;

    /// The commits of every Manager on this database as they happen, this one's included
    /// (PostgreSQL `LISTEN`); `None` when the store has no such channel (SQLite: one
    /// Manager per database). Notices are hints and may be missed across a reconnection:
    /// callers also poll.
    async fn commit_notices(&self) -> Result<Option<tokio::sync::mpsc::Receiver<CommitNotice>>> {
        Ok(None)
    }

    async fn create_env(&self, name: &str, actor: &str) -> Result<EnvInfo>;
    async fn list_envs(&self) -> Result<Vec<EnvInfo>>;
    /// `None` when the environment does not exist.
    async fn env(&self, name: &str) -> Result<Option<EnvInfo>>;
    /// Deletes an environment with its entities, their history, its revisions and its
    /// Workers' reports, and audits the deletion (with `detail`), in one transaction. Its
    /// audit records are kept. [`StoreError::NoSuchEnv`] when it does not exist.
    async fn delete_env(
        &self,
        name: &str,
        actor: &str,
        detail: Option<&str>,
    ) -> Result<EnvDeletion>;

    /// Applies a batch atomically: checks `expected_revision`, skips unchanged entities,
    /// and — if anything changed — bumps the environment revision, writes the entities and
    /// their history, the revision record and one audit record per change, all in one
    /// transaction. Any failure (including the audit write) rolls everything back.
    async fn commit(&self, req: CommitRequest) -> Result<CommitOutcome>;

    /// The live (non-deleted) entities of an environment, at its current revision or, with
    /// `at`, as they were at that revision ([`StoreError::Pruned`] when `at` is older than
    /// the retained history; revision 0, the empty environment, always answers).
    async fn entities(&self, env: &str, at: Option<u64>) -> Result<Vec<EntityRecord>>;

    /// Every entity version (tombstones included) committed after revision `since`, the
    /// latest version per entity only, and the current revision. [`StoreError::Pruned`]
    /// when `since` (other than 0) is older than the retained history: the deletions since
    /// then may be gone, so only a full state is a correct answer.
    async fn changes_since(&self, env: &str, since: u64) -> Result<(u64, Vec<EntityRecord>)>;

    /// One revision's record; `None` when the environment has no such revision,
    /// [`StoreError::Pruned`] when it is older than the retained history.
    async fn revision(&self, env: &str, revision: u64) -> Result<Option<RevisionRecord>>;
    /// Newest first.
    async fn revisions(&self, env: &str, limit: u32) -> Result<Vec<RevisionRecord>>;

    /// Prunes `env`'s history to what `retention` keeps, in one transaction: the revisions
    /// before the oldest kept one (its `history_from`), the entity versions superseded at
    /// it, tombstones older than it (with the entity's row when it was never re-created),
    /// and the Worker reports on pruned revisions (each Worker's latest report and latest
    /// ACK excepted); moves the environment's `history_from` and writes an audit record
    /// (`prune-history`, by `actor`). The state at every kept revision is unchanged.
    /// Idempotent: `None`, and nothing written, when there is nothing to prune (another
    /// Manager pruning the same environment at the same time waits for this one and then
    /// finds nothing). Audit records are never touched.
    async fn prune_history(
        &self,
        env: &str,
        retention: &HistoryRetention,
        actor: &str,
    ) -> Result<Option<PruneOutcome>>;

    /// Deletes the audit records written before `before` (unix milliseconds) and — when it
    /// deleted any — writes one saying so (`prune-audit`, by `actor`), in one transaction.
    /// Returns how many were deleted. Only ever called when an operator asked for audit
    /// retention.
    async fn prune_audit(&self, before: Millis, actor: &str) -> Result<u64>;

    /// Stores a Worker's ACK/NACK and an audit record for it, in one transaction.
    /// A repeated report for the same (env, worker, revision) replaces the earlier one.
    /// Returns the progress of the revision it ACKs (see [`Store::record_reports`]).
    async fn record_report(&self, report: WorkerReport) -> Result<Vec<RevisionProgress>>;
    /// Stores several reports, each with its audit record, in one transaction: all or none.
    /// (The Manager groups the ACKs that arrive together, one commit for all of them.)
    /// Returns, for each revision ACKed in the batch whose expected Workers are known and
    /// not none, how many of them have ACKed it; the write that completes the set records
    /// the revision as completed (once, whichever Manager writes it).
    async fn record_reports(&self, reports: Vec<WorkerReport>) -> Result<Vec<RevisionProgress>>;

    /// The environment's latest canary (`None`: it never had one).
    async fn canary(&self, env: &str) -> Result<Option<CanaryRecord>>;
    /// Moves running canary `revision` from step `from` to `to` and audits it (`detail`:
    /// the numbers the step held with), in one transaction. `false`, nothing written, when
    /// it is no longer at that step or running (another Manager moved it first).
    async fn canary_step(
        &self,
        env: &str,
        revision: u64,
        from: u32,
        to: u32,
        actor: &str,
        detail: &str,
    ) -> Result<bool>;
    /// Ends running canary `revision` as promoted (no new revision: it is already the
    /// latest) and audits it, in one transaction; `false` when it is not running.
    async fn promote_canary(
        &self,
        env: &str,
        revision: u64,
        actor: &str,
        detail: &str,
    ) -> Result<bool>;

    /// Keeps `status` (JSON) as `env`'s latest rollout, replacing the one before.
    async fn save_rollout(&self, env: &str, status: &str) -> Result<()>;
    /// `env`'s latest rollout as last saved, and when (`None`: none was).
    async fn rollout(&self, env: &str) -> Result<Option<(String, Millis)>>;

    /// Writes down (or replaces) a Worker's stream held by a Manager.
    async fn worker_connected(&self, connection: WorkerConnection) -> Result<()>;
    /// Removes a stream, if it is still the one of `session`.
    async fn worker_disconnected(
        &self,
        env: &str,
        worker_id: &str,
        manager: &str,
        session: &str,
    ) -> Result<()>;
    /// Replaces every stream `manager` holds with `held` (refreshed: `last_seen` now), and
    /// drops rows of any Manager not refreshed for ten times the TTL. One transaction.
    async fn refresh_connections(&self, manager: &str, held: Vec<WorkerConnection>) -> Result<()>;
    /// The Workers of an environment with a stream open on some Manager (rows refreshed
    /// within [`PRESENCE_TTL_MS`]), one per Worker (its latest stream), by id.
    async fn connections(&self, env: &str) -> Result<Vec<WorkerConnection>>;
    /// The Workers expected to pick up a revision (sorted); `None` when that is not known
    /// (a revision committed before presence was stored).
    async fn expected_workers(&self, env: &str, revision: u64) -> Result<Option<Vec<String>>>;
    /// Every report for one revision.
    async fn reports_for(&self, env: &str, revision: u64) -> Result<Vec<WorkerReport>>;
    /// The latest report of each Worker of an environment.
    async fn latest_reports(&self, env: &str) -> Result<Vec<WorkerReport>>;
    /// Per Worker, the highest revision it ACKed: what it serves, NACKs after it or not.
    async fn acked_revisions(&self, env: &str) -> Result<Vec<(String, u64)>>;

    async fn audit(&self, query: AuditQuery) -> Result<Vec<AuditRecord>>;
    /// Writes one audit record of an action that changes no entity (a rollout step).
    async fn record_event(&self, event: AuditEvent) -> Result<()>;

    /// Stores a token and audits its creation (actor = `created_by`).
    async fn create_token(&self, token: TokenRecord, created_by: &str) -> Result<()>;
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>>;
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>>;
    /// Revokes the token with public id `id` and audits it (actor = `revoked_by`): the
    /// token as it now is, and whether this call revoked it (`false`: it already was, and
    /// nothing was written). `None` when no token has this id.
    async fn revoke_token(&self, id: &str, revoked_by: &str)
    -> Result<Option<(TokenRecord, bool)>>;
}
