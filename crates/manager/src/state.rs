//! What every handler shares.

use std::collections::HashMap;
use std::sync::Arc;

use switchyard_api::sync::DigestKey;
use switchyard_config::secretbox::SecretBox;
use switchyard_engine::EntitySet;
use switchyard_store::{EntityRecord, Store};

use crate::error::ApiError;
use switchyard_api::ErrorCode;

use crate::fanout::Fanout;
use crate::metrics::ManagerMetrics;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub fanout: Fanout,
    pub metrics: Arc<ManagerMetrics>,
    /// How often SSE streams send a heartbeat comment.
    pub heartbeat: std::time::Duration,
    /// Turns true when the Manager shuts down: long-lived streams end so the graceful
    /// shutdown does not wait for Workers to hang up.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Seals credentials at rest.
    pub secrets: Arc<SecretBox>,
    /// Recently verified tokens, so Workers' frequent pulls and reports do not each hit the
    /// store (see `auth.rs` for the lifetime).
    pub tokens: Arc<crate::auth::TokenCache>,
    /// Failed authentications per peer: counted, logged (rate-limited) and slowed down.
    pub auth_failures: Arc<crate::auth::throttle::AuthThrottle>,
    /// Pull answers, shared by the Workers that ask for the same revision.
    pub pulls: Arc<crate::pull_cache::PullCache>,
    /// Worker reports, group-committed.
    pub reports: crate::reports::ReportWriter,
    /// Per environment, its entities (secrets excepted) as last parsed by a write: the next
    /// write parses only what changed since (entities are reused by version and digest).
    pub parsed: Arc<std::sync::Mutex<HashMap<String, EntitySet>>>,
    /// Worker tokens need a client certificate from the Manager's CA for their environment.
    pub require_worker_certificates: bool,
    /// The Manager's secret key, which each environment's digest key is derived from.
    pub digest_master: Arc<DigestMaster>,
    /// Each environment's latest rollout (`rollout.rs`).
    pub rollouts: crate::rollout::Rollouts,
    /// Writes the Workers' streams held here to the store (`presence.rs`).
    pub presence: Arc<crate::presence::Presence>,
    /// The Workers' running totals of the last hour, for the dashboard (`stats.rs`).
    pub stats: Arc<crate::stats::StatsRing>,
    /// Running canaries' step windows, from the Workers' per-generation totals.
    pub canaries: Arc<crate::canary::Canaries>,
}

/// The key every environment's [`DigestKey`] is derived from (the Manager's secret key):
/// secret entities' digests are keyed, so they cannot be reversed by guessing.
pub struct DigestMaster(pub [u8; 32]);

impl AppState {
    /// `env`'s digest key.
    pub fn digest_key(&self, env: &str) -> DigestKey {
        DigestKey::derive(&self.digest_master.0, env)
    }

    /// The digest `m` is stored with in `env`: keyed for a secret kind, else its own.
    pub fn keyed_digest(
        &self,
        env: &str,
        m: &switchyard_config::Located<switchyard_config::manifest::Manifest>,
    ) -> String {
        if m.value.is_secret() {
            self.digest_key(env)
                .digest(m.value.canonical_json().as_bytes())
        } else {
            m.digest.clone()
        }
    }
}

impl AppState {
    /// The environment's entities as last parsed (empty when none were).
    pub fn parsed(&self, env: &str) -> EntitySet {
        self.parsed
            .lock()
            .map(|m| m.get(env).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Keeps `set` (the environment's stored entities, parsed) for the next write; secrets
    /// are never kept in clear: credentials are opened and parsed again when needed.
    pub fn keep_parsed(&self, env: &str, set: &EntitySet) {
        let kept = set.without_secrets();
        if let Ok(mut m) = self.parsed.lock() {
            m.insert(env.to_string(), kept);
        }
    }

    /// An environment named in a request's body (a promotion's source, a token's scope):
    /// 422 `unknown_environment` when it does not exist — the URL's resource was found, what
    /// it refers to was not.
    pub async fn referenced_env(
        &self,
        env: &str,
    ) -> Result<switchyard_api::records::EnvInfo, ApiError> {
        self.env_info(env).await.map_err(|mut e| {
            if e.code == ErrorCode::UnknownEnvironment {
                e.status = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
            }
            e
        })
    }

    /// Drops what is kept in memory for a deleted environment (parsed entities, pull
    /// answers), so that one created later under the same name starts afresh.
    pub fn forget_env(&self, env: &str) {
        if let Ok(mut m) = self.parsed.lock() {
            m.remove(env);
        }
        self.pulls.forget(env);
    }

    /// The environment, or the 404 that names it.
    pub async fn env_info(&self, env: &str) -> Result<switchyard_api::records::EnvInfo, ApiError> {
        self.store
            .env(env)
            .await?
            .ok_or_else(|| ApiError::from(switchyard_store::StoreError::NoSuchEnv(env.to_string())))
    }

    /// A stored manifest in clear (credentials are stored sealed). Never show the result
    /// to anyone but a Worker: use `switchyard_config::manifest::redact_json` for people.
    /// A stored template in clear (a credential's is sealed like its manifest).
    pub fn reveal_template(&self, e: &EntityRecord) -> Result<Option<String>, ApiError> {
        match &e.template {
            Some(t) if SecretBox::is_sealed(t) => {
                let sealed = EntityRecord {
                    manifest: t.clone(),
                    template: None,
                    ..e.clone()
                };
                self.reveal(&sealed).map(Some)
            }
            other => Ok(other.clone()),
        }
    }

    pub fn reveal(&self, e: &EntityRecord) -> Result<String, ApiError> {
        if SecretBox::is_sealed(&e.manifest) {
            self.secrets.open(&e.manifest).map_err(|why| {
                tracing::error!(kind = %e.kind, name = %e.name, "cannot decrypt a stored secret: {why}");
                ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::SecretUnreadable,
                    format!(
                        "{}/{} cannot be decrypted with this Manager's key ({why}); \
                         check SWITCHYARD_SECRET_KEY or DATA/secret.key",
                        e.kind, e.name
                    ),
                )
            })
        } else {
            Ok(e.manifest.clone())
        }
    }
}
