//! What the Manager and Workers say to each other. Notifications carry no payload (only
//! revision numbers and entity versions); Workers pull what they lack.

use serde::{Deserialize, Serialize};

use switchyard_config::manifest::sha256_hex;

/// Header naming the Worker on every request it makes to the Manager.
pub const WORKER_ID_HEADER: &str = "x-switchyard-worker";
/// Header carrying the Worker's traffic address (for `status`).
pub const WORKER_ADDRESS_HEADER: &str = "x-switchyard-address";

/// A notification: environment `env` is now at `revision`; these entities changed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionEvent {
    pub env: String,
    pub revision: u64,
    pub changes: Vec<EntityRef>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityRef {
    pub kind: String,
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
    /// its merged state against it.
    pub state_digest: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncEntity {
    pub kind: String,
    pub name: String,
    pub version: u64,
    /// SHA-256 of `manifest`; checked by the Worker.
    pub digest: String,
    /// Canonical JSON (empty for a deletion).
    pub manifest: String,
    pub deleted: bool,
}

impl SyncEntity {
    /// Whether `manifest` really has digest `digest`.
    pub fn verify(&self) -> bool {
        self.deleted || sha256_hex(self.manifest.as_bytes()) == self.digest
    }
}

/// Digest of a whole environment state: SHA-256 over `kind\tname\tversion\tdigest\n` lines
/// of the live entities, sorted by kind then name.
pub fn state_digest<'a>(
    entities: impl IntoIterator<Item = (&'a str, &'a str, u64, &'a str)>,
) -> String {
    let mut rows: Vec<_> = entities.into_iter().collect();
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
    pub revision: u64,
    /// `ack` or `nack`.
    pub status: String,
    pub error: Option<String>,
    /// When the Worker swapped the revision in (unix millis, Worker clock).
    pub applied_at: i64,
    pub address: Option<String>,
}
