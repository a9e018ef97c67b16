//! Tokens: created by admins, the secret shown once.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use switchyard_api::ErrorCode;
use switchyard_api::records::{Millis, Role, TokenRecord, now_millis};

use super::openapi::{AUDIT_FAILED, FORBIDDEN, SERVER_ERROR, UNAUTHORIZED};
use crate::auth::{Principal, check_scope, new_token};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;
use switchyard_api::admin::{CreateToken, CreatedToken, parse_duration};

/// Create a token (admin); its secret is in the response, and only there.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    operation_id = "createToken",
    tag = "tokens",
    request_body = CreateToken,
    responses(
        (status = 201, description = "The token, with its secret (shown once)", body = CreatedToken),
        (status = 400, description = "An unknown role, a role/environment combination that makes no sense, an invalid expiry (`bad_request`), or a body that is not JSON", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 422, description = "An environment in `envs` does not exist (`unknown_environment`), or a JSON body without the expected fields (`invalid_body`)", body = ErrorBody),
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
    for env in &body.envs {
        state.referenced_env(env).await?;
    }
    let expires_at = expiry(body.expires_in.as_deref(), body.expires_at, now_millis())?;
    let (record, secret) = new_token(&body.name, role, body.envs, expires_at)?;
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
            expires_at: record.expires_at,
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

/// Revoke a token (admin): it is refused at once, on every path, by this Manager.
///
/// The token's next request is refused with 401 on this Manager immediately (its cached
/// verification is dropped). Other Managers sharing the store may accept it for up to 5 s
/// (their verification cache). Revoking a revoked token changes nothing and is not audited
/// again.
#[utoipa::path(
    delete,
    path = "/v1/tokens/{id}",
    operation_id = "revokeToken",
    tag = "tokens",
    params((
        "id" = String,
        Path,
        description = "The token's public id (`tok_…`, as `GET /v1/tokens` lists it)"
    )),
    responses(
        (status = 200, description = "The token, now revoked (`revoked_at` says since when)", body = TokenRecord),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = "No token has this id (`unknown_token`)", body = ErrorBody),
        (status = 409, description = "The token is the one making the request (`revoking_own_token`): use another admin token", body = ErrorBody),
        (status = 500, description = SERVER_ERROR, body = ErrorBody),
        (status = 503, description = AUDIT_FAILED, body = ErrorBody),
    )
)]
pub async fn revoke(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<TokenRecord>> {
    who.require_admin()?;
    if id == who.token_id {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::RevokingOwnToken,
            format!(
                "token {id} is the one making this request: revoke it with another admin \
                 token (`switchyard manager token create --role admin` makes one)"
            ),
        ));
    }
    let (token, revoked_now) = state
        .store
        .revoke_token(&id, &who.actor())
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                ErrorCode::UnknownToken,
                format!("no token has id {id:?}; `switchyard token list` shows them"),
            )
        })?;
    // Whether or not this call revoked it, no cached verification may outlive it.
    state.tokens.evict(&token.id);
    if revoked_now {
        tracing::info!(token = %token.id, actor = %who.actor(), "token revoked");
    }
    Ok(Json(token))
}

/// The expiry a creation asks for: `expires_in` (a duration from `now`) or `expires_at`
/// (unix ms, in the future), or none.
fn expiry(
    expires_in: Option<&str>,
    expires_at: Option<Millis>,
    now: Millis,
) -> ApiResult<Option<Millis>> {
    match (expires_in, expires_at) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "give expires_in or expires_at, not both",
        )),
        (Some(text), None) => {
            let d = parse_duration(text)
                .filter(|_| !text.starts_with('0'))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "invalid expires_in {text:?}: use a duration such as 30d, 12h or 90m \
                         (a count from 1, then ms, s, m, h, d or w)"
                    ))
                })?;
            let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            Ok(Some(now.saturating_add(ms)))
        }
        (None, Some(at)) if at <= now => Err(ApiError::bad_request(format!(
            "expires_at {at} is not in the future"
        ))),
        (None, Some(at)) => Ok(Some(at)),
    }
}

#[cfg(test)]
mod tests {
    use super::expiry;

    #[test]
    fn expiry_from_a_duration_or_a_time() {
        assert_eq!(expiry(None, None, 1000).unwrap(), None);
        assert_eq!(
            expiry(Some("30d"), None, 1000).unwrap(),
            Some(1000 + 30 * 86_400_000)
        );
        assert_eq!(expiry(Some("1ms"), None, 1000).unwrap(), Some(1001));
        assert_eq!(expiry(None, Some(5000), 1000).unwrap(), Some(5000));
        assert!(expiry(Some("0s"), None, 1000).is_err());
        assert!(expiry(Some("05h"), None, 1000).is_err());
        assert!(expiry(Some("1h30m"), None, 1000).is_err());
        assert!(expiry(Some("soon"), None, 1000).is_err());
        assert!(expiry(None, Some(1000), 1000).is_err());
        assert!(expiry(Some("1h"), Some(5000), 1000).is_err());
    }
}
