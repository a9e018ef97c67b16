//! What every handler shares.

use std::sync::Arc;

use switchyard_config::secretbox::SecretBox;
use switchyard_store::{EntityRecord, Store};

use crate::error::ApiError;

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
    /// Pull answers, shared by the Workers that ask for the same revision.
    pub pulls: Arc<crate::pull_cache::PullCache>,
    /// Worker reports, group-committed.
    pub reports: crate::reports::ReportWriter,
}

impl AppState {
    /// The environment, or the 404 that names it.
    pub async fn env_info(&self, env: &str) -> Result<switchyard_store::EnvInfo, ApiError> {
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
                    "secret_unreadable",
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
