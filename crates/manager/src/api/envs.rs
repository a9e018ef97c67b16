//! Environments.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use switchyard_api::ErrorCode;
use switchyard_api::records::EnvInfo;

use super::openapi::{AUDIT_FAILED, FORBIDDEN, SERVER_ERROR, UNAUTHORIZED, UNKNOWN_ENV};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;
use switchyard_api::admin::{CreateEnv, DeleteEnvParams, DeletedEnv};

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
        (status = 400, description = "An invalid name (`bad_request`), or a body that is not JSON", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 409, description = "The environment already exists (`environment_exists`)", body = ErrorBody),
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

/// Delete an environment (admin): its entities, revisions and reports; its audit trail stays.
///
/// Refused with 409 while Workers are connected to its notification stream, unless
/// `force=true` (they keep serving what they have until stopped or pointed elsewhere).
/// The deletion is audited; the name can be created again, from revision 0.
#[utoipa::path(
    delete,
    path = "/v1/envs/{env}",
    operation_id = "deleteEnv",
    tag = "environments",
    params(
        ("env" = String, Path, description = "Environment name"),
        DeleteEnvParams,
    ),
    responses(
        (status = 200, description = "What was deleted", body = DeletedEnv),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = UNKNOWN_ENV, body = ErrorBody),
        (status = 409, description = "Workers are connected to the environment (`workers_connected`, each one in `details`); add `force=true` to delete it anyway", body = ErrorBody),
        (status = 500, description = SERVER_ERROR, body = ErrorBody),
        (status = 503, description = AUDIT_FAILED, body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    who: Principal,
    Path(env): Path<String>,
    Query(q): Query<DeleteEnvParams>,
) -> ApiResult<Json<DeletedEnv>> {
    who.require_admin()?;
    state.env_info(&env).await?;
    let connected: Vec<String> = state
        .fanout
        .connected(&env)
        .into_iter()
        .map(|w| w.id)
        .collect();
    if !connected.is_empty() && !q.force {
        let mut e = ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::WorkersConnected,
            format!(
                "{} Worker(s) are connected to {env:?}; stop them first, or delete it anyway \
                 with force=true (`switchyard env delete {env} --force`)",
                connected.len()
            ),
        );
        e.details.clone_from(&connected);
        return Err(e);
    }
    let detail = (!connected.is_empty())
        .then(|| format!("forced with Worker(s) connected: {}", connected.join(", ")));
    let deleted = state
        .store
        .delete_env(&env, &who.actor(), detail.as_deref())
        .await?;
    // Nothing kept for the old environment may serve one created later under its name.
    state.forget_env(&env);
    tracing::warn!(
        env = %env,
        actor = %who.actor(),
        revision = deleted.revision,
        connected = connected.len(),
        "environment deleted"
    );
    Ok(Json(DeletedEnv {
        name: env,
        revision: deleted.revision,
        entities: deleted.entities,
        revisions: deleted.revisions,
        connected_workers: connected,
    }))
}
