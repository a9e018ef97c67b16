//! Row decoding, value conversions and error mapping for the SQLite store.

use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::any::{Any, AnyRow};
use switchyard_config::Kind;

use crate::{
    AppliedChange, AuditRecord, EntityRecord, EnvInfo, Operation, ReportStatus, RevisionRecord,
    Role, StoreError, TokenRecord, WorkerReport,
};

/// Maps a driver error to [`StoreError::Database`] (or [`StoreError::Unavailable`] when
/// the database could not be reached), naming the operation that failed.
pub(super) fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| {
        if unreachable(&e) {
            StoreError::Unavailable(format!("{op}: {e}"))
        } else {
            StoreError::Database(format!("{op}: {e}"))
        }
    }
}

/// Maps any error of getting a connection or starting a transaction to
/// [`StoreError::Unavailable`]: nothing was asked of the database yet.
pub(super) fn unavailable(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| StoreError::Unavailable(format!("{op}: {e}"))
}

/// Whether `e` says the database could not be reached, rather than that it refused what
/// was asked: connection errors, a closed or exhausted pool, and PostgreSQL's connection
/// exceptions (SQLSTATE class 08) and shutdowns (57P01-57P03).
fn unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// Maps a failed audit insert to [`StoreError::AuditFailed`].
pub(super) fn audit_failed(e: sqlx::Error) -> StoreError {
    StoreError::AuditFailed(e.to_string())
}

/// A u64 as a bound parameter. Values past i64::MAX (never stored) become i64::MAX, which
/// keeps `<=` / `>` comparisons meaningful.
pub(super) fn param(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A u64 about to be stored: refuses values past i64::MAX rather than clamping them.
pub(super) fn stored(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Database(format!("{what} {v} is out of range")))
}

pub(super) fn unsigned(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Database(format!("stored {what} {v} is negative")))
}

fn opt_unsigned(v: Option<i64>, what: &str) -> Result<Option<u64>, StoreError> {
    v.map(|v| unsigned(v, what)).transpose()
}

pub(super) fn to_json<T: serde::Serialize + ?Sized>(
    v: &T,
    what: &str,
) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Database(format!("encode {what}: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(s)
        .map_err(|e| StoreError::Database(format!("stored {what} is not valid JSON: {e}")))
}

fn get<'r, T>(row: &'r AnyRow, column: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get(column)
        .map_err(|e| StoreError::Database(format!("decode column {column}: {e}")))
}

fn kind(s: &str) -> Result<Kind, StoreError> {
    Kind::parse(s).ok_or_else(|| StoreError::Database(format!("stored kind {s:?} is unknown")))
}

fn operation(s: &str) -> Result<Operation, StoreError> {
    Operation::parse(s)
        .ok_or_else(|| StoreError::Database(format!("stored operation {s:?} is unknown")))
}

pub(super) fn env_info(row: &AnyRow) -> Result<EnvInfo, StoreError> {
    Ok(EnvInfo {
        name: get(row, "name")?,
        revision: unsigned(get(row, "revision")?, "revision")?,
        created_at: get(row, "created_at")?,
        history_from: unsigned(get(row, "history_from")?, "history_from")?,
    })
}

pub(super) fn entity(row: &AnyRow) -> Result<EntityRecord, StoreError> {
    let labels: String = get(row, "labels")?;
    Ok(EntityRecord {
        kind: kind(&get::<String>(row, "kind")?)?,
        name: get(row, "name")?,
        version: unsigned(get(row, "version")?, "version")?,
        revision: unsigned(get(row, "revision")?, "revision")?,
        digest: get(row, "digest")?,
        manifest: get(row, "manifest")?,
        labels: from_json::<BTreeMap<String, String>>(&labels, "labels")?,
        deleted: get::<i64>(row, "deleted")? != 0,
        template: get(row, "template")?,
        template_digest: get(row, "template_digest")?,
    })
}

pub(super) fn revision(row: &AnyRow) -> Result<RevisionRecord, StoreError> {
    let changes: String = get(row, "changes")?;
    let op: String = get(row, "operation")?;
    Ok(RevisionRecord {
        env: get(row, "env")?,
        revision: unsigned(get(row, "revision")?, "revision")?,
        committed_at: get(row, "committed_at")?,
        actor: get(row, "actor")?,
        operation: operation(&op)?,
        changes: from_json::<Vec<AppliedChange>>(&changes, "revision changes")?,
    })
}

pub(super) fn report(row: &AnyRow) -> Result<WorkerReport, StoreError> {
    let status: String = get(row, "status")?;
    let status = match status.as_str() {
        "ack" => ReportStatus::Ack,
        "nack" => ReportStatus::Nack,
        other => {
            return Err(StoreError::Database(format!(
                "stored report status {other:?} is unknown"
            )));
        }
    };
    Ok(WorkerReport {
        env: get(row, "env")?,
        worker_id: get(row, "worker_id")?,
        revision: unsigned(get(row, "revision")?, "revision")?,
        status,
        error: get(row, "error")?,
        applied_at: get(row, "applied_at")?,
        pulled_at: get(row, "pulled_at")?,
        received_at: get(row, "received_at")?,
        address: get(row, "address")?,
        detail: get(row, "detail")?,
        caught_up_to: opt_unsigned(get(row, "caught_up_to")?, "caught_up_to")?,
    })
}

pub(super) fn connection(row: &AnyRow) -> Result<crate::WorkerConnection, StoreError> {
    Ok(crate::WorkerConnection {
        env: get(row, "env")?,
        worker_id: get(row, "worker_id")?,
        manager: get(row, "manager")?,
        session: get(row, "session")?,
        address: get(row, "address")?,
        version: get(row, "version")?,
        connected_at: get(row, "connected_at")?,
        last_seen: get(row, "last_seen")?,
    })
}

pub(super) fn status_str(status: ReportStatus) -> &'static str {
    match status {
        ReportStatus::Ack => "ack",
        ReportStatus::Nack => "nack",
    }
}

pub(super) fn audit(row: &AnyRow) -> Result<AuditRecord, StoreError> {
    let op: String = get(row, "operation")?;
    Ok(AuditRecord {
        id: get(row, "id")?,
        at: get(row, "at")?,
        actor: get(row, "actor")?,
        env: get(row, "env")?,
        entity_kind: get(row, "entity_kind")?,
        entity_name: get(row, "entity_name")?,
        old_version: opt_unsigned(get(row, "old_version")?, "old_version")?,
        new_version: opt_unsigned(get(row, "new_version")?, "new_version")?,
        digest: get(row, "digest")?,
        operation: operation(&op)?,
        revision: opt_unsigned(get(row, "revision")?, "revision")?,
        detail: get(row, "detail")?,
    })
}

pub(super) fn token(row: &AnyRow) -> Result<TokenRecord, StoreError> {
    let role: String = get(row, "role")?;
    let envs: String = get(row, "envs")?;
    Ok(TokenRecord {
        id: get(row, "id")?,
        name: get(row, "name")?,
        hash: get(row, "hash")?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Database(format!("stored role {role:?} is unknown")))?,
        envs: from_json::<Vec<String>>(&envs, "token envs")?,
        created_at: get(row, "created_at")?,
        revoked: get::<i64>(row, "revoked")? != 0,
        revoked_at: get(row, "revoked_at")?,
        expires_at: get(row, "expires_at")?,
    })
}

/// Decodes every row with `f`, stopping at the first error.
pub(super) fn all<T>(
    rows: &[AnyRow],
    f: fn(&AnyRow) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    rows.iter().map(f).collect()
}
