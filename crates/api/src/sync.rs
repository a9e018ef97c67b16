//! What the Manager and Workers say to each other. Notifications carry no payload (only
//! revision numbers and entity versions); Workers pull what they lack.

use hmac::Mac;
use serde::{Deserialize, Serialize};

use switchyard_config::Kind;
use switchyard_config::manifest::sha256_hex;

use crate::records::ReportStatus;

/// Header naming the Worker on every request it makes to the Manager.
pub const WORKER_ID_HEADER: &str = "x-switchyard-worker";
/// Header carrying the Worker's traffic address (for `status`).
pub const WORKER_ADDRESS_HEADER: &str = "x-switchyard-address";
/// Header carrying the Worker's binary version and the manifest `apiVersion`s it reads,
/// and kinds, e.g. `0.1.0; schemas=switchyard.dev/v1; kinds=Proxy,Credential,…` (for
/// `status`, and so that a change of a kind some connected Worker does not read is
/// restart-required: its binary must be rolled out first).
pub const WORKER_VERSION_HEADER: &str = "x-switchyard-version";
/// The kinds a Worker said it reads (the `kinds=` part of its `x-switchyard-version`);
/// `None` when it did not say (an older Worker).
pub fn worker_kinds(version: &str) -> Option<Vec<&str>> {
    version
        .split(';')
        .find_map(|part| part.trim().strip_prefix("kinds="))
        .map(|list| list.split(',').map(str::trim).collect())
}

/// The Worker process (new with each process, kept for its life): tells a successor of a
/// handover from its predecessor under the same Worker id.
pub const WORKER_INSTANCE_HEADER: &str = "x-switchyard-instance";

/// `event: upgrade` on a Worker's event stream: the process `instance` of Worker `worker`
/// is asked to hand over to a successor process (a step of rollout `rollout`, which
/// brings revision `revision`). Every other stream ignores it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeDirective {
    pub worker: String,
    pub instance: String,
    pub rollout: String,
    pub revision: u64,
    /// The binary the successor runs, on the Worker's host (`None`: the Worker's own
    /// path). A Worker runs it only from its `--upgrade-binaries` directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
}

/// A notification: environment `env` is now at `revision`; these entities changed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionEvent {
    pub env: String,
    pub revision: u64,
    pub changes: Vec<EntityRef>,
}

impl RevisionEvent {
    /// The event announcing `revision` of `env`, which made `changes`.
    pub fn of_commit(
        env: &str,
        revision: u64,
        changes: &[crate::records::AppliedChange],
    ) -> RevisionEvent {
        RevisionEvent {
            env: env.to_string(),
            revision,
            changes: changes
                .iter()
                .map(|c| EntityRef {
                    kind: c.kind,
                    name: c.name.clone(),
                    version: c.new_version,
                })
                .collect(),
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityRef {
    pub kind: Kind,
    pub name: String,
    /// `None` when the entity was deleted.
    pub version: Option<u64>,
}

/// The answer to a pull: what changed after `since` (or everything, when `full`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncPayload {
    pub env: String,
    pub revision: u64,
    pub since: u64,
    pub full: bool,
    pub entities: Vec<SyncEntity>,
    /// [`state_digest`] of the environment's full state at `revision`: the Worker checks
    /// its merged state against it, and the state it serves once swapped, before it ACKs.
    pub state_digest: String,
    /// The identity of the Manager's store (empty from a Manager that predates it). Its
    /// revisions are numbered within it: a Worker that followed another store (a restored
    /// backup gets a new id) resynchronises with a full pull.
    #[serde(default)]
    pub store_id: String,
    /// The environment's digest key (hex): secret entities' digests are HMACs under it,
    /// so that a digest seen in a view, an audit record or a backup does not let anyone
    /// guess a low-entropy secret. Workers (who receive the secrets themselves) verify with
    /// it. Absent from a Manager that predates keyed digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_key: Option<String>,
    /// Set while `revision` is a running canary: serve it beside the stable revision, to
    /// the share of requests the directive says, not to every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<crate::canary::CanaryDirective>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncEntity {
    pub kind: Kind,
    pub name: String,
    pub version: u64,
    /// SHA-256 of `manifest`; for a secret kind, HMAC-SHA256 under the environment's
    /// [`DigestKey`] (or, stored before keyed digests, SHA-256). Checked by the Worker.
    pub digest: String,
    /// Canonical JSON (empty for a deletion).
    pub manifest: String,
    pub deleted: bool,
}

impl SyncEntity {
    /// Whether `manifest` really has digest `digest`: its SHA-256, or for a secret kind
    /// its HMAC under `key`.
    pub fn verify(&self, key: Option<&DigestKey>) -> bool {
        if self.deleted || sha256_hex(self.manifest.as_bytes()) == self.digest {
            return true;
        }
        self.kind.is_secret()
            && key.is_some_and(|k| k.digest(self.manifest.as_bytes()) == self.digest)
    }
}

/// The key of one environment's secret digests: HMAC-SHA256 of the canonical form, keyed
/// per environment from the Manager's secret key, so that a digest does not reveal a
/// low-entropy secret to whoever sees it (a viewer, an audit export, a database backup)
/// and one environment's Workers cannot test guesses against another's digests.
#[derive(Clone, PartialEq, Eq)]
pub struct DigestKey([u8; 32]);

impl std::fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigestKey(..)")
    }
}

impl DigestKey {
    /// The key of `env`, derived from the Manager's secret key.
    pub fn derive(master: &[u8; 32], env: &str) -> DigestKey {
        let mut mac = hmac_with(master);
        mac.update(b"switchyard secret digest\0");
        mac.update(env.as_bytes());
        DigestKey(mac.finalize().into_bytes().into())
    }

    /// HMAC-SHA256 of `bytes`, lowercase hex.
    pub fn digest(&self, bytes: &[u8]) -> String {
        let mut mac = hmac_with(&self.0);
        mac.update(bytes);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The key as sent in a pull ([`SyncPayload::digest_key`]).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A key as sent in a pull; `None` if it is not 64 hex digits.
    pub fn from_hex(text: &str) -> Option<DigestKey> {
        if text.len() != 64 {
            return None;
        }
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(DigestKey(key))
    }
}

fn hmac_with(key: &[u8]) -> hmac::Hmac<sha2::Sha256> {
    // HMAC takes a key of any length: this cannot fail.
    <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

/// Digest of a whole environment state: SHA-256 over `kind\tname\tversion\tdigest\n` lines
/// of the live entities, sorted by kind (as written) then name.
pub fn state_digest<'a>(
    entities: impl IntoIterator<Item = (Kind, &'a str, u64, &'a str)>,
) -> String {
    let mut rows: Vec<_> = entities
        .into_iter()
        .map(|(kind, name, version, digest)| (kind.as_str(), name, version, digest))
        .collect();
    rows.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let mut text = String::with_capacity(rows.len() * 96);
    for (kind, name, version, digest) in rows {
        text.push_str(kind);
        text.push('\t');
        text.push_str(name);
        text.push('\t');
        text.push_str(&version.to_string());
        text.push('\t');
        text.push_str(digest);
        text.push('\n');
    }
    sha256_hex(text.as_bytes())
}

/// A Worker's ACK or NACK of a revision.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportBody {
    #[serde(deserialize_with = "crate::integral::revision")]
    pub revision: u64,
    pub status: ReportStatus,
    pub error: Option<String>,
    /// When the Worker swapped the revision in (unix millis, Worker clock).
    #[serde(deserialize_with = "crate::integral::i64")]
    pub applied_at: i64,
    /// When the Worker had read the revision from the Manager, before compiling it (unix
    /// millis, Worker clock). Absent from older Workers.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::integral::opt_i64"
    )]
    pub pulled_at: Option<i64>,
    pub address: Option<String>,
    /// The store the revision belongs to ([`SyncPayload::store_id`]); the Manager refuses
    /// a report about another store's revision (`store_mismatch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_id: Option<String>,
    /// How the Worker came to serve it when that was not a plain pull: why it
    /// resynchronised with a full pull (another store, a Manager behind it, a state that
    /// did not verify). Kept with the report and in its audit record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// ACKed through a catch-up jump: the Worker did not swap this revision in on its own
    /// but went straight to `caught_up_to`, a later revision whose state contains this
    /// one's changes. `None`: the Worker swapped exactly this revision in.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::integral::opt_revision"
    )]
    pub caught_up_to: Option<u64>,
}

/// `GET /v1/envs/{env}/sync?since=R`.
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct PullQuery {
    /// The revision the Worker has; 0 (or one ahead of the Manager) pulls everything.
    #[serde(default, deserialize_with = "crate::integral::query_revision")]
    pub since: u64,
    /// The whole state at this earlier revision instead of the current one (a canary's
    /// stable revision, for a Worker that does not serve it yet); `since` is then ignored.
    #[serde(default, deserialize_with = "crate::integral::opt_query_revision")]
    pub at: Option<u64>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{Kind, ReportBody, state_digest};

    #[test]
    fn a_workers_version_says_which_kinds_it_reads() {
        let v = "0.2.0; schemas=switchyard.dev/v1; kinds=Proxy, Credential";
        assert_eq!(super::worker_kinds(v), Some(vec!["Proxy", "Credential"]));
        assert_eq!(
            super::worker_kinds("0.1.0; schemas=switchyard.dev/v1"),
            None
        );
    }

    /// The digest is part of the wire format: rows sort by the kind as written
    /// (`Credential` < `Proxy`), not by the enum's order.
    #[test]
    fn the_state_digest_sorts_kinds_as_written() {
        let a = state_digest([
            (Kind::Proxy, "p", 1, "d1"),
            (Kind::Credential, "c", 2, "d2"),
        ]);
        let b = state_digest([
            (Kind::Credential, "c", 2, "d2"),
            (Kind::Proxy, "p", 1, "d1"),
        ]);
        assert_eq!(a, b);
        assert_eq!(
            a,
            switchyard_config::manifest::sha256_hex(b"Credential\tc\t2\td2\nProxy\tp\t1\td1\n")
        );
    }

    /// `caught_up_to` is left out when `None` (what an older Manager reads), and read as a
    /// revision: `8.0` is 8, a negative one is refused.
    #[test]
    fn a_reports_caught_up_to_is_optional_and_read_as_a_revision() {
        let read = |text: &str| serde_json::from_str::<ReportBody>(text);
        let plain =
            r#"{"revision": 5, "status": "ack", "error": null, "applied_at": 1, "address": null"#;
        let ack = read(&format!("{plain}}}")).unwrap();
        assert_eq!(ack.caught_up_to, None);
        assert!(
            !serde_json::to_string(&ack)
                .unwrap()
                .contains("caught_up_to")
        );
        let caught_up = read(&format!(r#"{plain}, "caught_up_to": 8.0}}"#)).unwrap();
        assert_eq!(caught_up.caught_up_to, Some(8));
        let again: ReportBody =
            serde_json::from_str(&serde_json::to_string(&caught_up).unwrap()).unwrap();
        assert_eq!(again, caught_up);
        let e = read(&format!(r#"{plain}, "caught_up_to": -1}}"#)).unwrap_err();
        assert!(e.to_string().contains("expected a revision"), "{e}");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod digest_key_tests {
    use super::{DigestKey, SyncEntity};
    use switchyard_config::Kind;
    use switchyard_config::manifest::sha256_hex;

    fn entity(kind: Kind, manifest: &str, digest: String) -> SyncEntity {
        SyncEntity {
            kind,
            name: "c".into(),
            version: 1,
            digest,
            manifest: manifest.into(),
            deleted: false,
        }
    }

    #[test]
    fn keys_differ_per_environment_and_manager_and_read_back_from_hex() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let dev = DigestKey::derive(&a, "dev");
        assert_ne!(dev, DigestKey::derive(&a, "prod"));
        assert_ne!(dev, DigestKey::derive(&b, "dev"));
        assert_eq!(DigestKey::from_hex(&dev.to_hex()), Some(dev.clone()));
        assert_eq!(DigestKey::from_hex("zz"), None);
        assert_eq!(DigestKey::from_hex(&"g".repeat(64)), None);
        assert!(!format!("{dev:?}").contains(&dev.to_hex()[..8]));
    }

    #[test]
    fn a_secret_verifies_with_its_keyed_digest_or_a_plain_one_stored_before() {
        let key = DigestKey::derive(&[7u8; 32], "dev");
        let text = r#"{"type":"secret","value":"hunter2"}"#;
        let keyed = key.digest(text.as_bytes());
        assert_ne!(keyed, sha256_hex(text.as_bytes()));
        assert!(entity(Kind::Credential, text, keyed.clone()).verify(Some(&key)));
        assert!(!entity(Kind::Credential, text, keyed.clone()).verify(None));
        let other = DigestKey::derive(&[7u8; 32], "prod");
        assert!(!entity(Kind::Credential, text, keyed.clone()).verify(Some(&other)));
        assert!(entity(Kind::Credential, text, sha256_hex(text.as_bytes())).verify(Some(&key)));
        // Only secrets are keyed: a proxy with a keyed digest does not verify.
        assert!(!entity(Kind::Proxy, text, keyed).verify(Some(&key)));
        // Tampered content fails either way.
        let tampered = entity(Kind::Credential, "{}", key.digest(text.as_bytes()));
        assert!(!tampered.verify(Some(&key)));
    }
}

/// How often a Worker following a Manager sends its running totals
/// (`POST /v1/envs/{env}/stats`), for the dashboard's charts.
pub const STATS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// A Worker's running totals since it started (`POST /v1/envs/{env}/stats`): the Manager
/// turns consecutive ones into rates. Counters only grow while the process lives; a smaller
/// value means a new process.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsBody {
    /// The revision it serves.
    #[serde(deserialize_with = "crate::integral::revision")]
    pub revision: u64,
    /// Requests answered, by status class.
    pub requests: StatusClasses<Count>,
    /// Gateway errors among them: 502/503/504 answered by the gateway itself, responses cut
    /// before their end (`switchyard_generation_errors_total`, all revisions).
    #[serde(deserialize_with = "crate::integral::u64")]
    pub gateway_errors: u64,
    /// The Worker process's resident memory.
    #[serde(deserialize_with = "crate::integral::u64")]
    pub resident_bytes: u64,
    /// Configuration generations alive (1: nothing old pinned).
    #[serde(deserialize_with = "crate::integral::u64")]
    pub live_generations: u64,
    /// Where what it serves came from (absent from older Workers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_from: Option<ServedFrom>,
    /// Each live generation's totals while a canary is live beside the stable one (empty
    /// otherwise, and from older Workers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(max_items = 2))]
    pub generations: Vec<crate::canary::GenerationCounters>,
}

/// Where the configuration a Worker serves came from.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServedFrom {
    /// What the Manager gave it (the normal case).
    #[default]
    Manager,
    /// Its last-known-good cache: the Manager was unreachable when it started, or it has
    /// not accepted what the Manager has since.
    Cache,
}

/// A count in a request body: read as the document declares integers (`5.0` is 5; see
/// `integral.rs`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Count(pub u64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::integral::u64(d).map(Count)
    }
}

/// One value per HTTP status class.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusClasses<T> {
    #[serde(rename = "1xx")]
    pub informational: T,
    #[serde(rename = "2xx")]
    pub success: T,
    #[serde(rename = "3xx")]
    pub redirection: T,
    #[serde(rename = "4xx")]
    pub client_error: T,
    #[serde(rename = "5xx")]
    pub server_error: T,
}

impl<T: Copy> StatusClasses<T> {
    /// From the values of 1xx..5xx, in that order.
    pub fn from_array([a, b, c, d, e]: [T; 5]) -> Self {
        StatusClasses {
            informational: a,
            success: b,
            redirection: c,
            client_error: d,
            server_error: e,
        }
    }

    pub fn to_array(self) -> [T; 5] {
        [
            self.informational,
            self.success,
            self.redirection,
            self.client_error,
            self.server_error,
        ]
    }
}
