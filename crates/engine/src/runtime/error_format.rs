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

/// Whether a request speaks gRPC (`content-type: application/grpc[+proto|+json|…]`): its
/// gateway errors are then answered in gRPC form ([`grpc_status`]), whatever the proxy's
/// error format, since a gRPC client reads only `grpc-status` and `grpc-message`.
pub fn is_grpc(content_type: Option<&http::HeaderValue>) -> bool {
    content_type.is_some_and(|c| {
        let c = c.as_bytes();
        c.starts_with(b"application/grpc")
            && matches!(c.get(b"application/grpc".len()), None | Some(b'+' | b';'))
    })
}

/// The gRPC status code a gateway error with HTTP `status` is answered with (HTTP 200,
/// `grpc-status` in a trailers-only response). Follows gRPC's HTTP-to-gRPC mapping, refined
/// where the gateway knows more than a status: a timeout is `DEADLINE_EXCEEDED` (4), a rate
/// limit or size limit `RESOURCE_EXHAUSTED` (8), a request the gateway finds invalid
/// `INVALID_ARGUMENT` (3).
pub fn grpc_status(status: StatusCode) -> u8 {
    match status.as_u16() {
        400 => 3,
        401 => 16,
        403 => 7,
        404 => 12,
        408 | 504 => 4,
        413 | 429 => 8,
        502 | 503 => 14,
        500 => 13,
        _ => 2,
    }
}

/// `grpc-message`: `code: message`, percent-encoded as gRPC requires (bytes outside
/// printable ASCII, and `%`).
pub fn grpc_message(code: &str, message: &str) -> http::HeaderValue {
    let mut out = String::with_capacity(code.len() + 2 + message.len());
    for b in code.bytes().chain(*b": ").chain(message.bytes()) {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    http::HeaderValue::from_str(&out).unwrap_or_else(|_| http::HeaderValue::from_static(""))
}

/// A request's `grpc-timeout` (`1-8 digits` then `H`, `M`, `S`, `m`, `u` or `n`), `None`
/// when absent or malformed (then ignored, as gRPC servers do).
pub fn grpc_timeout(value: Option<&http::HeaderValue>) -> Option<std::time::Duration> {
    use std::time::Duration;
    let v = value?.as_bytes();
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b"H" => Duration::from_secs(n * 3600),
        b"M" => Duration::from_secs(n * 60),
        b"S" => Duration::from_secs(n),
        b"m" => Duration::from_millis(n),
        b"u" => Duration::from_micros(n),
        b"n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn grpc_requests_are_recognised_by_content_type() {
        let v = |s: &'static str| Some(http::HeaderValue::from_static(s));
        assert!(is_grpc(v("application/grpc").as_ref()));
        assert!(is_grpc(v("application/grpc+proto").as_ref()));
        assert!(is_grpc(v("application/grpc;charset=utf-8").as_ref()));
        assert!(!is_grpc(v("application/grpc-web").as_ref()));
        assert!(!is_grpc(v("application/json").as_ref()));
        assert!(!is_grpc(None));
    }

    #[test]
    fn grpc_timeouts_parse_every_unit_and_refuse_the_rest() {
        use std::time::Duration;
        let t = |s: &'static str| grpc_timeout(Some(&http::HeaderValue::from_static(s)));
        assert_eq!(t("100m"), Some(Duration::from_millis(100)));
        assert_eq!(t("2S"), Some(Duration::from_secs(2)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("3M"), Some(Duration::from_secs(180)));
        assert_eq!(t("5u"), Some(Duration::from_micros(5)));
        assert_eq!(t("7n"), Some(Duration::from_nanos(7)));
        assert_eq!(t("123456789S"), None, "at most 8 digits");
        assert_eq!(t("S"), None);
        assert_eq!(t("10x"), None);
        assert_eq!(t("-1S"), None);
        assert_eq!(t(""), None);
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(
            grpc_message("rate_limited", "100% used: ünïcode"),
            "rate_limited: 100%25 used: %C3%BCn%C3%AFcode"
        );
        assert_eq!(grpc_status(StatusCode::TOO_MANY_REQUESTS), 8);
        assert_eq!(grpc_status(StatusCode::GATEWAY_TIMEOUT), 4);
        assert_eq!(grpc_status(StatusCode::UNAUTHORIZED), 16);
        assert_eq!(grpc_status(StatusCode::BAD_GATEWAY), 14);
    }

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
