//! Environments.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use switchyard_store::EnvInfo;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEnv {
    name: String,
}

pub async fn list(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Vec<EnvInfo>>> {
    let envs = state.store.list_envs().await?;
    Ok(Json(
        envs.into_iter()
            .filter(|e| who.require_read(&e.name).is_ok())
            .collect(),
    ))
}

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

pub async fn get_one(
    State(state): State<AppState>,
    who: Principal,
    Path(env): Path<String>,
) -> ApiResult<Json<EnvInfo>> {
    who.require_read(&env)?;
    state
        .store
        .env(&env)
        .await?
        .map(Json)
        .ok_or_else(|| unknown_env(&env))
}

pub fn unknown_env(env: &str) -> ApiError {
    ApiError::from(switchyard_store::StoreError::NoSuchEnv(env.to_string()))
}
