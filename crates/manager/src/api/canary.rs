//! `GET /v1/envs/{env}/canary`, `POST …/canary/promote`, `POST …/canary/abort`: where the
//! environment's canary stands, and finishing it by hand (`crate::canary` judges it).

use axum::Json;
use axum::extract::{Path, State};
use switchyard_api::canary::{CanaryAction, CanaryState, CanaryStatus};
use switchyard_api::error::ErrorBody;
use switchyard_store::CanaryRecord;

use super::openapi::{
    AUDIT_FAILED, BAD_REQUEST_BODY, FORBIDDEN, SERVER_ERROR, UNAUTHORIZED, UNKNOWN_ENV,
};
use crate::auth::Principal;
use crate::canary;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use switchyard_api::ErrorCode;

/// Show the environment's latest canary.
///
/// Its step and share, its numbers against the stable revision over the current step
/// (from the Workers reporting to this Manager) and the verdict so far; once ended, how
/// and why.
#[utoipa::path(
    get,
    path = "/v1/envs/{env}/canary",
    operation_id = "canary",
    tag = "entities",
    params(("env" = String, Path, description = "Environment name")),
    responses(
        (status = 200, description = "The latest canary of the environment; `null` when it never had one", body = Option<CanaryStatus>),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = UNKNOWN_ENV, body = ErrorBody),
        (status = 500, description = SERVER_ERROR, body = ErrorBody),
    )
)]
pub async fn status(
    State(state): State<AppState>,
    who: Principal,
    Path(env): Path<String>,
) -> ApiResult<Json<Option<CanaryStatus>>> {
    who.require_read(&env)?;
    state.env_info(&env).await?;
    let latest = state.store.canary(&env).await?;
    Ok(Json(latest.map(|c| canary::status(&state, &c))))
}

/// Promote the running canary to every request now.
///
/// Whatever its step: the canary revision becomes the one every new request runs on, on
/// every Worker (requests on the stable revision finish on it). Audited.
#[utoipa::path(
    post,
    path = "/v1/envs/{env}/canary/promote",
    operation_id = "canaryPromote",
    tag = "entities",
    params(("env" = String, Path, description = "Environment name")),
    request_body = CanaryAction,
    responses(
        (status = 200, description = "Promoted", body = CanaryStatus),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 400, description = BAD_REQUEST_BODY, body = ErrorBody),
        (status = 404, description = UNKNOWN_ENV, body = ErrorBody),
        (status = 409, description = "No canary is running (`no_canary`)", body = ErrorBody),
        (status = 500, description = SERVER_ERROR, body = ErrorBody),
        (status = 503, description = AUDIT_FAILED, body = ErrorBody),
    )
)]
pub async fn promote(
    State(state): State<AppState>,
    who: Principal,
    Path(env): Path<String>,
    Json(action): Json<CanaryAction>,
) -> ApiResult<Json<CanaryStatus>> {
    who.require_write(&env)?;
    let c = running(&state, &env).await?;
    let detail = format!(
        "promoted by {} at step {}/{}{}",
        who.actor(),
        c.step + 1,
        c.spec.steps_ppm.len(),
        because(&action)?
    );
    if !state
        .store
        .promote_canary(&env, c.revision, &who.actor(), &detail)
        .await?
    {
        return Err(not_running(&env));
    }
    state.metrics.canary_ended(&env, CanaryState::Promoted);
    canary::nudge(&state, &env, c.revision);
    latest(&state, &env).await
}

/// Abort the running canary.
///
/// Commits a new revision with the stable revision's content, which ends the canary in
/// the same transaction; Workers serve it to every request (requests on the canary finish
/// on it). Audited.
#[utoipa::path(
    post,
    path = "/v1/envs/{env}/canary/abort",
    operation_id = "canaryAbort",
    tag = "entities",
    params(("env" = String, Path, description = "Environment name")),
    request_body = CanaryAction,
    responses(
        (status = 200, description = "Aborted; `rollback_revision` is the revision committed", body = CanaryStatus),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 400, description = BAD_REQUEST_BODY, body = ErrorBody),
        (status = 404, description = UNKNOWN_ENV, body = ErrorBody),
        (status = 409, description = "No canary is running (`no_canary`)", body = ErrorBody),
        (status = 500, description = SERVER_ERROR, body = ErrorBody),
        (status = 503, description = AUDIT_FAILED, body = ErrorBody),
    )
)]
pub async fn abort(
    State(state): State<AppState>,
    who: Principal,
    Path(env): Path<String>,
    Json(action): Json<CanaryAction>,
) -> ApiResult<Json<CanaryStatus>> {
    who.require_write(&env)?;
    let c = running(&state, &env).await?;
    let reason = format!(
        "aborted by {} at step {}/{}{}",
        who.actor(),
        c.step + 1,
        c.spec.steps_ppm.len(),
        because(&action)?
    );
    canary::end(&state, &who, &c, CanaryState::Aborted, reason).await?;
    latest(&state, &env).await
}

/// `: REASON` when the operator gave one (one line, at most 1000 characters).
fn because(action: &CanaryAction) -> ApiResult<String> {
    match action.reason.as_deref().map(str::trim) {
        None | Some("") => Ok(String::new()),
        Some(r) if r.chars().count() > 1000 || r.chars().any(char::is_control) => {
            Err(ApiError::bad_request(
                "reason: at most 1000 characters, on one line, without control characters",
            ))
        }
        Some(r) => Ok(format!(": {r}")),
    }
}

async fn running(state: &AppState, env: &str) -> ApiResult<CanaryRecord> {
    state.env_info(env).await?;
    match state.store.canary(env).await? {
        Some(c) if c.state == CanaryState::Running => Ok(c),
        _ => Err(not_running(env)),
    }
}

async fn latest(state: &AppState, env: &str) -> ApiResult<Json<CanaryStatus>> {
    let c = state
        .store
        .canary(env)
        .await?
        .ok_or_else(|| not_running(env))?;
    Ok(Json(canary::status(state, &c)))
}

fn not_running(env: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::CONFLICT,
        ErrorCode::NoCanary,
        format!(
            "{env:?} has no running canary (`switchyard canary status --env {env}` shows the latest)"
        ),
    )
}
