//! How a proxy's own error answers (policy denials, gateway errors) are written: the one
//! renderer, so every error of a proxy speaks the same language.
//!
//! - `switchyard` (default): `{"error": code, "message", "source", "policy"?}`.
//! - `openai`: `{"error": {"message", "type", "code", "param": null}}`, what OpenAI SDKs
//!   parse, so their users see why a request was refused. `type` follows the status:
//!   400/408/413/other 4xx `invalid_request_error`, 401 `authentication_error`, 403
//!   `permission_error`, 404 `not_found_error`, 429 `rate_limit_error`, 5xx `api_error`.

use bytes::Bytes;
use http::StatusCode;

/// The error format of one proxy (`spec.errors.format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ErrorFormat {
    #[default]
    Switchyard,
    OpenAi,
}

/// One error answer, before it is written.
#[derive(Debug, Clone, Copy)]
pub struct ErrorBody<'a> {
    pub status: StatusCode,
    /// Stable machine-readable code (`rate_limited`, `upstream_timeout`…).
    pub code: &'a str,
    pub message: &'a str,
    /// `client`, `policy`, `upstream`, `internal`.
    pub source: &'a str,
    /// The type of the policy that answered, for denials.
    pub policy: Option<&'a str>,
}

/// The OpenAI `type` for a status.
pub fn openai_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        500.. => "api_error",
        _ => "invalid_request_error",
    }
}

impl ErrorBody<'_> {
    /// The JSON body (with a trailing newline) in `format`.
    pub fn render(&self, format: ErrorFormat) -> Bytes {
        let v = match format {
            ErrorFormat::Switchyard => {
                let mut v = serde_json::json!({
                    "error": self.code,
                    "message": self.message,
                    "source": self.source,
                });
                if let (Some(p), Some(map)) = (self.policy, v.as_object_mut()) {
                    map.insert("policy".into(), p.into());
                }
                v
            }
            ErrorFormat::OpenAi => serde_json::json!({
                "error": {
                    "message": self.message,
                    "type": openai_type(self.status),
                    "code": self.code,
                    "param": null,
                }
            }),
        };
        let mut out = serde_json::to_vec(&v).unwrap_or_default();
        out.push(b'\n');
        out.into()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn both_formats() {
        let e = ErrorBody {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "rate_limited",
            message: "slow down",
            source: "policy",
            policy: Some("rate-limit"),
        };
        let v: serde_json::Value =
            serde_json::from_slice(&e.render(ErrorFormat::Switchyard)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": "rate_limited", "message": "slow down", "source": "policy", "policy": "rate-limit"})
        );
        let v: serde_json::Value = serde_json::from_slice(&e.render(ErrorFormat::OpenAi)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": {"message": "slow down", "type": "rate_limit_error", "code": "rate_limited", "param": null}})
        );
        assert_eq!(openai_type(StatusCode::BAD_GATEWAY), "api_error");
        assert_eq!(
            openai_type(StatusCode::UNAUTHORIZED),
            "authentication_error"
        );
        assert_eq!(
            openai_type(StatusCode::PAYLOAD_TOO_LARGE),
            "invalid_request_error"
        );
    }
}
