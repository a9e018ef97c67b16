//! The embedded store: SQLite through sqlx, in WAL mode.
//!
//! Writes are serialized twice: by an in-process async lock (so concurrent requests of one
//! Manager queue fairly instead of polling SQLite's busy handler) and by `BEGIN IMMEDIATE`,
//! which takes SQLite's write lock before the first read, so a read-check-write can never
//! interleave with another writer — another process on the same file included (it waits up
//! to the busy timeout). Reads run concurrently on the pool and see a consistent snapshot.

mod rows;
mod write;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
};
use sqlx::{Sqlite, Transaction};
use tokio::sync::{Mutex, MutexGuard};

use crate::{
    AuditQuery, AuditRecord, CommitOutcome, CommitRequest, EntityRecord, EnvDeletion, EnvInfo,
    Result, RevisionRecord, Store, StoreError, TokenRecord, WorkerReport, sql,
};
use rows::{db, param};

/// How long a connection waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections of a file-backed store (readers run in parallel under WAL).
const MAX_CONNECTIONS: u32 = 4;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// The embedded store. Cheap to share behind an `Arc`; every method is one transaction.
#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Held for the whole of every write transaction.
    write_lock: Mutex<()>,
}

impl SqliteStore {
    /// Opens (creating it and its parent directory if missing) the database at `path`,
    /// in WAL mode with foreign keys on, and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Database(format!("create directory {}: {e}", parent.display()))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Database(format!("open {}: {e}", path.display())))?;
        Self::with_pool(pool).await
    }

    /// A private in-memory database, for tests. It lives in a single connection that the
    /// pool never closes, so every query sees the same data; it is gone when the store is
    /// dropped.
    pub async fn open_in_memory() -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(db("open in-memory database"))?
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(db("open in-memory database"))?;
        Self::with_pool(pool).await
    }

    async fn with_pool(pool: SqlitePool) -> Result<SqliteStore> {
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migrate: {e}")))?;
        Ok(SqliteStore {
            pool,
            write_lock: Mutex::new(()),
        })
    }

    /// The underlying pool (for tests, diagnostics and fault injection).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes every connection; the store must not be used afterwards.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a write transaction: the in-process lock, then SQLite's write lock.
    async fn begin_write(&self) -> Result<(MutexGuard<'_, ()>, Transaction<'static, Sqlite>)> {
        let guard = self.write_lock.lock().await;
        let tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db("begin write transaction"))?;
        Ok((guard, tx))
    }

    /// Starts a read transaction: every read in it sees the same snapshot.
    async fn begin_read(&self) -> Result<Transaction<'static, Sqlite>> {
        self.pool
            .begin()
            .await
            .map_err(db("begin read transaction"))
    }
}

/// The current revision of `env`, or [`StoreError::NoSuchEnv`].
async fn env_revision(conn: &mut SqliteConnection, env: &str) -> Result<u64> {
    let revision: Option<i64> = sqlx::query_scalar(sql::ENV_REVISION)
        .bind(env)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("read environment"))?;
    match revision {
        Some(r) => rows::unsigned(r, "revision"),
        None => Err(StoreError::NoSuchEnv(env.to_owned())),
    }
}

async fn finish_read(tx: Transaction<'static, Sqlite>) -> Result<()> {
    tx.commit().await.map_err(db("end read transaction"))
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn create_env(&self, name: &str, actor: &str) -> Result<EnvInfo> {
        write::create_env(self, name, actor).await
    }

    async fn list_envs(&self) -> Result<Vec<EnvInfo>> {
        let rows = sqlx::query(sql::ENV_LIST)
            .fetch_all(&self.pool)
            .await
            .map_err(db("list environments"))?;
        rows::all(&rows, rows::env_info)
    }

    async fn env(&self, name: &str) -> Result<Option<EnvInfo>> {
        let row = sqlx::query(sql::ENV_GET)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("read environment"))?;
        row.as_ref().map(rows::env_info).transpose()
    }

    async fn delete_env(
        &self,
        name: &str,
        actor: &str,
        detail: Option<&str>,
    ) -> Result<EnvDeletion> {
        write::delete_env(self, name, actor, detail).await
    }

    async fn commit(&self, req: CommitRequest) -> Result<CommitOutcome> {
        write::commit(self, req).await
    }

    async fn entities(&self, env: &str, at: Option<u64>) -> Result<Vec<EntityRecord>> {
        let mut tx = self.begin_read().await?;
        env_revision(&mut tx, env).await?;
        let query = match at {
            None => sqlx::query(sql::ENTITIES_LIVE).bind(env),
            Some(at) => sqlx::query(sql::ENTITIES_AT).bind(env).bind(param(at)),
        };
        let rows = query
            .fetch_all(&mut *tx)
            .await
            .map_err(db("list entities"))?;
        finish_read(tx).await?;
        rows::all(&rows, rows::entity)
    }

    async fn changes_since(&self, env: &str, since: u64) -> Result<(u64, Vec<EntityRecord>)> {
        let mut tx = self.begin_read().await?;
        let current = env_revision(&mut tx, env).await?;
        let rows = sqlx::query(sql::ENTITIES_CHANGED_SINCE)
            .bind(env)
            .bind(param(since))
            .fetch_all(&mut *tx)
            .await
            .map_err(db("list changes"))?;
        finish_read(tx).await?;
        Ok((current, rows::all(&rows, rows::entity)?))
    }

    async fn revision(&self, env: &str, revision: u64) -> Result<Option<RevisionRecord>> {
        let mut tx = self.begin_read().await?;
        env_revision(&mut tx, env).await?;
        let row = sqlx::query(sql::REVISION_GET)
            .bind(env)
            .bind(param(revision))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("read revision"))?;
        finish_read(tx).await?;
        row.as_ref().map(rows::revision).transpose()
    }

    async fn revisions(&self, env: &str, limit: u32) -> Result<Vec<RevisionRecord>> {
        let limit = if limit == 0 {
            sql::DEFAULT_LIMIT
        } else {
            i64::from(limit)
        };
        let mut tx = self.begin_read().await?;
        env_revision(&mut tx, env).await?;
        let rows = sqlx::query(sql::REVISION_LIST)
            .bind(env)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("list revisions"))?;
        finish_read(tx).await?;
        rows::all(&rows, rows::revision)
    }

    async fn record_report(&self, report: WorkerReport) -> Result<()> {
        write::record_reports(self, vec![report]).await
    }

    async fn record_reports(&self, reports: Vec<WorkerReport>) -> Result<()> {
        write::record_reports(self, reports).await
    }

    async fn reports_for(&self, env: &str, revision: u64) -> Result<Vec<WorkerReport>> {
        let mut tx = self.begin_read().await?;
        env_revision(&mut tx, env).await?;
        let rows = sqlx::query(sql::REPORTS_FOR)
            .bind(env)
            .bind(param(revision))
            .fetch_all(&mut *tx)
            .await
            .map_err(db("list reports"))?;
        finish_read(tx).await?;
        rows::all(&rows, rows::report)
    }

    async fn latest_reports(&self, env: &str) -> Result<Vec<WorkerReport>> {
        let mut tx = self.begin_read().await?;
        env_revision(&mut tx, env).await?;
        let rows = sqlx::query(sql::REPORTS_LATEST)
            .bind(env)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("list latest reports"))?;
        finish_read(tx).await?;
        rows::all(&rows, rows::report)
    }

    async fn acked_revisions(&self, env: &str) -> Result<Vec<(String, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(sql::REPORTS_ACKED)
            .bind(env)
            .fetch_all(&self.pool)
            .await
            .map_err(db("list acked revisions"))?;
        rows.into_iter()
            .map(|(w, r)| Ok((w, rows::unsigned(r, "revision")?)))
            .collect()
    }

    async fn audit(&self, query: AuditQuery) -> Result<Vec<AuditRecord>> {
        let mut qb = sql::audit_query::<Sqlite>(&query);
        let rows = qb
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(db("query audit"))?;
        rows::all(&rows, rows::audit)
    }

    async fn create_token(&self, token: TokenRecord, created_by: &str) -> Result<()> {
        write::create_token(self, token, created_by).await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(sql::TOKEN_BY_HASH)
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("look up token"))?;
        row.as_ref().map(rows::token).transpose()
    }

    async fn revoke_token(
        &self,
        id: &str,
        revoked_by: &str,
    ) -> Result<Option<(TokenRecord, bool)>> {
        write::revoke_token(self, id, revoked_by).await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query(sql::TOKEN_LIST)
            .fetch_all(&self.pool)
            .await
            .map_err(db("list tokens"))?;
        rows::all(&rows, rows::token)
    }
}
