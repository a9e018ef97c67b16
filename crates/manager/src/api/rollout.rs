//! `POST /v1/envs/{env}/rollout` and `GET /v1/envs/{env}/rollout`: restart-required
//! changes (and new binaries) brought to the Workers by handovers, one Worker at a time
//! (`crate::rollout` drives it).

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use switchyard_api::ErrorCode;
use switchyard_api::admin::{ApplyRequest, RolloutRequest, RolloutState, RolloutStatus};
use switchyard_api::error::ErrorBody;

use super::apply::commit_manifests;
use super::openapi::{BAD_REQUEST_BODY, FORBIDDEN, SERVER_ERROR, UNAUTHORIZED, UNKNOWN_ENV};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::rollout::{self, DEFAULT_STEP_TIMEOUT};
use crate::state::AppState;
use switchyard_api::records::Operation;

/// Roll a change out to every Worker, one handover at a time.
///
/// Commits it (restart-required changes allowed) and hands every Worker over to a
/// successor process, one at a time. Answers 202 once the revision is committed and the rollout has started; it goes on
/// without the client (`GET` shows it). Without manifests, the current revision is rolled
/// out (a new binary on the Workers' hosts, or a rollout that stopped, resumed). It stops
/// at the first Worker whose handover fails (its successor crashed or was not ready in
/// time: that Worker carries on serving), leaving the rest untouched.
#[utoipa::path(
    post,
    path = "/v1/envs/{env}/rollout",
    operation_id = "rollout",
    tag = "entities",
    params(("env" = String, Path, description = "Environment name")),
    request_body = RolloutRequest,
    responses(
        (status = 202, description = "Committed (if there was anything to commit) and started", body = RolloutStatus),
        (status = 400, description = BAD_REQUEST_BODY, body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = UNKNOWN_ENV, body = ErrorBody),
        (status = 409, description = "A rollout of the environment is running (`rollout_in_progress`), or the environment is no longer at `expected_revision` (`revision_conflict`)", body = ErrorBody),
        (status = 422, description = "Invalid manifests (`invalid_config`)", body = ErrorBody),
        (status = 500, description = SERVER_ERROR, body = ErrorBody),
    )
)]
pub async fn start(
    State(state): State<AppState>,
    who: Principal,
    Path(env): Path<String>,
    Json(req): Json<RolloutRequest>,
) -> ApiResult<(StatusCode, Json<RolloutStatus>)> {
    who.require_write(&env)?;
    // Running here, or saved as running by another Manager that moved it recently.
    if let Some((r, idle)) = state.rollouts.latest(&*state.store, &env).await?
        && r.state == RolloutState::Running
        && idle < crate::rollout::ABANDONED_AFTER
    {
        return Err(in_progress(&env, &r.id));
    }
    let step_timeout = match req.step_timeout_secs {
        None => DEFAULT_STEP_TIMEOUT,
        Some(s @ 1..=3600) => Duration::from_secs(s),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "step_timeout_secs {other}: give 1 to 3600"
            )));
        }
    };
    let max_unavailable = match req.max_unavailable {
        None => 1,
        Some(n @ 1..=100) => n as usize,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "max_unavailable {other}: give 1 to 100"
            )));
        }
    };
    if let Some(b) = &req.binary
        && (!b.starts_with('/') || b.len() > 4096 || b.contains('\0'))
    {
        return Err(ApiError::bad_request(format!(
            "binary {b:?}: give an absolute path on the Workers' hosts"
        )));
    }
    let commit = if req.manifests.is_empty() && req.delete.is_empty() {
        None
    } else {
        let apply = ApplyRequest {
            manifests: req.manifests,
            expected_revision: req.expected_revision,
            dry_run: false,
            delete: req.delete,
            canary: None,
        };
        Some(commit_manifests(&state, &who, &env, &apply, Operation::Rollout).await?)
    };
    let revision = match &commit {
        Some(c) => c.revision,
        None => state.env_info(&env).await?.revision,
    };
    let status = rollout::new_status(&state, &env, revision, &who.actor(), commit, req.binary);
    state
        .rollouts
        .begin(status.clone())
        .map_err(|id| in_progress(&env, &id))?;
    tokio::spawn(rollout::drive(
        state.clone(),
        env,
        step_timeout,
        max_unavailable,
    ));
    Ok((StatusCode::ACCEPTED, Json(status)))
}

/// Where the environment's latest rollout stands.
#[utoipa::path(
    get,
    path = "/v1/envs/{env}/rollout",
    operation_id = "rollout_status",
    tag = "entities",
    params(("env" = String, Path, description = "Environment name")),
    responses(
        (status = 200, description = "The latest rollout of the environment, as saved by the Manager driving it (the same through every Manager of the database); `null` when none was run", body = Option<RolloutStatus>),
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
) -> ApiResult<Json<Option<RolloutStatus>>> {
    who.require_read(&env)?;
    state.env_info(&env).await?;
    let latest = state.rollouts.latest(&*state.store, &env).await?;
    Ok(Json(latest.map(|(status, _)| status)))
}

fn in_progress(env: &str, id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        ErrorCode::RolloutInProgress,
        format!("rollout {id} of {env:?} is running: it finishes (or fails) first"),
    )
}
