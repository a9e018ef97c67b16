//! A small client for the Manager's admin API, used by `apply`, `up` and friends.

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub struct AdminClient {
    base: String,
    token: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    pub fn new(base: &str, token: &str) -> anyhow::Result<AdminClient> {
        let base = base.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            bail!("--manager {base:?}: expected http://host:port");
        }
        Ok(AdminClient {
            base,
            token: token.trim().to_string(),
            http: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(Method::GET, path, None::<&()>).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.send(Method::POST, path, Some(body)).await
    }

    async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let bytes = match body {
            Some(b) => Bytes::from(serde_json::to_vec(b)?),
            None => Bytes::new(),
        };
        let req = Request::builder()
            .method(method)
            .uri(&url)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(bytes))?;
        let resp = self.http.request(req).await.with_context(|| {
            format!(
                "cannot reach the Manager at {} (is it running? check --manager / SWITCHYARD_MANAGER)",
                self.base
            )
        })?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!(error_message(&self.base, path, status.as_u16(), &body));
        }
        serde_json::from_slice(&body).with_context(|| format!("unexpected answer from {url}"))
    }
}

impl AdminClient {
    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.send(Method::PUT, path, Some(body)).await
    }
}

/// Percent-encodes `s` for a URL path segment or query value (RFC 3986 unreserved
/// characters are kept).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A Manager error as one line naming the cause and the fix, then the `details` (the
/// per-file validation errors), one per line.
pub fn error_message(base: &str, path: &str, status: u16, body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let message = v["message"].as_str().map_or_else(
        || String::from_utf8_lossy(body).trim().to_string(),
        str::to_string,
    );
    let code = v["code"].as_str().unwrap_or("error");
    let env = path
        .strip_prefix("/v1/envs/")
        .map(|rest| rest.split(['/', '?']).next().unwrap_or(rest))
        .filter(|e| !e.is_empty());
    let mut text = match (status, code) {
        (401, "token_expired") if message.contains("switchyard manager token create") => {
            format!("the Manager refused the token: {message}")
        }
        (401, "token_expired") => format!(
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
        (404, "unknown_environment") => {
            let env = env.unwrap_or("?");
            format!(
                "environment {env} does not exist on the Manager at {base}; create it with \
                 `switchyard env create {env}`"
            )
        }
        (409, "revision_conflict") => {
            // The Manager's own hint is about its API; the CLI's is the command to run.
            let cause = message.split(';').next().unwrap_or(&message);
            format!("{cause}: re-run `switchyard plan` and apply again")
        }
        _ => format!("{status} {code}: {message}"),
    };
    if let Some(details) = v["details"].as_array() {
        for d in details.iter().filter_map(|d| d.as_str()) {
            text.push_str("\n  ");
            text.push_str(d);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_message;

    const BASE: &str = "http://127.0.0.1:9000";

    fn msg(path: &str, status: u16, body: serde_json::Value) -> String {
        error_message(BASE, path, status, body.to_string().as_bytes())
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
        let m = error_message(BASE, "/v1/envs/dev/apply", 415, b"Expected JSON\n");
        assert_eq!(m, "415 error: Expected JSON");
    }
}
