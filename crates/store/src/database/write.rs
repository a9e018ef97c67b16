//! The write transactions of the store: commits, environments, reports, tokens, pruning.

use std::collections::HashSet;

use sqlx::AnyConnection;
use sqlx::{Any, Transaction};

use switchyard_api::records::audit_subject;
use switchyard_config::Kind;

use super::identity;
use super::rows::{self, audit_failed, db, stored};
use super::{SqlStore, env_history_locked, env_revision_locked};
use crate::{
    AppliedChange, Change, CommitOutcome, CommitRequest, EnvDeletion, EnvInfo, HistoryRetention,
    Millis, Operation, PruneOutcome, ReportStatus, Result, RevisionProgress, StoreError,
    TokenRecord, WorkerReport, now_millis, sql,
};

/// One audit record about to be written.
pub(super) struct AuditEntry<'a> {
    pub(super) at: i64,
    pub(super) actor: &'a str,
    pub(super) env: Option<&'a str>,
    pub(super) entity_kind: &'a str,
    pub(super) entity_name: &'a str,
    pub(super) old_version: Option<u64>,
    pub(super) new_version: Option<u64>,
    pub(super) digest: Option<&'a str>,
    pub(super) operation: Operation,
    pub(super) revision: Option<u64>,
    pub(super) detail: Option<&'a str>,
}

/// Writes one audit record; any failure is [`StoreError::AuditFailed`].
pub(super) async fn insert_audit(conn: &mut AnyConnection, e: AuditEntry<'_>) -> Result<()> {
    let version = |v: Option<u64>| v.map(|v| stored(v, "version")).transpose();
    sqlx::query(sql::AUDIT_INSERT)
        .bind(e.at)
        .bind(e.actor)
        .bind(e.env)
        .bind(e.entity_kind)
        .bind(e.entity_name)
        .bind(version(e.old_version)?)
        .bind(version(e.new_version)?)
        .bind(e.digest)
        .bind(e.operation.as_str())
        .bind(e.revision.map(|r| stored(r, "revision")).transpose()?)
        .bind(e.detail)
        .execute(conn)
        .await
        .map_err(audit_failed)?;
    Ok(())
}

/// Ends a write transaction: commits it when `result` is `Ok` and `keep` says it wrote
/// something, rolls it back otherwise (returning the original error, not the rollback's).
pub(super) async fn finish<T>(
    tx: Transaction<'static, Any>,
    result: Result<T>,
    keep: impl FnOnce(&T) -> bool,
    op: &'static str,
) -> Result<T> {
    match result {
        Ok(value) if keep(&value) => tx.commit().await.map(|()| value).map_err(db(op)),
        Ok(value) => tx.rollback().await.map(|()| value).map_err(db(op)),
        Err(e) => {
            // If the rollback fails too, the connection discards the transaction when it is
            // next used or closed; the caller needs the first error.
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// One entity write planned by a commit.
struct Planned<'a> {
    kind: Kind,
    name: &'a str,
    /// The version this write creates (a tombstone gets a version of its own, so a
    /// re-creation continues after it).
    version: u64,
    /// The version shown as "old" (`None` when the entity did not exist or was deleted).
    old_version: Option<u64>,
    deleted: bool,
    digest: &'a str,
    manifest: &'a str,
    labels: String,
    template: Option<&'a str>,
    template_digest: Option<&'a str>,
}

/// What is stored for one entity.
struct Stored {
    version: u64,
    deleted: bool,
    digest: String,
    template_digest: Option<String>,
}

fn change_key(change: &Change) -> (Kind, &str) {
    match change {
        Change::Upsert { kind, name, .. } | Change::Delete { kind, name } => (*kind, name),
    }
}

fn next_version(v: u64) -> Result<u64> {
    v.checked_add(1)
        .ok_or_else(|| StoreError::Database("version overflow".into()))
}

/// The write `change` needs given what is stored, or `None` when it changes nothing.
fn plan<'a>(change: &'a Change, current: Option<&Stored>) -> Result<Option<Planned<'a>>> {
    Ok(match (change, current) {
        (
            Change::Upsert {
                digest,
                template_digest,
                ..
            },
            Some(s),
        ) if !s.deleted && s.digest == *digest && s.template_digest == *template_digest => None,
        (
            Change::Upsert {
                kind,
                name,
                digest,
                manifest,
                labels,
                template,
                template_digest,
            },
            current,
        ) => {
            let (version, old_version) = match current {
                None => (1, None),
                Some(s) if s.deleted => (next_version(s.version)?, None),
                Some(s) => (next_version(s.version)?, Some(s.version)),
            };
            Some(Planned {
                kind: *kind,
                name,
                version,
                old_version,
                deleted: false,
                digest,
                manifest,
                labels: rows::to_json(labels, "labels")?,
                template: template.as_deref(),
                template_digest: template_digest.as_deref(),
            })
        }
        (Change::Delete { .. }, None) => None,
        (Change::Delete { .. }, Some(s)) if s.deleted => None,
        (Change::Delete { kind, name }, Some(s)) => Some(Planned {
            kind: *kind,
            name,
            version: next_version(s.version)?,
            old_version: Some(s.version),
            deleted: true,
            digest: "",
            manifest: "",
            labels: "{}".to_owned(),
            template: None,
            template_digest: None,
        }),
    })
}

async fn stored_entity(
    conn: &mut AnyConnection,
    env: &str,
    kind: Kind,
    name: &str,
) -> Result<Option<Stored>> {
    let row: Option<(i64, i64, String, Option<String>)> = sqlx::query_as(sql::ENTITY_STATE)
        .bind(env)
        .bind(kind.as_str())
        .bind(name)
        .fetch_optional(conn)
        .await
        .map_err(db("commit: read entity"))?;
    row.map(|(version, deleted, digest, template_digest)| {
        Ok(Stored {
            version: rows::unsigned(version, "version")?,
            deleted: deleted != 0,
            digest,
            template_digest,
        })
    })
    .transpose()
}

async fn write_entity(
    conn: &mut AnyConnection,
    env: &str,
    revision: i64,
    p: &Planned<'_>,
) -> Result<()> {
    let version = stored(p.version, "version")?;
    for (statement, what) in [
        (sql::ENTITY_UPSERT, "commit: write entity"),
        (sql::HISTORY_INSERT, "commit: write entity history"),
    ] {
        sqlx::query(statement)
            .bind(env)
            .bind(p.kind.as_str())
            .bind(p.name)
            .bind(version)
            .bind(revision)
            .bind(i64::from(p.deleted))
            .bind(p.digest)
            .bind(p.manifest)
            .bind(p.labels.as_str())
            .bind(p.template)
            .bind(p.template_digest)
            .execute(&mut *conn)
            .await
            .map_err(db(what))?;
    }
    Ok(())
}

/// Refuses a batch that names one entity twice.
fn check_no_duplicates(changes: &[Change]) -> Result<()> {
    let mut seen = HashSet::new();
    for change in changes {
        let (kind, name) = change_key(change);
        if !seen.insert((kind, name)) {
            return Err(StoreError::Database(format!(
                "duplicate entity in batch: {kind}/{name}"
            )));
        }
    }
    Ok(())
}

pub(super) async fn commit(store: &SqlStore, req: CommitRequest) -> Result<CommitOutcome> {
    check_no_duplicates(&req.changes)?;
    let (_guard, mut tx) = store.begin_write().await?;
    let result = commit_in(&mut tx, req).await;
    // A commit that changed nothing is rolled back: no writes at all.
    let out = finish(tx, result, |out| !out.changes.is_empty(), "commit").await?;
    if !out.changes.is_empty() {
        store.note_progress().await;
    }
    Ok(out)
}

async fn commit_in(conn: &mut AnyConnection, req: CommitRequest) -> Result<CommitOutcome> {
    let previous = env_revision_locked(conn, &req.env).await?;
    if let Some(expected) = req.expected_revision
        && expected != previous
    {
        return Err(StoreError::Conflict {
            env: req.env,
            expected,
            actual: previous,
        });
    }
    super::canary::check(conn, &req.env, &req.canary).await?;

    let mut planned = Vec::new();
    for change in &req.changes {
        let (kind, name) = change_key(change);
        let current = stored_entity(conn, &req.env, kind, name).await?;
        if let Some(p) = plan(change, current.as_ref())? {
            planned.push(p);
        }
    }

    let committed_at = now_millis();
    if planned.is_empty() {
        return Ok(CommitOutcome {
            env: req.env,
            revision: previous,
            previous_revision: previous,
            committed_at,
            changes: Vec::new(),
        });
    }

    let revision = previous
        .checked_add(1)
        .ok_or_else(|| StoreError::Database("revision overflow".into()))?;
    let revision_param = stored(revision, "revision")?;
    let mut changes = Vec::with_capacity(planned.len());
    for p in &planned {
        write_entity(conn, &req.env, revision_param, p).await?;
        let change = AppliedChange {
            kind: p.kind,
            name: p.name.to_owned(),
            old_version: p.old_version,
            new_version: (!p.deleted).then_some(p.version),
            digest: p.digest.to_owned(),
        };
        insert_audit(
            conn,
            AuditEntry {
                at: committed_at,
                actor: &req.actor,
                env: Some(&req.env),
                entity_kind: p.kind.as_str(),
                entity_name: p.name,
                old_version: change.old_version,
                new_version: change.new_version,
                digest: Some(p.digest),
                operation: req.operation,
                revision: Some(revision),
                detail: req.detail.as_deref(),
            },
        )
        .await?;
        changes.push(change);
    }

    // Who is expected to pick it up: the Workers connected, to any Manager, right now.
    let expected = sqlx::query(sql::REVISION_WORKERS_INSERT)
        .bind(req.env.as_str())
        .bind(revision_param)
        .bind(committed_at - crate::PRESENCE_TTL_MS)
        .execute(&mut *conn)
        .await
        .map_err(db("commit: write the expected Workers"))?
        .rows_affected();
    sqlx::query(sql::REVISION_INSERT)
        .bind(req.env.as_str())
        .bind(revision_param)
        .bind(committed_at)
        .bind(req.actor.as_str())
        .bind(req.operation.as_str())
        .bind(rows::to_json(&changes, "revision changes")?)
        .bind(stored(expected, "expected workers")?)
        .execute(&mut *conn)
        .await
        .map_err(db("commit: write revision"))?;
    let updated = sqlx::query(sql::ENV_SET_REVISION)
        .bind(req.env.as_str())
        .bind(revision_param)
        .bind(stored(previous, "revision")?)
        .execute(&mut *conn)
        .await
        .map_err(db("commit: update environment revision"))?;
    if updated.rows_affected() != 1 {
        return Err(StoreError::Database(
            "commit: environment revision changed during the transaction".into(),
        ));
    }
    super::canary::record(conn, &req.env, &req.actor, previous, revision, &req.canary).await?;
    // PostgreSQL: the other Managers on the database hear of it when (and only if) this
    // transaction commits.
    if super::Backend::of(conn) == super::Backend::Postgres {
        sqlx::query(sql::NOTIFY_COMMIT)
            .bind(crate::CommitNotice::payload(&req.env, revision))
            .execute(&mut *conn)
            .await
            .map_err(db("commit: notify the other Managers"))?;
    }
    Ok(CommitOutcome {
        env: req.env,
        revision,
        previous_revision: previous,
        committed_at,
        changes,
    })
}

pub(super) async fn create_env(store: &SqlStore, name: &str, actor: &str) -> Result<EnvInfo> {
    let (_guard, mut tx) = store.begin_write().await?;
    let result = create_env_in(&mut tx, name, actor).await;
    let info = finish(tx, result, |_| true, "create environment: commit").await?;
    store.note_progress().await;
    Ok(info)
}

/// Gives the store a new random id, with an audit record saying why; the witness follows.
pub(super) async fn renew_identity(store: &SqlStore, reason: &str) -> Result<String> {
    let (_guard, mut tx) = store.begin_write().await?;
    let result = renew_identity_in(&mut tx, reason).await;
    let id = finish(tx, result, |_| true, "renew the store's identity: commit").await?;
    *store
        .identity
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = id.clone();
    store.note_progress().await;
    Ok(id)
}

async fn renew_identity_in(conn: &mut AnyConnection, reason: &str) -> Result<String> {
    let old = identity::read_id(conn).await?;
    let id = identity::new_id()?;
    let at = now_millis();
    sqlx::query(sql::IDENTITY_SET)
        .bind(id.as_str())
        .bind(at)
        .execute(&mut *conn)
        .await
        .map_err(db("renew the store's identity"))?;
    let detail = format!("was {old}: {reason}");
    insert_audit(
        conn,
        AuditEntry {
            at,
            actor: "manager",
            env: None,
            entity_kind: audit_subject::STORE,
            entity_name: &id,
            old_version: None,
            new_version: None,
            digest: None,
            operation: Operation::RenewStoreId,
            revision: None,
            detail: Some(&detail),
        },
    )
    .await?;
    Ok(id)
}

async fn create_env_in(conn: &mut AnyConnection, name: &str, actor: &str) -> Result<EnvInfo> {
    match env_revision_locked(conn, name).await {
        Ok(_) => return Err(StoreError::EnvExists(name.to_owned())),
        Err(StoreError::NoSuchEnv(_)) => {}
        Err(e) => return Err(e),
    }
    let created_at = now_millis();
    let inserted = sqlx::query(sql::ENV_INSERT)
        .bind(name)
        .bind(created_at)
        .execute(&mut *conn)
        .await;
    match inserted {
        Ok(_) => {}
        // Created meanwhile by another Manager on the same database.
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(StoreError::EnvExists(name.to_owned()));
        }
        Err(e) => return Err(db("create environment")(e)),
    }
    env_audit(
        conn,
        (name, 0),
        actor,
        Operation::CreateEnv,
        created_at,
        None,
    )
    .await?;
    Ok(EnvInfo {
        name: name.to_owned(),
        revision: 0,
        created_at,
        history_from: 0,
    })
}

/// Audits `operation` on environment `name` (at `revision`) by `actor`, at `at`.
async fn env_audit(
    conn: &mut AnyConnection,
    (name, revision): (&str, u64),
    actor: &str,
    operation: Operation,
    at: i64,
    detail: Option<&str>,
) -> Result<()> {
    insert_audit(
        conn,
        AuditEntry {
            at,
            actor,
            env: Some(name),
            entity_kind: Kind::Environment.as_str(),
            entity_name: name,
            old_version: None,
            new_version: None,
            digest: None,
            operation,
            revision: Some(revision),
            detail,
        },
    )
    .await
}

pub(super) async fn record_reports(
    store: &SqlStore,
    reports: Vec<WorkerReport>,
) -> Result<Vec<RevisionProgress>> {
    let (_guard, mut tx) = store.begin_write().await?;
    let result = record_reports_in(&mut tx, reports).await;
    finish(tx, result, |_| true, "record reports: commit").await
}

async fn record_reports_in(
    conn: &mut AnyConnection,
    reports: Vec<WorkerReport>,
) -> Result<Vec<RevisionProgress>> {
    let mut acked: Vec<(String, u64)> = reports
        .iter()
        .filter(|r| r.status == ReportStatus::Ack)
        .map(|r| (r.env.clone(), r.revision))
        .collect();
    acked.sort();
    acked.dedup();
    for report in reports {
        record_report_in(conn, report).await?;
    }
    let mut progress = Vec::with_capacity(acked.len());
    for (env, revision) in acked {
        if let Some(p) = revision_progress(conn, env, revision).await? {
            progress.push(p);
        }
    }
    Ok(progress)
}

/// How many of the Workers expected for `revision` have ACKed it; marks it completed when
/// all have. Runs in the report's transaction, after the environment's row was locked
/// (`record_report_in`), so two Managers never both complete one revision.
async fn revision_progress(
    conn: &mut AnyConnection,
    env: String,
    revision: u64,
) -> Result<Option<RevisionProgress>> {
    let rev = stored(revision, "revision")?;
    let row: Option<(i64, Option<i64>, Option<i64>)> = sqlx::query_as(sql::REVISION_EXPECTED)
        .bind(env.as_str())
        .bind(rev)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("record reports: read the expected Workers"))?;
    let Some((committed_at, Some(expected), completed_at)) = row else {
        return Ok(None);
    };
    if expected <= 0 {
        return Ok(None);
    }
    let (done, last_swap): (i64, Option<i64>) = sqlx::query_as(sql::REVISION_ACKED)
        .bind(env.as_str())
        .bind(rev)
        .fetch_one(&mut *conn)
        .await
        .map_err(db("record reports: count the ACKs"))?;
    let mut completed_now = false;
    if done >= expected && completed_at.is_none() {
        completed_now = sqlx::query(sql::REVISION_COMPLETE)
            .bind(env.as_str())
            .bind(rev)
            .bind(now_millis())
            .execute(&mut *conn)
            .await
            .map_err(db("record reports: mark the revision complete"))?
            .rows_affected()
            == 1;
    }
    Ok(Some(RevisionProgress {
        env,
        revision,
        expected: rows::unsigned(expected, "expected workers")?,
        done: rows::unsigned(done, "acked workers")?,
        committed_at,
        last_swap: last_swap.unwrap_or(committed_at),
        completed_now,
    }))
}

async fn record_report_in(conn: &mut AnyConnection, report: WorkerReport) -> Result<()> {
    env_revision_locked(conn, &report.env).await?;
    let revision = stored(report.revision, "revision")?;
    let caught_up_to = report
        .caught_up_to
        .map(|r| stored(r, "caught_up_to"))
        .transpose()?;
    sqlx::query(sql::REPORT_UPSERT)
        .bind(report.env.as_str())
        .bind(report.worker_id.as_str())
        .bind(revision)
        .bind(rows::status_str(report.status))
        .bind(report.error.as_deref())
        .bind(report.applied_at)
        .bind(report.received_at)
        .bind(report.address.as_deref())
        .bind(report.detail.as_deref())
        .bind(caught_up_to)
        .bind(report.pulled_at)
        .execute(&mut *conn)
        .await
        .map_err(db("record report"))?;
    let mut detail = match (report.status, &report.error) {
        (ReportStatus::Ack, _) => "ack".to_owned(),
        (ReportStatus::Nack, Some(error)) => format!("nack: {error}"),
        (ReportStatus::Nack, None) => "nack".to_owned(),
    };
    // How the Worker came to serve it: caught up through a later revision, and what else
    // it said (a resynchronisation).
    let caught_up = report
        .caught_up_to
        .map(|to| format!("caught up: applied with revision {to}"));
    let how: Vec<&str> = caught_up
        .iter()
        .chain(&report.detail)
        .map(String::as_str)
        .collect();
    if !how.is_empty() {
        detail.push_str(" (");
        detail.push_str(&how.join("; "));
        detail.push(')');
    }
    insert_audit(
        conn,
        AuditEntry {
            at: now_millis(),
            actor: &format!("worker:{}", report.worker_id),
            env: Some(&report.env),
            entity_kind: audit_subject::WORKER,
            entity_name: &report.worker_id,
            old_version: None,
            new_version: None,
            digest: None,
            operation: Operation::Report,
            revision: Some(report.revision),
            detail: Some(&detail),
        },
    )
    .await?;
    Ok(())
}

pub(super) async fn create_token(
    store: &SqlStore,
    token: TokenRecord,
    created_by: &str,
) -> Result<()> {
    let (_guard, mut tx) = store.begin_write().await?;
    let result = create_token_in(&mut tx, token, created_by).await;
    finish(tx, result, |_| true, "create token: commit").await
}

async fn create_token_in(
    conn: &mut AnyConnection,
    token: TokenRecord,
    created_by: &str,
) -> Result<()> {
    let envs = rows::to_json(&token.envs, "token envs")?;
    sqlx::query(sql::TOKEN_INSERT)
        .bind(token.id.as_str())
        .bind(token.name.as_str())
        .bind(token.hash.as_str())
        .bind(token.role.as_str())
        .bind(envs.as_str())
        .bind(token.created_at)
        .bind(i64::from(token.revoked))
        .bind(token.revoked_at)
        .bind(token.expires_at)
        .execute(&mut *conn)
        .await
        .map_err(db("create token"))?;
    token_audit(
        conn,
        &token,
        created_by,
        Operation::CreateToken,
        now_millis(),
    )
    .await
}

/// Audits `operation` on `token` by `actor`. The secret's hash is never audited: the record
/// names the token by its public id.
async fn token_audit(
    conn: &mut AnyConnection,
    token: &TokenRecord,
    actor: &str,
    operation: Operation,
    at: i64,
) -> Result<()> {
    let detail = format!("{} token {:?}", token.role.as_str(), token.name);
    insert_audit(
        conn,
        AuditEntry {
            at,
            actor,
            env: None,
            entity_kind: audit_subject::TOKEN,
            entity_name: &token.id,
            old_version: None,
            new_version: None,
            digest: None,
            operation,
            revision: None,
            detail: Some(&detail),
        },
    )
    .await
}

pub(super) async fn revoke_token(
    store: &SqlStore,
    id: &str,
    revoked_by: &str,
) -> Result<Option<(TokenRecord, bool)>> {
    let (_guard, mut tx) = store.begin_write().await?;
    let result = revoke_token_in(&mut tx, id, revoked_by).await;
    finish(
        tx,
        result,
        |r| matches!(r, Some((_, true))),
        "revoke token: commit",
    )
    .await
}

async fn revoke_token_in(
    conn: &mut AnyConnection,
    id: &str,
    revoked_by: &str,
) -> Result<Option<(TokenRecord, bool)>> {
    let at = now_millis();
    let updated = sqlx::query(sql::TOKEN_REVOKE)
        .bind(id)
        .bind(at)
        .execute(&mut *conn)
        .await
        .map_err(db("revoke token"))?;
    let row = sqlx::query(sql::TOKEN_BY_ID)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("revoke token: read back"))?;
    let Some(token) = row.as_ref().map(rows::token).transpose()? else {
        return Ok(None);
    };
    let revoked_now = updated.rows_affected() == 1;
    if revoked_now {
        token_audit(conn, &token, revoked_by, Operation::RevokeToken, at).await?;
    }
    Ok(Some((token, revoked_now)))
}

pub(super) async fn delete_env(
    store: &SqlStore,
    name: &str,
    actor: &str,
    detail: Option<&str>,
) -> Result<EnvDeletion> {
    let (_guard, mut tx) = store.begin_write().await?;
    let result = delete_env_in(&mut tx, name, actor, detail).await;
    finish(tx, result, |_| true, "delete environment: commit").await
}

async fn delete_env_in(
    conn: &mut AnyConnection,
    name: &str,
    actor: &str,
    detail: Option<&str>,
) -> Result<EnvDeletion> {
    let revision = env_revision_locked(conn, name).await?;
    let entities = count(
        conn,
        sql::ENV_COUNT_LIVE,
        name,
        "delete environment: entities",
    )
    .await?;
    let revisions = count(
        conn,
        sql::ENV_COUNT_REVISIONS,
        name,
        "delete environment: revisions",
    )
    .await?;
    for (statement, what) in sql::ENV_DELETE {
        sqlx::query(statement)
            .bind(name)
            .execute(&mut *conn)
            .await
            .map_err(db(what))?;
    }
    let at = now_millis();
    env_audit(
        conn,
        (name, revision),
        actor,
        Operation::DeleteEnv,
        at,
        detail,
    )
    .await?;
    Ok(EnvDeletion {
        revision,
        entities,
        revisions,
    })
}

/// `SELECT COUNT(*) … WHERE env = $1`.
async fn count(
    conn: &mut AnyConnection,
    query: &'static str,
    env: &str,
    what: &'static str,
) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(query)
        .bind(env)
        .fetch_one(conn)
        .await
        .map_err(db(what))?;
    rows::unsigned(n, what)
}

/// An audit record of something that is not an entity write (a rollout step).
pub(super) async fn record_event(store: &SqlStore, event: crate::AuditEvent) -> Result<()> {
    let (_guard, mut tx) = store.begin_write().await?;
    let result = insert_audit(
        &mut tx,
        AuditEntry {
            at: now_millis(),
            actor: &event.actor,
            env: Some(&event.env),
            entity_kind: &event.subject_kind,
            entity_name: &event.subject_name,
            old_version: None,
            new_version: None,
            digest: None,
            operation: event.operation,
            revision: event.revision,
            detail: Some(&event.detail),
        },
    )
    .await;
    finish(tx, result, |()| true, "audit event: commit").await
}

pub(super) async fn prune_history(
    store: &SqlStore,
    env: &str,
    retention: &HistoryRetention,
    actor: &str,
) -> Result<Option<PruneOutcome>> {
    let (_guard, mut tx) = store.begin_write().await?;
    let result = prune_history_in(&mut tx, env, retention, actor, now_millis()).await;
    // Nothing to prune: rolled back, nothing written (not even an audit record).
    let out = finish(tx, result, Option::is_some, "prune history: commit").await?;
    if out.is_some() {
        store.note_progress().await;
    }
    Ok(out)
}

/// The oldest revision `retention` keeps of an environment at `current`, at `now`: the
/// lowest that any limit keeps, and never past the current revision.
async fn oldest_kept(
    conn: &mut AnyConnection,
    env: &str,
    current: u64,
    retention: &HistoryRetention,
    now: Millis,
) -> Result<u64> {
    let mut keep_from = current;
    if let Some(n) = retention.revisions {
        keep_from = keep_from.min(current.saturating_sub(n.get() - 1));
    }
    if let Some(age) = retention.max_age {
        let age = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        let young: Option<i64> = sqlx::query_scalar(sql::REVISION_OLDEST_SINCE)
            .bind(env)
            .bind(now.saturating_sub(age))
            .fetch_one(&mut *conn)
            .await
            .map_err(db("prune history: read revision times"))?;
        // None younger: only the current revision is kept.
        if let Some(young) = young {
            keep_from = keep_from.min(rows::unsigned(young, "revision")?);
        }
    }
    Ok(keep_from)
}

async fn prune_history_in(
    conn: &mut AnyConnection,
    env: &str,
    retention: &HistoryRetention,
    actor: &str,
    now: Millis,
) -> Result<Option<PruneOutcome>> {
    // Locked: commits and other Managers' prunings of this environment wait for this one
    // (and then see its `history_from`).
    let history = env_history_locked(conn, env).await?;
    if retention.keeps_everything() {
        return Ok(None);
    }
    let keep_from = oldest_kept(conn, env, history.revision, retention, now).await?;
    if keep_from <= history.history_from {
        return Ok(None);
    }
    let cutoff = stored(keep_from, "revision")?;
    let mut deleted = [0u64; sql::HISTORY_PRUNE.len()];
    for (n, (statement, what)) in sql::HISTORY_PRUNE.into_iter().enumerate() {
        deleted[n] = sqlx::query(statement)
            .bind(env)
            .bind(cutoff)
            .execute(&mut *conn)
            .await
            .map_err(db(what))?
            .rows_affected();
    }
    let [
        revisions,
        _expected,
        superseded,
        tombstones_history,
        tombstones,
        reports,
    ] = deleted;
    sqlx::query(sql::ENV_SET_HISTORY_FROM)
        .bind(env)
        .bind(cutoff)
        .execute(&mut *conn)
        .await
        .map_err(db("prune history: record where history starts"))?;
    let out = PruneOutcome {
        env: env.to_owned(),
        history_from: keep_from,
        previous_history_from: history.history_from,
        revisions,
        entity_versions: superseded + tombstones_history,
        tombstones,
        reports,
    };
    let detail = format!(
        "history before revision {keep_from} pruned (it started at revision {}): {} \
         revisions, {} entity versions, {} deleted entities, {} Worker reports removed",
        out.previous_history_from, out.revisions, out.entity_versions, out.tombstones, out.reports
    );
    env_audit(
        conn,
        (env, keep_from),
        actor,
        Operation::PruneHistory,
        now,
        Some(&detail),
    )
    .await?;
    Ok(Some(out))
}

pub(super) async fn prune_audit(store: &SqlStore, before: Millis, actor: &str) -> Result<u64> {
    let (_guard, mut tx) = store.begin_write().await?;
    let result = prune_audit_in(&mut tx, before, actor).await;
    let deleted = finish(tx, result, |n| *n > 0, "prune audit: commit").await?;
    if deleted > 0 {
        store.note_progress().await;
    }
    Ok(deleted)
}

async fn prune_audit_in(conn: &mut AnyConnection, before: Millis, actor: &str) -> Result<u64> {
    let deleted = sqlx::query(sql::AUDIT_PRUNE)
        .bind(before)
        .execute(&mut *conn)
        .await
        .map_err(db("prune audit"))?
        .rows_affected();
    if deleted == 0 {
        return Ok(0);
    }
    let store_id = identity::read_id(conn).await?;
    let detail = format!("{deleted} audit records written before {before} (unix ms) deleted");
    insert_audit(
        conn,
        AuditEntry {
            at: now_millis(),
            actor,
            env: None,
            entity_kind: audit_subject::STORE,
            entity_name: &store_id,
            old_version: None,
            new_version: None,
            digest: None,
            operation: Operation::PruneAudit,
            revision: None,
            detail: Some(&detail),
        },
    )
    .await?;
    Ok(deleted)
}
