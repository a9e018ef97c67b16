//! [`AdminClient`]: the admin API, one typed method per endpoint.

use http::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ClientError, ManagerTls, Reply, Transport};
use crate::admin::{
    ApplyRequest, AuditParams, BatchResponse, CreateEnv, CreateToken, CreatedToken,
    CredentialValueRequest, CredentialValueResponse, DeletedEnv, EntityView, PromoteRequest,
    RevisionView, RollbackRequest, RolloutRequest, RolloutStatus, WorkerView,
};
use crate::canary::{CanaryAction, CanaryStatus};
use crate::records::{AuditRecord, EnvInfo, RevisionRecord, TokenRecord};

/// The admin API of one Manager, as one token sees it.
#[derive(Debug, Clone)]
pub struct AdminClient {
    transport: Transport,
}

impl AdminClient {
    pub fn new(base: &str, token: &str) -> Result<AdminClient, ClientError> {
        Ok(AdminClient {
            transport: Transport::new(base, token)?,
        })
    }

    /// [`AdminClient::new`] verifying an `https://` Manager with `tls` (not the system's
    /// roots).
    pub fn with_tls(base: &str, token: &str, tls: &ManagerTls) -> Result<AdminClient, ClientError> {
        Ok(AdminClient {
            transport: Transport::builder(base, token)?.tls(tls)?.build(),
        })
    }

    /// [`AdminClient::with_tls`] for several Managers of one control plane: calls go to the
    /// first that can be reached, which is kept while it answers (see
    /// [`super::TransportBuilder::fallbacks`]). `urls` must not be empty.
    pub fn with_fallbacks<S: AsRef<str>>(
        urls: &[S],
        token: &str,
        tls: &ManagerTls,
    ) -> Result<AdminClient, ClientError> {
        let (first, rest) = urls
            .split_first()
            .ok_or_else(|| ClientError::Config("--manager: give at least one URL".into()))?;
        Ok(AdminClient {
            transport: Transport::builder(first.as_ref(), token)?
                .fallbacks(rest)?
                .tls(tls)?
                .build(),
        })
    }

    pub fn with_transport(transport: Transport) -> AdminClient {
        AdminClient { transport }
    }

    /// The same Manager with another token.
    pub fn as_token(&self, token: &str) -> Result<AdminClient, ClientError> {
        Ok(AdminClient {
            transport: self.transport.with_token(token)?,
        })
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The Manager calls go to (of several: the one that last answered).
    pub fn base(&self) -> &str {
        self.transport.base()
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.transport.call(Method::GET, path, None::<&()>).await
    }

    async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.transport.call(Method::POST, path, Some(body)).await
    }

    /// Any call, its status and body whatever they are: for tests of error answers and
    /// for endpoints this client has no method for.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Reply, ClientError> {
        self.transport.send(method, path, body).await
    }

    pub async fn envs(&self) -> Result<Vec<EnvInfo>, ClientError> {
        self.get("/v1/envs").await
    }

    pub async fn env(&self, env: &str) -> Result<EnvInfo, ClientError> {
        self.get(&format!("/v1/envs/{}", encode(env))).await
    }

    pub async fn create_env(&self, name: &str) -> Result<EnvInfo, ClientError> {
        self.post(
            "/v1/envs",
            &CreateEnv {
                name: name.to_string(),
            },
        )
        .await
    }

    /// Deletes an environment (admin); refused while Workers are connected unless `force`.
    pub async fn delete_env(&self, env: &str, force: bool) -> Result<DeletedEnv, ClientError> {
        let mut path = format!("/v1/envs/{}", encode(env));
        if force {
            path.push_str("?force=true");
        }
        self.transport
            .call(Method::DELETE, &path, None::<&()>)
            .await
    }

    pub async fn apply(&self, env: &str, req: &ApplyRequest) -> Result<BatchResponse, ClientError> {
        self.post(&format!("/v1/envs/{}/apply", encode(env)), req)
            .await
    }

    /// Commits `req` as a rollout revision and starts walking the Workers (answers at
    /// once; follow it with [`AdminClient::rollout_status`]).
    pub async fn rollout(
        &self,
        env: &str,
        req: &RolloutRequest,
    ) -> Result<RolloutStatus, ClientError> {
        self.post(&format!("/v1/envs/{}/rollout", encode(env)), req)
            .await
    }

    /// The environment's latest rollout, as saved by the Manager driving it (the same through
    /// every Manager of a database; `None`: none was run).
    pub async fn rollout_status(&self, env: &str) -> Result<Option<RolloutStatus>, ClientError> {
        self.get(&format!("/v1/envs/{}/rollout", encode(env))).await
    }

    /// The environment's latest canary (`None`: it never had one).
    pub async fn canary(&self, env: &str) -> Result<Option<CanaryStatus>, ClientError> {
        self.get(&format!("/v1/envs/{}/canary", encode(env))).await
    }

    /// Promotes the running canary to every request now, whatever its step.
    pub async fn canary_promote(
        &self,
        env: &str,
        action: &CanaryAction,
    ) -> Result<CanaryStatus, ClientError> {
        self.post(&format!("/v1/envs/{}/canary/promote", encode(env)), action)
            .await
    }

    /// Aborts the running canary: a revision with the stable content is committed.
    pub async fn canary_abort(
        &self,
        env: &str,
        action: &CanaryAction,
    ) -> Result<CanaryStatus, ClientError> {
        self.post(&format!("/v1/envs/{}/canary/abort", encode(env)), action)
            .await
    }

    pub async fn promote(
        &self,
        env: &str,
        req: &PromoteRequest,
    ) -> Result<BatchResponse, ClientError> {
        self.post(&format!("/v1/envs/{}/promote", encode(env)), req)
            .await
    }

    pub async fn rollback(
        &self,
        env: &str,
        req: &RollbackRequest,
    ) -> Result<BatchResponse, ClientError> {
        self.post(&format!("/v1/envs/{}/rollback", encode(env)), req)
            .await
    }

    pub async fn entities(&self, env: &str) -> Result<Vec<EntityView>, ClientError> {
        self.get(&format!("/v1/envs/{}/entities", encode(env)))
            .await
    }

    pub async fn set_credential(
        &self,
        env: &str,
        name: &str,
        req: &CredentialValueRequest,
    ) -> Result<CredentialValueResponse, ClientError> {
        let path = format!(
            "/v1/envs/{}/credentials/{}/value",
            encode(env),
            encode(name)
        );
        self.transport.call(Method::PUT, &path, Some(req)).await
    }

    /// Newest first, at most `limit`.
    pub async fn revisions(
        &self,
        env: &str,
        limit: u32,
    ) -> Result<Vec<RevisionRecord>, ClientError> {
        self.get(&format!("/v1/envs/{}/revisions?limit={limit}", encode(env)))
            .await
    }

    pub async fn revision(&self, env: &str, revision: u64) -> Result<RevisionView, ClientError> {
        self.get(&format!("/v1/envs/{}/revisions/{revision}", encode(env)))
            .await
    }

    /// What `revision` changed, field by field (secret values redacted).
    pub async fn revision_diff(
        &self,
        env: &str,
        revision: u64,
    ) -> Result<crate::admin::RevisionDiff, ClientError> {
        self.get(&format!(
            "/v1/envs/{}/revisions/{revision}/diff",
            encode(env)
        ))
        .await
    }

    pub async fn workers(&self, env: &str) -> Result<Vec<WorkerView>, ClientError> {
        self.get(&format!("/v1/envs/{}/workers", encode(env))).await
    }

    /// The environment's traffic over the last hour, from its Workers' totals.
    pub async fn stats(&self, env: &str) -> Result<crate::admin::EnvStats, ClientError> {
        self.get(&format!("/v1/envs/{}/stats", encode(env))).await
    }

    /// The audit trail, newest first.
    pub async fn audit(&self, q: &AuditParams) -> Result<Vec<AuditRecord>, ClientError> {
        let mut query = vec![format!("limit={}", q.limit)];
        let fields = [
            ("env", &q.env),
            ("entity", &q.entity),
            ("actor", &q.actor),
            ("since", &q.since),
            ("until", &q.until),
        ];
        for (name, value) in fields {
            if let Some(v) = value {
                query.push(format!("{name}={}", encode(v)));
            }
        }
        if let Some(id) = q.before {
            query.push(format!("before={id}"));
        }
        self.get(&format!("/v1/audit?{}", query.join("&"))).await
    }

    pub async fn create_token(&self, req: &CreateToken) -> Result<CreatedToken, ClientError> {
        self.post("/v1/tokens", req).await
    }

    pub async fn tokens(&self) -> Result<Vec<TokenRecord>, ClientError> {
        self.get("/v1/tokens").await
    }

    /// Revokes a token by its id (admin): the token as it now is. Revoking a revoked token
    /// changes nothing.
    pub async fn revoke_token(&self, id: &str) -> Result<TokenRecord, ClientError> {
        let path = format!("/v1/tokens/{}", encode(id));
        self.transport
            .call(Method::DELETE, &path, None::<&()>)
            .await
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
