//! The one write path: a batch of entity changes to one environment, the way `apply`,
//! `promote`, `credential set|rotate` and `rollback` make them — validated as a whole
//! against the revision it commits on, planned (with a field-level diff for a dry run),
//! committed as one revision with its audit records, and published to the Workers.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use axum::http::StatusCode;
use switchyard_api::ErrorCode;
use switchyard_api::admin::{BatchResponse, EntityKey, PlannedChange};
use switchyard_api::records::{AppliedChange, Operation};
use switchyard_api::sync::{RevisionEvent, worker_kinds};
use switchyard_config::manifest::{EnvironmentManifest, sha256_hex};
use switchyard_config::plan::{ChangeClass, FieldChange, Hotness, field_changes};
use switchyard_config::{Kind, Located, Manifest};
use switchyard_engine::entity_set::Stored;
use switchyard_engine::{EntitySet, Numbering, classify};
use switchyard_store::{
    CanaryCommit, Change, CommitOutcome, CommitRequest, EntityRecord, StoreError,
};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// An entity to write.
// Short-lived and few per request: the size difference costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Upsert {
    /// A manifest, with the text it was resolved from when it uses variables.
    Manifest {
        manifest: Located<Manifest>,
        template: Option<String>,
        /// Labels to store (default: the manifest's own).
        labels: Option<BTreeMap<String, String>>,
    },
    /// An entity exactly as it was stored at an earlier revision (a rollback): same
    /// digest, a credential still sealed under the same key.
    Restore(EntityRecord),
}

impl Upsert {
    fn key(&self) -> (Kind, &str) {
        match self {
            Upsert::Manifest { manifest, .. } => (manifest.value.kind(), manifest.value.name()),
            Upsert::Restore(e) => (e.kind, &e.name),
        }
    }
}

/// What one attempt writes, built from the environment's entities at the revision the
/// attempt commits on.
#[derive(Default)]
pub struct Prepared {
    pub upserts: Vec<Upsert>,
    /// Entities to delete (skipped when they do not exist).
    pub delete: Vec<(Kind, String)>,
}

/// Builds one attempt's changes from the stored entities it will commit on.
pub type Prepare<'a> = dyn Fn(&[EntityRecord]) -> ApiResult<Prepared> + Send + Sync + 'a;

/// One write: how to build it and how to commit it.
pub struct Batch<'a> {
    pub prepare: &'a Prepare<'a>,
    pub expected_revision: Option<u64>,
    pub dry_run: bool,
    pub operation: Operation,
    /// Kept in the audit records (e.g. "promoted from stage (revision 12)").
    pub detail: Option<String>,
    /// A batch that names nothing to write is refused (an apply with no manifests and no
    /// deletions); one that only finds nothing to change is not (a rollback to the
    /// current content).
    pub refuse_empty: bool,
    /// What an invalid result is called, instead of "the change would leave ENV invalid".
    pub invalid_message: Option<String>,
    /// Dry runs list the fields that change (a rollback restores whole stored versions and
    /// lists none).
    pub field_diffs: bool,
    /// What the commit does to the environment's canary: starts one (only for changes
    /// every request can be pinned to), ends one (a rollback or abort), or neither (then
    /// refused while one runs).
    pub canary: CanaryCommit,
}

/// How often a batch that did not pin a revision is re-validated and retried when another
/// write lands between its validation and its commit.
const MAX_ATTEMPTS: usize = 5;

/// The Manager's spans' tracer (the global provider: a no-op unless `switchyard manager`
/// was given an OTLP endpoint).
fn tracer() -> opentelemetry::global::BoxedTracer {
    opentelemetry::global::tracer("switchyard-manager")
}

/// A span of the write in progress (a child of `switchyard.apply`), ended when dropped.
fn step(name: &'static str) -> opentelemetry::global::BoxedSpan {
    use opentelemetry::trace::Tracer as _;
    tracer().start_with_context(name, &opentelemetry::Context::current())
}

/// One write, traced: a `switchyard.apply` span (a child of the admin request's
/// `traceparent`, if it had one) with `switchyard.validate`, `switchyard.commit` and
/// `switchyard.publish` under it.
pub async fn run(
    state: &AppState,
    who: &Principal,
    env: &str,
    batch: Batch<'_>,
) -> ApiResult<BatchResponse> {
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{
        FutureExt as _, Span as _, Status, TraceContextExt as _, Tracer as _,
    };
    let mut span =
        tracer().start_with_context("switchyard.apply", &opentelemetry::Context::current());
    span.set_attribute(KeyValue::new("switchyard.env", env.to_string()));
    span.set_attribute(KeyValue::new(
        "switchyard.operation",
        batch.operation.as_str(),
    ));
    span.set_attribute(KeyValue::new("switchyard.dry_run", batch.dry_run));
    let cx = opentelemetry::Context::current_with_span(span);
    let result = write(state, who, env, batch).with_context(cx.clone()).await;
    let span = cx.span();
    match &result {
        Ok(r) => {
            span.set_attribute(KeyValue::new(
                "switchyard.revision",
                i64::try_from(r.revision).unwrap_or(i64::MAX),
            ));
            span.set_attribute(KeyValue::new("switchyard.changed", r.changed));
        }
        Err(e) => {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(e.status.as_u16()),
            ));
            span.set_status(Status::error(e.code.to_string()));
        }
    }
    span.end();
    result
}

async fn write(
    state: &AppState,
    who: &Principal,
    env: &str,
    batch: Batch<'_>,
) -> ApiResult<BatchResponse> {
    if !batch.dry_run
        && batch.operation != Operation::Rollout
        && let Some(id) = state.rollouts.running(env)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::RolloutInProgress,
            format!(
                "rollout {id} of {env:?} is running: it finishes (or fails) first; follow it \
                 with `switchyard rollout status --env {env}`"
            ),
        ));
    }
    let mut attempt = 0;
    // How each change of the attempt that committed reaches the Workers.
    let mut classes: BTreeMap<(Kind, String), Hotness>;
    let outcome: CommitOutcome = loop {
        attempt += 1;
        let info = state.env_info(env).await?;
        // Validate against exactly the revision the commit will be conditional on, so no
        // concurrent write can slip in between and leave the environment invalid.
        let base = batch.expected_revision.unwrap_or(info.revision);
        // A base past the environment, or older than its retained history (whose state
        // cannot be read, and which it has moved past anyway): stale.
        if base > info.revision || base < info.history_from {
            return Err(conflict(env, base, info.revision));
        }
        let stored = match state.store.entities(env, Some(base)).await {
            Ok(stored) => stored,
            // Commits and a pruning landed since `info` was read: the base is stale.
            Err(StoreError::Pruned { .. })
                if batch.expected_revision.is_none() && attempt < MAX_ATTEMPTS =>
            {
                continue;
            }
            Err(StoreError::Pruned { .. }) => return Err(conflict(env, base, info.revision)),
            Err(e) => return Err(e.into()),
        };
        let prepared = key_digests(state, env, &stored, (batch.prepare)(&stored)?);
        if batch.refuse_empty && prepared.upserts.is_empty() && prepared.delete.is_empty() {
            return Err(ApiError::bad_request(
                "nothing to do: no manifests and no deletions in the request",
            ));
        }
        let changes = to_changes(state, env, &prepared)?;
        let plan = plan(
            state,
            env,
            &stored,
            &changes,
            batch.dry_run,
            batch.field_diffs,
        )
        .await?;
        if !plan.changes.is_empty() {
            let _span = step("switchyard.validate");
            validate(state, env, &stored, &prepared, &batch)?;
        }
        if !batch.dry_run && batch.operation != Operation::Rollout {
            refuse_restart_required(env, &plan.changes)?;
        }
        if matches!(batch.canary, CanaryCommit::Start(_)) {
            refuse_not_canaryable(&plan.changes, &stored, &changes)?;
        }
        if batch.dry_run {
            return Ok(BatchResponse {
                env: env.to_string(),
                revision: info.revision,
                previous_revision: info.revision,
                changed: !plan.changes.is_empty(),
                dry_run: true,
                changes: plan.changes,
                unchanged: plan.unchanged,
            });
        }
        if plan.changes.is_empty() {
            return Ok(BatchResponse {
                env: env.to_string(),
                revision: info.revision,
                previous_revision: info.revision,
                changed: false,
                dry_run: false,
                changes: Vec::new(),
                unchanged: Vec::new(),
            });
        }
        classes = plan
            .changes
            .iter()
            .map(|c| ((c.change.kind, c.change.name.clone()), c.hot.clone()))
            .collect();
        // After the database was away for a while, the streams held here are written down
        // again before the commit reads who is expected to pick it up.
        if state.presence.lapsed() {
            let _ = state.presence.refresh(state.fanout.held()).await;
        }
        let mut commit_span = step("switchyard.commit");
        let result = state
            .store
            .commit(CommitRequest {
                env: env.to_string(),
                actor: who.actor(),
                operation: batch.operation,
                expected_revision: Some(base),
                changes,
                detail: batch.detail.clone(),
                canary: batch.canary.clone(),
            })
            .await;
        {
            use opentelemetry::trace::Span as _;
            if result.is_err() {
                commit_span.set_status(opentelemetry::trace::Status::error("commit failed"));
            }
            commit_span.end();
        }
        match result {
            Err(StoreError::Conflict { .. })
                if batch.expected_revision.is_none() && attempt < MAX_ATTEMPTS =>
            {
                tracing::debug!(env = %env, attempt, "environment moved during a write; re-validating");
            }
            other => break other?,
        }
    };
    {
        let _span = step("switchyard.publish");
        publish(state, who, &outcome, batch.operation);
    }
    Ok(BatchResponse {
        env: env.to_string(),
        revision: outcome.revision,
        previous_revision: outcome.previous_revision,
        changed: !outcome.changes.is_empty(),
        dry_run: false,
        changes: outcome
            .changes
            .into_iter()
            .map(|c| PlannedChange {
                hot: classes
                    .get(&(c.kind, c.name.clone()))
                    .cloned()
                    .unwrap_or_else(|| classify::classify(c.kind, true, &mut [])),
                change: c,
                diff: Vec::new(),
            })
            .collect(),
        unchanged: Vec::new(),
    })
}

fn conflict(env: &str, expected: u64, actual: u64) -> ApiError {
    ApiError::from(StoreError::Conflict {
        env: env.to_string(),
        expected,
        actual,
    })
}

/// Tells the Workers about a committed revision.
fn publish(state: &AppState, who: &Principal, outcome: &CommitOutcome, operation: Operation) {
    if outcome.changes.is_empty() {
        return;
    }
    let env = &outcome.env;
    state
        .metrics
        .commits
        .get_or_create(&[("env", env.clone())])
        .inc();
    state.fanout.publish(RevisionEvent::of_commit(
        env,
        outcome.revision,
        &outcome.changes,
    ));
    crate::api::sync::warm_pull(state, env, outcome.revision);
    tracing::info!(env = %env, revision = outcome.revision, changes = outcome.changes.len(), actor = %who.actor(), operation = operation.as_str(), "revision committed");
}

/// The variables an environment keeps (its stored `kind: Environment` entity).
pub fn stored_variables(
    state: &AppState,
    env: &str,
    stored: &[EntityRecord],
) -> ApiResult<Option<BTreeMap<String, String>>> {
    let Some(e) = stored
        .iter()
        .find(|e| e.kind == Kind::Environment && e.name == env && !e.deleted)
    else {
        return Ok(None);
    };
    let text = state.reveal(e)?;
    match EntitySet::parse_one(format!("{env}/Environment (deployed)").into(), &text) {
        Ok(doc) => Ok(match doc.value {
            Manifest::Environment(EnvironmentManifest { spec, .. }) => Some(spec.variables),
            _ => None,
        }),
        Err(errors) => Err(invalid(
            format!("the stored Environment document of {env:?} no longer reads"),
            errors.0.iter().map(ToString::to_string).collect(),
        )),
    }
}

/// The kinds of a request's deletions, each checked: a kind that exists, an entity the
/// same batch does not also write, listed once.
pub fn check_deletions(upserts: &[Upsert], delete: &[EntityKey]) -> ApiResult<Vec<(Kind, String)>> {
    let mut errors = Vec::new();
    let mut out = Vec::with_capacity(delete.len());
    let mut seen = HashSet::new();
    for (i, k) in delete.iter().enumerate() {
        match k.kind() {
            Err(unknown) => errors.push(format!("delete[{i}].kind: {unknown}")),
            Ok(kind) if upserts.iter().any(|u| u.key() == (kind, k.name.as_str())) => {
                errors.push(format!(
                    "delete[{i}]: {kind} {:?} is also in the manifests of this request",
                    k.name
                ));
            }
            Ok(kind) if !seen.insert((kind, k.name.as_str())) => {
                errors.push(format!("delete[{i}]: {kind} {:?} is listed twice", k.name));
            }
            Ok(kind) => out.push((kind, k.name.clone())),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(invalid("invalid deletions".to_string(), errors))
    }
}

/// Gives secret entities their keyed digest (HMAC under the environment's digest key, see
/// [`DigestKey`](switchyard_api::sync::DigestKey)): what is stored, shown and sent for them. A secret stored before digests
/// were keyed keeps its plain digest while its content is unchanged (re-applying it is no
/// change); it gets a keyed one with its next change.
fn key_digests(state: &AppState, env: &str, stored: &[EntityRecord], mut p: Prepared) -> Prepared {
    let key = state.digest_key(env);
    for u in &mut p.upserts {
        let Upsert::Manifest { manifest, .. } = u else {
            continue;
        };
        if !manifest.value.is_secret() {
            continue;
        }
        let (kind, name) = (manifest.value.kind(), manifest.value.name());
        let legacy = stored
            .iter()
            .any(|e| e.kind == kind && e.name == name && !e.deleted && e.digest == manifest.digest);
        if !legacy {
            manifest.digest = key.digest(manifest.value.canonical_json().as_bytes());
        }
    }
    p
}

fn seal_failed(why: String) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::SealFailed,
        why,
    )
}

/// Entity changes as the store takes them (credentials sealed).
fn to_changes(state: &AppState, env: &str, prepared: &Prepared) -> ApiResult<Vec<Change>> {
    let mut changes = Vec::with_capacity(prepared.upserts.len() + prepared.delete.len());
    for u in &prepared.upserts {
        changes.push(match u {
            Upsert::Manifest {
                manifest,
                template,
                labels,
            } => {
                let m = &manifest.value;
                let json = m.canonical_json();
                // A secret still stored with a plain digest keeps a plain template digest
                // too (see `key_digests`).
                let keyed = m.is_secret() && manifest.digest != sha256_hex(json.as_bytes());
                // Credentials are stored sealed; the digest is of the clear form, so
                // re-applying the same secret changes nothing.
                let seal = |text: &str| state.secrets.seal(text).map_err(seal_failed);
                // A credential's template may hold secrets filled in from the CLI's
                // environment.
                let (stored, stored_template) = if m.is_secret() {
                    (seal(&json)?, template.as_deref().map(seal).transpose()?)
                } else {
                    (json, template.clone())
                };
                Change::Upsert {
                    kind: m.kind(),
                    name: m.name().to_string(),
                    digest: manifest.digest.clone(),
                    manifest: stored,
                    labels: labels.clone().unwrap_or_else(|| m.labels().clone()),
                    template: stored_template,
                    // A secret's template may hold the secret itself (filled in from the
                    // CLI's environment): keyed like its digest.
                    template_digest: template.as_deref().map(|t| {
                        if keyed {
                            state.digest_key(env).digest(t.as_bytes())
                        } else {
                            sha256_hex(t.as_bytes())
                        }
                    }),
                }
            }
            Upsert::Restore(e) => Change::Upsert {
                kind: e.kind,
                name: e.name.clone(),
                digest: e.digest.clone(),
                manifest: e.manifest.clone(),
                labels: e.labels.clone(),
                template: e.template.clone(),
                template_digest: e.template_digest.clone(),
            },
        });
    }
    changes.extend(prepared.delete.iter().map(|(kind, name)| Change::Delete {
        kind: *kind,
        name: name.clone(),
    }));
    Ok(changes)
}

/// The environment as it would be after the change (stored entities overlaid with the
/// batch, minus the deletions) must compile. Stored entities are read through the
/// environment's parse cache: only what changed since the last write is parsed again.
fn validate(
    state: &AppState,
    env: &str,
    stored: &[EntityRecord],
    prepared: &Prepared,
    batch: &Batch<'_>,
) -> ApiResult<()> {
    let cache = state.parsed(env);
    // What the batch replaces or deletes is not read: it may be what no longer reads.
    let replaced: HashSet<(Kind, &str)> = prepared
        .upserts
        .iter()
        .map(Upsert::key)
        .chain(prepared.delete.iter().map(|(k, n)| (*k, n.as_str())))
        .collect();
    let by_key: BTreeMap<(Kind, &str), &EntityRecord> = stored
        .iter()
        .filter(|e| !replaced.contains(&(e.kind, e.name.as_str())))
        .map(|e| ((e.kind, e.name.as_str()), e))
        .collect();
    let reads = stored
        .iter()
        .filter(|e| by_key.contains_key(&(e.kind, e.name.as_str())))
        .map(|e| Stored {
            kind: e.kind,
            name: &e.name,
            version: e.version,
            digest: &e.digest,
        });
    let (mut set, unreadable) = cache.reread(reads, |s| {
        let e = by_key[&(s.kind, s.name)];
        let name: Arc<str> = format!("{env}/{}/{} (deployed)", e.kind, e.name).into();
        state.reveal(e).map(|text| (name, text.into()))
    })?;
    if let Some(u) = unreadable.first() {
        return Err(invalid(
            format!("stored entity {}/{} no longer reads", u.kind, u.name),
            u.errors.0.iter().map(ToString::to_string).collect(),
        ));
    }
    state.keep_parsed(env, &set);
    let mut errors = Vec::new();
    let now = std::time::SystemTime::now();
    for u in &prepared.upserts {
        match u {
            Upsert::Manifest { manifest, .. } => {
                // A certificate is checked against the clock when it is applied (new or
                // changed), not while it is served: one that expires later does not block
                // other changes.
                let stored_as_is = stored.iter().any(|e| {
                    e.kind == manifest.value.kind()
                        && e.name == manifest.value.name()
                        && !e.deleted
                        && e.digest == manifest.digest
                });
                if !stored_as_is {
                    errors.extend(
                        switchyard_engine::tls::check_validity(manifest, now)
                            .iter()
                            .map(ToString::to_string),
                    );
                }
                set.insert(0, Arc::new(manifest.clone()));
            }
            Upsert::Restore(e) => {
                let source: Arc<str> = format!("{env}/{}/{} (restored)", e.kind, e.name).into();
                match EntitySet::parse_one(source, &state.reveal(e)?) {
                    Ok(m) => {
                        set.insert(e.version, Arc::new(m));
                    }
                    Err(es) => errors.extend(es.0.iter().map(ToString::to_string)),
                }
            }
        }
    }
    if errors.is_empty()
        && let Err(es) = set.compile(None, &Numbering::default())
    {
        errors.extend(es.0.iter().map(ToString::to_string));
    }
    if errors.is_empty() {
        return Ok(());
    }
    Err(invalid(
        batch
            .invalid_message
            .clone()
            .unwrap_or_else(|| format!("the change would leave {env:?} invalid")),
        errors,
    ))
}

/// `apply` (or promote, rollback…) of a change that Workers only take when they start:
/// refused before anything is written, naming each such field, why, and the command that
/// applies it.
/// A canary is served per request beside the stable revision: a change that is not chosen
/// per request (a listener, a certificate — picked per connection at the handshake —,
/// process settings) or that moves connections or needs a restart cannot be one.
fn refuse_not_canaryable(
    changes: &[PlannedChange],
    stored: &[EntityRecord],
    written: &[Change],
) -> ApiResult<()> {
    let mut details: Vec<String> = changes
        .iter()
        .filter_map(|c| {
            let entity = format!("{}/{}", c.change.kind.lower(), c.change.name);
            let why = match c.change.kind {
                Kind::Listener => "listeners are bound per process, not chosen per request",
                Kind::Certificate => {
                    "certificates are chosen per connection, at the TLS handshake, before any \
                     request is assigned to a revision"
                }
                Kind::WorkerSettings => "process settings are taken when a Worker starts",
                Kind::Proxy | Kind::Credential | Kind::Environment
                    if c.hot.class != ChangeClass::Hot =>
                {
                    return Some(format!(
                        "{entity}: {} ({})",
                        c.hot.class.as_str(),
                        c.hot.how
                    ));
                }
                Kind::Proxy | Kind::Credential | Kind::Environment => return None,
            };
            Some(format!("{entity}: {why}"))
        })
        .collect();
    // Gateway settings (an Environment document's `spec.gateway`) apply to every request
    // and connection of a Worker, whichever revision it runs on.
    let gateway = |manifest: &str| {
        serde_json::from_str::<serde_json::Value>(manifest)
            .ok()
            .and_then(|v| v.pointer("/spec/gateway").cloned())
    };
    for c in written {
        let (kind, name, new) = match c {
            Change::Upsert {
                kind,
                name,
                manifest,
                ..
            } => (*kind, name, gateway(manifest)),
            Change::Delete { kind, name } => (*kind, name, None),
        };
        if kind != Kind::Environment {
            continue;
        }
        let old = stored
            .iter()
            .find(|e| e.kind == kind && e.name == *name && !e.deleted)
            .and_then(|e| gateway(&e.manifest));
        if old != new {
            details.push(format!(
                "environment/{name}: spec.gateway applies to every request and connection \
                 of a Worker, whichever revision it runs on"
            ));
        }
    }
    if details.is_empty() {
        return Ok(());
    }
    Err(ApiError {
        details,
        ..ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::NotCanaryable,
            "this change cannot be a canary: only hot changes every request can be pinned to \
             (proxies, credentials, variables) can; apply it without --canary (or with \
             `switchyard rollout` when it needs a restart)",
        )
    })
}

fn refuse_restart_required(env: &str, changes: &[PlannedChange]) -> ApiResult<()> {
    let mut details = Vec::new();
    for c in changes
        .iter()
        .filter(|c| c.hot.class == ChangeClass::RestartRequired)
    {
        let entity = format!("{}/{}", c.change.kind.lower(), c.change.name);
        let cold: Vec<&FieldChange> = c
            .diff
            .iter()
            .filter(|f| f.class == ChangeClass::RestartRequired)
            .collect();
        if cold.is_empty() {
            let what = match (c.change.old_version, c.change.new_version) {
                (None, _) => "created",
                (_, None) => "deleted",
                _ => "changed",
            };
            details.push(format!("{entity} {what}: {}", c.hot.how));
        }
        for f in cold {
            let show = |v: &Option<serde_json::Value>| {
                v.as_ref()
                    .map_or_else(|| "(none)".to_string(), ToString::to_string)
            };
            details.push(format!(
                "{entity} {}: {} -> {}: {}",
                f.path,
                show(&f.old),
                show(&f.new),
                f.reason
            ));
        }
    }
    if details.is_empty() {
        return Ok(());
    }
    let mut e = ApiError::new(
        StatusCode::CONFLICT,
        ErrorCode::RestartRequired,
        format!(
            "nothing applied: {} restart-required (Workers take it only when they start); \
             roll it out with: switchyard rollout --env {env} FILES… (the same files)",
            if details.len() == 1 {
                "this change is"
            } else {
                "these changes are"
            }
        ),
    );
    e.details = details;
    Err(e)
}

pub fn invalid(message: String, details: Vec<String>) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::InvalidConfig,
        message,
    );
    e.details = details;
    e
}

/// What a commit of `changes` would do.
struct Plan {
    changes: Vec<PlannedChange>,
    /// Entities of the batch that already match what is deployed.
    unchanged: Vec<EntityKey>,
}

/// What a commit of `changes` to `stored` would do. For a dry run, versions are planned as
/// the store will number them (a deleted entity that comes back continues after its
/// tombstone's version) and, with `diffs`, each update lists the fields it changes.
async fn plan(
    state: &AppState,
    env: &str,
    stored: &[EntityRecord],
    changes: &[Change],
    dry_run: bool,
    diffs: bool,
) -> ApiResult<Plan> {
    let live: BTreeMap<(Kind, &str), &EntityRecord> = stored
        .iter()
        .filter(|e| !e.deleted)
        .map(|e| ((e.kind, e.name.as_str()), e))
        .collect();
    let recreated = dry_run
        && changes.iter().any(|c| match c {
            Change::Upsert { kind, name, .. } => !live.contains_key(&(*kind, name.as_str())),
            Change::Delete { .. } => false,
        });
    // Tombstones are read only when something is created (or comes back).
    let tombstones: BTreeMap<(Kind, String), u64> = if recreated {
        let (_, all) = state.store.changes_since(env, 0).await?;
        all.into_iter()
            .filter(|e| e.deleted)
            .map(|e| ((e.kind, e.name), e.version))
            .collect()
    } else {
        BTreeMap::new()
    };
    let mut out = Plan {
        changes: Vec::new(),
        unchanged: Vec::new(),
    };
    let unread = unread_kinds(state, env).await?;
    for c in changes {
        let (kind, name) = match c {
            Change::Upsert { kind, name, .. } | Change::Delete { kind, name } => (*kind, name),
        };
        let current = live.get(&(kind, name.as_str())).copied();
        let change = match (c, current) {
            (
                Change::Upsert {
                    digest,
                    template_digest,
                    ..
                },
                Some(e),
            ) if &e.digest == digest && &e.template_digest == template_digest => {
                out.unchanged.push(EntityKey::new(kind, name.clone()));
                continue;
            }
            (Change::Upsert { digest, .. }, current) => AppliedChange {
                kind,
                name: name.clone(),
                old_version: current.map(|e| e.version),
                new_version: Some(match current {
                    Some(e) => e.version + 1,
                    None => tombstones.get(&(kind, name.clone())).map_or(1, |v| v + 1),
                }),
                digest: digest.clone(),
            },
            (Change::Delete { .. }, None) => continue,
            (Change::Delete { .. }, Some(e)) => AppliedChange {
                kind,
                name: name.clone(),
                old_version: Some(e.version),
                new_version: None,
                digest: String::new(),
            },
        };
        // Kinds with fields that are not hot are classified field by field for every
        // write (a restart-required change is refused by `apply`), others only for a plan.
        let shown = dry_run && diffs;
        let mut diff = match (c, current) {
            (Change::Upsert { manifest, .. }, Some(e))
                if shown || classify::has_cold_fields(kind) =>
            {
                field_diff(state, kind, e, manifest)?
            }
            _ => Vec::new(),
        };
        let created_or_deleted = current.is_none() || matches!(c, Change::Delete { .. });
        let mut hot = classify::classify(kind, created_or_deleted, &mut diff);
        if let Some(why) = unread.get(&kind) {
            hot = Hotness::new(ChangeClass::RestartRequired, why.clone());
        }
        if !shown && hot.class != ChangeClass::RestartRequired {
            diff.clear();
        }
        out.changes.push(PlannedChange { hot, diff, change });
    }
    Ok(out)
}

/// The kinds some Worker connected to `env` cannot read, with why: it says (in
/// `x-switchyard-version`) it does not read them, so its binary must be rolled out first.
/// Workers that do not say are taken to read every kind. Computed once per plan, over the
/// Workers connected to any Manager on the database.
async fn unread_kinds(state: &AppState, env: &str) -> ApiResult<BTreeMap<Kind, String>> {
    let workers = state.store.connections(env).await?;
    Ok(Kind::ALL
        .into_iter()
        .filter_map(|kind| {
            let behind: Vec<String> = workers
                .iter()
                .filter_map(|w| {
                    let version = w.version.as_deref()?;
                    let kinds = worker_kinds(version)?;
                    (!kinds.contains(&kind.as_str()))
                        .then(|| format!("{} ({version})", w.worker_id))
                })
                .collect();
            (!behind.is_empty()).then(|| {
                let why = format!(
                    "Worker(s) {} do not read kind {kind}: roll out a binary that does first",
                    behind.join(", ")
                );
                (kind, why)
            })
        })
        .collect())
}

/// The fields an update changes (secret values redacted).
fn field_diff(
    state: &AppState,
    kind: Kind,
    current: &EntityRecord,
    new_stored: &str,
) -> ApiResult<Vec<FieldChange>> {
    let old_text = state.reveal(current)?;
    let new_text = if kind.is_secret() {
        state.secrets.open(new_stored).map_err(seal_failed)?
    } else {
        new_stored.to_string()
    };
    Ok(or_template_only(field_changes(
        kind,
        Some(&old_text),
        Some(&new_text),
    )))
}

/// An update whose manifest is the same here has another text as written (e.g. a literal
/// became a variable): recorded, so promotions resolve what is written now, and said so.
pub(super) fn or_template_only(mut diff: Vec<FieldChange>) -> Vec<FieldChange> {
    if diff.is_empty() {
        diff.push(FieldChange {
            path:
                "(template: the document as written changed; it resolves to the same manifest here)"
                    .to_string(),
            old: None,
            new: None,
            secret: false,
            class: ChangeClass::Hot,
            reason: String::new(),
        });
    }
    diff
}
