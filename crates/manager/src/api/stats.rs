//! `POST /v1/envs/{env}/stats` (a Worker's running totals) and `GET /v1/envs/{env}/stats`
//! (the environment's traffic over the last hour, for the dashboard): see `stats.rs`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use switchyard_api::ErrorCode;
use switchyard_api::admin::EnvStats;
use switchyard_api::records::now_millis;
use switchyard_api::sync::{STATS_INTERVAL, StatsBody};

use super::openapi::{FORBIDDEN, SERVER_ERROR, UNAUTHORIZED, UNKNOWN_ENV};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::fanout::Binding;
use crate::state::AppState;

/// Send a Worker's running totals (requests by class, gateway errors, memory) for the dashboard.
#[utoipa::path(
    post,
    path = "/v1/envs/{env}/stats",
    operation_id = "reportStats",
    tag = "workers",
    params(
        ("env" = String, Path, description = "Environment name"),
        ("x-switchyard-worker" = String, Header, description = "The reporting Worker's id (visible ASCII, 1 to 200 characters)", pattern = "^[!-~]([ -~]{0,198}[!-~])?$"),
    ),
    request_body = StatsBody,
    responses(
        (status = 204, description = "Kept (in this Manager's memory, for an hour)"),
        (status = 400, description = "Missing `x-switchyard-worker` header, or a body that is not JSON (`bad_request`)", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = "Not a worker token of this environment, nor an admin token (`forbidden`); or the named Worker has no event stream open with this token (`worker_mismatch`)", body = ErrorBody),
        (status = 404, description = UNKNOWN_ENV, body = ErrorBody),
        (status = 500, description = SERVER_ERROR, body = ErrorBody),
    )
)]
pub async fn report(
    State(state): State<AppState>,
    who: Principal,
    Path(env): Path<String>,
    headers: HeaderMap,
    Json(body): Json<StatsBody>,
) -> ApiResult<StatusCode> {
    let worker_id = super::sync::reporting_worker(&who, &env, &headers)?;
    state.env_info(&env).await?;
    // Bound to its token as reports are (`sync::check_bound`), with one answer for both
    // ways of not being bound.
    if state.fanout.binding(&env, &worker_id, &who.token_id) != Binding::Bound {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::WorkerMismatch,
            format!(
                "worker {worker_id:?} has no event stream open on {env:?} with token {}: statistics are accepted from a Worker connected as that id with the same token",
                who.token_id
            ),
        ));
    }
    state.canaries.record(&env, &worker_id, &body.generations);
    if state.stats.record(&env, &worker_id, now_millis(), body) {
        // Where it serves from changed: viewers of the environment look again.
        state.fanout.changed(&env);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Show an environment's traffic over the last hour, from its Workers' totals.
#[utoipa::path(
    get,
    path = "/v1/envs/{env}/stats",
    operation_id = "envStats",
    tag = "workers",
    params(("env" = String, Path, description = "Environment name")),
    responses(
        (status = 200, description = "Requests and gateway errors per second and each Worker's memory, in 10 s buckets over the last hour (from the Workers reporting to this Manager)", body = EnvStats),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = UNKNOWN_ENV, body = ErrorBody),
        (status = 500, description = SERVER_ERROR, body = ErrorBody),
    )
)]
pub async fn series(
    State(state): State<AppState>,
    who: Principal,
    Path(env): Path<String>,
) -> ApiResult<Json<EnvStats>> {
    who.require_read(&env)?;
    state.env_info(&env).await?;
    let interval = u64::try_from(STATS_INTERVAL.as_millis()).unwrap_or(10_000);
    Ok(Json(state.stats.series(&env, now_millis(), interval)))
}
