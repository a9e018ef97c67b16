//! Read-only views: entities, revisions with their propagation numbers, Workers, audit.

use std::collections::HashSet;

use axum::Json;
use axum::extract::{Path, Query, State};
use switchyard_api::records::{
    AuditRecord, ReportStatus, RevisionRecord, Role, WorkerReport, now_millis,
};
use switchyard_store::{AuditQuery, StoreError};

use switchyard_config::manifest::redact_json;

use super::openapi::{BAD_QUERY, FORBIDDEN, SERVER_ERROR, UNAUTHORIZED, UNKNOWN_ENV};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;
use switchyard_api::ErrorCode;
use switchyard_api::admin::{
    AuditParams, EntityView, Limit, RevisionView, WorkerView, check_limit, parse_duration,
};

/// List an environment's live entities (secret values redacted).
#[utoipa::path(
    get,
    path = "/v1/envs/{env}/entities",
    operation_id = "listEntities",
    tag = "entities",
    params(("env" = String, Path, description = "Environment name")),
    responses(
        (status = 200, description = "The live entities at the current revision", body = Vec<EntityView>),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = UNKNOWN_ENV, body = ErrorBody),
        (status = 500, description = SERVER_ERROR, body = ErrorBody),
    )
)]
pub async fn entities(
    State(state): State<AppState>,
    who: Principal,
    Path(env): Path<String>,
) -> ApiResult<Json<Vec<EntityView>>> {
    who.require_read(&env)?;
    state.env_info(&env).await?;
    let list = state.store.entities(&env, None).await?;
    let mut out = Vec::with_capacity(list.len());
    for e in list {
        // Secret values are never shown, whoever asks.
        let manifest = redact_json(e.kind, &state.reveal(&e)?);
        let template = if e.kind.is_secret() {
            None
        } else {
            state.reveal_template(&e)?
        };
        out.push(EntityView {
            manifest,
            template,
            kind: e.kind,
            name: e.name,
            version: e.version,
            revision: e.revision,
            digest: e.digest,
            labels: e.labels,
        });
    }
    Ok(Json(out))
}

/// List an environment's revisions, newest first.
#[utoipa::path(
    get,
    path = "/v1/envs/{env}/revisions",
    operation_id = "listRevisions",
    tag = "revisions",
    params(("env" = String, Path, description = "Environment name"), Limit),
    responses(
        (status = 200, description = "Revisions, newest first", body = Vec<RevisionRecord>),
        (status = 400, description = BAD_QUERY, body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = UNKNOWN_ENV, body = ErrorBody),
        (status = 500, description = SERVER_ERROR, body = ErrorBody),
    )
)]
pub async fn revisions(
    State(state): State<AppState>,
    who: Principal,
    Path(env): Path<String>,
    Query(q): Query<Limit>,
) -> ApiResult<Json<Vec<RevisionRecord>>> {
    let limit = check_limit(q.limit).map_err(ApiError::bad_request)?;
    who.require_read(&env)?;
    state.env_info(&env).await?;
    Ok(Json(state.store.revisions(&env, limit).await?))
}

/// Show one revision with its Workers' reports and propagation numbers.
#[utoipa::path(
    get,
    path = "/v1/envs/{env}/revisions/{rev}",
    operation_id = "getRevision",
    tag = "revisions",
    params(
        ("env" = String, Path, description = "Environment name"),
        ("rev" = u64, Path, description = "Revision number"),
    ),
    responses(
        (status = 200, description = "The revision, its reports and propagation numbers", body = RevisionView),
        (status = 400, description = "`rev` is not a revision number (`bad_request`)", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = "No such environment (`unknown_environment`) or revision (`unknown_revision`), or the revision is older than the history the Manager retains (`history_pruned`)", body = ErrorBody),
        (status = 500, description = SERVER_ERROR, body = ErrorBody),
    )
)]
pub async fn revision(
    State(state): State<AppState>,
    who: Principal,
    Path((env, rev)): Path<(String, u64)>,
) -> ApiResult<Json<RevisionView>> {
    who.require_read(&env)?;
    state.env_info(&env).await?;
    let record = revision_record(&state, &env, rev).await?;
    let reports = state.store.reports_for(&env, rev).await?;
    let expected = state.store.expected_workers(&env, rev).await?;
    let acks: Vec<&WorkerReport> = reports
        .iter()
        .filter(|r| r.status == ReportStatus::Ack)
        .collect();
    let nacks = reports.len() - acks.len();
    let caught_up = acks.iter().filter(|r| r.caught_up_to.is_some()).count();
    let joined_after: Vec<String> = match &expected {
        Some(expected) => acks
            .iter()
            .filter(|r| expected.binary_search(&r.worker_id).is_err())
            .map(|r| r.worker_id.clone())
            .collect(),
        None => Vec::new(),
    };
    let committed = record.committed_at;
    let first_swap_ms = acks.iter().map(|r| (r.applied_at - committed).max(0)).min();
    let (propagation_ms, audit_completeness) = match &expected {
        Some(expected) if !expected.is_empty() => {
            let acked: HashSet<&str> = acks.iter().map(|r| r.worker_id.as_str()).collect();
            let done = expected
                .iter()
                .filter(|w| acked.contains(w.as_str()))
                .count();
            let complete = done == expected.len();
            let last = acks
                .iter()
                .filter(|r| expected.binary_search(&r.worker_id).is_ok())
                .map(|r| (r.applied_at - committed).max(0))
                .max();
            (
                if complete { last } else { None },
                Some(done as f64 / expected.len() as f64),
            )
        }
        Some(_) => (None, None),
        None => (
            acks.iter().map(|r| (r.applied_at - committed).max(0)).max(),
            None,
        ),
    };
    Ok(Json(RevisionView {
        record,
        expected_workers: expected,
        acks: acks.len(),
        applied: acks.len() - caught_up,
        caught_up,
        joined_after,
        nacks,
        reports,
        propagation_ms,
        first_swap_ms,
        audit_completeness,
    }))
}

/// Revision `rev` of `env`: a 404 naming why when there is none, or its record was pruned.
pub(super) async fn revision_record(
    state: &AppState,
    env: &str,
    rev: u64,
) -> ApiResult<RevisionRecord> {
    state
        .store
        .revision(env, rev)
        .await
        .map_err(pruned_is_not_found)?
        .ok_or_else(|| {
            ApiError::not_found(
                ErrorCode::UnknownRevision,
                format!("environment {env:?} has no revision {rev}"),
            )
        })
}

/// What existed but was pruned is not found, and the answer says why (`history_pruned`).
pub(super) fn pruned_is_not_found(e: StoreError) -> ApiError {
    let pruned = matches!(e, StoreError::Pruned { .. });
    let mut answer = ApiError::from(e);
    if pruned {
        answer.status = axum::http::StatusCode::NOT_FOUND;
    }
    answer
}

/// List the Workers of an environment: connected, or known from their reports.
#[utoipa::path(
    get,
    path = "/v1/envs/{env}/workers",
    operation_id = "listWorkers",
    tag = "workers",
    params(("env" = String, Path, description = "Environment name")),
    responses(
        (status = 200, description = "The Workers, by id", body = Vec<WorkerView>),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = UNKNOWN_ENV, body = ErrorBody),
        (status = 500, description = SERVER_ERROR, body = ErrorBody),
    )
)]
pub async fn workers(
    State(state): State<AppState>,
    who: Principal,
    Path(env): Path<String>,
) -> ApiResult<Json<Vec<WorkerView>>> {
    who.require_read(&env)?;
    let current = state.env_info(&env).await?.revision;
    // Connected to any Manager on the database.
    let connected = state.store.connections(&env).await?;
    let reports = state.store.latest_reports(&env).await?;
    let acked = state.store.acked_revisions(&env).await?;
    let mut ids: Vec<String> = connected
        .iter()
        .map(|w| w.worker_id.clone())
        .chain(reports.iter().map(|r| r.worker_id.clone()))
        .collect();
    ids.sort();
    ids.dedup();
    let now = now_millis();
    let mut served_from = state.stats.served_from(&env);
    let views = ids
        .into_iter()
        .map(|id| {
            let conn = connected.iter().find(|w| w.worker_id == id);
            let last = reports.iter().find(|r| r.worker_id == id).cloned();
            // A NACK keeps the Worker on its last good revision: that is what it serves.
            let acked = acked.iter().find(|(w, _)| *w == id).map(|(_, r)| *r);
            WorkerView {
                version: conn.and_then(|c| c.version.clone()),
                address: conn
                    .and_then(|c| c.address.clone())
                    .or_else(|| last.as_ref().and_then(|r| r.address.clone())),
                connected: conn.is_some(),
                revision: acked,
                lag: acked.map(|r| current.saturating_sub(r)),
                manager: conn.map(|c| c.manager.clone()),
                last_seen: if conn.is_some() {
                    Some(now)
                } else {
                    last.as_ref().map(|r| r.received_at)
                },
                last_report: last,
                served_from: served_from.remove(&id),
                id,
            }
        })
        .collect();
    Ok(Json(views))
}

/// Read the audit trail, newest first.
#[utoipa::path(
    get,
    path = "/v1/audit",
    operation_id = "listAudit",
    tag = "audit",
    params(AuditParams),
    responses(
        (status = 200, description = "Audit records, newest first", body = Vec<AuditRecord>),
        (status = 400, description = "An invalid `since` or `entity`, a `limit` out of range, or another query parameter that does not parse (`bad_request`)", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = "The token may not read this environment, or is scoped to environments and gave no `env` (`forbidden`)", body = ErrorBody),
        (status = 404, description = "`env` names an environment that neither exists nor ever existed (`unknown_environment`)", body = ErrorBody),
        (status = 500, description = SERVER_ERROR, body = ErrorBody),
    )
)]
pub async fn audit(
    State(state): State<AppState>,
    who: Principal,
    Query(q): Query<AuditParams>,
) -> ApiResult<Json<Vec<AuditRecord>>> {
    let limit = check_limit(q.limit).map_err(ApiError::bad_request)?;
    match &q.env {
        Some(env) => {
            who.require_read(env)?;
            known_env(&state, env).await?;
        }
        // Every environment's trail: only for tokens that may read every environment (a
        // viewer scoped to some is not one of them).
        None if who.role == Role::Admin || (who.role == Role::Viewer && who.envs.is_empty()) => {}
        None => {
            return Err(ApiError::forbidden(
                "this token may only read the audit trail of its environments: add ?env=NAME",
            ));
        }
    }
    let (entity_kind, entity_name) = match q.entity.as_deref() {
        None => (None, None),
        Some(e) => {
            let (kind, name) = match e.split_once('/') {
                Some((k, n)) => (k, Some(n.to_string())),
                None => (e, None),
            };
            (Some(capitalize(kind)), name)
        }
    };
    let now = now_millis();
    let instant = |name: &str, value: Option<&str>| match value {
        None => Ok(None),
        Some(s) => since_millis(s, now).map(Some).ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid {name} {s:?}: use a duration back from now such as 30m, 1h or 2d, or \
                 unix milliseconds"
            ))
        }),
    };
    // Audit ids are positive 63-bit integers.
    let before = q
        .before
        .map(|id| {
            i64::try_from(id).map_err(|_| {
                ApiError::bad_request(format!(
                    "before {id} is out of range: an audit record id is at most {}",
                    i64::MAX
                ))
            })
        })
        .transpose()?;
    let since = instant("since", q.since.as_deref())?;
    let until = instant("until", q.until.as_deref())?;
    Ok(Json(
        state
            .store
            .audit(AuditQuery {
                env: q.env,
                entity_kind,
                entity_name,
                actor: q.actor,
                since,
                until,
                before,
                limit,
            })
            .await?,
    ))
}

/// An environment that exists, or existed (a deleted environment keeps its audit trail):
/// otherwise the 404 that names it, as every other endpoint answers.
async fn known_env(state: &AppState, env: &str) -> ApiResult<()> {
    if state.store.env(env).await?.is_some() {
        return Ok(());
    }
    let trail = state
        .store
        .audit(AuditQuery {
            env: Some(env.to_string()),
            limit: 1,
            ..AuditQuery::default()
        })
        .await?;
    if trail.is_empty() {
        state.env_info(env).await.map(drop)
    } else {
        Ok(())
    }
}

/// `since` as unix milliseconds: unix milliseconds (up to 18 digits, optionally negative), or
/// a duration back from `now` (`switchyard_api::admin::parse_duration`); the pattern of
/// `AuditParams::since` in the document says the same.
fn since_millis(s: &str, now: i64) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if !digits.is_empty() && digits.len() <= 18 && digits.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let d = parse_duration(s)?;
    Some(now.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
}

/// `proxy` → `Proxy`: kinds are stored as written in manifests.
fn capitalize(kind: &str) -> String {
    let mut c = kind.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::since_millis;

    #[test]
    fn since_is_unix_millis_or_a_duration_back_from_now() {
        let now = 1_700_000_000_000;
        assert_eq!(since_millis("1699999999000", now), Some(1_699_999_999_000));
        assert_eq!(since_millis("-5", now), Some(-5));
        assert_eq!(since_millis("1h", now), Some(now - 3_600_000));
        assert_eq!(
            since_millis("999999999w", now),
            Some(now - 604_799_999_395_200_000)
        );
        for bad in [
            "",
            "-",
            "+5",
            "1234567890123456789",
            "1 h",
            "1h30m",
            "yesterday",
        ] {
            assert_eq!(since_millis(bad, now), None, "{bad}");
        }
    }
}
