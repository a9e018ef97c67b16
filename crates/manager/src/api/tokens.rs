//! Tokens: created by admins, the secret shown once.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use switchyard_store::{Role, TokenRecord};

use crate::auth::{Principal, check_scope, new_token};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    name: String,
    role: String,
    #[serde(default)]
    envs: Vec<String>,
}

#[derive(Serialize)]
pub struct CreatedToken {
    id: String,
    name: String,
    role: Role,
    envs: Vec<String>,
    /// The secret. Shown once; only its hash is stored.
    token: String,
}

pub async fn create(
    State(state): State<AppState>,
    who: Principal,
    Json(body): Json<CreateToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    who.require_admin()?;
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unknown role {:?}: use admin, deployer, viewer or worker",
            body.role
        ))
    })?;
    for env in &body.envs {
        super::check_env_name(env)?;
    }
    check_scope(role, &body.envs)?;
    let (record, secret) = new_token(&body.name, role, body.envs)?;
    state
        .store
        .create_token(record.clone(), &who.actor())
        .await?;
    tracing::info!(token = %record.id, role = role.as_str(), actor = %who.actor(), "token created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id: record.id,
            name: record.name,
            role,
            envs: record.envs,
            token: secret,
        }),
    ))
}

pub async fn list(
    State(state): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<TokenRecord>>> {
    who.require_admin()?;
    Ok(Json(state.store.list_tokens().await?))
}
