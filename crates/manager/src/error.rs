//! API errors: JSON with a stable `code` and a message that names the problem.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use switchyard_store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra structured detail (e.g. every validation error).
    pub details: Vec<String>,
}

/// The JSON body of the API's error responses.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody<'a> {
    /// Stable machine-readable code, e.g. `unknown_environment`, `revision_conflict`.
    code: &'a str,
    /// What went wrong, for humans.
    message: &'a str,
    /// Extra structured detail (e.g. every validation error); omitted when empty.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    details: &'a [String],
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Conflict { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "revision_conflict",
                format!("{e}; re-plan against the current revision and apply again"),
            ),
            StoreError::NoSuchEnv(env) => ApiError::not_found(
                "unknown_environment",
                format!("unknown environment {env:?}; an admin can create it with POST /v1/envs"),
            ),
            StoreError::EnvExists(_) => {
                ApiError::new(StatusCode::CONFLICT, "environment_exists", e.to_string())
            }
            StoreError::AuditFailed(_) => {
                tracing::error!(error = %e, "change refused: audit write failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "audit_failed",
                    e.to_string(),
                )
            }
            StoreError::Database(_) => {
                tracing::error!(error = %e, "store error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "store_error",
                    e.to_string(),
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code,
            message: &self.message,
            details: &self.details,
        };
        (self.status, Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
