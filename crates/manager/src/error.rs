//! API errors: JSON with a stable `code` and a message that names the problem — the
//! handlers' ([`ApiError`]) and axum's own rejections alike ([`json_errors`]).

use std::time::Duration;

use axum::Json;
use axum::http::header::{
    ALLOW, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE,
};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
pub(crate) use switchyard_api::ErrorBody;
use switchyard_api::ErrorCode;
use switchyard_store::StoreError;

/// The scheme a 401 names (RFC 9110 §11.6.1, RFC 6750 §3).
pub const WWW_AUTHENTICATE_BEARER: &str = "Bearer realm=\"switchyard\"";

/// An error answer: its status, stable code, message and details, as the JSON
/// [`ErrorBody`] every client reads.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    /// Extra structured detail (e.g. every validation error).
    pub details: Vec<String>,
    /// `Retry-After` (whole seconds, rounded up), when the client should wait.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
        }
    }

    /// The same, telling the client how long to wait before retrying.
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
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
            // A request that names a pruned revision (a rollback's target): the body names
            // what cannot be served. Views of a pruned revision answer 404 themselves.
            StoreError::Pruned { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::HistoryPruned,
                format!(
                    "{e}: its state can no longer be rebuilt (the Manager keeps the history \
                     given by --history-revisions / --history-age)"
                ),
            ),
            StoreError::CanaryRunning { env, revision } => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::CanaryRunning,
                format!(
                    "{e}: one canary per environment at a time, and nothing else is committed \
                     while it runs; finish it first with `switchyard canary promote --env {env}` \
                     or `switchyard canary abort --env {env}` (`switchyard canary status --env \
                     {env}` shows where canary r{revision} stands)"
                ),
            ),
            StoreError::NoCanary { .. } => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::NoCanary, e.to_string())
            }
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
            StoreError::Unavailable(_) => {
                tracing::error!(error = %e, "the database is unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::StoreUnavailable,
                    format!("{e}; nothing was written, retry"),
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
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(WWW_AUTHENTICATE_BEARER),
            );
        }
        if let Some(after) = self.retry_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            headers.insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

/// The largest plain-text rejection body read back (axum's are a line or two).
const REJECTION_READ_LIMIT: usize = 16 * 1024;

/// Turns every error answer that is not already JSON — axum's own rejections: a body that
/// is not JSON (400), without `Content-Type: application/json` (415), too large (413), with
/// the wrong fields (422), a query or path parameter that does not parse (400), a method
/// the route does not have (405) — into the API's JSON [`ErrorBody`] with a stable code,
/// keeping axum's message and headers (`Allow`). `method` names the request's in a 405.
pub async fn json_errors(method: Method, response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(response.headers()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, REJECTION_READ_LIMIT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let (code, message) = match status {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            ErrorCode::UnsupportedMediaType,
            format!("{text}: send the body as JSON with `Content-Type: application/json`"),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            ErrorCode::PayloadTooLarge,
            format!(
                "the request body is larger than the {} MiB the Manager accepts: send fewer \
                 manifests per request",
                crate::api::MAX_BODY_BYTES / (1024 * 1024)
            ),
        ),
        StatusCode::UNPROCESSABLE_ENTITY => (ErrorCode::InvalidBody, text),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = parts
                .headers
                .get(ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            (
                ErrorCode::MethodNotAllowed,
                format!("{method} is not allowed here; this endpoint takes {allow}"),
            )
        }
        StatusCode::NOT_FOUND => (ErrorCode::NotFound, text),
        s if s.is_server_error() => (ErrorCode::Internal, text),
        _ => (ErrorCode::BadRequest, text),
    };
    let message = if message.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
    } else {
        message
    };
    let mut answer = ApiError::new(status, code, message).into_response();
    for (name, value) in &parts.headers {
        if name != CONTENT_TYPE && name != CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

pub type ApiResult<T> = Result<T, ApiError>;
