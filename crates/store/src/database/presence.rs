//! The store's presence writes: the Workers' streams each Manager holds, and each
//! environment's latest rollout (what every Manager on the database reads to answer the
//! same).

use sqlx::AnyConnection;

use super::SqlStore;
use super::rows::db;
use super::write::finish;
use crate::{Result, WorkerConnection, now_millis, sql};

pub(super) async fn save_rollout(store: &SqlStore, env: &str, status: &str) -> Result<()> {
    let (_guard, mut tx) = store.begin_write().await?;
    let result = sqlx::query(sql::ROLLOUT_UPSERT)
        .bind(env)
        .bind(status)
        .bind(now_millis())
        .execute(&mut *tx)
        .await
        .map(|_| ())
        .map_err(db("save the rollout"));
    finish(tx, result, |_| true, "save the rollout: commit").await
}

pub(super) async fn worker_connected(store: &SqlStore, c: WorkerConnection) -> Result<()> {
    let (_guard, mut tx) = store.begin_write().await?;
    let result = upsert_connection(&mut tx, &c).await;
    finish(tx, result, |_| true, "worker connected: commit").await
}

async fn upsert_connection(conn: &mut AnyConnection, c: &WorkerConnection) -> Result<()> {
    sqlx::query(sql::CONNECTION_UPSERT)
        .bind(c.env.as_str())
        .bind(c.worker_id.as_str())
        .bind(c.manager.as_str())
        .bind(c.session.as_str())
        .bind(c.address.as_deref())
        .bind(c.version.as_deref())
        .bind(c.connected_at)
        .bind(c.last_seen)
        .execute(&mut *conn)
        .await
        .map_err(db("write a worker connection"))?;
    Ok(())
}

pub(super) async fn worker_disconnected(store: &SqlStore, key: [&str; 4]) -> Result<()> {
    let (_guard, mut tx) = store.begin_write().await?;
    let mut q = sqlx::query(sql::CONNECTION_DELETE);
    for part in key {
        q = q.bind(part);
    }
    let result = q
        .execute(&mut *tx)
        .await
        .map(|_| ())
        .map_err(db("remove a worker connection"));
    finish(tx, result, |_| true, "worker disconnected: commit").await
}

pub(super) async fn refresh_connections(
    store: &SqlStore,
    manager: &str,
    held: Vec<WorkerConnection>,
) -> Result<()> {
    let (_guard, mut tx) = store.begin_write().await?;
    let result = refresh_connections_in(&mut tx, manager, held).await;
    finish(tx, result, |_| true, "refresh worker connections: commit").await
}

async fn refresh_connections_in(
    conn: &mut AnyConnection,
    manager: &str,
    held: Vec<WorkerConnection>,
) -> Result<()> {
    let now = now_millis();
    sqlx::query(sql::CONNECTIONS_OF_MANAGER_DELETE)
        .bind(manager)
        .execute(&mut *conn)
        .await
        .map_err(db("refresh worker connections"))?;
    sqlx::query(sql::CONNECTIONS_ABANDONED_DELETE)
        .bind(now - 10 * crate::PRESENCE_TTL_MS)
        .execute(&mut *conn)
        .await
        .map_err(db("drop abandoned worker connections"))?;
    for c in held {
        let c = WorkerConnection {
            manager: manager.to_string(),
            last_seen: now,
            ..c
        };
        upsert_connection(conn, &c).await?;
    }
    Ok(())
}
