//! The keys a `jwt` policy verifies with, decoded once when it is compiled: the HS256
//! secret from a `secret` credential, RS256 and ES256 public keys from a `jwks` credential.
//!
//! Every key is bound to one algorithm here, and a token is only ever checked against keys
//! of its own (listed) algorithm: an RSA public key can never serve as an HMAC secret.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// The algorithms a policy may list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Alg {
    Hs256,
    Rs256,
    Es256,
}

impl Alg {
    pub(super) const ALL: [Alg; 3] = [Alg::Hs256, Alg::Rs256, Alg::Es256];

    pub(super) fn parse(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.name() == name)
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
        }
    }

    pub(super) fn jose(self) -> Algorithm {
        match self {
            Alg::Hs256 => Algorithm::HS256,
            Alg::Rs256 => Algorithm::RS256,
            Alg::Es256 => Algorithm::ES256,
        }
    }

    /// The listed algorithm a token's header names, if it is one of ours.
    pub(super) fn of(alg: Algorithm) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.jose() == alg)
    }
}

/// A public key from a JWKS, bound to one algorithm.
pub(super) struct JwkKey {
    pub kid: Option<String>,
    pub alg: Alg,
    pub key: DecodingKey,
}

/// Every key of a policy.
#[derive(Default)]
pub(super) struct KeyRing {
    pub hmac: Option<DecodingKey>,
    pub jwks: Vec<JwkKey>,
}

impl KeyRing {
    /// The keys to try for a token of algorithm `alg` with key id `kid`. With a `kid`, the
    /// keys carrying that id — or, when none does, the keys that carry no id at all; keys
    /// with another id are never tried. Without one, every key of the algorithm.
    pub(super) fn candidates(&self, alg: Alg, kid: Option<&str>) -> Vec<&DecodingKey> {
        if alg == Alg::Hs256 {
            return self.hmac.iter().collect();
        }
        let of_alg = || self.jwks.iter().filter(move |k| k.alg == alg);
        let Some(kid) = kid else {
            return of_alg().map(|k| &k.key).collect();
        };
        let named: Vec<&DecodingKey> = of_alg()
            .filter(|k| k.kid.as_deref() == Some(kid))
            .map(|k| &k.key)
            .collect();
        if !named.is_empty() {
            return named;
        }
        of_alg()
            .filter(|k| k.kid.is_none())
            .map(|k| &k.key)
            .collect()
    }
}

/// RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
pub(super) const MIN_HMAC_SECRET: usize = 32;

/// The HS256 key from a secret's value (its bytes as written).
pub(super) fn hmac_key(value: &str) -> Result<DecodingKey, String> {
    if value.len() < MIN_HMAC_SECRET {
        return Err(format!(
            "an HS256 secret must be at least {MIN_HMAC_SECRET} bytes (RFC 7518 §3.2)"
        ));
    }
    Ok(DecodingKey::from_secret(value.as_bytes()))
}

/// The keys of a JWKS (JSON text, or the set as a mapping) usable for `wanted`: RSA keys
/// for RS256, EC P-256 keys for ES256, each with `alg` absent or naming that algorithm and
/// `use` absent or `sig`. Other keys are skipped; a usable key with bad material, or a
/// wanted algorithm left without any key, is an error (messages never quote key material).
pub(super) fn jwks_keys(set: &Value, wanted: &[Alg]) -> Result<Vec<JwkKey>, Vec<String>> {
    let parsed;
    let set = match set {
        Value::String(text) => {
            parsed = serde_json::from_str::<Value>(text)
                .map_err(|_| vec!["the JWKS is not valid JSON".to_string()])?;
            &parsed
        }
        other => other,
    };
    let Some(entries) = set.get("keys").and_then(Value::as_array) else {
        return Err(vec![
            "expected a JSON Web Key Set: {\"keys\": [ … ]}".to_string(),
        ]);
    };
    let mut keys = Vec::new();
    let mut errors = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        match jwk(entry, wanted) {
            Ok(Some(k)) => keys.push(k),
            Ok(None) => {}
            Err(e) => errors.push(format!("keys[{i}]: {e}")),
        }
    }
    for alg in wanted.iter().filter(|a| **a != Alg::Hs256) {
        if !keys.iter().any(|k| k.alg == *alg) {
            let needs = match alg {
                Alg::Es256 => "kty EC and crv P-256",
                _ => "kty RSA",
            };
            errors.push(format!(
                "the JWKS has no key usable for {} (one with {needs}, `alg` {} or none, `use` sig or none)",
                alg.name(),
                alg.name()
            ));
        }
    }
    if errors.is_empty() {
        Ok(keys)
    } else {
        Err(errors)
    }
}

/// One JWK: `Ok(None)` when it is not for a wanted algorithm.
fn jwk(entry: &Value, wanted: &[Alg]) -> Result<Option<JwkKey>, String> {
    let text = |field: &str| entry.get(field).and_then(Value::as_str);
    if !entry.is_object() {
        return Err("a key must be a JSON object".into());
    }
    if text("use").is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let alg = match (text("kty"), text("crv")) {
        (Some("RSA"), _) => Alg::Rs256,
        (Some("EC"), Some("P-256")) => Alg::Es256,
        _ => return Ok(None),
    };
    if !wanted.contains(&alg) || text("alg").is_some_and(|a| a != alg.name()) {
        return Ok(None);
    }
    let kid = match entry.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("`kid` must be a string".into()),
    };
    let component = |field: &str| -> Result<Vec<u8>, String> {
        let v = text(field).ok_or_else(|| format!("`{field}` is missing"))?;
        URL_SAFE_NO_PAD
            .decode(v.trim_end_matches('='))
            .map_err(|_| format!("`{field}` is not base64url"))
    };
    let key = match alg {
        Alg::Rs256 => {
            let n = component("n")?;
            let e = component("e")?;
            check_rsa(&n, &e)?;
            DecodingKey::from_rsa_raw_components(&n, &e)
        }
        _ => {
            let x = component("x")?;
            let y = component("y")?;
            if x.len() != 32 || y.len() != 32 {
                return Err("`x` and `y` of a P-256 key must be 32 bytes each".into());
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let key = DecodingKey::from_ec_der(&point);
            // Builds the verifier, which refuses a point that is not on the curve; the
            // empty signature then simply does not verify.
            if jsonwebtoken::crypto::verify("", b"", &key, Algorithm::ES256).is_err() {
                return Err("the point (x, y) is not on the P-256 curve".into());
            }
            key
        }
    };
    Ok(Some(JwkKey { kid, alg, key }))
}

/// The sizes the verifier accepts: 2048 to 4096 bits, an odd exponent of at most 33 bits.
fn check_rsa(n: &[u8], e: &[u8]) -> Result<(), String> {
    let bits = |b: &[u8]| {
        let b = &b[b.iter().take_while(|x| **x == 0).count()..];
        b.first()
            .map_or(0, |f| (b.len() - 1) * 8 + (8 - f.leading_zeros() as usize))
    };
    let n_bits = bits(n);
    if !(2048..=4096).contains(&n_bits) {
        return Err(format!(
            "the RSA modulus has {n_bits} bits; 2048 to 4096 are accepted"
        ));
    }
    let e_bits = bits(e);
    let odd = e.last().is_some_and(|l| l & 1 == 1);
    if !(2..=33).contains(&e_bits) || !odd {
        return Err("the RSA exponent is not valid".into());
    }
    Ok(())
}
