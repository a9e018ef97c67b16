//! Environments.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use switchyard_api::records::EnvInfo;

use super::openapi::{
    AUDIT_FAILED, BAD_REQUEST_BODY, FORBIDDEN, SERVER_ERROR, UNAUTHORIZED, UNKNOWN_ENV,
    UNPROCESSABLE_BODY, UNSUPPORTED_MEDIA_TYPE,
};
use crate::auth::Principal;
use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;
use switchyard_api::admin::CreateEnv;

/// List the environments this token may read.
#[utoipa::path(
    get,
    path = "/v1/envs",
    operation_id = "listEnvs",
    tag = "environments",
    responses(
        (status = 200, description = "The environments the token may read", body = Vec<EnvInfo>),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 500, description = SERVER_ERROR, body = ErrorBody),
    )
)]

pub async fn list(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Vec<EnvInfo>>> {
    let envs = state.store.list_envs().await?;
    Ok(Json(
        envs.into_iter()
            .filter(|e| who.require_read(&e.name).is_ok())
            .collect(),
    ))
}

/// Create an environment at revision 0 (admin).
#[utoipa::path(
    post,
    path = "/v1/envs",
    operation_id = "createEnv",
    tag = "environments",
    request_body = CreateEnv,
    responses(
        (status = 201, description = "The environment was created", body = EnvInfo),
        (status = 400, description = BAD_REQUEST_BODY, content(
            (ErrorBody = "application/json"),
            (String = "text/plain"),
        )),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 409, description = "The environment already exists (`environment_exists`)", body = ErrorBody),
        (status = 415, description = UNSUPPORTED_MEDIA_TYPE, body = String),
        (status = 422, description = UNPROCESSABLE_BODY, body = String),
        (status = 500, description = SERVER_ERROR, body = ErrorBody),
        (status = 503, description = AUDIT_FAILED, body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    who: Principal,
    Json(body): Json<CreateEnv>,
) -> ApiResult<(StatusCode, Json<EnvInfo>)> {
    who.require_admin()?;
    super::check_env_name(&body.name)?;
    let env = state.store.create_env(&body.name, &who.actor()).await?;
    tracing::info!(env = %env.name, actor = %who.actor(), "environment created");
    Ok((StatusCode::CREATED, Json(env)))
}

/// Show one environment and its current revision.
#[utoipa::path(
    get,
    path = "/v1/envs/{env}",
    operation_id = "getEnv",
    tag = "environments",
    params(("env" = String, Path, description = "Environment name")),
    responses(
        (status = 200, description = "The environment", body = EnvInfo),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = UNKNOWN_ENV, body = ErrorBody),
        (status = 500, description = SERVER_ERROR, body = ErrorBody),
    )
)]
pub async fn get_one(
    State(state): State<AppState>,
    who: Principal,
    Path(env): Path<String>,
) -> ApiResult<Json<EnvInfo>> {
    who.require_read(&env)?;
    state.env_info(&env).await.map(Json)
}
