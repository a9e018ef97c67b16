//! Helpers shared by the store's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;

use switchyard_store::{AuditQuery, Change, CommitOutcome, CommitRequest, SqliteStore, Store};

use switchyard_api::records::{AuditRecord, Operation, ReportStatus, WorkerReport};

/// A store in a fresh temporary directory (kept alive by the returned guard).
pub async fn file_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("store.db"))
        .await
        .unwrap();
    (dir, store)
}

/// An upsert whose manifest and digest are derived from `body`.
pub fn upsert(kind: &str, name: &str, body: &str) -> Change {
    Change::Upsert {
        kind: switchyard_config::Kind::parse(kind).unwrap(),
        name: name.into(),
        digest: format!("digest-{body}"),
        manifest: format!("{{\"body\":\"{body}\"}}"),
        labels: BTreeMap::from([("team".to_string(), "edge".to_string())]),
        template: None,
        template_digest: None,
    }
}

/// A report of Worker `worker` on environment `prod`, received at `received_at`.
pub fn report(
    worker: &str,
    revision: u64,
    status: ReportStatus,
    error: Option<&str>,
    received_at: i64,
) -> WorkerReport {
    WorkerReport {
        env: "prod".into(),
        worker_id: worker.into(),
        revision,
        status,
        error: error.map(str::to_owned),
        applied_at: received_at - 5,
        received_at,
        address: Some(format!("{worker}.internal:8080")),
        detail: None,
        caught_up_to: None,
    }
}

pub fn delete(kind: &str, name: &str) -> Change {
    Change::Delete {
        kind: switchyard_config::Kind::parse(kind).unwrap(),
        name: name.into(),
    }
}

pub fn request(env: &str, changes: Vec<Change>) -> CommitRequest {
    CommitRequest {
        env: env.into(),
        actor: "alice".into(),
        operation: Operation::Apply,
        expected_revision: None,
        changes,
        detail: None,
    }
}

pub async fn apply(store: &SqliteStore, env: &str, changes: Vec<Change>) -> CommitOutcome {
    store.commit(request(env, changes)).await.unwrap()
}

/// Every audit record, newest first.
pub async fn all_audit(store: &SqliteStore) -> Vec<AuditRecord> {
    store
        .audit(AuditQuery {
            limit: 100_000,
            ..AuditQuery::default()
        })
        .await
        .unwrap()
}

/// Row count of `table`, read straight from the database.
pub async fn count(store: &SqliteStore, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// Row counts of every table that a commit writes.
pub async fn snapshot(store: &SqliteStore) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in [
        "entities",
        "entity_history",
        "revisions",
        "audit",
        "worker_reports",
    ] {
        counts.push(count(store, table).await);
    }
    counts
}
