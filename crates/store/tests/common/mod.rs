//! Helpers shared by the store's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;

use switchyard_store::{AuditQuery, Change, CommitOutcome, CommitRequest, SqlStore, Store};

use switchyard_api::records::{AuditRecord, Operation, ReportStatus, WorkerReport};

/// A test of the store's contract, run on both backends: `sqlite` (a private in-memory
/// database) and `postgres` (a database of its own on the test PostgreSQL server,
/// `switchyard_store::testing`). The body is an async block over `store: SqlStore`.
#[allow(unused_macros)]
macro_rules! on_both_backends {
    ($(#[$meta:meta])* async fn $name:ident($store:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($store: switchyard_store::SqlStore) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(switchyard_store::SqlStore::open_in_memory().await.unwrap()).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let db = switchyard_store::testing::Postgres::get().database().await;
                run(db.store().await).await
            }
        }
    };
}

/// A store in a fresh temporary directory (kept alive by the returned guard).
pub async fn file_store() -> (tempfile::TempDir, SqlStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open(&dir.path().join("store.db")).await.unwrap();
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
        pulled_at: None,
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
        canary: Default::default(),
    }
}

pub async fn apply(store: &SqlStore, env: &str, changes: Vec<Change>) -> CommitOutcome {
    store.commit(request(env, changes)).await.unwrap()
}

/// Every audit record, newest first.
pub async fn all_audit(store: &SqlStore) -> Vec<AuditRecord> {
    store
        .audit(AuditQuery {
            limit: 100_000,
            ..AuditQuery::default()
        })
        .await
        .unwrap()
}

/// Row count of `table`, read straight from the database.
pub async fn count(store: &SqlStore, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// Row counts of every table that a commit writes.
pub async fn snapshot(store: &SqlStore) -> Vec<i64> {
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

/// Makes every audit insert fail (for a `condition` on the new row, e.g.
/// `NEW.entity_name = 'second'`, only those), as a database fault would: a trigger named
/// `name`, in the store's backend's dialect. [`heal_audit`] removes it.
pub async fn break_audit(store: &SqlStore, name: &str, condition: Option<&str>) {
    let statements = match store.backend() {
        switchyard_store::Backend::Sqlite => vec![format!(
            "CREATE TRIGGER {name} BEFORE INSERT ON audit {} \
             BEGIN SELECT RAISE(ABORT, 'audit unavailable'); END;",
            condition.map(|c| format!("WHEN {c}")).unwrap_or_default()
        )],
        switchyard_store::Backend::Postgres => vec![
            format!(
                "CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN \
                 RAISE EXCEPTION 'audit unavailable'; END; $$ LANGUAGE plpgsql"
            ),
            format!(
                "CREATE TRIGGER {name} BEFORE INSERT ON audit FOR EACH ROW {} \
                 EXECUTE FUNCTION {name}()",
                condition.map(|c| format!("WHEN ({c})")).unwrap_or_default()
            ),
        ],
    };
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(store.pool())
            .await
            .unwrap();
    }
}

/// Removes the fault of [`break_audit`].
pub async fn heal_audit(store: &SqlStore, name: &str) {
    let sql = match store.backend() {
        switchyard_store::Backend::Sqlite => format!("DROP TRIGGER {name}"),
        switchyard_store::Backend::Postgres => format!("DROP TRIGGER {name} ON audit"),
    };
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(store.pool())
        .await
        .unwrap();
}
