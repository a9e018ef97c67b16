//! Concurrency, persistence and connection settings.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use std::sync::Arc;

use common::{request, upsert};
use switchyard_store::{SqlStore, Store, StoreError};

async fn revisions_of(store: &SqlStore, env: &str) -> Vec<u64> {
    let mut numbers: Vec<_> = store
        .revisions(env, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.revision)
        .collect();
    numbers.sort_unstable();
    numbers
}

on_both_backends! {
async fn concurrent_commits_get_sequential_revisions(store) {
    let store = Arc::new(store);
    store.create_env("prod", "admin").await.unwrap();

    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .commit(request(
                        "prod",
                        vec![upsert("Proxy", &format!("p{i}"), "x")],
                    ))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut got = Vec::new();
    for task in tasks {
        let out = task.await.unwrap();
        assert_eq!(out.previous_revision + 1, out.revision);
        got.push(out.revision);
    }
    got.sort_unstable();
    assert_eq!(got, (1..=20).collect::<Vec<_>>());
    assert_eq!(revisions_of(&store, "prod").await, got);
    assert_eq!(store.env("prod").await.unwrap().unwrap().revision, 20);
    assert_eq!(store.entities("prod", None).await.unwrap().len(), 20);
}
}

on_both_backends! {
async fn only_one_of_several_commits_against_one_revision_succeeds(store) {
    let store = Arc::new(store);
    store.create_env("prod", "admin").await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut req = request("prod", vec![upsert("Proxy", "api", &format!("v{i}"))]);
                req.expected_revision = Some(0);
                store.commit(req).await
            })
        })
        .collect();
    let (mut ok, mut conflicts) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(out) => {
                assert_eq!(out.revision, 1);
                ok += 1;
            }
            Err(StoreError::Conflict {
                expected: 0,
                actual: 1,
                ..
            }) => conflicts += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, conflicts), (1, 7));
    assert_eq!(revisions_of(&store, "prod").await, [1]);
}
}

/// Two stores on one file (as two Manager processes would be) share SQLite's write lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_never_skip_or_reuse_a_revision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let a = Arc::new(SqlStore::open(&path).await.unwrap());
    let b = Arc::new(SqlStore::open(&path).await.unwrap());
    a.create_env("prod", "admin").await.unwrap();

    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = Arc::clone(if i % 2 == 0 { &a } else { &b });
            tokio::spawn(async move {
                store
                    .commit(request(
                        "prod",
                        vec![upsert("Proxy", &format!("p{i}"), "x")],
                    ))
                    .await
                    .unwrap()
                    .revision
            })
        })
        .collect();
    let mut got = Vec::new();
    for task in tasks {
        got.push(task.await.unwrap());
    }
    got.sort_unstable();
    assert_eq!(got, (1..=20).collect::<Vec<_>>());
    assert_eq!(revisions_of(&b, "prod").await, got);
}

/// Two stores on one PostgreSQL database (two Managers sharing it): commits through both
/// get every revision exactly once; of commits against one revision through both, exactly
/// one wins and the others get a conflict; an environment created through both at once
/// exists once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_postgres_database_take_turns() {
    let db = switchyard_store::testing::Postgres::get().database().await;
    let a = Arc::new(db.store().await);
    let b = Arc::new(db.store().await);
    assert_eq!(a.store_id(), b.store_id(), "one store, seen by both");
    let created: Vec<_> = [&a, &b]
        .map(|s| {
            let s = Arc::clone(s);
            tokio::spawn(async move { s.create_env("prod", "admin").await })
        })
        .into_iter()
        .collect();
    let mut exists = 0;
    for c in created {
        match c.await.unwrap() {
            Ok(_) => {}
            Err(StoreError::EnvExists(_)) => exists += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(exists, 1);

    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = Arc::clone(if i % 2 == 0 { &a } else { &b });
            tokio::spawn(async move {
                store
                    .commit(request(
                        "prod",
                        vec![upsert("Proxy", &format!("p{i}"), "x")],
                    ))
                    .await
                    .unwrap()
                    .revision
            })
        })
        .collect();
    let mut got = Vec::new();
    for task in tasks {
        got.push(task.await.unwrap());
    }
    got.sort_unstable();
    assert_eq!(got, (1..=20).collect::<Vec<_>>());
    assert_eq!(revisions_of(&b, "prod").await, got);

    let racing: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(if i % 2 == 0 { &a } else { &b });
            tokio::spawn(async move {
                let mut req = request("prod", vec![upsert("Proxy", "api", &format!("v{i}"))]);
                req.expected_revision = Some(20);
                store.commit(req).await
            })
        })
        .collect();
    let (mut ok, mut conflicts) = (0, 0);
    for task in racing {
        match task.await.unwrap() {
            Ok(out) => {
                assert_eq!(out.revision, 21);
                ok += 1;
            }
            Err(StoreError::Conflict { actual: 21, .. }) => conflicts += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, conflicts), (1, 7));
    // Every change is audited once: 20 + 1 commits and one environment.
    assert_eq!(common::all_audit(&a).await.len(), 22);
}

#[tokio::test]
async fn data_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // The parent directories do not exist yet: open creates them.
    let path = dir
        .path()
        .join("state")
        .join("nested")
        .join("switchyard.db");
    {
        let store = SqlStore::open(&path).await.unwrap();
        store.create_env("prod", "admin").await.unwrap();
        store
            .commit(request("prod", vec![upsert("Proxy", "api", "a1")]))
            .await
            .unwrap();
        store
            .commit(request("prod", vec![upsert("Proxy", "api", "a2")]))
            .await
            .unwrap();
        store.close().await;
    }
    assert!(path.exists());

    let store = SqlStore::open(&path).await.unwrap();
    assert_eq!(store.env("prod").await.unwrap().unwrap().revision, 2);
    let live = store.entities("prod", None).await.unwrap();
    assert_eq!((live[0].version, live[0].digest.as_str()), (2, "digest-a2"));
    assert_eq!(
        store.entities("prod", Some(1)).await.unwrap()[0].digest,
        "digest-a1"
    );
    assert_eq!(common::all_audit(&store).await.len(), 3);
    let out = store
        .commit(request("prod", vec![upsert("Proxy", "api", "a3")]))
        .await
        .unwrap();
    assert_eq!((out.revision, out.changes[0].new_version), (3, Some(3)));
}

#[tokio::test]
async fn connection_settings() {
    let (_dir, store) = common::file_store().await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(fk, 1);
    let timeout: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(timeout, 5000);

    // In memory: one database shared by every query of the store, separate per store.
    let one = SqlStore::open_in_memory().await.unwrap();
    let two = SqlStore::open_in_memory().await.unwrap();
    one.create_env("prod", "admin").await.unwrap();
    for _ in 0..5 {
        assert!(one.env("prod").await.unwrap().is_some());
    }
    assert!(two.env("prod").await.unwrap().is_none());
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(one.pool())
        .await
        .unwrap();
    assert_eq!(fk, 1);
}

/// What an axum Manager holds in its state.
#[tokio::test]
async fn usable_as_a_shared_trait_object() {
    let store: Arc<dyn Store> = Arc::new(SqlStore::open_in_memory().await.unwrap());
    let handler_view = Arc::clone(&store);
    let task = tokio::spawn(async move { handler_view.create_env("prod", "admin").await });
    task.await.unwrap().unwrap();
    assert_eq!(store.list_envs().await.unwrap().len(), 1);
}

/// A commit through one store on a PostgreSQL database is announced to the others (and
/// to itself) once it commits; a refused one is not; SQLite has no such channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_announced_to_every_store_on_the_database() {
    let db = switchyard_store::testing::Postgres::get().database().await;
    let a = db.store().await;
    let b = db.store().await;
    let mut notices = b
        .commit_notices()
        .await
        .unwrap()
        .expect("PostgreSQL announces");
    a.create_env("prod", "admin").await.unwrap();
    let mut conflicting = request("prod", vec![upsert("Proxy", "api", "x")]);
    conflicting.expected_revision = Some(7);
    assert!(a.commit(conflicting).await.is_err());
    a.commit(request("prod", vec![upsert("Proxy", "api", "y")]))
        .await
        .unwrap();
    let notice = tokio::time::timeout(std::time::Duration::from_secs(30), notices.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        notice,
        switchyard_store::CommitNotice {
            env: "prod".into(),
            revision: 1
        }
    );
    let sqlite = SqlStore::open_in_memory().await.unwrap();
    assert!(sqlite.commit_notices().await.unwrap().is_none());
}
