//! Canary revisions in the store: the row written with a canary's commit, the check that
//! refuses a plain commit while one runs (in the commit's own transaction, so two Managers
//! cannot both slip one in), its steps and its end — each audited in the transaction that
//! writes it.

use sqlx::{AnyConnection, Row};
use switchyard_api::canary::{CanarySpec, CanaryState, percent};
use switchyard_api::records::{Operation, audit_subject};

use super::SqlStore;
use super::rows::{db, param, stored, unsigned};
use super::write::{AuditEntry, finish, insert_audit};
use crate::{CanaryCommit, CanaryRecord, Result, StoreError, now_millis, sql};

/// The running canary of `env`, if any (inside a write transaction: the commit checks it).
pub(super) async fn running(conn: &mut AnyConnection, env: &str) -> Result<Option<u64>> {
    let row: Option<(i64,)> = sqlx::query_as(sql::CANARY_RUNNING)
        .bind(env)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("read the running canary"))?;
    row.map(|(r,)| unsigned(r, "canary revision")).transpose()
}

/// Refuses a commit the running canary does not allow: a plain one while it runs, an end
/// of a canary that is not the one running.
pub(super) async fn check(conn: &mut AnyConnection, env: &str, c: &CanaryCommit) -> Result<()> {
    let running = running(conn, env).await?;
    match (c, running) {
        (CanaryCommit::End { revision, .. }, Some(r)) if *revision == r => Ok(()),
        (CanaryCommit::End { revision, .. }, _) => Err(StoreError::NoCanary {
            env: env.to_string(),
            revision: *revision,
        }),
        (_, Some(revision)) => Err(StoreError::CanaryRunning {
            env: env.to_string(),
            revision,
        }),
        (_, None) => Ok(()),
    }
}

/// Writes what commit `revision` (after `previous`) does to the canary, with its audit
/// record.
pub(super) async fn record(
    conn: &mut AnyConnection,
    env: &str,
    actor: &str,
    previous: u64,
    revision: u64,
    c: &CanaryCommit,
) -> Result<()> {
    let at = now_millis();
    let detail = match c {
        CanaryCommit::None => return Ok(()),
        CanaryCommit::Start(spec) => {
            let spec_json = serde_json::to_string(spec)
                .map_err(|e| StoreError::Database(format!("encode the canary: {e}")))?;
            sqlx::query(sql::CANARY_INSERT)
                .bind(env)
                .bind(stored(revision, "revision")?)
                .bind(stored(previous, "revision")?)
                .bind(spec_json)
                .bind(actor)
                .bind(at)
                .execute(&mut *conn)
                .await
                .map_err(db("write the canary"))?;
            format!(
                "canary r{revision} started beside r{previous}: {}",
                describe_spec(spec)
            )
        }
        CanaryCommit::End {
            revision: canary,
            state,
            reason,
        } => {
            let ended = sqlx::query(sql::CANARY_END)
                .bind(env)
                .bind(stored(*canary, "revision")?)
                .bind(state.as_str())
                .bind(at)
                .bind(reason.as_str())
                .bind(stored(revision, "revision")?)
                .execute(&mut *conn)
                .await
                .map_err(db("end the canary"))?;
            if ended.rows_affected() != 1 {
                return Err(StoreError::NoCanary {
                    env: env.to_string(),
                    revision: *canary,
                });
            }
            format!(
                "canary r{canary} {}; r{revision} returns to the stable content: {reason}",
                state.as_str()
            )
        }
    };
    audit(conn, env, actor, revision, &detail, at).await
}

/// "1% → 5% → 100%, random, 300 s a step, rollback past +1% errors or +20% p99".
pub fn describe_spec(spec: &CanarySpec) -> String {
    let steps: Vec<String> = spec.steps_ppm.iter().map(|s| percent(*s)).collect();
    format!(
        "{} → 100%, by {}, {} s a step, rolled back past +{} {} or +{} p99",
        steps.join(" → "),
        spec.key,
        spec.step_secs,
        percent(spec.max_error_rate_ppm),
        if spec.denials_are_errors {
            "errors and denials"
        } else {
            "errors"
        },
        percent(spec.max_p99_increase_ppm)
    )
}

async fn audit(
    conn: &mut AnyConnection,
    env: &str,
    actor: &str,
    revision: u64,
    detail: &str,
    at: i64,
) -> Result<()> {
    insert_audit(
        conn,
        AuditEntry {
            at,
            actor,
            env: Some(env),
            entity_kind: audit_subject::CANARY,
            entity_name: env,
            old_version: None,
            new_version: None,
            digest: None,
            operation: Operation::Canary,
            revision: Some(revision),
            detail: Some(detail),
        },
    )
    .await
}

pub(super) async fn latest(store: &SqlStore, env: &str) -> Result<Option<CanaryRecord>> {
    let row = sqlx::query(sql::CANARY_LATEST)
        .bind(env)
        .fetch_optional(&mut *store.conn().await?)
        .await
        .map_err(db("read the canary"))?;
    row.map(|r| decode(&r)).transpose()
}

fn decode(r: &sqlx::any::AnyRow) -> Result<CanaryRecord> {
    let get = |e: sqlx::Error| StoreError::Database(format!("decode the canary: {e}"));
    let spec: String = r.try_get("spec").map_err(get)?;
    let state: String = r.try_get("state").map_err(get)?;
    let opt_u64 = |v: Option<i64>, what| v.map(|v| unsigned(v, what)).transpose();
    Ok(CanaryRecord {
        env: r.try_get("env").map_err(get)?,
        revision: unsigned(r.try_get("revision").map_err(get)?, "revision")?,
        stable_revision: unsigned(r.try_get("stable_revision").map_err(get)?, "revision")?,
        spec: serde_json::from_str(&spec)
            .map_err(|e| StoreError::Database(format!("stored canary spec: {e}")))?,
        step: u32::try_from(r.try_get::<i64, _>("step").map_err(get)?)
            .map_err(|_| StoreError::Database("stored canary step out of range".into()))?,
        state: CanaryState::parse(&state)
            .ok_or_else(|| StoreError::Database(format!("stored canary state {state:?}")))?,
        actor: r.try_get("actor").map_err(get)?,
        started_at: r.try_get("started_at").map_err(get)?,
        step_started_at: r.try_get("step_started_at").map_err(get)?,
        ended_at: r.try_get("ended_at").map_err(get)?,
        reason: r.try_get("reason").map_err(get)?,
        rollback_revision: opt_u64(r.try_get("rollback_revision").map_err(get)?, "revision")?,
    })
}

pub(super) async fn step(
    store: &SqlStore,
    key: (&str, u64),
    from: u32,
    to: u32,
    actor: &str,
    detail: &str,
) -> Result<bool> {
    let (env, revision) = key;
    let q = sqlx::query(sql::CANARY_STEP)
        .bind(env)
        .bind(param(revision))
        .bind(i64::from(from))
        .bind(i64::from(to))
        .bind(now_millis());
    audited_update(store, key, q, (actor, detail.to_string())).await
}

pub(super) async fn promote(
    store: &SqlStore,
    key: (&str, u64),
    actor: &str,
    detail: &str,
) -> Result<bool> {
    let (env, revision) = key;
    let q = sqlx::query(sql::CANARY_END)
        .bind(env)
        .bind(param(revision))
        .bind(CanaryState::Promoted.as_str())
        .bind(now_millis())
        .bind(detail)
        .bind(None::<i64>);
    let text = format!("canary r{revision} promoted to every request: {detail}");
    audited_update(store, key, q, (actor, text)).await
}

/// Runs `q`, an update of canary `key` conditional on where it stands, and — when it
/// updated the row — its audit record (`actor`, `detail`), in one transaction. `false`,
/// nothing written, when the canary was no longer where the update expected it.
async fn audited_update<'q>(
    store: &SqlStore,
    key: (&str, u64),
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    (actor, detail): (&str, String),
) -> Result<bool> {
    let (env, revision) = key;
    let (_guard, mut tx) = store.begin_write().await?;
    let result = async {
        let updated = q.execute(&mut *tx).await.map_err(db("update the canary"))?;
        if updated.rows_affected() != 1 {
            return Ok(false);
        }
        audit(&mut tx, env, actor, revision, &detail, now_millis()).await?;
        Ok(true)
    }
    .await;
    finish(tx, result, |done| *done, "update the canary: commit").await
}
