//! Records the Manager keeps and shows as they are: environments, revisions, Workers'
//! reports, audit records, tokens. The store writes them; the API answers with them.

use serde::{Deserialize, Serialize};
use switchyard_config::Kind;

/// Milliseconds since the Unix epoch. Stored as BIGINT: portable and sortable.
pub type Millis = i64;

pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

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
    /// `switchyard env delete`: an environment, its entities and revisions deleted (its
    /// audit records are kept).
    DeleteEnv,
    CreateToken,
    /// `switchyard token revoke`: a token stops working.
    RevokeToken,
    /// `switchyard credential set`: a secret credential's value set (or the credential
    /// created) without a manifest.
    SetCredential,
    /// `switchyard credential rotate`: an existing secret credential's value replaced.
    RotateCredential,
    /// The store was given a new identity (it was found restored from a backup): Workers
    /// that followed the old one resynchronise.
    RenewStoreId,
    /// `switchyard rollout`: a revision that Workers take by handing over to a successor
    /// process (restart-required changes, a new binary), and each step of walking them.
    Rollout,
    /// An environment's history before a revision was pruned (the Manager's
    /// `--history-revisions` / `--history-age`).
    PruneHistory,
    /// Audit records older than the Manager's `--audit-retention` were deleted.
    PruneAudit,
    /// A canary revision's life: started (with its commit), a step that held, promoted,
    /// rolled back (with the numbers), aborted.
    Canary,
}

impl Operation {
    pub const ALL: [Operation; 16] = [
        Operation::Apply,
        Operation::Delete,
        Operation::Promote,
        Operation::Rollback,
        Operation::Report,
        Operation::CreateEnv,
        Operation::DeleteEnv,
        Operation::CreateToken,
        Operation::RevokeToken,
        Operation::SetCredential,
        Operation::RotateCredential,
        Operation::RenewStoreId,
        Operation::Rollout,
        Operation::PruneHistory,
        Operation::PruneAudit,
        Operation::Canary,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "apply",
            Operation::Delete => "delete",
            Operation::Promote => "promote",
            Operation::Rollback => "rollback",
            Operation::Report => "report",
            Operation::CreateEnv => "create-env",
            Operation::DeleteEnv => "delete-env",
            Operation::CreateToken => "create-token",
            Operation::RevokeToken => "revoke-token",
            Operation::SetCredential => "set-credential",
            Operation::RotateCredential => "rotate-credential",
            Operation::RenewStoreId => "renew-store-id",
            Operation::Rollout => "rollout",
            Operation::PruneHistory => "prune-history",
            Operation::PruneAudit => "prune-audit",
            Operation::Canary => "canary",
        }
    }

    pub fn parse(s: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// An environment and the revision it is at.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvInfo {
    pub name: String,
    pub revision: u64,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub created_at: Millis,
    /// The oldest revision whose state the Manager can still rebuild: the history before
    /// it was pruned (history retention). 0 while every revision is kept.
    #[serde(default)]
    pub history_from: u64,
}

/// What one entity change did.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedChange {
    pub kind: Kind,
    pub name: String,
    /// `None` when created.
    pub old_version: Option<u64>,
    /// `None` when deleted.
    pub new_version: Option<u64>,
    /// Digest of the new manifest (empty when deleted).
    pub digest: String,
}

/// One committed revision of an environment: who, when, what.
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

/// A Worker's answer to a revision: it serves it (ACK) or refused it (NACK) and serves
/// its last good one.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportStatus {
    Ack,
    Nack,
}

impl ReportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::Ack => "ack",
            ReportStatus::Nack => "nack",
        }
    }

    pub fn parse(s: &str) -> Option<ReportStatus> {
        match s {
            "ack" => Some(ReportStatus::Ack),
            "nack" => Some(ReportStatus::Nack),
            _ => None,
        }
    }
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
    /// When the Worker had read the revision from the Manager, before compiling it (Worker
    /// clock). `None` from Workers that do not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
    pub pulled_at: Option<Millis>,
    /// When the Manager received the report (Manager clock).
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub received_at: Millis,
    /// The Worker's traffic address, as it reports it.
    pub address: Option<String>,
    /// How the Worker came to serve this revision when it was not a plain pull: e.g. that
    /// it resynchronised with a full pull because the Manager's store changed identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// ACKed through a catch-up jump: the Worker did not swap this revision in on its own
    /// but went straight to `caught_up_to`, a later revision whose state contains this
    /// one's changes. `None`: the Worker swapped exactly this revision in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caught_up_to: Option<u64>,
}

/// `AuditRecord::entity_kind` of what is audited besides entities (whose records hold
/// their [`Kind`]; an environment's creation is recorded under `Environment`).
pub mod audit_subject {
    /// A token's creation or revocation.
    pub const TOKEN: &str = "Token";
    /// A Worker's ACK or NACK.
    pub const WORKER: &str = "Worker";
    /// The store itself (its identity renewed, its old audit records pruned).
    pub const STORE: &str = "Store";
    /// An environment's canary revision (started, a step, promoted, rolled back, aborted);
    /// the record's entity name is the environment.
    pub const CANARY: &str = "Canary";
}

/// One audit record: who changed what, when, from which version to which.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub at: Millis,
    pub actor: String,
    pub env: Option<String>,
    /// An entity's kind (`Proxy`), or what else was acted on (`Environment`, `Token`,
    /// `Worker`).
    pub entity_kind: String,
    pub entity_name: String,
    pub old_version: Option<u64>,
    pub new_version: Option<u64>,
    pub digest: Option<String>,
    pub operation: Operation,
    pub revision: Option<u64>,
    pub detail: Option<String>,
}

/// What a token may do.
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
    pub const ALL: [Role; 4] = [Role::Admin, Role::Deployer, Role::Viewer, Role::Worker];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Deployer => "deployer",
            Role::Viewer => "viewer",
            Role::Worker => "worker",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A token as stored: only the SHA-256 of the secret, never the secret.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public id (shown in audit records as the actor).
    pub id: String,
    pub name: String,
    /// Never serialized: the store's business only.
    #[serde(skip_serializing, default)]
    pub hash: String,
    pub role: Role,
    /// Environments a `deployer` may change / a `worker` may read; empty = all (admin, viewer).
    pub envs: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub created_at: Millis,
    pub revoked: bool,
    /// When it was revoked (ms since epoch); `null` while it is not.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
    pub revoked_at: Option<Millis>,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{Operation, ReportStatus, Role};

    #[test]
    fn enums_read_back_as_stored_and_as_serialized() {
        for op in Operation::ALL {
            assert_eq!(Operation::parse(op.as_str()), Some(op));
            assert_eq!(
                serde_json::to_value(op).unwrap(),
                serde_json::Value::String(op.as_str().into())
            );
        }
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        for s in [ReportStatus::Ack, ReportStatus::Nack] {
            assert_eq!(ReportStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
