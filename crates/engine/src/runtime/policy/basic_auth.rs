//! `basic-auth`: users and password hashes from `basic-users` credentials.
//!
//! Hashes are argon2 PHC strings (`$argon2id$…`, also argon2i/argon2d) or bcrypt
//! (`$2a$`, `$2b$`, `$2y$`), each parsed when the policy is compiled so that a bad one is
//! refused then (naming the credential and the user, never the hash).
//!
//! The request path is split in two. [`BasicAuthPolicy::on_request`] does the cheap part:
//! reads `Authorization: Basic …`, refuses a missing or malformed header or an unknown user
//! at once, and lets a password that was verified recently through without hashing (see
//! below). Otherwise the Worker runs [`BasicAuthPolicy::verify_task`] on a blocking thread
//! and answers with [`BasicAuthPolicy::finish`].
//!
//! **Verified passwords are remembered** for [`CACHE_TTL`], at most [`CACHE_MAX`] of them,
//! as SHA-256 over a random per-policy salt, the username and the password — never the
//! password itself. The cache belongs to the compiled policy, so changing a credential
//! (which recompiles the proxy) starts a fresh one. Failed attempts are not remembered at
//! all: each wrong password costs a full hash, as it should.
//!
//! **Unknown users are refused without hashing.** Their request does the same cheap work as
//! a known user's (header parsing, the salted digest) but not the expensive verification,
//! which anonymous traffic could otherwise use to burn the Worker's CPU. The price is that
//! the response time tells whether a username exists: usernames are not treated as secret.
//!
//! With `hideCredentials` (the default) the `Authorization` header is removed as soon as it
//! is read as Basic credentials, so the upstream never sees it.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::{HeaderMap, HeaderValue, StatusCode};
use sha2::{Digest, Sha256};

use super::{CompileCtx, Exchange, FieldError, Reply, RequestView, Verdict, header_value};
use switchyard_config::manifest::{BasicAuthSpec, CredentialSpec};

/// How long a verified password is let through without hashing it again.
pub const CACHE_TTL: Duration = Duration::from_secs(300);
/// At most this many verified passwords are remembered.
pub const CACHE_MAX: usize = 10_000;
/// The most memory an argon2 hash may ask for per verification (256 MiB, in KiB).
const ARGON2_MAX_M_COST: u32 = 256 * 1024;

pub struct BasicAuthPolicy {
    users: Arc<HashMap<Box<str>, User>>,
    verified: Arc<VerifiedCache>,
    /// `Basic realm="…"`.
    challenge: HeaderValue,
    hide: bool,
}

impl std::fmt::Debug for BasicAuthPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuthPolicy")
            .field("users", &self.users.len())
            .field("challenge", &self.challenge)
            .field("hide", &self.hide)
            .finish_non_exhaustive()
    }
}

struct User {
    consumer: Arc<str>,
    hash: PasswordHash,
}

/// A password hash, checked to parse when compiled.
enum PasswordHash {
    Argon2(String),
    Bcrypt(String),
}

impl PasswordHash {
    /// Why `hash` is not usable; the message never quotes it.
    fn parse(hash: &str) -> Result<PasswordHash, String> {
        if hash.starts_with("$argon2") {
            let parsed = argon2::PasswordHash::new(hash)
                .map_err(|_| "not a valid argon2 PHC string".to_string())?;
            argon2::Algorithm::try_from(parsed.algorithm)
                .map_err(|_| "unknown argon2 variant".to_string())?;
            if let Some(v) = parsed.version {
                argon2::Version::try_from(v)
                    .map_err(|_| "unsupported argon2 version".to_string())?;
            }
            let params = argon2::Params::try_from(&parsed)
                .map_err(|_| "invalid argon2 parameters".to_string())?;
            if params.m_cost() > ARGON2_MAX_M_COST {
                return Err(format!(
                    "argon2 memory cost m={} KiB is over the limit of {ARGON2_MAX_M_COST} KiB",
                    params.m_cost()
                ));
            }
            if parsed.salt.is_none() || parsed.hash.is_none() {
                return Err("the argon2 string has no salt or no hash".into());
            }
            Ok(PasswordHash::Argon2(hash.to_string()))
        } else if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
            let parts = bcrypt::HashParts::from_str(hash)
                .map_err(|_| "not a valid bcrypt hash".to_string())?;
            if !(4..=31).contains(&parts.get_cost()) {
                return Err("the bcrypt cost must be 4 to 31".into());
            }
            Ok(PasswordHash::Bcrypt(hash.to_string()))
        } else {
            Err("expected an argon2 PHC string ($argon2id$…) or a bcrypt hash ($2a$, $2b$ or $2y$), never a clear password".into())
        }
    }

    /// The slow part.
    fn verify(&self, password: &[u8]) -> bool {
        use argon2::PasswordVerifier;
        match self {
            PasswordHash::Argon2(s) => argon2::PasswordHash::new(s).is_ok_and(|h| {
                argon2::Argon2::default()
                    .verify_password(password, &h)
                    .is_ok()
            }),
            PasswordHash::Bcrypt(s) => bcrypt::verify(password, s).unwrap_or(false),
        }
    }
}

/// Whether `hash` is a password hash `basic-auth` can verify; the reason never quotes it.
pub fn check_password_hash(hash: &str) -> Result<(), String> {
    PasswordHash::parse(hash).map(drop)
}

/// Passwords verified recently, by salted digest.
struct VerifiedCache {
    salt: [u8; 32],
    entries: RwLock<HashMap<[u8; 32], Instant>>,
}

impl VerifiedCache {
    fn new() -> VerifiedCache {
        let mut salt = [0u8; 32];
        if getrandom::fill(&mut salt).is_err() {
            // No randomness: the digests stay unlinkable to other policies' through the
            // clock, and are only ever compared inside this process.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            salt = Sha256::digest(t.as_nanos().to_le_bytes()).into();
        }
        VerifiedCache {
            salt,
            entries: RwLock::new(HashMap::new()),
        }
    }

    fn digest(&self, username: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update((username.len() as u64).to_le_bytes());
        h.update(username.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    fn fresh(&self, digest: &[u8; 32], now: Instant) -> bool {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(digest)
            .is_some_and(|at| now.saturating_duration_since(*at) < CACHE_TTL)
    }

    fn insert(&self, digest: [u8; 32], now: Instant) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= CACHE_MAX && !entries.contains_key(&digest) {
            entries.retain(|_, at| now.saturating_duration_since(*at) < CACHE_TTL);
            if entries.len() >= CACHE_MAX {
                // Full of fresh entries: this one will simply be verified again next time.
                return;
            }
        }
        entries.insert(digest, now);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// What the fast part of the check decided.
pub enum BasicAuthStep {
    /// Answered without hashing (no or malformed header, unknown user, cached result).
    Done(Verdict),
    /// A password hash must be verified: run [`BasicAuthPolicy::verify_task`] off the async
    /// threads, then [`BasicAuthPolicy::finish`].
    Verify { username: String, password: String },
}

pub fn compile(
    spec: &BasicAuthSpec,
    ctx: &CompileCtx<'_>,
) -> Result<BasicAuthPolicy, Vec<FieldError>> {
    let mut errors = Vec::new();
    if spec.credentials.is_empty() {
        errors.push(FieldError::new(
            "credentials",
            "name at least one Credential of type basic-users",
        ));
    }
    let mut users: HashMap<Box<str>, User> = HashMap::new();
    let mut found_in: HashMap<&str, usize> = HashMap::new();
    for (i, name) in spec.credentials.iter().enumerate() {
        let field = format!("credentials[{i}]");
        let list = match ctx.credential(&field, name, "basic-users") {
            Ok(CredentialSpec::BasicUsers { users }) => users,
            Ok(_) => continue,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        for u in list {
            let user = &u.username;
            if user.is_empty() || user.contains(':') {
                errors.push(FieldError::new(
                    &field,
                    format!("user {user:?}: a username must be non-empty and cannot contain ':'"),
                ));
                continue;
            }
            if let Some(j) = found_in.insert(user, i) {
                errors.push(FieldError::new(
                    &field,
                    format!("user {user:?} is also listed in credentials[{j}]"),
                ));
                continue;
            }
            match PasswordHash::parse(&u.password_hash) {
                Ok(hash) => {
                    users.insert(
                        user.as_str().into(),
                        User {
                            consumer: Arc::from(user.as_str()),
                            hash,
                        },
                    );
                }
                Err(why) => errors.push(FieldError::new(
                    &field,
                    format!("user {user:?}: the password hash is not usable: {why}"),
                )),
            }
        }
    }
    let realm = spec.realm.as_deref().unwrap_or(ctx.proxy);
    let quoted = realm.replace('\\', "\\\\").replace('"', "\\\"");
    let challenge = header_value("realm", &format!("Basic realm=\"{quoted}\""))
        .map_err(|e| errors.push(e))
        .ok();
    match challenge {
        Some(challenge) if errors.is_empty() => Ok(BasicAuthPolicy {
            users: Arc::new(users),
            verified: Arc::new(VerifiedCache::new()),
            challenge,
            hide: spec.hide_credentials,
        }),
        _ => Err(errors),
    }
}

/// Why the header gave no credentials.
enum NoCredentials {
    /// No `Authorization`, or another scheme.
    Missing,
    /// `Basic` with something that is not base64 of `user:password` in UTF-8.
    Malformed,
}

/// Base64 as clients send it: standard alphabet, padding optional.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// `Authorization: Basic base64(user:password)`.
fn credentials(headers: &HeaderMap) -> Result<(String, String), NoCredentials> {
    let value = headers
        .get(http::header::AUTHORIZATION)
        .ok_or(NoCredentials::Missing)?
        .as_bytes()
        .trim_ascii();
    let encoded = match value.iter().position(|b| *b == b' ') {
        Some(at) if value[..at].eq_ignore_ascii_case(b"basic") => value[at..].trim_ascii(),
        None if value.eq_ignore_ascii_case(b"basic") => b"",
        _ => return Err(NoCredentials::Missing),
    };
    let decoded = LENIENT_BASE64
        .decode(encoded)
        .map_err(|_| NoCredentials::Malformed)?;
    let text = String::from_utf8(decoded).map_err(|_| NoCredentials::Malformed)?;
    let (user, password) = text.split_once(':').ok_or(NoCredentials::Malformed)?;
    Ok((user.to_string(), password.to_string()))
}

impl BasicAuthPolicy {
    pub fn on_request(&self, req: &mut RequestView<'_>, ex: &mut Exchange) -> BasicAuthStep {
        self.on_request_at(req, ex, Instant::now())
    }

    fn on_request_at(
        &self,
        req: &mut RequestView<'_>,
        ex: &mut Exchange,
        now: Instant,
    ) -> BasicAuthStep {
        let parsed = credentials(req.headers);
        if self.hide && !matches!(parsed, Err(NoCredentials::Missing)) {
            req.headers.remove(http::header::AUTHORIZATION);
        }
        let (username, password) = match parsed {
            Ok(c) => c,
            Err(NoCredentials::Missing) => {
                return BasicAuthStep::Done(self.deny(
                    "missing_credentials",
                    "a username and password are required",
                ));
            }
            Err(NoCredentials::Malformed) => return BasicAuthStep::Done(self.invalid()),
        };
        let digest = self.verified.digest(&username, &password);
        let Some(user) = self.users.get(username.as_str()) else {
            return BasicAuthStep::Done(self.invalid());
        };
        if self.verified.fresh(&digest, now) {
            ex.consumer = Some(user.consumer.clone());
            return BasicAuthStep::Done(Verdict::Continue);
        }
        BasicAuthStep::Verify { username, password }
    }

    /// The slow part, to run on a blocking thread: verifies `password` against the user's
    /// hash (argon2 or bcrypt) and returns whether it matched. A match is remembered.
    pub fn verify_task(
        &self,
        username: String,
        password: String,
    ) -> impl FnOnce() -> bool + Send + 'static {
        let users = Arc::clone(&self.users);
        let verified = Arc::clone(&self.verified);
        move || {
            let Some(user) = users.get(username.as_str()) else {
                return false;
            };
            let ok = user.hash.verify(password.as_bytes());
            if ok {
                verified.insert(verified.digest(&username, &password), Instant::now());
            }
            ok
        }
    }

    /// The verdict after [`BasicAuthPolicy::verify_task`] returned `ok`.
    pub fn finish(&self, username: &str, ok: bool, ex: &mut Exchange) -> Verdict {
        match self.users.get(username) {
            Some(user) if ok => {
                ex.consumer = Some(user.consumer.clone());
                Verdict::Continue
            }
            _ => self.invalid(),
        }
    }

    fn invalid(&self) -> Verdict {
        self.deny(
            "invalid_credentials",
            "the username or password is not valid",
        )
    }

    fn deny(&self, code: &'static str, message: &str) -> Verdict {
        Verdict::Reply(
            Reply::deny(StatusCode::UNAUTHORIZED, code, BasicAuthSpec::TYPE, message)
                .with_header(http::header::WWW_AUTHENTICATE, self.challenge.clone()),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::IpAddr;
    use std::sync::OnceLock;

    use argon2::PasswordHasher;
    use http::{HeaderName, Method, Uri};

    use super::*;
    use crate::runtime::policy::Credentials;
    use crate::runtime::policy::rate_limit::Limiters;
    use switchyard_config::manifest::BasicUser;

    /// An argon2id hash of `pw`, with small parameters to keep the tests fast.
    fn argon2_hash(pw: &str) -> String {
        let params = argon2::Params::new(64, 1, 1, None).unwrap();
        let hasher =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = argon2::password_hash::SaltString::encode_b64(b"test-salt-16byte").unwrap();
        hasher
            .hash_password(pw.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    /// The hashes of the test users: alice (argon2id) and bob (bcrypt, lowest cost).
    fn hashes() -> &'static (String, String) {
        static HASHES: OnceLock<(String, String)> = OnceLock::new();
        HASHES.get_or_init(|| (argon2_hash("alice-pw"), bcrypt::hash("bob-pw", 4).unwrap()))
    }

    fn users(list: &[(&str, &str)]) -> CredentialSpec {
        CredentialSpec::BasicUsers {
            users: list
                .iter()
                .map(|(u, h)| BasicUser {
                    username: u.to_string(),
                    password_hash: h.to_string(),
                })
                .collect(),
        }
    }

    fn spec(credentials: &[&str]) -> BasicAuthSpec {
        BasicAuthSpec {
            credentials: credentials.iter().map(|c| c.to_string()).collect(),
            realm: None,
            hide_credentials: true,
        }
    }

    fn compile_with(
        spec: &BasicAuthSpec,
        creds: &[(&str, CredentialSpec)],
    ) -> Result<BasicAuthPolicy, Vec<FieldError>> {
        let mut map = Credentials::new();
        for (name, c) in creds {
            map.insert(name, c);
        }
        let limiters = Limiters::default();
        let ctx = CompileCtx {
            proxy: "orders",
            credentials: &map,
            limiters: &limiters,
            rate_limit_ordinal: 0,
            authenticated: false,
        };
        compile(spec, &ctx)
    }

    fn policy_with(spec: &BasicAuthSpec) -> BasicAuthPolicy {
        let (a, b) = hashes();
        compile_with(
            spec,
            &[
                ("staff", users(&[("alice", a)])),
                ("partners", users(&[("bob", b)])),
            ],
        )
        .unwrap()
    }

    fn policy() -> BasicAuthPolicy {
        policy_with(&spec(&["staff", "partners"]))
    }

    fn basic(user: &str, pw: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
        )
    }

    /// The first step for a request with `authorization` (if any), and the headers after it.
    fn step(
        p: &BasicAuthPolicy,
        authorization: Option<&str>,
    ) -> (BasicAuthStep, Exchange, HeaderMap) {
        let mut h = HeaderMap::new();
        if let Some(a) = authorization {
            h.insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(a).unwrap(),
            );
        }
        h.insert(
            HeaderName::from_static("x-other"),
            HeaderValue::from_static("1"),
        );
        let mut uri: Uri = "/x".parse().unwrap();
        let mut ex = Exchange::default();
        let s = p.on_request(
            &mut RequestView {
                method: &Method::GET,
                uri: &mut uri,
                headers: &mut h,
                peer: IpAddr::from([127, 0, 0, 1]),
                client_cert: None,
            },
            &mut ex,
        );
        (s, ex, h)
    }

    /// The whole check, as the Worker runs it: the consumer, or the denial's code.
    fn check(p: &BasicAuthPolicy, authorization: Option<&str>) -> Result<String, &'static str> {
        let (s, mut ex, _) = step(p, authorization);
        let verdict = match s {
            BasicAuthStep::Done(v) => v,
            BasicAuthStep::Verify { username, password } => {
                let ok = p.verify_task(username.clone(), password)();
                p.finish(&username, ok, &mut ex)
            }
        };
        match verdict {
            Verdict::Continue => Ok(ex.consumer.unwrap().to_string()),
            Verdict::Reply(r) => {
                assert_eq!(r.status, StatusCode::UNAUTHORIZED);
                assert!(ex.consumer.is_none());
                let challenge = r
                    .headers
                    .iter()
                    .find(|(n, _)| n == http::header::WWW_AUTHENTICATE)
                    .map(|(_, v)| v.to_str().unwrap().to_string());
                assert_eq!(challenge.as_deref(), Some("Basic realm=\"orders\""));
                let body = String::from_utf8(r.body.to_vec()).unwrap();
                assert!(!body.contains("-pw"), "{body}");
                Err(r.code)
            }
        }
    }

    #[test]
    fn argon2_and_bcrypt_users_are_verified() {
        let p = policy();
        assert_eq!(
            check(&p, Some(&basic("alice", "alice-pw"))),
            Ok("alice".into())
        );
        assert_eq!(check(&p, Some(&basic("bob", "bob-pw"))), Ok("bob".into()));
        assert_eq!(
            check(&p, Some(&basic("alice", "bob-pw"))),
            Err("invalid_credentials")
        );
        assert_eq!(
            check(&p, Some(&basic("bob", "bob-PW"))),
            Err("invalid_credentials")
        );
        assert_eq!(
            check(&p, Some(&basic("alice", ""))),
            Err("invalid_credentials")
        );
        // Passwords may contain ':'; only the first one separates the username.
        let (a, _) = hashes();
        let colon = argon2_hash("a:b:c");
        let p2 = compile_with(
            &spec(&["s"]),
            &[("s", users(&[("carol", &colon), ("alice", a)]))],
        )
        .unwrap();
        assert_eq!(
            check(&p2, Some(&basic("carol", "a:b:c"))),
            Ok("carol".into())
        );
    }

    #[test]
    fn unknown_users_are_refused_without_hashing() {
        let p = policy();
        match step(&p, Some(&basic("mallory", "alice-pw"))).0 {
            BasicAuthStep::Done(Verdict::Reply(r)) => assert_eq!(r.code, "invalid_credentials"),
            _ => panic!("expected an immediate denial"),
        }
        // Even if asked to verify, an unknown user is no match.
        assert!(!p.verify_task("mallory".into(), "x".into())());
        let mut ex = Exchange::default();
        assert!(matches!(
            p.finish("mallory", true, &mut ex),
            Verdict::Reply(_)
        ));
        assert!(ex.consumer.is_none());
    }

    #[test]
    fn missing_and_malformed_headers() {
        let p = policy();
        assert_eq!(check(&p, None), Err("missing_credentials"));
        assert_eq!(
            check(&p, Some("Bearer abc.def.ghi")),
            Err("missing_credentials")
        );
        assert_eq!(check(&p, Some("Basic")), Err("invalid_credentials"));
        assert_eq!(check(&p, Some("Basic !!!")), Err("invalid_credentials"));
        // No ':' in the decoded text; not UTF-8.
        assert_eq!(
            check(&p, Some("Basic YWxpY2U=")),
            Err("invalid_credentials")
        );
        assert_eq!(check(&p, Some("Basic /w==")), Err("invalid_credentials"));
        // The scheme is case-insensitive and padding optional.
        let unpadded = basic("bob", "bob-pw")
            .trim_end_matches('=')
            .replace("Basic", "bASIC");
        assert_eq!(check(&p, Some(&unpadded)), Ok("bob".into()));
    }

    #[test]
    fn credentials_are_hidden_from_the_upstream_unless_configured_otherwise() {
        let p = policy();
        let (s, _, h) = step(&p, Some(&basic("alice", "alice-pw")));
        assert!(matches!(s, BasicAuthStep::Verify { .. }));
        assert!(!h.contains_key(http::header::AUTHORIZATION));
        assert!(h.contains_key("x-other"));
        let mut keep = spec(&["staff", "partners"]);
        keep.hide_credentials = false;
        let p = policy_with(&keep);
        let (_, _, h) = step(&p, Some(&basic("alice", "alice-pw")));
        assert!(h.contains_key(http::header::AUTHORIZATION));
    }

    #[test]
    fn verified_passwords_skip_hashing_until_they_expire() {
        let p = policy();
        let auth = basic("bob", "bob-pw");
        assert!(matches!(
            step(&p, Some(&auth)).0,
            BasicAuthStep::Verify { .. }
        ));
        assert_eq!(check(&p, Some(&auth)), Ok("bob".into()));
        assert_eq!(p.verified.len(), 1);
        // Now answered at once, with the consumer set and the header still hidden.
        let (s, ex, h) = step(&p, Some(&auth));
        assert!(matches!(s, BasicAuthStep::Done(Verdict::Continue)));
        assert_eq!(ex.consumer.as_deref(), Some("bob"));
        assert!(!h.contains_key(http::header::AUTHORIZATION));
        // Another password for the same user is not covered, nor is a failure remembered.
        assert!(matches!(
            step(&p, Some(&basic("bob", "x"))).0,
            BasicAuthStep::Verify { .. }
        ));
        assert_eq!(
            check(&p, Some(&basic("bob", "x"))),
            Err("invalid_credentials")
        );
        assert_eq!(p.verified.len(), 1);
        // After the TTL the password is verified again.
        let later = Instant::now() + CACHE_TTL + Duration::from_secs(1);
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&auth).unwrap(),
        );
        let mut uri: Uri = "/x".parse().unwrap();
        let mut view = RequestView {
            method: &Method::GET,
            uri: &mut uri,
            headers: &mut h,
            peer: IpAddr::from([127, 0, 0, 1]),
            client_cert: None,
        };
        let s = p.on_request_at(&mut view, &mut Exchange::default(), later);
        assert!(matches!(s, BasicAuthStep::Verify { .. }));
        // A new policy (a recompiled credential) starts with nothing remembered.
        assert!(matches!(
            step(&policy(), Some(&auth)).0,
            BasicAuthStep::Verify { .. }
        ));
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = VerifiedCache::new();
        let t0 = Instant::now();
        for i in 0..CACHE_MAX {
            cache.insert(cache.digest(&format!("u{i}"), "pw"), t0);
        }
        assert_eq!(cache.len(), CACHE_MAX);
        // Full of fresh entries: a new one is not kept.
        let extra = cache.digest("extra", "pw");
        cache.insert(extra, t0);
        assert!(!cache.fresh(&extra, t0));
        assert_eq!(cache.len(), CACHE_MAX);
        // Once they have expired, they make room.
        let later = t0 + CACHE_TTL;
        cache.insert(extra, later);
        assert!(cache.fresh(&extra, later));
        assert_eq!(cache.len(), 1);
        // Digests depend on the policy's salt, the username and the password.
        let other = VerifiedCache::new();
        assert_ne!(cache.digest("a", "b"), other.digest("a", "b"));
        assert_ne!(cache.digest("ab", "c"), cache.digest("a", "bc"));
    }

    #[test]
    fn the_realm_defaults_to_the_proxy_name_and_is_quoted() {
        let mut s = spec(&["staff"]);
        s.realm = Some("Partner \"API\"".into());
        let p = policy_with(&s);
        assert_eq!(p.challenge, "Basic realm=\"Partner \\\"API\\\"\"");
        s.realm = Some("bad\nrealm".into());
        let (a, _) = hashes();
        let e = compile_with(&s, &[("staff", users(&[("alice", a)]))]).unwrap_err();
        assert_eq!(e[0].field, "realm");
    }

    #[test]
    fn unusable_hashes_are_refused_naming_the_user_not_the_hash() {
        let (a, b) = hashes();
        let bad = [
            "alice-pw".to_string(),
            "$argon2id$v=19$m=64,t=1,p=1$bad".to_string(),
            "$argon2xx$v=19$m=64,t=1,p=1$dGVzdC1zYWx0LTE2Ynl0ZQ$aGFzaA".to_string(),
            a.replace("m=64", "m=4194304"),
            b[..50].to_string(),
            b.replacen("$04$", "$99$", 1),
            b.replacen("$2b$", "$2x$", 1),
        ];
        for hash in &bad {
            let e = compile_with(
                &spec(&["ok", "broken"]),
                &[
                    ("ok", users(&[("alice", a)])),
                    ("broken", users(&[("bob", hash)])),
                ],
            )
            .unwrap_err();
            assert_eq!(e.len(), 1, "{hash}: {e:?}");
            assert_eq!(e[0].field, "credentials[1]");
            assert!(e[0].message.contains("user \"bob\""), "{e:?}");
            assert!(!e[0].message.contains(hash.as_str()), "{e:?}");
        }
    }

    #[test]
    fn credentials_are_checked() {
        let (a, _) = hashes();
        let creds = [
            ("staff", users(&[("alice", a)])),
            ("dupes", users(&[("alice", a)])),
            ("secret", CredentialSpec::Secret { value: "s".into() }),
        ];
        let e = compile_with(&spec(&[]), &creds).unwrap_err();
        assert_eq!(e[0].field, "credentials");
        let e = compile_with(&spec(&["staff", "secret", "nope"]), &creds).unwrap_err();
        assert_eq!(e[0].field, "credentials[1]");
        assert!(e[0].message.contains("type \"secret\""), "{e:?}");
        assert_eq!(e[1].field, "credentials[2]");
        assert!(
            e[1].message.contains("no Credential named \"nope\""),
            "{e:?}"
        );
        let e = compile_with(&spec(&["staff", "dupes"]), &creds).unwrap_err();
        assert_eq!(e[0].field, "credentials[1]");
        assert!(
            e[0].message.contains("also listed in credentials[0]"),
            "{e:?}"
        );
        let colon = [("s", users(&[("a:b", a)]))];
        let e = compile_with(&spec(&["s"]), &colon).unwrap_err();
        assert!(e[0].message.contains("cannot contain ':'"), "{e:?}");
    }

    #[test]
    fn debug_output_holds_no_hash() {
        let p = policy();
        let text = format!("{p:?}");
        assert!(
            !text.contains("$argon2") && !text.contains("$2b$"),
            "{text}"
        );
    }
}
