//! `jwt`: bearer tokens checked for signature (HS256/RS256/ES256), issuer, audience and
//! time. The consumer is a claim of the token (`sub` by default).
//!
//! Keys are decoded once, when the policy is compiled ([`keys`]). A token is verified only
//! with an algorithm the policy lists and only against keys bound to that algorithm, so
//! `alg: none` and algorithm confusion (an HS256 token "signed" with an RSA public key) are
//! refused. The signature is checked by `jsonwebtoken`; the claims (`exp`, `nbf`, `iss`,
//! `aud`) are checked here against the time the Worker passes in, so that each failure has
//! its own stable code. The token is left in place for the upstream, and no message quotes
//! it.

mod keys;
#[cfg(test)]
mod test_keys;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode, decode_header};
use serde_json::{Map, Value};

use self::keys::{Alg, KeyRing};
use super::{CompileCtx, Exchange, FieldError, Reply, RequestView, Verdict, header_name};
use switchyard_config::manifest::{CredentialSpec, JwtSpec};

pub struct JwtPolicy {
    /// Where the token is read from.
    header: HeaderName,
    /// Whether the header holds `Bearer <token>` (the `Authorization` header) rather than
    /// the bare token.
    bearer: bool,
    /// The listed algorithms, each with the signature-only validation `jsonwebtoken` runs.
    algorithms: Vec<(Alg, Validation)>,
    keys: KeyRing,
    issuer: Option<String>,
    audiences: Vec<String>,
    consumer_claim: String,
    leeway: Duration,
}

impl std::fmt::Debug for JwtPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtPolicy")
            .field("header", &self.header)
            .field(
                "algorithms",
                &self
                    .algorithms
                    .iter()
                    .map(|(a, _)| a.name())
                    .collect::<Vec<_>>(),
            )
            .field("jwks_keys", &self.keys.jwks.len())
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("consumer_claim", &self.consumer_claim)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

pub fn compile(spec: &JwtSpec, ctx: &CompileCtx<'_>) -> Result<JwtPolicy, Vec<FieldError>> {
    // `jsonwebtoken` picks its crypto backend from its features and panics when it cannot
    // tell (should another crate ever enable a second one); name ours explicitly. Does
    // nothing when a backend is already installed.
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    let mut errors = Vec::new();

    let mut algs: Vec<Alg> = Vec::new();
    if spec.algorithms.is_empty() {
        errors.push(FieldError::new(
            "algorithms",
            "list at least one algorithm: HS256, RS256 or ES256",
        ));
    }
    for (i, name) in spec.algorithms.iter().enumerate() {
        match Alg::parse(name) {
            Some(a) if !algs.contains(&a) => algs.push(a),
            Some(_) => {}
            None => errors.push(FieldError::new(
                format!("algorithms[{i}]"),
                format!("unsupported algorithm {name:?}: expected HS256, RS256 or ES256"),
            )),
        }
    }

    let header = match &spec.header {
        None => Some(http::header::AUTHORIZATION),
        Some(h) => header_name("header", h).map_err(|e| errors.push(e)).ok(),
    };

    let mut ring = KeyRing::default();
    let wants_hmac = algs.contains(&Alg::Hs256);
    match (&spec.secret, wants_hmac) {
        (None, true) => errors.push(FieldError::new(
            "secret",
            "HS256 needs `secret`: the name of a Credential of type secret",
        )),
        (Some(_), false) => errors.push(FieldError::new(
            "secret",
            "`secret` is only used for HS256, which is not in `algorithms`",
        )),
        (Some(name), true) => match ctx.credential("secret", name, "secret") {
            Ok(CredentialSpec::Secret { value }) => match keys::hmac_key(value) {
                Ok(k) => ring.hmac = Some(k),
                Err(m) => errors.push(FieldError::new("secret", m)),
            },
            Ok(_) => {}
            Err(e) => errors.push(e),
        },
        (None, false) => {}
    }

    let public: Vec<Alg> = algs.iter().copied().filter(|a| *a != Alg::Hs256).collect();
    match (&spec.jwks, public.is_empty()) {
        (None, false) => errors.push(FieldError::new(
            "jwks",
            format!(
                "{} needs `jwks`: the name of a Credential of type jwks",
                public
                    .iter()
                    .map(|a| a.name())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        )),
        (Some(_), true) if !algs.is_empty() => errors.push(FieldError::new(
            "jwks",
            "`jwks` is only used for RS256 and ES256, neither of which is in `algorithms`",
        )),
        (Some(name), false) => match ctx.credential("jwks", name, "jwks") {
            Ok(CredentialSpec::Jwks { jwks }) => match keys::jwks_keys(jwks, &public) {
                Ok(k) => ring.jwks = k,
                Err(msgs) => errors.extend(
                    msgs.into_iter()
                        .map(|m| FieldError::new("jwks", format!("Credential {name:?}: {m}"))),
                ),
            },
            Ok(_) => {}
            Err(e) => errors.push(e),
        },
        _ => {}
    }

    if spec.consumer_claim.is_empty() {
        errors.push(FieldError::new("consumerClaim", "empty claim name"));
    }
    if spec.issuer.as_deref() == Some("") {
        errors.push(FieldError::new("issuer", "empty issuer"));
    }
    for (i, a) in spec.audiences.iter().enumerate() {
        if a.is_empty() {
            errors.push(FieldError::new(format!("audiences[{i}]"), "empty audience"));
        }
    }

    match (errors.is_empty(), header) {
        (true, Some(header)) => Ok(JwtPolicy {
            bearer: header == http::header::AUTHORIZATION,
            header,
            algorithms: algs.into_iter().map(|a| (a, signature_only(a))).collect(),
            keys: ring,
            issuer: spec.issuer.clone(),
            audiences: spec.audiences.clone(),
            consumer_claim: spec.consumer_claim.clone(),
            leeway: spec.leeway.map_or(Duration::ZERO, |l| l.as_duration()),
        }),
        _ => Err(errors),
    }
}

/// What `jsonwebtoken` checks: the signature, with exactly this algorithm. Claims are
/// checked by [`JwtPolicy::check_claims`] against the Worker's clock.
fn signature_only(alg: Alg) -> Validation {
    let mut v = Validation::new(alg.jose());
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.leeway = 0;
    v
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Denial {
    MissingToken,
    InvalidToken(&'static str),
    Expired,
    NotYetValid,
    InvalidIssuer,
    InvalidAudience,
    MissingConsumerClaim,
}

impl JwtPolicy {
    pub fn on_request(
        &self,
        req: &mut RequestView<'_>,
        ex: &mut Exchange,
        now: SystemTime,
    ) -> Verdict {
        match self.token(req.headers).and_then(|t| self.verify(t, now)) {
            Ok(consumer) => {
                ex.consumer = Some(consumer);
                Verdict::Continue
            }
            Err(denial) => Verdict::Reply(self.deny(denial)),
        }
    }

    /// The token as presented (not yet checked).
    fn token<'h>(&self, headers: &'h HeaderMap) -> Result<&'h str, Denial> {
        let value = headers.get(&self.header).ok_or(Denial::MissingToken)?;
        let value = value
            .to_str()
            .map_err(|_| Denial::InvalidToken("the token is malformed"))?
            .trim();
        let token = if self.bearer {
            match value.split_once(' ') {
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
                _ if value.eq_ignore_ascii_case("bearer") => "",
                _ => return Err(Denial::MissingToken),
            }
        } else {
            value
        };
        if token.is_empty() {
            return Err(Denial::MissingToken);
        }
        Ok(token)
    }

    /// Checks the token; answers its consumer.
    fn verify(&self, token: &str, now: SystemTime) -> Result<Arc<str>, Denial> {
        let header =
            decode_header(token).map_err(|_| Denial::InvalidToken("the token is malformed"))?;
        let (alg, validation) = Alg::of(header.alg)
            .and_then(|a| self.algorithms.iter().find(|(listed, _)| *listed == a))
            .ok_or(Denial::InvalidToken(
                "the token's algorithm is not accepted",
            ))?;
        let candidates = self.keys.candidates(*alg, header.kid.as_deref());
        if candidates.is_empty() {
            return Err(Denial::InvalidToken("no key matches the token's key id"));
        }
        let mut denial = Denial::InvalidToken("the token's signature is not valid");
        for key in candidates {
            match decode::<Map<String, Value>>(token, key, validation) {
                Ok(data) => return self.check_claims(&data.claims, now),
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {}
                Err(_) => denial = Denial::InvalidToken("the token is malformed"),
            }
        }
        Err(denial)
    }

    /// `exp` (required), `nbf`, `iss`, `aud` and the consumer claim of a token whose
    /// signature holds.
    fn check_claims(
        &self,
        claims: &Map<String, Value>,
        now: SystemTime,
    ) -> Result<Arc<str>, Denial> {
        let now = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64();
        let leeway = self.leeway.as_secs_f64();
        let time = |name: &str| match claims.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|t| t.is_finite())
                .map(Some)
                .ok_or(Denial::InvalidToken(
                    "a time claim of the token is not a number",
                )),
        };
        let exp = time("exp")?.ok_or(Denial::InvalidToken("the token has no `exp` claim"))?;
        if now >= exp + leeway {
            return Err(Denial::Expired);
        }
        if let Some(nbf) = time("nbf")?
            && now + leeway < nbf
        {
            return Err(Denial::NotYetValid);
        }
        if let Some(issuer) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
        {
            return Err(Denial::InvalidIssuer);
        }
        if !self.audiences.is_empty() {
            let accepted = |v: &Value| {
                v.as_str()
                    .is_some_and(|a| self.audiences.iter().any(|x| x == a))
            };
            let ok = match claims.get("aud") {
                Some(Value::Array(list)) => list.iter().any(accepted),
                Some(v) => accepted(v),
                None => false,
            };
            if !ok {
                return Err(Denial::InvalidAudience);
            }
        }
        match claims.get(&self.consumer_claim).and_then(Value::as_str) {
            Some(c) if !c.is_empty() => Ok(Arc::from(c)),
            _ => Err(Denial::MissingConsumerClaim),
        }
    }

    fn deny(&self, denial: Denial) -> Reply {
        let (code, message) = match denial {
            Denial::MissingToken => ("missing_token", "a bearer token is required".to_string()),
            Denial::InvalidToken(m) => ("invalid_token", m.to_string()),
            Denial::Expired => ("token_expired", "the token has expired".to_string()),
            Denial::NotYetValid => (
                "token_not_yet_valid",
                "the token is not valid yet".to_string(),
            ),
            Denial::InvalidIssuer => (
                "invalid_issuer",
                "the token's issuer is not accepted".to_string(),
            ),
            Denial::InvalidAudience => (
                "invalid_audience",
                "the token's audience is not accepted".to_string(),
            ),
            Denial::MissingConsumerClaim => (
                "missing_consumer_claim",
                format!(
                    "the token has no string claim {:?} naming the consumer",
                    self.consumer_claim
                ),
            ),
        };
        // RFC 6750 §3.1: no error code when no credentials were presented.
        let challenge = if code == "missing_token" {
            HeaderValue::from_static("Bearer")
        } else {
            HeaderValue::from_static("Bearer error=\"invalid_token\"")
        };
        Reply::deny(StatusCode::UNAUTHORIZED, code, JwtSpec::TYPE, message)
            .with_header(http::header::WWW_AUTHENTICATE, challenge)
    }
}
