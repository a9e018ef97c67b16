//! What the CLI says when a call to the Manager fails: one line naming the cause and the
//! fix, then the Manager's `details` (e.g. every validation error), one per line.

use http::Method;
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
            "cannot reach the Manager at {base}, nothing was sent (is it running? check \
             --manager / SWITCHYARD_MANAGER): {reason}"
        ),
        ClientError::Tls { .. } => e.to_string(),
        ClientError::NoneReachable { tried } => {
            let each: Vec<String> = tried
                .iter()
                .map(|e| match e {
                    ClientError::Unreachable { base, reason } => {
                        format!("{base}: cannot reach it: {reason}")
                    }
                    ClientError::Tls { base, reason } => {
                        format!("{base}: cannot verify it: {reason}")
                    }
                    other => message(other),
                })
                .collect();
            format!(
                "none of the {} Managers could be reached, nothing was sent (are they running? \
                 check --manager / SWITCHYARD_MANAGER): {}",
                tried.len(),
                each.join("; ")
            )
        }
        ClientError::NoAnswer {
            method,
            url,
            reason,
        } if *method != Method::GET => outcome_unknown(
            url,
            &format!("the connection broke before its answer ({reason})"),
        ),
        ClientError::Timeout { method, url, after } if *method != Method::GET => outcome_unknown(
            url,
            &format!(
                "no answer came within {}",
                humantime::format_duration(*after)
            ),
        ),
        ClientError::NoAnswer { .. } | ClientError::Timeout { .. } => e.to_string(),
        ClientError::Api(f) => answered(f),
        ClientError::Decode { url, reason } => format!("unexpected answer from {url}: {reason}"),
    }
}

/// A write that was sent but got no answer: it may or may not have been committed. Says
/// so, whether re-running it is safe, and how to find out (from the call's path).
fn outcome_unknown(url: &str, what: &str) -> String {
    let path = url
        .find("/v1/")
        .map_or(url, |i| &url[i..])
        .split('?')
        .next()
        .unwrap_or_default();
    let segments: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    let env_status = |env: &str| format!("check with `switchyard status --env {env}`");
    let (rerun, check) = match segments.as_slice() {
        ["envs", env, "apply"] => (
            "`switchyard apply` is idempotent, so re-running it is safe (it commits nothing \
             when the change was made)"
                .to_string(),
            env_status(env),
        ),
        ["envs", env, op @ ("promote" | "rollback")] => (
            format!(
                "re-running the same `switchyard {op}` is safe (it changes nothing when the \
                 change was made)"
            ),
            env_status(env),
        ),
        ["envs", env, "credentials", ..] => (
            "re-running `credential set` is safe; a `credential rotate` that was made is \
             refused the second time as already having this value"
                .to_string(),
            env_status(env),
        ),
        ["envs"] => (
            "re-running `switchyard env create` is safe (it says so when the environment exists)"
                .to_string(),
            "check with `switchyard status --env NAME`".to_string(),
        ),
        ["envs", env] => (
            "re-running `switchyard env delete` is safe (it says so when the environment is gone)"
                .to_string(),
            env_status(env),
        ),
        ["tokens"] => (
            "a token may have been created whose secret you never got: do not simply re-run"
                .to_string(),
            "check with `switchyard token list`, and revoke a token you cannot use".to_string(),
        ),
        ["tokens", _] => (
            "re-running `switchyard token revoke` is safe".to_string(),
            "check with `switchyard token list`".to_string(),
        ),
        _ => (
            "re-running it may repeat it".to_string(),
            "check the Manager's state before retrying".to_string(),
        ),
    };
    format!(
        "the outcome is unknown: the request reached the Manager ({url}) but {what}, so it may \
         or may not have been applied; {rerun}; {check}"
    )
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
        (401, _) => format!(
            "the Manager refused the token ({message}): check --token-file / --token \
             (SWITCHYARD_TOKEN_FILE / SWITCHYARD_TOKEN)"
        ),
        (429, ErrorCode::TooManyAuthFailures) => format!(
            "the Manager is refusing this address for now after too many wrong tokens \
             ({message}); check --token-file / --token and retry in a moment"
        ),
        (403, _) => format!(
            "the token's role may not do this: {message} (use a token allowed to; \
             check --token / SWITCHYARD_TOKEN)"
        ),
        (404 | 422, ErrorCode::UnknownEnvironment) => {
            // The Manager names the environment it does not know (for a promotion it may be
            // the source, not the path's; for the audit trail it is in the query).
            let named = message
                .strip_prefix("unknown environment \"")
                .and_then(|rest| rest.split('"').next())
                .filter(|e| !e.is_empty());
            let env = named.or(env).unwrap_or("?");
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
    use http::{Method, StatusCode};
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
            "the Manager refused the token (unknown or revoked token): check --token-file / \
             --token (SWITCHYARD_TOKEN_FILE / SWITCHYARD_TOKEN)"
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
    fn the_unknown_environment_is_the_one_the_manager_names() {
        let m = msg(
            "/v1/envs/prod/promote",
            404,
            serde_json::json!({"code": "unknown_environment",
                "message": "unknown environment \"stagee\"; an admin can create it with POST /v1/envs"}),
        );
        assert!(m.starts_with("environment stagee does not exist"), "{m}");
        let m = msg(
            "/v1/audit?limit=50&env=nope",
            404,
            serde_json::json!({"code": "unknown_environment",
                "message": "unknown environment \"nope\"; an admin can create it with POST /v1/envs"}),
        );
        assert!(m.starts_with("environment nope does not exist"), "{m}");
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
    fn an_answer_that_is_not_json_is_shown_as_is() {
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
            "cannot reach the Manager at http://127.0.0.1:9000, nothing was sent (is it running? \
             check --manager / SWITCHYARD_MANAGER): client error (Connect): tcp connect error: \
             Connection refused"
        );
        let e = Transport::new("ftp://x", "t").unwrap_err();
        assert_eq!(
            message(&e),
            "--manager \"ftp://x\": expected https://host:port (or http://host:port)"
        );
        let e = ClientError::NoneReachable {
            tried: vec![
                ClientError::Unreachable {
                    base: BASE.into(),
                    reason: "tcp connect error: Connection refused".into(),
                },
                ClientError::Tls {
                    base: "https://b:9000".into(),
                    reason: "invalid peer certificate: UnknownIssuer".into(),
                },
            ],
        };
        assert_eq!(
            message(&e),
            "none of the 2 Managers could be reached, nothing was sent (are they running? check \
             --manager / SWITCHYARD_MANAGER): http://127.0.0.1:9000: cannot reach it: tcp \
             connect error: Connection refused; https://b:9000: cannot verify it: invalid peer \
             certificate: UnknownIssuer"
        );
        let e = ClientError::Timeout {
            method: Method::GET,
            url: format!("{BASE}/v1/envs"),
            after: Duration::from_secs(30),
        };
        assert_eq!(
            message(&e),
            "no answer from http://127.0.0.1:9000/v1/envs within 30s"
        );
    }

    #[test]
    fn a_write_without_an_answer_says_the_outcome_is_unknown_and_how_to_check() {
        let broke = |method: Method, path: &str| {
            message(&ClientError::NoAnswer {
                method,
                url: format!("{BASE}{path}"),
                reason: "connection closed before message completed".into(),
            })
        };
        let m = broke(Method::POST, "/v1/envs/prod/apply");
        assert!(m.starts_with("the outcome is unknown"), "{m}");
        assert!(
            m.contains("connection closed before message completed"),
            "{m}"
        );
        assert!(
            m.contains("idempotent") && m.contains("re-running it is safe"),
            "{m}"
        );
        assert!(m.contains("`switchyard status --env prod`"), "{m}");
        assert!(!m.contains("cannot reach"), "{m}");
        let m = broke(Method::POST, "/v1/envs/stage/rollback");
        assert!(
            m.contains("`switchyard rollback`") && m.contains("--env stage"),
            "{m}"
        );
        let m = broke(Method::POST, "/v1/tokens");
        assert!(
            m.contains("do not simply re-run") && m.contains("token list"),
            "{m}"
        );
        let m = broke(Method::DELETE, "/v1/tokens/tok_1");
        assert!(m.contains("token revoke` is safe"), "{m}");
        let m = message(&ClientError::Timeout {
            method: Method::PUT,
            url: format!("{BASE}/v1/envs/dev/credentials/k/value"),
            after: Duration::from_secs(30),
        });
        assert!(m.contains("no answer came within 30s"), "{m}");
        assert!(m.contains("--env dev"), "{m}");
        // A read has no outcome to worry about.
        let m = broke(Method::GET, "/v1/envs/dev");
        assert!(!m.contains("outcome"), "{m}");
        for m in [
            broke(Method::POST, "/v1/envs/dev/apply"),
            broke(Method::POST, "/v1/envs"),
        ] {
            assert!(!m.contains('\n'), "one line: {m}");
        }
    }
}
