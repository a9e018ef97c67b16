#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Method, Uri};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::test_keys::*;
use super::*;
use crate::runtime::policy::Credentials;
use crate::runtime::policy::rate_limit::Limiters;
use switchyard_config::duration::HumanDuration;

const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";
/// The time the tests run at.
const NOW: u64 = 1_700_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn jwks() -> Value {
    json!({"keys": [
        {"kty": "RSA", "kid": "rsa-1", "alg": "RS256", "use": "sig", "n": RSA1_N, "e": RSA_E},
        {"kty": "RSA", "kid": "rsa-2", "n": RSA2_N, "e": RSA_E},
        {"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": EC1_X, "y": EC1_Y},
        // Skipped: for encryption, another algorithm, an unsupported key type.
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": RSA1_N, "e": RSA_E},
        {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": RSA1_N, "e": RSA_E},
        {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
    ]})
}

fn spec(algorithms: &[&str]) -> JwtSpec {
    JwtSpec {
        issuer: None,
        audiences: Vec::new(),
        algorithms: algorithms.iter().map(|a| a.to_string()).collect(),
        jwks: algorithms
            .iter()
            .any(|a| *a != "HS256")
            .then(|| "idp-keys".into()),
        secret: algorithms.contains(&"HS256").then(|| "hmac".into()),
        consumer_claim: "sub".into(),
        leeway: None,
        header: None,
    }
}

fn compile_with(
    spec: &JwtSpec,
    creds: &[(&str, CredentialSpec)],
) -> Result<JwtPolicy, Vec<FieldError>> {
    let mut map = Credentials::new();
    for (name, c) in creds {
        map.insert(name, c);
    }
    let limiters = Limiters::default();
    let ctx = CompileCtx {
        proxy: "p",
        credentials: &map,
        limiters: &limiters,
        rate_limit_ordinal: 0,
        authenticated: false,
    };
    compile(spec, &ctx)
}

fn standard_creds() -> Vec<(&'static str, CredentialSpec)> {
    vec![
        (
            "hmac",
            CredentialSpec::Secret {
                value: SECRET.into(),
            },
        ),
        ("idp-keys", CredentialSpec::Jwks { jwks: jwks() }),
    ]
}

fn policy(spec: &JwtSpec) -> JwtPolicy {
    compile_with(spec, &standard_creds()).unwrap()
}

/// Claims valid at [`NOW`], with `extra` merged in (`null` removes a claim).
fn claims(extra: Value) -> Value {
    let mut c = json!({"sub": "acme", "exp": NOW + 60, "iat": NOW});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    encode(&header, claims, key).unwrap()
}

fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
}

fn rsa_key(pem: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
}

fn rs256(kid: Option<&str>, pem: &str, claims: &Value) -> String {
    sign(Algorithm::RS256, kid, claims, &rsa_key(pem))
}

fn es256(kid: Option<&str>, claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(EC1_PRIVATE.as_bytes()).unwrap();
    sign(Algorithm::ES256, kid, claims, &key)
}

fn run_at(
    p: &JwtPolicy,
    headers: &[(&str, &str)],
    at: SystemTime,
) -> (Verdict, Exchange, HeaderMap) {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let mut uri: Uri = "/x".parse().unwrap();
    let mut ex = Exchange::default();
    let v = p.on_request(
        &mut RequestView {
            method: &Method::GET,
            uri: &mut uri,
            headers: &mut h,
            peer: IpAddr::from([127, 0, 0, 1]),
            client_cert: None,
        },
        &mut ex,
        at,
    );
    (v, ex, h)
}

fn bearer(p: &JwtPolicy, token: &str) -> (Verdict, Exchange) {
    let (v, ex, _) = run_at(p, &[("authorization", &format!("Bearer {token}"))], now());
    (v, ex)
}

/// The consumer a token is let through as.
#[track_caller]
fn accepted(p: &JwtPolicy, token: &str) -> String {
    match bearer(p, token) {
        (Verdict::Continue, ex) => ex.consumer.unwrap().to_string(),
        (Verdict::Reply(r), _) => panic!("refused: {} {:?}", r.code, r.body),
    }
}

/// The denial of a token: its code, after checking the reply's shape.
#[track_caller]
fn refused(p: &JwtPolicy, token: &str) -> &'static str {
    match bearer(p, token) {
        (Verdict::Reply(r), ex) => {
            assert!(ex.consumer.is_none());
            check_denial(&r, token)
        }
        (Verdict::Continue, _) => panic!("let through"),
    }
}

#[track_caller]
fn check_denial(r: &Reply, token: &str) -> &'static str {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let challenge = r
        .headers
        .iter()
        .find(|(n, _)| n == http::header::WWW_AUTHENTICATE)
        .map(|(_, v)| v.to_str().unwrap())
        .unwrap();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["error"], r.code);
    assert_eq!(body["policy"], "jwt");
    if !token.is_empty() {
        let text = String::from_utf8(r.body.to_vec()).unwrap();
        for part in token.split('.').filter(|p| p.len() > 8) {
            assert!(!text.contains(part), "the reply quotes the token: {text}");
        }
    }
    r.code
}

#[test]
fn hs256_tokens_name_their_consumer_and_stay_for_the_upstream() {
    let p = policy(&spec(&["HS256"]));
    let token = hs256(&claims(json!({})));
    let (v, ex, h) = run_at(&p, &[("authorization", &format!("Bearer {token}"))], now());
    assert!(matches!(v, Verdict::Continue));
    assert_eq!(ex.consumer.as_deref(), Some("acme"));
    assert_eq!(h["authorization"], format!("Bearer {token}").as_str());
}

#[test]
fn rs256_and_es256_tokens_verify_against_the_jwks() {
    let p = policy(&spec(&["RS256", "ES256"]));
    assert_eq!(
        accepted(&p, &rs256(Some("rsa-1"), RSA1_PRIVATE, &claims(json!({})))),
        "acme"
    );
    let t = es256(Some("ec-1"), &claims(json!({"sub": "globex"})));
    assert_eq!(accepted(&p, &t), "globex");
    // A token without kid is tried against the keys of its algorithm.
    assert_eq!(accepted(&p, &es256(None, &claims(json!({})))), "acme");
    assert_eq!(
        accepted(&p, &rs256(None, RSA2_PRIVATE, &claims(json!({})))),
        "acme"
    );
}

#[test]
fn kid_selects_the_key() {
    let p = policy(&spec(&["RS256"]));
    let c = claims(json!({}));
    assert_eq!(
        accepted(&p, &rs256(Some("rsa-2"), RSA2_PRIVATE, &c)),
        "acme"
    );
    // Signed by rsa-2 but naming rsa-1: only rsa-1 is tried.
    assert_eq!(
        refused(&p, &rs256(Some("rsa-1"), RSA2_PRIVATE, &c)),
        "invalid_token"
    );
    // An unknown kid: every key of the set has an id, so none is tried.
    assert_eq!(
        refused(&p, &rs256(Some("nope"), RSA1_PRIVATE, &c)),
        "invalid_token"
    );
    // Keys the policy skipped (use: enc, alg: PS256) are never selected by their kid.
    assert_eq!(
        refused(&p, &rs256(Some("enc"), RSA1_PRIVATE, &c)),
        "invalid_token"
    );
    assert_eq!(
        refused(&p, &rs256(Some("ps"), RSA1_PRIVATE, &c)),
        "invalid_token"
    );
}

#[test]
fn keys_without_kid_serve_tokens_with_an_unknown_kid() {
    let set = json!({"keys": [{"kty": "RSA", "n": RSA1_N, "e": RSA_E}]});
    let p = compile_with(
        &spec(&["RS256"]),
        &[("idp-keys", CredentialSpec::Jwks { jwks: set })],
    )
    .unwrap();
    assert_eq!(
        accepted(&p, &rs256(Some("k9"), RSA1_PRIVATE, &claims(json!({})))),
        "acme"
    );
}

#[test]
fn expiry_and_not_before_are_checked_against_the_given_time_with_leeway() {
    let mut s = spec(&["HS256"]);
    let p = policy(&s);
    let expired = hs256(&claims(json!({"exp": NOW - 10})));
    assert_eq!(refused(&p, &expired), "token_expired");
    assert_eq!(
        refused(&p, &hs256(&claims(json!({"exp": NOW})))),
        "token_expired"
    );
    let early = hs256(&claims(json!({"nbf": NOW + 10})));
    assert_eq!(refused(&p, &early), "token_not_yet_valid");
    assert_eq!(accepted(&p, &hs256(&claims(json!({"nbf": NOW})))), "acme");
    // The clock passed in is the one used: the same token is fine an hour earlier.
    let (v, _, _) = run_at(
        &p,
        &[("authorization", &format!("Bearer {expired}"))],
        now() - Duration::from_secs(3600),
    );
    assert!(matches!(v, Verdict::Continue));

    s.leeway = Some(HumanDuration::from_secs(30));
    let lenient = policy(&s);
    assert_eq!(accepted(&lenient, &expired), "acme");
    assert_eq!(accepted(&lenient, &early), "acme");
    let long_expired = hs256(&claims(json!({"exp": NOW - 31})));
    assert_eq!(refused(&lenient, &long_expired), "token_expired");
    let late = hs256(&claims(json!({"nbf": NOW + 31})));
    assert_eq!(refused(&lenient, &late), "token_not_yet_valid");
    // Fractional times are accepted.
    let frac = hs256(&claims(json!({"exp": NOW as f64 + 0.5})));
    assert_eq!(accepted(&p, &frac), "acme");
}

#[test]
fn exp_is_required_and_must_be_a_number() {
    let p = policy(&spec(&["HS256"]));
    assert_eq!(
        refused(&p, &hs256(&claims(json!({"exp": null})))),
        "invalid_token"
    );
    let text = hs256(&claims(json!({"exp": "tomorrow"})));
    assert_eq!(refused(&p, &text), "invalid_token");
    let nbf = hs256(&claims(json!({"nbf": "now"})));
    assert_eq!(refused(&p, &nbf), "invalid_token");
}

#[test]
fn issuer_must_match_when_set() {
    let mut s = spec(&["HS256"]);
    s.issuer = Some("https://idp.example.com".into());
    let p = policy(&s);
    let good = hs256(&claims(json!({"iss": "https://idp.example.com"})));
    assert_eq!(accepted(&p, &good), "acme");
    let other = hs256(&claims(json!({"iss": "https://evil.example.com"})));
    assert_eq!(refused(&p, &other), "invalid_issuer");
    assert_eq!(refused(&p, &hs256(&claims(json!({})))), "invalid_issuer");
    // Without `issuer`, any is fine.
    assert_eq!(accepted(&policy(&spec(&["HS256"])), &other), "acme");
}

#[test]
fn audience_must_contain_one_of_the_configured() {
    let mut s = spec(&["HS256"]);
    s.audiences = vec!["orders".into(), "billing".into()];
    let p = policy(&s);
    assert_eq!(
        accepted(&p, &hs256(&claims(json!({"aud": "billing"})))),
        "acme"
    );
    let list = hs256(&claims(json!({"aud": ["crm", "orders"]})));
    assert_eq!(accepted(&p, &list), "acme");
    let wrong = hs256(&claims(json!({"aud": "crm"})));
    assert_eq!(refused(&p, &wrong), "invalid_audience");
    let wrong_list = hs256(&claims(json!({"aud": ["crm", "hr"]})));
    assert_eq!(refused(&p, &wrong_list), "invalid_audience");
    assert_eq!(refused(&p, &hs256(&claims(json!({})))), "invalid_audience");
    // Without `audiences`, `aud` is not checked.
    assert_eq!(accepted(&policy(&spec(&["HS256"])), &wrong), "acme");
}

#[test]
fn bad_signatures_are_invalid_tokens() {
    let p = policy(&spec(&["HS256", "RS256"]));
    let c = claims(json!({}));
    let other_secret = EncodingKey::from_secret(b"another-secret-that-is-32-bytes-long");
    assert_eq!(
        refused(&p, &sign(Algorithm::HS256, None, &c, &other_secret)),
        "invalid_token"
    );
    // A valid token with its payload swapped for another one.
    let good = hs256(&c);
    let forged_payload = hs256(&claims(json!({"sub": "admin"})));
    let parts: Vec<&str> = good.split('.').collect();
    let other: Vec<&str> = forged_payload.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], other[1], parts[2]);
    assert_eq!(refused(&p, &forged), "invalid_token");
    for junk in ["abc", "a.b.c", "a.b", "....", "e30.e30.e30"] {
        assert_eq!(refused(&p, junk), "invalid_token", "{junk}");
    }
}

#[test]
fn algorithm_confusion_and_none_are_refused() {
    let c = claims(json!({}));
    // An HS256 token "signed" with the RSA public key of the JWKS, as an attacker would.
    let confused = sign(
        Algorithm::HS256,
        Some("rsa-1"),
        &c,
        &EncodingKey::from_secret(RSA1_PUBLIC_PEM.as_bytes()),
    );
    let rs_only = policy(&spec(&["RS256"]));
    assert_eq!(refused(&rs_only, &confused), "invalid_token");
    let both = policy(&spec(&["HS256", "RS256"]));
    assert_eq!(refused(&both, &confused), "invalid_token");
    // An RS256 token to a policy that lists only ES256 (whose JWKS has the RSA key too).
    let es_only = policy(&spec(&["ES256"]));
    let rs = rs256(Some("rsa-1"), RSA1_PRIVATE, &c);
    assert_eq!(refused(&es_only, &rs), "invalid_token");
    // An RS256 token to an HS256-only policy.
    assert_eq!(refused(&policy(&spec(&["HS256"])), &rs), "invalid_token");
    // alg: none, with and without a signature.
    use base64::Engine;
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    for alg in ["none", "None", "NONE"] {
        let unsigned = format!("{}.{}.", b64(&json!({"alg": alg, "typ": "JWT"})), b64(&c));
        assert_eq!(refused(&both, &unsigned), "invalid_token");
        let sig = hs256(&c).rsplit('.').next().unwrap().to_string();
        assert_eq!(refused(&both, &format!("{unsigned}{sig}")), "invalid_token");
    }
}

#[test]
fn the_token_comes_from_a_bearer_authorization_or_a_custom_header() {
    let p = policy(&spec(&["HS256"]));
    let token = hs256(&claims(json!({})));
    let code = |headers: &[(&str, &str)]| match run_at(&p, headers, now()).0 {
        Verdict::Reply(r) => check_denial(&r, &token),
        Verdict::Continue => "continue",
    };
    assert_eq!(code(&[]), "missing_token");
    assert_eq!(code(&[("authorization", "Basic YTpi")]), "missing_token");
    assert_eq!(code(&[("authorization", "Bearer")]), "missing_token");
    assert_eq!(code(&[("authorization", "Bearer   ")]), "missing_token");
    assert_eq!(code(&[("authorization", &token)]), "missing_token");
    assert_eq!(
        code(&[("authorization", &format!("bearer {token}"))]),
        "continue"
    );
    assert_eq!(
        code(&[("authorization", &format!("BEARER  {token} "))]),
        "continue"
    );
    match run_at(&p, &[], now()).0 {
        Verdict::Reply(r) => {
            assert!(r.headers.contains(&(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer")
            )));
        }
        Verdict::Continue => panic!("let through"),
    }

    let mut s = spec(&["HS256"]);
    s.header = Some("X-Token".into());
    let custom = policy(&s);
    let (v, ex, h) = run_at(&custom, &[("x-token", &token)], now());
    assert!(matches!(v, Verdict::Continue));
    assert_eq!(ex.consumer.as_deref(), Some("acme"));
    assert!(h.contains_key("x-token"));
    let (v, _, _) = run_at(
        &custom,
        &[("authorization", &format!("Bearer {token}"))],
        now(),
    );
    assert!(matches!(v, Verdict::Reply(r) if r.code == "missing_token"));
    let (v, _, _) = run_at(&custom, &[("x-token", &format!("Bearer {token}"))], now());
    assert!(matches!(v, Verdict::Reply(r) if r.code == "invalid_token"));
}

#[test]
fn the_consumer_is_the_configured_string_claim() {
    let p = policy(&spec(&["HS256"]));
    assert_eq!(
        refused(&p, &hs256(&claims(json!({"sub": null})))),
        "missing_consumer_claim"
    );
    assert_eq!(
        refused(&p, &hs256(&claims(json!({"sub": 42})))),
        "missing_consumer_claim"
    );
    assert_eq!(
        refused(&p, &hs256(&claims(json!({"sub": ""})))),
        "missing_consumer_claim"
    );
    let mut s = spec(&["HS256"]);
    s.consumer_claim = "client_id".into();
    let p = policy(&s);
    let t = hs256(&claims(json!({"client_id": "mobile-app"})));
    assert_eq!(accepted(&p, &t), "mobile-app");
    assert_eq!(
        refused(&p, &hs256(&claims(json!({})))),
        "missing_consumer_claim"
    );
}

#[test]
fn a_jwks_written_as_json_text_works_like_the_mapping() {
    let text = serde_json::to_string(&jwks()).unwrap();
    let p = compile_with(
        &spec(&["RS256"]),
        &[(
            "idp-keys",
            CredentialSpec::Jwks {
                jwks: Value::String(text),
            },
        )],
    )
    .unwrap();
    assert_eq!(
        accepted(&p, &rs256(Some("rsa-1"), RSA1_PRIVATE, &claims(json!({})))),
        "acme"
    );
}

#[test]
fn debug_output_holds_no_key_material() {
    let p = policy(&spec(&["HS256", "RS256"]));
    let text = format!("{p:?}");
    assert!(!text.contains(SECRET), "{text}");
    assert!(!text.contains(&RSA1_N[..16]), "{text}");
}

/// The errors of compiling `spec` against `creds`, as (field, message).
fn errors(spec: &JwtSpec, creds: &[(&str, CredentialSpec)]) -> Vec<(String, String)> {
    compile_with(spec, creds)
        .unwrap_err()
        .into_iter()
        .map(|e| (e.field, e.message))
        .collect()
}

#[track_caller]
fn has_error(errs: &[(String, String)], field: &str, fragment: &str) {
    assert!(
        errs.iter().any(|(f, m)| f == field && m.contains(fragment)),
        "no error on {field} containing {fragment:?}: {errs:?}"
    );
}

#[test]
fn algorithms_are_required_and_known() {
    let creds = standard_creds();
    has_error(&errors(&spec(&[]), &creds), "algorithms", "at least one");
    for alg in ["none", "HS512", "hs256", "PS256"] {
        let mut s = spec(&["HS256"]);
        s.algorithms.push(alg.into());
        has_error(
            &errors(&s, &creds),
            "algorithms[1]",
            "unsupported algorithm",
        );
    }
}

#[test]
fn each_algorithm_needs_its_credential_of_the_right_type() {
    let creds = standard_creds();
    let mut s = spec(&["HS256"]);
    s.secret = None;
    has_error(&errors(&s, &creds), "secret", "HS256 needs `secret`");
    let mut s = spec(&["RS256", "ES256"]);
    s.jwks = None;
    has_error(&errors(&s, &creds), "jwks", "RS256 and ES256 need");
    let mut s = spec(&["RS256"]);
    s.secret = Some("hmac".into());
    has_error(&errors(&s, &creds), "secret", "only used for HS256");
    let mut s = spec(&["HS256"]);
    s.jwks = Some("idp-keys".into());
    has_error(&errors(&s, &creds), "jwks", "only used for RS256 and ES256");

    let mut s = spec(&["HS256", "RS256"]);
    s.secret = Some("idp-keys".into());
    s.jwks = Some("hmac".into());
    let errs = errors(&s, &creds);
    has_error(&errs, "secret", "of type \"jwks\"");
    has_error(&errs, "jwks", "of type \"secret\"");
    s.secret = Some("nope".into());
    has_error(
        &errors(&s, &creds),
        "secret",
        "no Credential named \"nope\"",
    );
}

#[test]
fn short_hmac_secrets_are_refused() {
    let creds = [(
        "hmac",
        CredentialSpec::Secret {
            value: "short".into(),
        },
    )];
    let errs = errors(&spec(&["HS256"]), &creds);
    has_error(&errs, "secret", "at least 32 bytes");
    assert!(!errs.iter().any(|(_, m)| m.contains("short")), "{errs:?}");
}

#[test]
fn unusable_jwks_are_refused() {
    let with = |set: Value| {
        errors(
            &spec(&["RS256"]),
            &[("idp-keys", CredentialSpec::Jwks { jwks: set })],
        )
    };
    has_error(
        &with(Value::String("{not json".into())),
        "jwks",
        "not valid JSON",
    );
    has_error(&with(json!({"kid": "x"})), "jwks", "JSON Web Key Set");
    has_error(
        &with(json!({"keys": []})),
        "jwks",
        "no key usable for RS256",
    );
    // Only an EC key for an RS256 policy, and only an RSA key for an ES256 one.
    let ec = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": EC1_X, "y": EC1_Y}]});
    has_error(&with(ec), "jwks", "no key usable for RS256");
    let rsa = json!({"keys": [{"kty": "RSA", "n": RSA1_N, "e": RSA_E}]});
    let errs = errors(
        &spec(&["ES256"]),
        &[("idp-keys", CredentialSpec::Jwks { jwks: rsa })],
    );
    has_error(&errs, "jwks", "no key usable for ES256");
    // Usable-looking keys with bad material name the key, never the material.
    let errs = with(json!({"keys": [{"kty": "RSA", "kid": "a", "n": "!!", "e": RSA_E}]}));
    has_error(&errs, "jwks", "keys[0]: `n` is not base64url");
    let errs = with(json!({"keys": [{"kty": "RSA", "e": RSA_E}]}));
    has_error(&errs, "jwks", "`n` is missing");
    let small = &RSA1_N[..168]; // 1008 bits
    let errs = with(json!({"keys": [{"kty": "RSA", "n": small, "e": RSA_E}]}));
    has_error(&errs, "jwks", "2048 to 4096 are accepted");
    assert!(!errs.iter().any(|(_, m)| m.contains(small)), "{errs:?}");
    let errs = with(json!({"keys": [{"kty": "RSA", "n": RSA1_N, "e": "AAE"}]}));
    has_error(&errs, "jwks", "exponent");
    let ec_with = |x: &str, y: &str| {
        let set = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": x, "y": y}]});
        errors(
            &spec(&["ES256"]),
            &[("idp-keys", CredentialSpec::Jwks { jwks: set })],
        )
    };
    has_error(&ec_with(EC1_X, EC1_X), "jwks", "not on the P-256 curve");
    has_error(&ec_with(EC1_X, "AAAA"), "jwks", "32 bytes each");
}

#[test]
fn other_fields_are_checked() {
    let creds = standard_creds();
    let mut s = spec(&["HS256"]);
    s.header = Some("bad header".into());
    s.consumer_claim = String::new();
    s.issuer = Some(String::new());
    s.audiences = vec!["ok".into(), String::new()];
    let errs = errors(&s, &creds);
    has_error(&errs, "header", "invalid header name");
    has_error(&errs, "consumerClaim", "empty");
    has_error(&errs, "issuer", "empty");
    has_error(&errs, "audiences[1]", "empty");
}
