//! Bearer tokens and roles. Tokens are random secrets shown once; only their SHA-256 is
//! stored. Every admin request names its token; the token's role and environments decide.

pub mod throttle;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use switchyard_api::records::{Millis, Role, TokenRecord, now_millis};
use switchyard_config::manifest::sha256_hex;
use switchyard_store::StoreError;

use crate::error::ApiError;
use crate::listener::Peer;
use crate::state::AppState;
use crate::tls::WorkerIdentity;
use switchyard_api::ErrorCode;

/// Who is asking.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_id: String,
    pub name: String,
    pub role: Role,
    pub envs: Vec<String>,
    /// The Worker the connection's verified client certificate names (HTTPS only).
    pub certificate: Option<Arc<WorkerIdentity>>,
    /// Whether worker tokens need that certificate (`--require-worker-certificates`).
    pub certificate_required: bool,
}

impl Principal {
    /// The Manager acting on its own (a canary's judge): recorded as `name (id)`.
    pub fn system(name: &str, id: &str) -> Principal {
        Principal {
            token_id: id.to_string(),
            name: name.to_string(),
            role: Role::Admin,
            envs: Vec::new(),
            certificate: None,
            certificate_required: false,
        }
    }

    /// The actor recorded in audit records.
    pub fn actor(&self) -> String {
        format!("{} ({})", self.name, self.token_id)
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "token {} has role {}, this needs admin",
                self.token_id,
                self.role.as_str()
            )))
        }
    }

    /// May change entities of `env`.
    pub fn require_write(&self, env: &str) -> Result<(), ApiError> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Deployer if self.envs.iter().any(|e| e == env) => Ok(()),
            Role::Deployer => Err(ApiError::forbidden(format!(
                "token {} may deploy to {:?}, not to {env:?}",
                self.token_id, self.envs
            ))),
            role => Err(ApiError::forbidden(format!(
                "token {} has role {}, which cannot change {env:?}",
                self.token_id,
                role.as_str()
            ))),
        }
    }

    /// May read `env` (workers: only their own environment).
    pub fn require_read(&self, env: &str) -> Result<(), ApiError> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Viewer if self.envs.is_empty() => Ok(()),
            Role::Viewer | Role::Deployer | Role::Worker if self.envs.iter().any(|e| e == env) => {
                Ok(())
            }
            role => Err(ApiError::forbidden(format!(
                "token {} ({}) cannot read {env:?}",
                self.token_id,
                role.as_str()
            ))),
        }
    }

    /// Workers may only act on their own environment; a Worker's client certificate, when
    /// it has (or needs) one, must name that environment too.
    pub fn require_worker(&self, env: &str) -> Result<(), ApiError> {
        match self.role {
            Role::Worker => {
                self.require_read(env)?;
                self.require_certificate(env)
            }
            Role::Admin => self.require_read(env),
            role => Err(ApiError::forbidden(format!(
                "token {} has role {}, this needs a worker token",
                self.token_id,
                role.as_str()
            ))),
        }
    }
}

impl Principal {
    /// A Worker that presents a certificate is the Worker it names: it may not connect or
    /// report under another Worker id.
    pub fn require_worker_name(&self, worker_id: &str) -> Result<(), ApiError> {
        match &self.certificate {
            Some(id) if self.role == Role::Worker && id.name != worker_id => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::WorkerCertificate,
                format!(
                    "the client certificate is Worker {:?}'s, not {worker_id:?}'s: a Worker \
                         with a certificate uses the name it was issued for (--worker-id)",
                    id.name
                ),
            )),
            _ => Ok(()),
        }
    }

    fn require_certificate(&self, env: &str) -> Result<(), ApiError> {
        let refuse = |message: String| {
            ApiError::new(StatusCode::FORBIDDEN, ErrorCode::WorkerCertificate, message)
        };
        match &self.certificate {
            Some(id) if id.env == env => Ok(()),
            Some(id) => Err(refuse(format!(
                "the client certificate is Worker {:?}'s of environment {:?}, not of {env:?}",
                id.name, id.env
            ))),
            None if self.certificate_required => Err(refuse(format!(
                "this Manager requires Workers to present a client certificate: issue one \
                 with `switchyard manager worker-cert create --env {env} NAME` and give it \
                 to the Worker (--client-cert, --client-key)"
            ))),
            None => Ok(()),
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    /// Verifies the bearer token. A failure is counted, logged (rate-limited: the token's
    /// id or what was wrong, never the secret) and, for a peer that keeps failing, answered
    /// after a delay or refused outright (`throttle.rs`).
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // In-process callers (tests through `Router::oneshot`) have no peer address: they
        // share one key.
        let connection = parts.extensions.get::<ConnectInfo<Peer>>();
        let peer = connection.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.addr.ip());
        let certificate = connection.and_then(|c| c.0.worker.clone());
        let now = Instant::now();
        // Where the request's log line learns who it was (`api/access.rs`).
        let slot = parts
            .extensions
            .get::<crate::api::access::ActorSlot>()
            .cloned();
        if let Err(retry_after) = state.auth_failures.admit(peer, now) {
            if let Some(slot) = &slot {
                slot.refused();
            }
            state.metrics.auth_failure("throttled");
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyAuthFailures,
                "too many failed authentications from this address; wait and retry \
                 with a valid token",
            )
            .retry_after(retry_after));
        }
        let failure = match verify(parts, state).await {
            Ok(principal) => {
                if let Some(slot) = &slot {
                    slot.set(principal.actor());
                }
                return Ok(Principal {
                    certificate,
                    certificate_required: state.require_worker_certificates,
                    ..principal
                });
            }
            Err(Refused::Store(e)) => return Err(e),
            Err(Refused::Token(f)) => f,
        };
        state.metrics.auth_failure(failure.reason.as_str());
        if let Some(slot) = &slot {
            slot.refused();
        }
        let verdict = state.auth_failures.fail(peer, now);
        if let Some(suppressed) = verdict.log {
            tracing::warn!(
                target: "switchyard::admin",
                %peer,
                token = failure.token.as_deref().unwrap_or("-"),
                fingerprint = failure.fingerprint.as_deref().unwrap_or("-"),
                reason = failure.reason.as_str(),
                failures = verdict.failures,
                suppressed,
                "authentication failed"
            );
        }
        if !verdict.delay.is_zero() {
            tokio::time::sleep(verdict.delay).await;
            state.auth_failures.done_waiting(peer);
        }
        Err(failure.error)
    }
}

/// Why a token was refused (the `reason` label of `switchyard_manager_auth_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// No `Authorization` header.
    Missing,
    /// Not `Bearer <token>`.
    Malformed,
    /// No token has this secret.
    Unknown,
    Revoked,
    Expired,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Missing => "missing",
            FailureReason::Malformed => "malformed",
            FailureReason::Unknown => "unknown",
            FailureReason::Revoked => "revoked",
            FailureReason::Expired => "expired",
        }
    }
}

/// A refused token: why, which one (its public id, when it is a known token) and the answer.
struct Failure {
    reason: FailureReason,
    token: Option<String>,
    /// The first 12 hex digits of the presented secret's SHA-256: tells repeated attempts
    /// with one unknown token apart from many tokens tried, and reveals nothing of it.
    fingerprint: Option<String>,
    error: ApiError,
}

/// Why a request is not let through: its token, or a store that could not say.
enum Refused {
    Token(Failure),
    Store(ApiError),
}

/// The principal of the request's bearer token.
async fn verify(parts: &Parts, state: &AppState) -> Result<Principal, Refused> {
    let refuse = |reason, token: Option<&str>, error| {
        Refused::Token(Failure {
            reason,
            token: token.map(str::to_string),
            fingerprint: None,
            error,
        })
    };
    let Some(header) = parts.headers.get(AUTHORIZATION) else {
        return Err(refuse(
            FailureReason::Missing,
            None,
            ApiError::unauthorized("missing Authorization: Bearer <token>"),
        ));
    };
    let Some(secret) = header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    else {
        return Err(refuse(
            FailureReason::Malformed,
            None,
            ApiError::unauthorized("malformed Authorization header; expected Bearer <token>"),
        ));
    };
    let hash = hash_secret(secret);
    let token = match state.tokens.get(&hash) {
        Some(t) => t,
        None => {
            let found = match state.store.token_by_hash(&hash).await {
                Ok(found) => found,
                // The database is down: a token verified here before keeps working for
                // what this Manager can answer without it (Workers' streams and pulls);
                // anything that needs the database fails on its own with 503.
                Err(e @ StoreError::Unavailable(_)) => match state.tokens.last_known(&hash) {
                    Some(t) => Some(t),
                    None => return Err(Refused::Store(e.into())),
                },
                Err(e) => return Err(Refused::Store(e.into())),
            };
            let unknown = || ApiError::unauthorized("unknown or revoked token");
            match found {
                None => {
                    return Err(Refused::Token(Failure {
                        reason: FailureReason::Unknown,
                        token: None,
                        fingerprint: hash.get(..12).map(str::to_string),
                        error: unknown(),
                    }));
                }
                Some(t) if t.revoked => {
                    return Err(refuse(FailureReason::Revoked, Some(&t.id), unknown()));
                }
                Some(t) => {
                    state.tokens.put(hash, t.clone());
                    t
                }
            }
        }
    };
    // Checked on every request, cached or not: the cache never outlives an expiry.
    if let Err(e) = check_not_expired(&token, now_millis()) {
        return Err(refuse(FailureReason::Expired, Some(&token.id), e));
    }
    Ok(Principal {
        token_id: token.id,
        name: token.name,
        role: token.role,
        envs: token.envs,
        certificate: None,
        certificate_required: false,
    })
}

/// 401 `token_expired` once `now` has reached the token's expiry, naming when it expired
/// and how to get a new one.
pub fn check_not_expired(token: &TokenRecord, now: Millis) -> Result<(), ApiError> {
    match token.expires_at {
        Some(at) if token.expired_at(now) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::TokenExpired,
            format!(
                "token {} ({:?}) expired at {}; create a new one with \
                 `switchyard manager token create` (or an admin's POST /v1/tokens)",
                token.id,
                token.name,
                format_millis(at)
            ),
        )),
        _ => Ok(()),
    }
}

/// Unix milliseconds as RFC 3339 UTC, to the second.
pub fn format_millis(ms: Millis) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

pub fn hash_secret(secret: &str) -> String {
    sha256_hex(secret.as_bytes())
}

/// A new token: the record to store and the secret to show once.
pub fn new_token(
    name: &str,
    role: Role,
    envs: Vec<String>,
    expires_at: Option<Millis>,
) -> Result<(TokenRecord, String), ApiError> {
    // 24 random bytes of secret, and 5 separate ones for the public id.
    let mut bytes = [0u8; 29];
    getrandom::fill(&mut bytes).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::NoRandomness,
            format!("cannot generate a token: {e}"),
        )
    })?;
    let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let secret = format!("sy_{}", hex(&bytes[..24]));
    let id = format!("tok_{}", hex(&bytes[24..]));
    let record = TokenRecord {
        id,
        name: name.to_string(),
        hash: hash_secret(&secret),
        role,
        envs,
        created_at: now_millis(),
        revoked: false,
        revoked_at: None,
        expires_at,
    };
    Ok((record, secret))
}

/// Checks that a role/env combination makes sense.
pub fn check_scope(role: Role, envs: &[String]) -> Result<(), ApiError> {
    match role {
        Role::Worker if envs.len() != 1 => Err(ApiError::bad_request(
            "a worker token is scoped to exactly one environment (--env NAME)",
        )),
        Role::Deployer if envs.is_empty() => Err(ApiError::bad_request(
            "a deployer token needs at least one environment (--env NAME)",
        )),
        Role::Admin if !envs.is_empty() => Err(ApiError::bad_request(
            "an admin token applies to every environment; give no --env",
        )),
        _ => Ok(()),
    }
}

/// Verified tokens by hash, each trusted for [`TokenCache::TTL`] before the store is asked
/// again. A revocation through this Manager evicts the token at once
/// ([`TokenCache::evict`]); one made elsewhere (another Manager on the same store, or the
/// store edited directly) takes effect within the TTL. Only successful lookups are cached;
/// unknown tokens always go to the store.
#[derive(Default)]
pub struct TokenCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, (TokenRecord, std::time::Instant)>>,
}

impl TokenCache {
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(5);
    /// Bound on cached tokens (a flood of distinct valid tokens cannot grow it further).
    const MAX: usize = 10_000;

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::HashMap<String, (TokenRecord, std::time::Instant)>,
    > {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The token as last verified, however long ago (used only while the database cannot
    /// be reached).
    pub fn last_known(&self, hash: &str) -> Option<TokenRecord> {
        self.lock().get(hash).map(|(t, _)| t.clone())
    }

    pub fn get(&self, hash: &str) -> Option<TokenRecord> {
        let map = self.lock();
        map.get(hash)
            .filter(|(_, at)| at.elapsed() < Self::TTL)
            .map(|(t, _)| t.clone())
    }

    /// Forgets the token with public id `id` (it was just revoked): its next use is looked
    /// up in the store.
    pub fn evict(&self, id: &str) {
        self.lock().retain(|_, (t, _)| t.id != id);
    }

    pub fn put(&self, hash: String, token: TokenRecord) {
        let mut map = self.lock();
        if map.len() >= Self::MAX {
            map.retain(|_, (_, at)| at.elapsed() < Self::TTL);
            if map.len() >= Self::MAX {
                map.clear();
            }
        }
        map.insert(hash, (token, std::time::Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_token_is_refused_with_when_and_how_to_renew() {
        let (mut token, _) = new_token("ci", Role::Deployer, vec!["dev".into()], None).unwrap();
        assert!(
            check_not_expired(&token, i64::MAX).is_ok(),
            "no expiry: never"
        );
        token.expires_at = Some(1_700_000_000_000);
        assert!(check_not_expired(&token, 1_699_999_999_999).is_ok());
        let e = check_not_expired(&token, 1_700_000_000_000).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::UNAUTHORIZED);
        assert_eq!(e.code, ErrorCode::TokenExpired);
        assert!(
            e.message.contains("expired at 2023-11-14T22:13:20Z")
                && e.message.contains("switchyard manager token create")
                && e.message.contains(&token.id),
            "{}",
            e.message
        );
    }
}
