//! What the CLI says when a call to the Manager fails: one line naming the cause and the
//! fix, then the Manager's `details` (e.g. every validation error), one per line.

use switchyard_api::{ApiFailure, ClientError, ErrorCode};

/// A Manager call's result, with its error as the message the CLI prints.
pub trait Explain<T> {
    fn explain(self) -> anyhow::Result<T>;
}

impl<T> Explain<T> for Result<T, ClientError> {
    fn explain(self) -> anyhow::Result<T> {
        self.map_err(|e| anyhow::Error::msg(message(&e)))
    }
}

/// The message for a failed call.
pub fn message(e: &ClientError) -> String {
    match e {
        // `--manager "ftp://x": expected http://host:port`, or a token that cannot be sent.
        ClientError::Config(m) => m.clone(),
        ClientError::Unreachable { base, reason } => format!(
            "cannot reach the Manager at {base} (is it running? check --manager / \
             SWITCHYARD_MANAGER): {reason}"
        ),
        ClientError::Timeout { .. } => e.to_string(),
        ClientError::Api(f) => answered(f),
        ClientError::Decode { url, reason } => format!("unexpected answer from {url}: {reason}"),
    }
}

/// An error answer of the Manager's.
fn answered(f: &ApiFailure) -> String {
    let (status, code, message) = (f.status, &f.body.code, f.body.message.as_str());
    let base = f.url.strip_suffix(f.path.as_str()).unwrap_or(&f.url);
    let env = f
        .path
        .strip_prefix("/v1/envs/")
        .map(|rest| rest.split(['/', '?']).next().unwrap_or(rest))
        .filter(|e| !e.is_empty());
    let mut text = match (status, code) {
        (401, ErrorCode::TokenExpired) if message.contains("switchyard manager token create") => {
            format!("the Manager refused the token: {message}")
        }
        (401, ErrorCode::TokenExpired) => format!(
            "the Manager refused the token: {message}; create a new one with \
             `switchyard manager token create`"
        ),
        (401, _) => {
            format!("the Manager refused the token ({message}): check --token / SWITCHYARD_TOKEN")
        }
        (403, _) => format!(
            "the token's role may not do this: {message} (use a token allowed to; \
             check --token / SWITCHYARD_TOKEN)"
        ),
        (404, ErrorCode::UnknownEnvironment) => {
            let env = env.unwrap_or("?");
            format!(
                "environment {env} does not exist on the Manager at {base}; create it with \
                 `switchyard env create {env}`"
            )
        }
        (409, ErrorCode::RevisionConflict) => {
            // The Manager's own hint is about its API; the CLI's is the command to run.
            let cause = message.split(';').next().unwrap_or(message);
            format!("{cause}: re-run `switchyard plan` and apply again")
        }
        _ => format!("{status} {code}: {message}"),
    };
    for d in &f.body.details {
        text.push_str("\n  ");
        text.push_str(d);
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use http::StatusCode;
    use switchyard_api::client::Reply;
    use switchyard_api::{ClientError, Transport};

    use super::message;

    const BASE: &str = "http://127.0.0.1:9000";

    /// The message for the answer `body` with `status` to a call of `path`, the answer read
    /// as the client reads it.
    fn answer(path: &str, status: u16, body: &[u8]) -> String {
        let transport = Transport::new(BASE, "t").unwrap();
        let reply = Reply {
            status: StatusCode::from_u16(status).unwrap(),
            body: Bytes::copy_from_slice(body),
        };
        message(&transport.decode::<()>(path, reply).unwrap_err())
    }

    fn msg(path: &str, status: u16, body: serde_json::Value) -> String {
        answer(path, status, body.to_string().as_bytes())
    }

    #[test]
    fn a_refused_token_points_at_the_token_arguments() {
        let m = msg(
            "/v1/envs/dev/apply",
            401,
            serde_json::json!({"code": "unauthorized", "message": "unknown or revoked token"}),
        );
        assert_eq!(
            m,
            "the Manager refused the token (unknown or revoked token): check --token / SWITCHYARD_TOKEN"
        );
    }

    #[test]
    fn an_expired_token_says_when_and_how_to_get_a_new_one() {
        let m = msg(
            "/v1/envs/dev/apply",
            401,
            serde_json::json!({"code": "token_expired",
                "message": "token tok_1 (\"ci\") expired at 2030-01-01T00:00:00Z"}),
        );
        assert_eq!(
            m,
            "the Manager refused the token: token tok_1 (\"ci\") expired at 2030-01-01T00:00:00Z; \
             create a new one with `switchyard manager token create`"
        );
        // The Manager's message already names the fix: not twice.
        let m = msg(
            "/v1/envs/dev/apply",
            401,
            serde_json::json!({"code": "token_expired",
                "message": "token tok_1 expired at X; create a new one with `switchyard manager token create`"}),
        );
        assert_eq!(
            m.matches("switchyard manager token create").count(),
            1,
            "{m}"
        );
        assert!(!m.contains('\n'));
    }

    #[test]
    fn forbidden_uses_the_managers_message() {
        let m = msg(
            "/v1/envs/prod/rollback",
            403,
            serde_json::json!({"code": "forbidden",
                "message": "token tok_2 has role viewer, which cannot change \"prod\""}),
        );
        assert!(
            m.starts_with("the token's role may not do this: token tok_2 has role viewer, which cannot change \"prod\""),
            "{m}"
        );
    }

    #[test]
    fn an_unknown_environment_names_it_the_manager_and_the_command() {
        let m = msg(
            "/v1/envs/prod/revisions/3",
            404,
            serde_json::json!({"code": "unknown_environment",
                "message": "unknown environment \"prod\"; an admin can create it with POST /v1/envs"}),
        );
        assert_eq!(
            m,
            "environment prod does not exist on the Manager at http://127.0.0.1:9000; \
             create it with `switchyard env create prod`"
        );
    }

    #[test]
    fn a_conflict_says_to_plan_again() {
        let m = msg(
            "/v1/envs/dev/apply",
            409,
            serde_json::json!({"code": "revision_conflict",
                "message": "environment \"dev\" is at revision 5, the change was planned against 4; re-plan against the current revision and apply again"}),
        );
        assert_eq!(
            m,
            "environment \"dev\" is at revision 5, the change was planned against 4: \
             re-run `switchyard plan` and apply again"
        );
    }

    #[test]
    fn validation_details_follow_the_first_line() {
        let m = msg(
            "/v1/envs/dev/apply",
            422,
            serde_json::json!({"code": "invalid_config", "message": "invalid manifests",
                "details": ["manifests[0]:3:1: unknown field", "manifests[1]:1:1: bad"]}),
        );
        assert_eq!(
            m,
            "422 invalid_config: invalid manifests\n  manifests[0]:3:1: unknown field\n  manifests[1]:1:1: bad"
        );
    }

    #[test]
    fn a_plain_text_answer_is_shown_as_is() {
        let m = answer("/v1/envs/dev/apply", 415, b"Expected JSON\n");
        assert_eq!(m, "415 error: Expected JSON");
    }

    #[test]
    fn no_manager_and_a_bad_address_name_the_setting_to_check() {
        let e = ClientError::Unreachable {
            base: BASE.into(),
            reason: "client error (Connect): tcp connect error: Connection refused".into(),
        };
        assert_eq!(
            message(&e),
            "cannot reach the Manager at http://127.0.0.1:9000 (is it running? check --manager / \
             SWITCHYARD_MANAGER): client error (Connect): tcp connect error: Connection refused"
        );
        let e = Transport::new("ftp://x", "t").unwrap_err();
        assert_eq!(
            message(&e),
            "--manager \"ftp://x\": expected http://host:port"
        );
        let e = ClientError::Timeout {
            url: format!("{BASE}/v1/envs"),
            after: Duration::from_secs(30),
        };
        assert_eq!(
            message(&e),
            "no answer from http://127.0.0.1:9000/v1/envs within 30s"
        );
    }
}
