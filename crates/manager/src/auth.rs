//! Bearer tokens and roles. Tokens are random secrets shown once; only their SHA-256 is
//! stored. Every admin request names its token; the token's role and environments decide.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use switchyard_api::records::{Millis, Role, TokenRecord, now_millis};
use switchyard_config::manifest::sha256_hex;

use crate::error::ApiError;
use crate::state::AppState;
use switchyard_api::ErrorCode;

/// Who is asking.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_id: String,
    pub name: String,
    pub role: Role,
    pub envs: Vec<String>,
}

impl Principal {
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

    /// Workers may only act on their own environment.
    pub fn require_worker(&self, env: &str) -> Result<(), ApiError> {
        match self.role {
            Role::Worker | Role::Admin => self.require_read(env),
            role => Err(ApiError::forbidden(format!(
                "token {} has role {}, this needs a worker token",
                self.token_id,
                role.as_str()
            ))),
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token>"))?;
        let secret = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("malformed Authorization header; expected Bearer <token>")
            })?;
        let hash = hash_secret(secret);
        let token = match state.tokens.get(&hash) {
            Some(t) => t,
            None => {
                let t = state
                    .store
                    .token_by_hash(&hash)
                    .await?
                    .filter(|t| !t.revoked)
                    .ok_or_else(|| ApiError::unauthorized("unknown or revoked token"))?;
                state.tokens.put(hash, t.clone());
                t
            }
        };
        // Checked on every request, cached or not: the cache never outlives an expiry.
        check_not_expired(&token, now_millis())?;
        Ok(Principal {
            token_id: token.id,
            name: token.name,
            role: token.role,
            envs: token.envs,
        })
    }
}

/// 401 `token_expired` once `now` has reached the token's expiry, naming when it expired
/// and how to get a new one.
pub fn check_not_expired(token: &TokenRecord, now: Millis) -> Result<(), ApiError> {
    match token.expires_at {
        Some(at) if token.expired_at(now) => Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
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
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
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
/// again: a token revoked in the store stops working within that time. Only successful
/// lookups are cached; unknown tokens always go to the store.
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

    pub fn get(&self, hash: &str) -> Option<TokenRecord> {
        let map = self.lock();
        map.get(hash)
            .filter(|(_, at)| at.elapsed() < Self::TTL)
            .map(|(t, _)| t.clone())
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
