//! The admin API's request and response bodies (`/v1/envs`, apply, promote, rollback,
//! credentials, views, tokens). The Manager answers with these; every client reads them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchyard_config::plan::{ChangeClass, FieldChange, Hotness};
use switchyard_config::{Kind, kind::UnknownKind};

use crate::records::{AppliedChange, Millis, RevisionRecord, Role, WorkerReport};

/// `POST /v1/envs`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEnv {
    /// Lowercase letters, digits and '-', 1..=63 characters, not starting with '-'.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$"))]
    pub name: String,
}

/// One entity by kind and name.
// The kind stays text on the wire so that the Manager can name an unknown one in its answer
// (`delete[0].kind: unknown kind …`) instead of refusing the whole body.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EntityKey {
    /// `Proxy`, `Credential` or `Environment`.
    pub kind: String,
    pub name: String,
}

impl EntityKey {
    pub fn new(kind: Kind, name: impl Into<String>) -> EntityKey {
        EntityKey {
            kind: kind.as_str().to_string(),
            name: name.into(),
        }
    }

    /// The kind, when it is one.
    pub fn kind(&self) -> Result<Kind, UnknownKind> {
        self.kind.parse()
    }
}

/// `POST /v1/envs/{env}/apply`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// Manifest documents (YAML or JSON text), one per entry; multi-document text is fine.
    /// `${NAME}` is resolved with the environment's variables: those of the
    /// `kind: Environment` document named like the environment in this request, else the
    /// ones the environment keeps. Documents that use variables are kept as written
    /// (templates) for promotions. `${env:…}` is refused: the CLI fills those in.
    pub manifests: Vec<String>,
    /// Refuse with 409 unless the environment is still at this revision.
    #[serde(default, deserialize_with = "crate::integral::opt_revision")]
    pub expected_revision: Option<u64>,
    /// Validate and report what would change, without writing.
    #[serde(default)]
    pub dry_run: bool,
    /// Entities to delete in the same revision (skipped when they do not exist).
    #[serde(default)]
    pub delete: Vec<EntityKey>,
    /// Commit the revision as a canary: served to a share of requests beside the current
    /// revision, judged by its own numbers, promoted or rolled back by the Manager. Only
    /// for changes every request can be pinned to (not listeners, certificates, gateway or
    /// process settings); refused while another canary runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<crate::canary::CanarySpec>,
}

/// `POST /v1/envs/{env}/rollout`: commit a change Workers take only when they start (or
/// nothing: a new binary, or a rollout to finish), then hand every Worker of the
/// environment over to a successor process, one at a time.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutRequest {
    /// As for `apply`; empty: the current revision is rolled out (a new binary on the
    /// Workers' hosts, or a rollout that stopped, resumed).
    #[serde(default)]
    pub manifests: Vec<String>,
    #[serde(default)]
    pub delete: Vec<EntityKey>,
    #[serde(default, deserialize_with = "crate::integral::opt_revision")]
    pub expected_revision: Option<u64>,
    /// How long one Worker's handover may take, from the request to its successor's ACK
    /// (default 120 s).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3600))]
    pub step_timeout_secs: Option<u64>,
    /// The binary each successor runs, a path on the Workers' hosts (absent: each Worker's
    /// own path, which a package upgrade replaced). Workers run it only from their
    /// `--upgrade-binaries` directory; one that refuses stops the rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 4096, pattern = "^/[^\\x00]*$")
    )]
    pub binary: Option<String>,
    /// How many Workers are handed over at once (default 1). Each handover keeps its Worker
    /// serving, so this bounds how many run a successor's start at the same time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100))]
    pub max_unavailable: Option<u32>,
}

/// Where a rollout stands (`GET /v1/envs/{env}/rollout`; the answer of `POST`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutStatus {
    pub id: String,
    pub env: String,
    /// The revision the Workers are taken to.
    pub revision: u64,
    /// The binary successors run (absent: each Worker's own path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
    pub state: RolloutState,
    pub actor: String,
    pub started_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    /// The commit the rollout made, if it made one (`None`: the current revision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<BatchResponse>,
    /// In the order they are walked (by id).
    pub workers: Vec<RolloutWorker>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    Running,
    Succeeded,
    /// Stopped at the first Worker that failed; the ones after it were not touched.
    Failed,
}

/// One Worker's step of a rollout.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutWorker {
    pub id: String,
    pub state: RolloutStepState,
    /// The process asked to hand over, and the one that took over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_instance: Option<String>,
    /// From the request to the successor's ACK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub took_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStepState {
    Waiting,
    HandingOver,
    Done,
    Failed,
}

/// `POST /v1/envs/{env}/promote`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    /// The source environment.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$"))]
    pub from: String,
    /// Proxies to promote, by name; empty = every proxy of the source.
    #[serde(default)]
    pub proxies: Vec<String>,
    /// Refuse with 409 unless the target is still at this revision.
    #[serde(default, deserialize_with = "crate::integral::opt_revision")]
    pub expected_revision: Option<u64>,
    /// Report what would change, without writing.
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /v1/envs/{env}/rollback`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The revision whose content the environment returns to (1 ..= current).
    #[serde(deserialize_with = "crate::integral::revision")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub to_revision: u64,
    /// Refuse with 409 unless the environment is still at this revision.
    #[serde(default, deserialize_with = "crate::integral::opt_revision")]
    pub expected_revision: Option<u64>,
    /// Validate and report what would change, without writing.
    #[serde(default)]
    pub dry_run: bool,
}

/// One planned or applied change.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedChange {
    #[serde(flatten)]
    pub change: AppliedChange,
    /// Whether the change is applied hot, and how.
    pub hot: Hotness,
    /// Dry runs and revision diffs only: the fields that differ (secret values redacted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<FieldChange>,
}

/// What an apply, promote or rollback did (or, with `dry_run`, would do).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchResponse {
    pub env: String,
    pub revision: u64,
    pub previous_revision: u64,
    /// False when the batch matched what is deployed (no new revision).
    pub changed: bool,
    pub dry_run: bool,
    pub changes: Vec<PlannedChange>,
    /// Dry runs only: the entities of the batch that already match what is deployed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unchanged: Vec<EntityKey>,
}

/// The new value of a `secret` credential.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialValueRequest {
    /// The secret value (non-empty). Never echoed.
    #[cfg_attr(feature = "openapi", schema(min_length = 1))]
    pub value: String,
    /// `false` (set): create a `type: secret` credential when there is none, or replace
    /// the value (the same value changes nothing). `true` (rotate): the credential must
    /// exist and the value must differ from the current one.
    #[serde(default)]
    pub rotate: bool,
}

impl std::fmt::Debug for CredentialValueRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialValueRequest")
            .field("value", &"<redacted>")
            .field("rotate", &self.rotate)
            .finish()
    }
}

/// What the change did (never the value).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CredentialValueResponse {
    pub env: String,
    /// The credential's name.
    pub name: String,
    /// The environment's revision after the change (unchanged when `changed` is false).
    pub revision: u64,
    pub previous_revision: u64,
    /// False when `set` gave the value the credential already had (no new revision).
    pub changed: bool,
    /// True when the credential did not exist and was created.
    pub created: bool,
    pub rotated: bool,
    /// The credential's version before (`null` when created).
    pub old_version: Option<u64>,
    /// The credential's version now.
    pub new_version: u64,
}

/// An entity at its latest version; secret values are redacted.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntityView {
    pub kind: Kind,
    pub name: String,
    pub version: u64,
    pub revision: u64,
    pub digest: String,
    pub labels: BTreeMap<String, String>,
    /// The manifest as JSON, secret values redacted.
    pub manifest: serde_json::Value,
    /// The document as written, `${NAME}` variables unresolved, when it uses any (never
    /// for credentials: theirs may hold secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

/// One revision with its propagation numbers.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevisionView {
    #[serde(flatten)]
    pub record: RevisionRecord,
    /// Workers connected to the notification stream when the revision was committed
    /// (`null` when the Manager restarted since and no longer knows).
    pub expected_workers: Option<Vec<String>>,
    pub reports: Vec<WorkerReport>,
    /// ACKs of this revision: `applied` + `caught_up`.
    pub acks: usize,
    /// ACKs of Workers that swapped this revision in themselves.
    pub applied: usize,
    /// ACKs through a catch-up jump: the Worker went straight to a later revision
    /// (the report's `caught_up_to`) whose state contains this one's changes.
    pub caught_up: usize,
    /// Ids of the Workers that ACKed this revision but were not among `expected_workers`:
    /// they connected after the commit. Empty when `expected_workers` is `null`.
    pub joined_after: Vec<String>,
    pub nacks: usize,
    /// Commit → the last expected Worker's swap, in ms (`null` until all have ACKed).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
    pub propagation_ms: Option<Millis>,
    /// Commit → the first Worker's swap, in ms.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
    pub first_swap_ms: Option<Millis>,
    /// ACK records from expected Workers / expected Workers (0..1).
    pub audit_completeness: Option<f64>,
}

/// `GET /v1/envs/{env}/revisions/{rev}/diff`: what a revision changed, field by field
/// (secret values redacted, the same diff as a `plan`), and how it reached the Workers.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevisionDiff {
    pub env: String,
    pub revision: u64,
    /// The revision it is compared with (`revision - 1`).
    pub previous_revision: u64,
    /// The strictest class of its changes: `restart-required` went through a rollout.
    pub class: ChangeClass,
    /// Each entity changed, with the fields that differ. A created (deleted) entity lists
    /// its top-level fields with only `new` (`old`).
    pub changes: Vec<PlannedChange>,
}

/// A Worker known to the environment: connected now, or one that reported.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerView {
    pub id: String,
    pub address: Option<String>,
    /// What the Worker says it runs while connected (`x-switchyard-version`): its binary
    /// version and the manifest schemas it reads, e.g. `0.1.0; schemas=switchyard.dev/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub connected: bool,
    /// The Manager holding its event stream (its `--name`), while connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    /// Latest revision this Worker ACKed (what it serves, even after a later NACK).
    pub revision: Option<u64>,
    /// Environment revision minus `revision`.
    pub lag: Option<u64>,
    pub last_report: Option<WorkerReport>,
    /// Last time the Manager heard from it (ms since epoch).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
    pub last_seen: Option<Millis>,
    /// Where what it serves came from, as it said in its latest statistics to this Manager
    /// (every 10 s, kept an hour in memory); absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_from: Option<crate::sync::ServedFrom>,
}

/// `?limit=`: how many records a list returns.
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Limit {
    /// How many records to return, newest first (1 to 1000; more is refused with 400).
    #[serde(default = "default_limit")]
    #[cfg_attr(
        feature = "openapi",
        param(default = default_limit, minimum = 1, maximum = 1000)
    )]
    pub limit: u32,
}

pub fn default_limit() -> u32 {
    50
}

/// The durations the API takes (`since`, `expires_in`): a count of up to 9 digits and one
/// unit, `ms`, `s`, `m`, `h`, `d` (24 h) or `w` (7 d) — `30d`, `12h`, `90m`. Anything else
/// is `None`; the OpenAPI document states the same pattern.
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    use std::time::Duration;
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (count, unit) = text.split_at(split);
    if count.is_empty() || count.len() > 9 {
        return None;
    }
    let n: u64 = count.parse().ok()?;
    let unit = match unit {
        "ms" => Duration::from_millis(1),
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        "d" => Duration::from_secs(86_400),
        "w" => Duration::from_secs(7 * 86_400),
        _ => return None,
    };
    // At most 999_999_999 weeks: far from overflowing.
    unit.checked_mul(u32::try_from(n).ok()?)
}

/// The largest `limit` a list accepts.
pub const MAX_LIMIT: u32 = 1000;

/// `limit`, when it is one a list accepts (1 ..= [`MAX_LIMIT`]); otherwise what to say.
pub fn check_limit(limit: u32) -> Result<u32, String> {
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(format!(
            "limit {limit} is out of range: give 1 to {MAX_LIMIT} (default {})",
            default_limit()
        ))
    }
}

/// The filters of `GET /v1/audit`.
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditParams {
    /// Only this environment's records (required for tokens scoped to environments).
    pub env: Option<String>,
    /// `proxy/payments`, or a kind alone (`proxy`).
    pub entity: Option<String>,
    /// Only this actor's records (as recorded, e.g. `ci (tok_…)`).
    pub actor: Option<String>,
    /// A duration back from now (`1h`, `30m`, `2d`: see [`parse_duration`]) or unix
    /// milliseconds.
    #[cfg_attr(
        feature = "openapi",
        param(pattern = "^(-?[0-9]{1,18}|[0-9]{1,9}(ms|s|m|h|d|w))$")
    )]
    pub since: Option<String>,
    /// Only records at or before this instant: as `since`.
    #[cfg_attr(
        feature = "openapi",
        param(pattern = "^(-?[0-9]{1,18}|[0-9]{1,9}(ms|s|m|h|d|w))$")
    )]
    pub until: Option<String>,
    /// Only records with an id below this one: the next (older) page starts before the
    /// last id of the previous one (0 to 2^63-1; more is refused with 400).
    #[cfg_attr(
        feature = "openapi",
        param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)
    )]
    pub before: Option<u64>,
    /// How many records to return, newest first (1 to 1000; more is refused with 400).
    #[serde(default = "default_limit")]
    #[cfg_attr(
        feature = "openapi",
        param(default = default_limit, minimum = 1, maximum = 1000)
    )]
    pub limit: u32,
}

/// `DELETE /v1/envs/{env}?force=true`.
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct DeleteEnvParams {
    /// Delete even while Workers are connected to the environment (they keep serving what
    /// they have until they are stopped or pointed elsewhere).
    #[serde(default)]
    pub force: bool,
}

/// What `DELETE /v1/envs/{env}` deleted. The environment's audit records are kept.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedEnv {
    pub name: String,
    /// The revision it was at.
    pub revision: u64,
    /// Live entities it had.
    pub entities: u64,
    /// Revisions it had.
    pub revisions: u64,
    /// Workers connected when it was deleted (only with `force`).
    pub connected_workers: Vec<String>,
}

/// `POST /v1/tokens`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub name: String,
    /// `admin`, `deployer`, `viewer` or `worker`.
    #[cfg_attr(feature = "openapi", schema(value_type = Role, example = "deployer"))]
    pub role: String,
    /// Environments: exactly one for `worker`, at least one for `deployer`, none for
    /// `admin`; optional for `viewer` (none = all).
    #[serde(default)]
    pub envs: Vec<String>,
    /// How long the token works, as a duration (`30d`, `12h`, `90m`: see
    /// [`parse_duration`]; not 0); absent = never expires. Give this or `expires_at`, not
    /// both.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(example = "30d", pattern = "^[1-9][0-9]{0,8}(ms|s|m|h|d|w)$")
    )]
    pub expires_in: Option<String>,
    /// When the token stops working, in unix milliseconds (must be in the future).
    #[serde(default, deserialize_with = "crate::integral::opt_i64")]
    pub expires_at: Option<i64>,
}

/// A token just created, with its secret (shown once).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Serialize, Deserialize)]
pub struct CreatedToken {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub envs: Vec<String>,
    /// When the token stops working (unix ms); `null` = never.
    pub expires_at: Option<i64>,
    /// The secret. Shown once; only its hash is stored.
    pub token: String,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("envs", &self.envs)
            .field("expires_at", &self.expires_at)
            .field("token", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::{check_limit, parse_duration};

    #[test]
    fn durations_are_a_count_and_one_unit() {
        assert_eq!(
            parse_duration("30d"),
            Some(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(parse_duration("90m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(
            parse_duration("999999999w"),
            Some(Duration::from_secs(999_999_999 * 7 * 86_400))
        );
        for bad in [
            "",
            "d",
            "1",
            "1 h",
            "1h30m",
            "1.5h",
            "-1h",
            "1000000000s",
            "1y",
            "1H",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn limits_are_one_to_a_thousand() {
        assert_eq!(check_limit(1), Ok(1));
        assert_eq!(check_limit(1000), Ok(1000));
        assert!(check_limit(0).unwrap_err().contains("give 1 to 1000"));
        assert!(check_limit(1001).is_err());
    }
}

/// `GET /v1/envs/{env}/stats`: the environment's traffic over the last hour, from its
/// Workers' running totals (`StatsBody`), in buckets of `interval_ms`. Kept in the memory
/// of the Manager the Workers report to (a restarted Manager starts empty).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvStats {
    pub interval_ms: u64,
    /// Oldest first.
    pub points: Vec<StatsPoint>,
}

/// One bucket of [`EnvStats`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatsPoint {
    /// The bucket's start (ms since epoch).
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub at: Millis,
    /// Requests answered per second, by status class, all Workers together.
    pub requests_per_second: crate::sync::StatusClasses<f64>,
    /// Gateway errors per second (502/503/504 answered by the gateway, responses cut).
    pub gateway_errors_per_second: f64,
    /// Each Worker's last reported memory in the bucket.
    pub workers: Vec<WorkerMemory>,
}

/// A Worker's resident memory at a point of [`EnvStats`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerMemory {
    pub id: String,
    pub resident_bytes: u64,
    pub live_generations: u64,
}
