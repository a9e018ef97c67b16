//! The Manager's error answers: a stable [`ErrorCode`], a message that names the problem,
//! and details (e.g. every validation error with its file:line:column).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Every `code` the Manager answers with. Clients decide on these, never on messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Missing, malformed, unknown or revoked bearer token.
    Unauthorized,
    /// The token has expired (the message says when).
    TokenExpired,
    /// The token's role or environments do not allow this.
    Forbidden,
    /// The request is invalid (a query, a name, a field value, a body that is not JSON).
    BadRequest,
    /// The JSON body does not have the expected fields or types.
    InvalidBody,
    /// The body is not `Content-Type: application/json`.
    UnsupportedMediaType,
    /// The body is larger than the Manager accepts.
    PayloadTooLarge,
    /// No such endpoint.
    NotFound,
    /// The endpoint exists, not with this method (the `Allow` header lists the ones it has).
    MethodNotAllowed,
    UnknownEnvironment,
    UnknownRevision,
    /// A revision older than the history the Manager retains (it was pruned): its state
    /// and record can no longer be shown or rolled back to.
    HistoryPruned,
    UnknownCredential,
    /// No token has this id.
    UnknownToken,
    /// A token may not revoke itself (another admin token must).
    RevokingOwnToken,
    EnvironmentExists,
    /// An environment with Workers connected is not deleted unless forced.
    WorkersConnected,
    /// The environment moved past the revision the change was planned against.
    RevisionConflict,
    /// Manifests, or the environment after the change, do not compile (`details`).
    InvalidConfig,
    /// `apply` of a change that Workers only take when they start (`details` lists the
    /// fields and why); `switchyard rollout` applies it.
    RestartRequired,
    /// A rollout of the environment is running: it finishes (or fails) first.
    RolloutInProgress,
    /// A canary of the environment is running: it is promoted or aborted first (the
    /// message names it and the commands).
    CanaryRunning,
    /// The environment has no canary, or none running.
    NoCanary,
    /// A change that cannot be a canary: it is not chosen per request (listeners,
    /// certificates, gateway or process settings), or needs a restart.
    NotCanaryable,
    /// Revision 0 is no revision to roll back to.
    InvalidRevision,
    /// `credential set|rotate` on a credential that is not `type: secret`.
    NotASecret,
    /// `credential rotate` to the value it already has.
    SameValue,
    /// The audit record could not be written, so nothing changed.
    AuditFailed,
    StoreError,
    /// The Manager's database cannot be reached: nothing was written. Retry (another
    /// Manager, or later).
    StoreUnavailable,
    SealFailed,
    /// A stored secret does not open with this Manager's key.
    SecretUnreadable,
    NoRandomness,
    /// A report names a Worker that has no event stream open with the reporting token.
    WorkerMismatch,
    /// A report is about a revision of another store than the Manager's (it was restored
    /// from a backup, or replaced, since the Worker pulled it).
    StoreMismatch,
    /// A worker token used without the client certificate the Manager requires, or with
    /// one issued for another environment.
    WorkerCertificate,
    Internal,
    /// This peer sent too many wrong tokens: its requests are refused for a moment
    /// (`Retry-After` says how long).
    TooManyAuthFailures,
    /// A code this client does not know (a newer Manager), or an answer that was not JSON.
    Other(String),
}

impl ErrorCode {
    /// Every code the Manager answers with (all but [`ErrorCode::Other`]).
    pub const KNOWN: [ErrorCode; 38] = [
        ErrorCode::Unauthorized,
        ErrorCode::TokenExpired,
        ErrorCode::Forbidden,
        ErrorCode::BadRequest,
        ErrorCode::InvalidBody,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::PayloadTooLarge,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::UnknownEnvironment,
        ErrorCode::UnknownRevision,
        ErrorCode::HistoryPruned,
        ErrorCode::UnknownCredential,
        ErrorCode::UnknownToken,
        ErrorCode::RevokingOwnToken,
        ErrorCode::EnvironmentExists,
        ErrorCode::WorkersConnected,
        ErrorCode::TooManyAuthFailures,
        ErrorCode::RevisionConflict,
        ErrorCode::InvalidConfig,
        ErrorCode::RestartRequired,
        ErrorCode::RolloutInProgress,
        ErrorCode::CanaryRunning,
        ErrorCode::NoCanary,
        ErrorCode::NotCanaryable,
        ErrorCode::InvalidRevision,
        ErrorCode::NotASecret,
        ErrorCode::SameValue,
        ErrorCode::AuditFailed,
        ErrorCode::StoreError,
        ErrorCode::StoreUnavailable,
        ErrorCode::SealFailed,
        ErrorCode::SecretUnreadable,
        ErrorCode::NoRandomness,
        ErrorCode::WorkerMismatch,
        ErrorCode::StoreMismatch,
        ErrorCode::WorkerCertificate,
        ErrorCode::Internal,
    ];

    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidBody => "invalid_body",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::UnknownEnvironment => "unknown_environment",
            ErrorCode::UnknownRevision => "unknown_revision",
            ErrorCode::HistoryPruned => "history_pruned",
            ErrorCode::UnknownCredential => "unknown_credential",
            ErrorCode::UnknownToken => "unknown_token",
            ErrorCode::RevokingOwnToken => "revoking_own_token",
            ErrorCode::EnvironmentExists => "environment_exists",
            ErrorCode::WorkersConnected => "workers_connected",
            ErrorCode::TooManyAuthFailures => "too_many_auth_failures",
            ErrorCode::RevisionConflict => "revision_conflict",
            ErrorCode::InvalidConfig => "invalid_config",
            ErrorCode::RestartRequired => "restart_required",
            ErrorCode::RolloutInProgress => "rollout_in_progress",
            ErrorCode::CanaryRunning => "canary_running",
            ErrorCode::NoCanary => "no_canary",
            ErrorCode::NotCanaryable => "not_canaryable",
            ErrorCode::InvalidRevision => "invalid_revision",
            ErrorCode::NotASecret => "not_a_secret",
            ErrorCode::SameValue => "same_value",
            ErrorCode::AuditFailed => "audit_failed",
            ErrorCode::StoreError => "store_error",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::SealFailed => "seal_failed",
            ErrorCode::SecretUnreadable => "secret_unreadable",
            ErrorCode::NoRandomness => "no_randomness",
            ErrorCode::WorkerMismatch => "worker_mismatch",
            ErrorCode::StoreMismatch => "store_mismatch",
            ErrorCode::WorkerCertificate => "worker_certificate",
            ErrorCode::Internal => "internal",
            ErrorCode::Other(s) => s,
        }
    }

    pub fn parse(s: &str) -> ErrorCode {
        ErrorCode::KNOWN
            .into_iter()
            .find(|c| c.as_str() == s)
            .unwrap_or_else(|| ErrorCode::Other(s.to_string()))
    }

    /// Whether the same request may succeed later without being changed (the Manager's
    /// store or audit log was briefly unavailable).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ErrorCode::AuditFailed
                | ErrorCode::StoreError
                | ErrorCode::StoreUnavailable
                | ErrorCode::TooManyAuthFailures
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(ErrorCode::parse(&s))
    }
}

/// The JSON body of the API's error responses.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `unknown_environment`, `revision_conflict`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub code: ErrorCode,
    /// What went wrong, for humans.
    pub message: String,
    /// Extra structured detail (e.g. every validation error); omitted when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{ErrorBody, ErrorCode};

    #[test]
    fn codes_read_back_and_unknown_ones_are_kept() {
        for c in ErrorCode::KNOWN {
            assert_eq!(ErrorCode::parse(c.as_str()), c);
        }
        let body: ErrorBody =
            serde_json::from_str(r#"{"code":"from_the_future","message":"m"}"#).unwrap();
        assert_eq!(body.code, ErrorCode::Other("from_the_future".into()));
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"code":"from_the_future","message":"m"}"#
        );
    }
}
