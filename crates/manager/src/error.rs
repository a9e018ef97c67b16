//! API errors: JSON with a stable `code` and a message that names the problem.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
pub(crate) use switchyard_api::ErrorBody;
use switchyard_api::ErrorCode;
use switchyard_store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    /// Extra structured detail (e.g. every validation error).
    pub details: Vec<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    pub fn not_found(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Conflict { .. } => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::RevisionConflict,
                format!("{e}; re-plan against the current revision and apply again"),
            ),
            StoreError::NoSuchEnv(env) => ApiError::not_found(
                ErrorCode::UnknownEnvironment,
                format!("unknown environment {env:?}; an admin can create it with POST /v1/envs"),
            ),
            StoreError::EnvExists(_) => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::EnvironmentExists,
                e.to_string(),
            ),
            StoreError::AuditFailed(_) => {
                tracing::error!(error = %e, "change refused: audit write failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::AuditFailed,
                    e.to_string(),
                )
            }
            StoreError::Database(_) => {
                tracing::error!(error = %e, "store error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::StoreError,
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
            message: self.message,
            details: self.details,
        };
        (self.status, Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
