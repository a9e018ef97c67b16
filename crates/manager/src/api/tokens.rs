//! Tokens: created by admins, the secret shown once.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use switchyard_store::{Role, TokenRecord};

use super::openapi::{
    AUDIT_FAILED, BAD_REQUEST_BODY, FORBIDDEN, SERVER_ERROR, UNAUTHORIZED, UNPROCESSABLE_BODY,
    UNSUPPORTED_MEDIA_TYPE,
};
use crate::auth::{Principal, check_scope, new_token};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    name: String,
    /// `admin`, `deployer`, `viewer` or `worker`.
    #[schema(example = "deployer")]
    role: String,
    /// Environments: exactly one for `worker`, at least one for `deployer`, none for
    /// `admin`; optional for `viewer` (none = all).
    #[serde(default)]
    envs: Vec<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    id: String,
    name: String,
    role: Role,
    envs: Vec<String>,
    /// The secret. Shown once; only its hash is stored.
    token: String,
}

/// Create a token (admin); its secret is in the response, and only there.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    operation_id = "createToken",
    tag = "tokens",
    request_body = CreateToken,
    responses(
        (status = 201, description = "The token, with its secret (shown once)", body = CreatedToken),
        (status = 400, description = BAD_REQUEST_BODY, content(
            (ErrorBody = "application/json"),
            (String = "text/plain"),
        )),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 415, description = UNSUPPORTED_MEDIA_TYPE, body = String),
        (status = 422, description = UNPROCESSABLE_BODY, body = String),
        (status = 500, description = SERVER_ERROR, body = ErrorBody),
        (status = 503, description = AUDIT_FAILED, body = ErrorBody),
    )
)]
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

/// List every token (admin); secrets are never shown.
#[utoipa::path(
    get,
    path = "/v1/tokens",
    operation_id = "listTokens",
    tag = "tokens",
    responses(
        (status = 200, description = "Every token, revoked ones included", body = Vec<TokenRecord>),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 500, description = SERVER_ERROR, body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<TokenRecord>>> {
    who.require_admin()?;
    Ok(Json(state.store.list_tokens().await?))
}
