//! The store's identity: created with the database, kept across restarts, renewed when
//! the database comes back from a backup; and the data files are private.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{all_audit, apply, report, upsert};
use switchyard_api::records::{Operation, ReportStatus, WorkerReport, audit_subject};
use switchyard_store::{SqlStore, Store};

async fn open(path: &Path) -> SqlStore {
    SqlStore::open(path).await.unwrap()
}

/// A store with environment `prod` at revision 1, and a backup of it taken then (in the
/// temporary directory, as `backup.db`).
async fn backed_up(dir: &Path) -> (SqlStore, PathBuf) {
    let store = open(&dir.join("store.db")).await;
    store.create_env("prod", "admin").await.unwrap();
    apply(&store, "prod", vec![upsert("Proxy", "api", "a1")]).await;
    let copy = dir.join("backup.db");
    store.backup_to(&copy).await.unwrap();
    (store, copy)
}

fn restore(backup: &Path, db: &Path) {
    SqlStore::restore(backup, db).unwrap();
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn the_id_is_created_with_the_database_and_kept_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let store = open(&db).await;
    let id = store.store_id();
    assert!(id.starts_with("st_") && id.len() == 35, "{id}");
    store.create_env("prod", "admin").await.unwrap();
    apply(&store, "prod", vec![upsert("Proxy", "api", "a1")]).await;
    store.close().await;
    let again = open(&db).await;
    assert_eq!(again.store_id(), id, "a restart is the same store");
    // Another database is another store.
    let other = open(&dir.path().join("other.db")).await;
    assert_ne!(other.store_id(), id);
    assert_ne!(SqlStore::open_in_memory().await.unwrap().store_id(), id);
}

#[tokio::test]
async fn a_database_restored_from_an_older_backup_gets_a_new_id_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let (store, copy) = backed_up(dir.path()).await;
    let id = store.store_id();
    // A commit after the backup: the backup is behind.
    apply(&store, "prod", vec![upsert("Proxy", "api", "a2")]).await;
    store.close().await;

    restore(&copy, &db);
    let restored = open(&db).await;
    let new = restored.store_id();
    assert_ne!(
        new, id,
        "the restored store must not pass for the one Workers followed"
    );
    assert_eq!(restored.env("prod").await.unwrap().unwrap().revision, 1);
    let record = all_audit(&restored)
        .await
        .into_iter()
        .find(|a| a.operation == Operation::RenewStoreId)
        .unwrap();
    assert_eq!(record.entity_kind, audit_subject::STORE);
    assert_eq!(record.entity_name, new);
    let detail = record.detail.unwrap();
    assert!(
        detail.starts_with(&format!("was {id}: the database is behind its witness"))
            && detail.contains("restored from an older backup"),
        "{detail}"
    );
    // From now on this is the store; restarting it keeps the new id.
    apply(&restored, "prod", vec![upsert("Proxy", "api", "b2")]).await;
    restored.close().await;
    assert_eq!(open(&db).await.store_id(), new);

    // The same old backup put back once more is again not the store the witness saw.
    restore(&copy, &db);
    let twice = open(&db).await;
    assert!(![id.as_str(), new.as_str()].contains(&twice.store_id().as_str()));
}

#[tokio::test]
async fn a_backup_as_recent_as_the_last_commit_is_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let (store, copy) = backed_up(dir.path()).await;
    let id = store.store_id();
    // Reports after the backup do not make another history (only commits do).
    let ack = report("w1", 1, ReportStatus::Ack, None, 100);
    store.record_report(ack).await.unwrap();
    store.close().await;
    restore(&copy, &db);
    assert_eq!(open(&db).await.store_id(), id);
}

#[tokio::test]
async fn an_unreadable_witness_renews_the_id_rather_than_risk_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let store = open(&db).await;
    let id = store.store_id();
    let witness = store.witness_path().unwrap().to_path_buf();
    store.close().await;
    std::fs::write(&witness, b"{not json").unwrap();
    let reopened = open(&db).await;
    assert_ne!(reopened.store_id(), id);
    // And the witness is sound again.
    let text = std::fs::read_to_string(&witness).unwrap();
    assert!(text.contains(&reopened.store_id()), "{text}");
}

#[tokio::test]
async fn the_database_and_its_witness_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    // An existing database with a loose mode is tightened too.
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = open(&db).await;
    store.create_env("prod", "admin").await.unwrap();
    let wal = dir.path().join("store.db-wal");
    let shm = dir.path().join("store.db-shm");
    for p in [db.as_path(), &wal, &shm, store.witness_path().unwrap()] {
        assert_eq!(mode(p), 0o600, "{}", p.display());
    }
    assert_eq!(store.integrity_check().await.unwrap(), ["ok"]);
}

#[tokio::test]
async fn a_report_keeps_how_the_worker_came_to_serve_it() {
    let store = SqlStore::open_in_memory().await.unwrap();
    store.create_env("prod", "admin").await.unwrap();
    let ack = WorkerReport {
        detail: Some("resynchronised: the Manager's store is another one".into()),
        ..report("w1", 0, ReportStatus::Ack, None, 100)
    };
    store.record_report(ack.clone()).await.unwrap();
    assert_eq!(store.reports_for("prod", 0).await.unwrap(), [ack]);
    let audit = all_audit(&store).await;
    assert_eq!(
        audit[0].detail.as_deref(),
        Some("ack (resynchronised: the Manager's store is another one)")
    );
}
