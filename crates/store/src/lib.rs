//! The Manager's source of truth, behind the [`Store`] trait so that SQLite (embedded, the
//! default) and PostgreSQL (several Managers) are two implementations of one contract.
//!
//! Every accepted change to an environment is one transaction that writes the entities, a
//! new environment revision, and one audit record per changed entity. If any part fails —
//! the audit write included — nothing is written.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod sql;
pub mod sqlite;

pub use sqlite::SqliteStore;

/// Milliseconds since the Unix epoch. Stored as BIGINT: portable and sortable.
pub type Millis = i64;

pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

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
    #[error("environment {0:?} already exists")]
    EnvExists(String),
    /// The audit record could not be written: the change was refused.
    #[error("audit record could not be written, change refused: {0}")]
    AuditFailed(String),
    #[error("store error: {0}")]
    Database(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// What kind of operation produced a revision or audit record.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    Apply,
    Delete,
    Promote,
    Rollback,
    /// A Worker's ACK or NACK of a revision.
    Report,
    CreateEnv,
    CreateToken,
    /// `switchyard credential set`: a secret credential's value set (or the credential
    /// created) without a manifest.
    SetCredential,
    /// `switchyard credential rotate`: an existing secret credential's value replaced.
    RotateCredential,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "apply",
            Operation::Delete => "delete",
            Operation::Promote => "promote",
            Operation::Rollback => "rollback",
            Operation::Report => "report",
            Operation::CreateEnv => "create-env",
            Operation::CreateToken => "create-token",
            Operation::SetCredential => "set-credential",
            Operation::RotateCredential => "rotate-credential",
        }
    }

    pub fn parse(s: &str) -> Option<Operation> {
        Some(match s {
            "apply" => Operation::Apply,
            "delete" => Operation::Delete,
            "promote" => Operation::Promote,
            "rollback" => Operation::Rollback,
            "report" => Operation::Report,
            "create-env" => Operation::CreateEnv,
            "create-token" => Operation::CreateToken,
            "set-credential" => Operation::SetCredential,
            "rotate-credential" => Operation::RotateCredential,
            _ => return None,
        })
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvInfo {
    pub name: String,
    pub revision: u64,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub created_at: Millis,
}

/// One entity (a proxy, a credential, …) as stored: its latest version in an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityRecord {
    pub kind: String,
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
        kind: String,
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
    Delete { kind: String, name: String },
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
}

/// What one entity change did.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedChange {
    pub kind: String,
    pub name: String,
    /// `None` when created.
    pub old_version: Option<u64>,
    /// `None` when deleted.
    pub new_version: Option<u64>,
    /// Digest of the new manifest (empty when deleted).
    pub digest: String,
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

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionRecord {
    pub env: String,
    pub revision: u64,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub committed_at: Millis,
    pub actor: String,
    pub operation: Operation,
    pub changes: Vec<AppliedChange>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportStatus {
    Ack,
    Nack,
}

/// A Worker's ACK or NACK of a revision.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerReport {
    pub env: String,
    pub worker_id: String,
    pub revision: u64,
    pub status: ReportStatus,
    /// The Worker-side error, for a NACK.
    pub error: Option<String>,
    /// When the Worker swapped the revision in (Worker clock).
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub applied_at: Millis,
    /// When the Manager received the report (Manager clock).
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub received_at: Millis,
    /// The Worker's traffic address, as it reports it.
    pub address: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub at: Millis,
    pub actor: String,
    pub env: Option<String>,
    pub entity_kind: String,
    pub entity_name: String,
    pub old_version: Option<u64>,
    pub new_version: Option<u64>,
    pub digest: Option<String>,
    pub operation: Operation,
    pub revision: Option<u64>,
    pub detail: Option<String>,
}

/// Filters for [`Store::audit`]; newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub env: Option<String>,
    pub entity_kind: Option<String>,
    pub entity_name: Option<String>,
    pub actor: Option<String>,
    pub since: Option<Millis>,
    pub limit: u32,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Deployer,
    Viewer,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Deployer => "deployer",
            Role::Viewer => "viewer",
            Role::Worker => "worker",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "admin" => Role::Admin,
            "deployer" => Role::Deployer,
            "viewer" => Role::Viewer,
            "worker" => Role::Worker,
            _ => return None,
        })
    }
}

/// A token as stored: only the SHA-256 of the secret, never the secret.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public id (shown in audit records as the actor).
    pub id: String,
    pub name: String,
    #[serde(skip_serializing)]
    pub hash: String,
    pub role: Role,
    /// Environments a `deployer` may change / a `worker` may read; empty = all (admin, viewer).
    pub envs: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub created_at: Millis,
    pub revoked: bool,
    /// When the token stops working (ms since epoch); `null` = never.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
    pub expires_at: Option<Millis>,
}

impl TokenRecord {
    /// Whether the token has expired at `now` (ms since epoch).
    pub fn expired_at(&self, now: Millis) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// The store contract. All methods are transactional on their own.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates an environment at revision 0 and audits it.
    async fn create_env(&self, name: &str, actor: &str) -> Result<EnvInfo>;
    async fn list_envs(&self) -> Result<Vec<EnvInfo>>;
    /// `None` when the environment does not exist.
    async fn env(&self, name: &str) -> Result<Option<EnvInfo>>;

    /// Applies a batch atomically: checks `expected_revision`, skips unchanged entities,
    /// and — if anything changed — bumps the environment revision, writes the entities and
    /// their history, the revision record and one audit record per change, all in one
    /// transaction. Any failure (including the audit write) rolls everything back.
    async fn commit(&self, req: CommitRequest) -> Result<CommitOutcome>;

    /// The live (non-deleted) entities of an environment, at its current revision or, with
    /// `at`, as they were at that revision.
    async fn entities(&self, env: &str, at: Option<u64>) -> Result<Vec<EntityRecord>>;

    /// Every entity version (tombstones included) committed after revision `since`, the
    /// latest version per entity only, and the current revision.
    async fn changes_since(&self, env: &str, since: u64) -> Result<(u64, Vec<EntityRecord>)>;

    async fn revision(&self, env: &str, revision: u64) -> Result<Option<RevisionRecord>>;
    /// Newest first.
    async fn revisions(&self, env: &str, limit: u32) -> Result<Vec<RevisionRecord>>;

    /// Stores a Worker's ACK/NACK and an audit record for it, in one transaction.
    /// A repeated report for the same (env, worker, revision) replaces the earlier one.
    async fn record_report(&self, report: WorkerReport) -> Result<()>;
    /// Stores several reports, each with its audit record, in one transaction: all or none.
    /// (The Manager groups the ACKs that arrive together, one commit for all of them.)
    async fn record_reports(&self, reports: Vec<WorkerReport>) -> Result<()>;
    /// Every report for one revision.
    async fn reports_for(&self, env: &str, revision: u64) -> Result<Vec<WorkerReport>>;
    /// The latest report of each Worker of an environment.
    async fn latest_reports(&self, env: &str) -> Result<Vec<WorkerReport>>;
    /// Per Worker, the highest revision it ACKed: what it serves, NACKs after it or not.
    async fn acked_revisions(&self, env: &str) -> Result<Vec<(String, u64)>>;

    async fn audit(&self, query: AuditQuery) -> Result<Vec<AuditRecord>>;

    /// Stores a token and audits its creation (actor = `created_by`).
    async fn create_token(&self, token: TokenRecord, created_by: &str) -> Result<()>;
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>>;
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>>;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::Operation;

    #[test]
    fn operations_read_back_as_stored_and_as_serialized() {
        for op in [
            Operation::Apply,
            Operation::Delete,
            Operation::Promote,
            Operation::Rollback,
            Operation::Report,
            Operation::CreateEnv,
            Operation::CreateToken,
            Operation::SetCredential,
            Operation::RotateCredential,
        ] {
            assert_eq!(Operation::parse(op.as_str()), Some(op));
            assert_eq!(
                serde_json::to_value(op).unwrap(),
                serde_json::Value::String(op.as_str().into())
            );
        }
    }
}
