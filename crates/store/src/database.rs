//! The store over SQL: SQLite (embedded, the default) or PostgreSQL (shared by several
//! Managers), through sqlx's `Any` driver, with the queries of `sql.rs` written once for
//! both. What differs is here: connecting, the schema migrations, how transactions start.
//!
//! Writes are serialized by an in-process async lock (so concurrent requests of one Manager
//! queue fairly), and then by the database: SQLite's `BEGIN IMMEDIATE` takes its write lock
//! before the first read, so a read-check-write can never interleave with another writer —
//! another process on the same file included (it waits up to the busy timeout);
//! PostgreSQL's writes lock the environment's row first (`FOR UPDATE`), so two Managers
//! committing to one environment take turns, and the second sees the first's revision.
//! Reads run concurrently on the pool and see a consistent snapshot (PostgreSQL:
//! `REPEATABLE READ`).

pub mod canary;
mod identity;
mod presence;
mod rows;
mod write;

use std::path::Path;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{Any, Executor, Transaction};
use sqlx::{AnyConnection, AnyPool};
use tokio::sync::{Mutex, MutexGuard};

use crate::{
    AuditQuery, AuditRecord, CommitOutcome, CommitRequest, EntityRecord, EnvDeletion, EnvInfo,
    HistoryRetention, Millis, PruneOutcome, Result, RevisionProgress, RevisionRecord, Store,
    StoreError, TokenRecord, WorkerConnection, WorkerReport, now_millis, sql,
};
use identity::{Witness, WitnessFile};
use rows::{db, param, unavailable};

/// How long a connection waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections of a file-backed SQLite store (readers run in parallel under WAL).
const MAX_CONNECTIONS: u32 = 4;
/// Connections of a PostgreSQL store.
const MAX_PG_CONNECTIONS: u32 = 8;
/// How long a PostgreSQL connection may take to be made.
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Which database a [`SqlStore`] keeps its state in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// How a write transaction starts.
    fn begin_write(self) -> &'static str {
        match self {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN ISOLATION LEVEL READ COMMITTED",
        }
    }

    /// How a read transaction starts: every read in it sees the same snapshot.
    fn begin_read(self) -> &'static str {
        match self {
            Backend::Sqlite => "BEGIN",
            Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        }
    }

    fn of(conn: &AnyConnection) -> Backend {
        if conn.backend_name().eq_ignore_ascii_case("postgresql") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// The Manager's store. Cheap to share behind an `Arc`; every method is one transaction.
#[derive(Debug)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// PostgreSQL: the URL, for the connection that listens for commits.
    url: Option<String>,
    /// Held for the whole of every write transaction.
    write_lock: Mutex<()>,
    /// The store's id (read at open; changed only by [`SqlStore::renew_identity`]).
    identity: RwLock<String>,
    /// The file that notices a restore (file-backed SQLite stores only).
    witness: Option<WitnessFile>,
}

impl SqlStore {
    /// Opens the store a URL names: `postgres://…` (or `postgresql://…`; TLS to the
    /// database with `sslmode=require` or `verify-full`), or `sqlite://PATH` (see
    /// [`SqlStore::open`]).
    pub async fn connect(url: &str) -> Result<SqlStore> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            return Self::open(Path::new(path)).await;
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::Database(format!(
                "unsupported database URL {:?}: give postgres://… or sqlite://PATH",
                redact_url(url)
            )));
        }
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(MAX_PG_CONNECTIONS)
            .acquire_timeout(PG_CONNECT_TIMEOUT)
            .connect(url)
            .await
            .map_err(|e| StoreError::Database(format!("connect to {}: {e}", redact_url(url))))?;
        let mut store = Self::with_pool(pool, Backend::Postgres, None).await?;
        store.url = Some(url.to_string());
        Ok(store)
    }

    /// Opens (creating it and its parent directory if missing) the SQLite database at
    /// `path`, in WAL mode with foreign keys on, and brings its schema up to date. The
    /// database (and its `-wal`/`-shm` files) are made readable by their owner only.
    ///
    /// If the database is behind the witness kept beside it (`PATH.witness`), or is not
    /// the store the witness saw, it was restored from a backup (or replaced): it gets a
    /// new store id before anything reads it, so Workers resynchronise instead of taking
    /// its revisions for the ones they served.
    pub async fn open(path: &Path) -> Result<SqlStore> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Database(format!("create directory {}: {e}", parent.display()))
            })?;
        }
        make_private(path)?;
        let absolute = std::path::absolute(path)
            .map_err(|e| StoreError::Database(format!("open {}: {e}", path.display())))?;
        let url = sqlite_url(&absolute)?;
        let pool = sqlite_pool(MAX_CONNECTIONS, true)
            .connect(&url)
            .await
            .map_err(|e| StoreError::Database(format!("open {}: {e}", path.display())))?;
        let store = Self::with_pool(pool, Backend::Sqlite, Some(WitnessFile::beside(path))).await?;
        store.check_witness().await?;
        Ok(store)
    }

    /// A private in-memory SQLite database, for tests. It lives in a single connection
    /// that the pool never closes, so every query sees the same data; it is gone when the
    /// store is dropped.
    pub async fn open_in_memory() -> Result<SqlStore> {
        let pool = sqlite_pool(1, false)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect("sqlite::memory:")
            .await
            .map_err(db("open in-memory database"))?;
        Self::with_pool(pool, Backend::Sqlite, None).await
    }

    async fn with_pool(
        pool: AnyPool,
        backend: Backend,
        witness: Option<WitnessFile>,
    ) -> Result<SqlStore> {
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        };
        migrator
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migrate: {e}")))?;
        let mut conn = pool
            .acquire()
            .await
            .map_err(db("read the store's identity"))?;
        let id = identity::read_id(&mut conn).await?;
        drop(conn);
        Ok(SqlStore {
            pool,
            backend,
            url: None,
            write_lock: Mutex::new(()),
            identity: RwLock::new(id),
            witness,
        })
    }

    /// Which database this store is in.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Gives the store a new id (audited with `reason`) and returns it. Workers that
    /// followed the old id resynchronise with a full pull. [`SqlStore::open`] does this
    /// by itself when the database was restored; this is for a restore it cannot see (or a
    /// test that stages one).
    pub async fn renew_identity(&self, reason: &str) -> Result<String> {
        write::renew_identity(self, reason).await
    }

    /// Writes a consistent copy of the database to `to` (SQLite's `VACUUM INTO`), while
    /// the store is in use: a backup to restore with [`SqlStore::restore`].
    pub async fn backup_to(&self, to: &Path) -> Result<()> {
        let to = to
            .to_str()
            .ok_or_else(|| StoreError::Database(format!("{} is not UTF-8", to.display())))?;
        sqlx::query("VACUUM INTO $1")
            .bind(to)
            .execute(&mut *self.conn().await?)
            .await
            .map_err(db("back up the database"))?;
        Ok(())
    }

    /// Puts `backup` in the place of the database at `db`, which no process may have open:
    /// its `-wal` and `-shm` files are removed (they belong to the database replaced). The
    /// witness beside it stays: on the next [`SqlStore::open`] it sees the restore and
    /// gives the store a new id.
    pub fn restore(backup: &Path, db: &Path) -> Result<()> {
        let failed = |e: std::io::Error| {
            StoreError::Database(format!(
                "restore {} from {}: {e}",
                db.display(),
                backup.display()
            ))
        };
        for suffix in ["-wal", "-shm"] {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            match std::fs::remove_file(&name) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(failed(e)),
            }
        }
        let bytes = switchyard_config::files::read_regular(backup, u64::MAX).map_err(failed)?;
        switchyard_config::files::replace_private(db, &bytes).map_err(failed)
    }

    /// SQLite's own check of the database file: `["ok"]` when it is sound, else each
    /// problem it found.
    pub async fn integrity_check(&self) -> Result<Vec<String>> {
        sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(&mut *self.conn().await?)
            .await
            .map_err(db("integrity check"))
    }

    /// The witness's path (file-backed stores).
    pub fn witness_path(&self) -> Option<&Path> {
        self.witness.as_ref().map(WitnessFile::path)
    }

    /// At open: a new identity if the database is not where its witness saw it, then the
    /// witness brought up to date.
    async fn check_witness(&self) -> Result<()> {
        let Some(witness) = &self.witness else {
            return Ok(());
        };
        let id = self.store_id();
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(db("read the audit sequence"))?;
        let sequence = identity::audit_sequence(&mut conn).await?;
        drop(conn);
        if let Some(why) = identity::restored(&witness.read(), &id, sequence) {
            let new = self.renew_identity(&why).await?;
            tracing::warn!(old = %id, new = %new, witness = %witness.path().display(), "{why}; the store has a new id, and the Workers that followed the old one will resynchronise");
            return Ok(());
        }
        self.note_progress().await;
        Ok(())
    }

    /// Brings the witness up to date after a write that changed history (called with the
    /// write lock held, so witnesses are written in commit order). A witness that cannot
    /// be written is logged: the commit stands, and the next open still compares.
    async fn note_progress(&self) {
        let Some(witness) = &self.witness else {
            return;
        };
        let sequence = match self.pool.acquire().await {
            Ok(mut conn) => identity::audit_sequence(&mut conn).await,
            Err(e) => Err(db("read the audit sequence")(e)),
        };
        let written = sequence
            .map_err(|e| e.to_string())
            .and_then(|audit_sequence| {
                witness.write(&Witness {
                    store_id: self.store_id(),
                    audit_sequence,
                })
            });
        if let Err(e) = written {
            tracing::warn!(error = %e, "cannot update the store's witness; a restore from a backup may go unnoticed");
        }
    }

    /// The underlying pool (for tests, diagnostics and fault injection).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes every connection; the store must not be used afterwards.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a write transaction: the in-process lock, then the database's (SQLite's
    /// write lock; on PostgreSQL, writes lock the rows they depend on).
    async fn begin_write(&self) -> Result<(MutexGuard<'_, ()>, Transaction<'static, Any>)> {
        let guard = self.write_lock.lock().await;
        let tx = self
            .pool
            .begin_with(self.backend.begin_write())
            .await
            .map_err(unavailable("begin write transaction"))?;
        Ok((guard, tx))
    }

    /// A connection from the pool; failing to get one means the database is unavailable.
    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<Any>> {
        self.pool
            .acquire()
            .await
            .map_err(unavailable("connect to the database"))
    }

    /// Starts a read transaction: every read in it sees the same snapshot.
    async fn begin_read(&self) -> Result<Transaction<'static, Any>> {
        self.pool
            .begin_with(self.backend.begin_read())
            .await
            .map_err(unavailable("begin read transaction"))
    }
}

/// Creates the database file readable by its owner only (SQLite gives its `-wal` and
/// `-shm` files the same mode), and tightens the mode of those that exist.
fn make_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let private =
        |e: std::io::Error| StoreError::Database(format!("make {} private: {e}", path.display()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(private(e)),
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::set_permissions(&name, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(private(e)),
        }
    }
    Ok(())
}

/// The pool of a SQLite store: its pragmas set on every connection.
fn sqlite_pool(max: u32, wal: bool) -> AnyPoolOptions {
    sqlx::any::install_default_drivers();
    AnyPoolOptions::new()
        .max_connections(max)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if wal {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                }
                conn.execute("PRAGMA foreign_keys = ON").await?;
                let busy = format!("PRAGMA busy_timeout = {}", BUSY_TIMEOUT.as_millis());
                conn.execute(sqlx::AssertSqlSafe(busy)).await?;
                Ok(())
            })
        })
}

/// `sqlite://` URL of the database at `path` (absolute), created if missing.
fn sqlite_url(path: &Path) -> Result<String> {
    let text = path
        .to_str()
        .ok_or_else(|| StoreError::Database(format!("{} is not UTF-8", path.display())))?;
    let mut url = String::from("sqlite://");
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                url.push(char::from(b));
            }
            _ => url.push_str(&format!("%{b:02X}")),
        }
    }
    url.push_str("?mode=rwc");
    Ok(url)
}

/// A database URL with its password replaced, for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// Where an environment's history stands: its current revision and the oldest one whose
/// state can still be rebuilt (read together, in the transaction that relies on them).
#[derive(Debug, Clone, Copy)]
struct EnvHistory {
    revision: u64,
    history_from: u64,
}

impl EnvHistory {
    /// [`StoreError::Pruned`] when `revision` of `env` is older than the retained history.
    fn check_retained(self, env: &str, revision: u64) -> Result<()> {
        if revision < self.history_from {
            return Err(StoreError::Pruned {
                env: env.to_owned(),
                revision,
                history_from: self.history_from,
            });
        }
        Ok(())
    }
}

/// The current revision of `env`, or [`StoreError::NoSuchEnv`].
async fn env_revision(conn: &mut AnyConnection, env: &str) -> Result<u64> {
    Ok(env_history(conn, env, sql::ENV_HISTORY).await?.revision)
}

/// [`env_history`] in a write transaction: on PostgreSQL the environment's row stays
/// locked until the transaction ends, so writers to one environment take turns, across
/// Managers (SQLite's write transaction holds the whole database already).
async fn env_history_locked(conn: &mut AnyConnection, env: &str) -> Result<EnvHistory> {
    let query = match Backend::of(conn) {
        Backend::Sqlite => sql::ENV_HISTORY,
        Backend::Postgres => sql::ENV_HISTORY_LOCKED,
    };
    env_history(conn, env, query).await
}

/// [`env_revision`], the environment's row locked (see [`env_history_locked`]).
async fn env_revision_locked(conn: &mut AnyConnection, env: &str) -> Result<u64> {
    Ok(env_history_locked(conn, env).await?.revision)
}

async fn env_history(
    conn: &mut AnyConnection,
    env: &str,
    query: &'static str,
) -> Result<EnvHistory> {
    let row: Option<(i64, i64)> = sqlx::query_as(query)
        .bind(env)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("read environment"))?;
    match row {
        Some((revision, history_from)) => Ok(EnvHistory {
            revision: rows::unsigned(revision, "revision")?,
            history_from: rows::unsigned(history_from, "history_from")?,
        }),
        None => Err(StoreError::NoSuchEnv(env.to_owned())),
    }
}

async fn finish_read(tx: Transaction<'static, Any>) -> Result<()> {
    tx.commit().await.map_err(db("end read transaction"))
}

#[async_trait::async_trait]
impl Store for SqlStore {
    fn store_id(&self) -> String {
        self.identity
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&mut *self.conn().await?)
            .await
            .map_err(unavailable("ping the database"))?;
        Ok(())
    }

    async fn commit_notices(
        &self,
    ) -> Result<Option<tokio::sync::mpsc::Receiver<crate::CommitNotice>>> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let mut listener = sqlx::postgres::PgListener::connect(url)
            .await
            .map_err(unavailable("listen for commits"))?;
        listener
            .listen(sql::COMMIT_CHANNEL)
            .await
            .map_err(unavailable("listen for commits"))?;
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                // `recv` reconnects by itself after a lost connection (notices sent
                // meanwhile are missed: the caller's polling finds those revisions).
                match listener.recv().await {
                    Ok(n) => {
                        let Some(notice) = crate::CommitNotice::parse(n.payload()) else {
                            continue;
                        };
                        if tx.send(notice).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "listening for commits: retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(Some(rx))
    }

    async fn create_env(&self, name: &str, actor: &str) -> Result<EnvInfo> {
        write::create_env(self, name, actor).await
    }

    async fn list_envs(&self) -> Result<Vec<EnvInfo>> {
        let rows = sqlx::query(sql::ENV_LIST)
            .fetch_all(&mut *self.conn().await?)
            .await
            .map_err(db("list environments"))?;
        rows::all(&rows, rows::env_info)
    }

    async fn env(&self, name: &str) -> Result<Option<EnvInfo>> {
        let row = sqlx::query(sql::ENV_GET)
            .bind(name)
            .fetch_optional(&mut *self.conn().await?)
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
        let history = env_history(&mut tx, env, sql::ENV_HISTORY).await?;
        let query = match at {
            None => sqlx::query(sql::ENTITIES_LIVE).bind(env),
            Some(at) => {
                // Revision 0 is the empty environment: always known.
                if at != 0 {
                    history.check_retained(env, at)?;
                }
                sqlx::query(sql::ENTITIES_AT).bind(env).bind(param(at))
            }
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
        let history = env_history(&mut tx, env, sql::ENV_HISTORY).await?;
        // Since 0 is everything there is; since a pruned revision, the tombstones of what
        // was deleted after it may be gone.
        if since != 0 {
            history.check_retained(env, since)?;
        }
        let current = history.revision;
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
        env_history(&mut tx, env, sql::ENV_HISTORY)
            .await?
            .check_retained(env, revision)?;
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

    async fn prune_history(
        &self,
        env: &str,
        retention: &HistoryRetention,
        actor: &str,
    ) -> Result<Option<PruneOutcome>> {
        write::prune_history(self, env, retention, actor).await
    }

    async fn prune_audit(&self, before: Millis, actor: &str) -> Result<u64> {
        write::prune_audit(self, before, actor).await
    }

    async fn record_report(&self, report: WorkerReport) -> Result<Vec<RevisionProgress>> {
        write::record_reports(self, vec![report]).await
    }

    async fn record_reports(&self, reports: Vec<WorkerReport>) -> Result<Vec<RevisionProgress>> {
        write::record_reports(self, reports).await
    }

    async fn save_rollout(&self, env: &str, status: &str) -> Result<()> {
        presence::save_rollout(self, env, status).await
    }

    async fn canary(&self, env: &str) -> Result<Option<crate::CanaryRecord>> {
        canary::latest(self, env).await
    }

    async fn canary_step(
        &self,
        env: &str,
        revision: u64,
        from: u32,
        to: u32,
        actor: &str,
        detail: &str,
    ) -> Result<bool> {
        canary::step(self, (env, revision), from, to, actor, detail).await
    }

    async fn promote_canary(
        &self,
        env: &str,
        revision: u64,
        actor: &str,
        detail: &str,
    ) -> Result<bool> {
        canary::promote(self, (env, revision), actor, detail).await
    }

    async fn rollout(&self, env: &str) -> Result<Option<(String, Millis)>> {
        sqlx::query_as(sql::ROLLOUT_GET)
            .bind(env)
            .fetch_optional(&mut *self.conn().await?)
            .await
            .map_err(db("read the rollout"))
    }

    async fn worker_connected(&self, connection: WorkerConnection) -> Result<()> {
        presence::worker_connected(self, connection).await
    }

    async fn worker_disconnected(
        &self,
        env: &str,
        worker_id: &str,
        manager: &str,
        session: &str,
    ) -> Result<()> {
        presence::worker_disconnected(self, [env, worker_id, manager, session]).await
    }

    async fn refresh_connections(&self, manager: &str, held: Vec<WorkerConnection>) -> Result<()> {
        presence::refresh_connections(self, manager, held).await
    }

    async fn connections(&self, env: &str) -> Result<Vec<WorkerConnection>> {
        let rows = sqlx::query(sql::CONNECTIONS_LIVE)
            .bind(env)
            .bind(now_millis() - crate::PRESENCE_TTL_MS)
            .fetch_all(&mut *self.conn().await?)
            .await
            .map_err(db("list worker connections"))?;
        let mut out = rows::all(&rows, rows::connection)?;
        // One per Worker: its latest stream (rows come latest first per Worker).
        out.dedup_by(|later, first| later.worker_id == first.worker_id);
        Ok(out)
    }

    async fn expected_workers(&self, env: &str, revision: u64) -> Result<Option<Vec<String>>> {
        let mut tx = self.begin_read().await?;
        let rev = rows::stored(revision, "revision")?;
        let known: Option<(i64, Option<i64>, Option<i64>)> = sqlx::query_as(sql::REVISION_EXPECTED)
            .bind(env)
            .bind(rev)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("read the expected Workers"))?;
        if known.and_then(|(_, expected, _)| expected).is_none() {
            finish_read(tx).await?;
            return Ok(None);
        }
        let ids: Vec<String> = sqlx::query_scalar(sql::REVISION_WORKERS)
            .bind(env)
            .bind(rev)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("read the expected Workers"))?;
        finish_read(tx).await?;
        Ok(Some(ids))
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
            .fetch_all(&mut *self.conn().await?)
            .await
            .map_err(db("list acked revisions"))?;
        rows.into_iter()
            .map(|(w, r)| Ok((w, rows::unsigned(r, "revision")?)))
            .collect()
    }

    async fn audit(&self, query: AuditQuery) -> Result<Vec<AuditRecord>> {
        let (text, params) = sql::audit_query(&query);
        let mut q = sqlx::query(sqlx::AssertSqlSafe(text));
        for p in params {
            q = match p {
                sql::Param::Text(t) => q.bind(t),
                sql::Param::Int(i) => q.bind(i),
            };
        }
        let rows = q
            .fetch_all(&mut *self.conn().await?)
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
            .fetch_optional(&mut *self.conn().await?)
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

    async fn record_event(&self, event: crate::AuditEvent) -> Result<()> {
        write::record_event(self, event).await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query(sql::TOKEN_LIST)
            .fetch_all(&mut *self.conn().await?)
            .await
            .map_err(db("list tokens"))?;
        rows::all(&rows, rows::token)
    }
}
