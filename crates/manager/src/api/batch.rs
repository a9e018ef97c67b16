//! One batch of entity changes to one environment, the way `apply` and `promote` make
//! them: validated as a whole against the revision it commits on, planned (with a
//! field-level diff for a dry run), committed as one revision with its audit records, and
//! published to the Workers.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use switchyard_api::sync::{EntityRef, RevisionEvent};
use switchyard_config::manifest::{EnvironmentManifest, sha256_hex};
use switchyard_config::plan::{FieldChange, Hotness, field_changes, hotness};
use switchyard_config::{Located, Manifest, parse_str};
use switchyard_engine::compile;
use switchyard_store::{
    AppliedChange, Change, CommitOutcome, CommitRequest, EntityRecord, Operation, StoreError,
};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// One entity by kind and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntityKey {
    /// `Proxy`, `Credential` or `Environment`.
    pub kind: String,
    pub name: String,
}

/// A manifest to write, with the text it was resolved from when it uses variables.
pub struct Upsert {
    pub manifest: Located<Manifest>,
    pub template: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
}

/// Builds the upserts of one attempt, given the environment's entities at the revision
/// the attempt commits on.
pub type Prepare<'a> = dyn Fn(&[EntityRecord]) -> ApiResult<Vec<Upsert>> + Send + Sync + 'a;

pub struct Batch<'a> {
    pub prepare: &'a Prepare<'a>,
    pub delete: Vec<EntityKey>,
    pub expected_revision: Option<u64>,
    pub dry_run: bool,
    pub operation: Operation,
    pub detail: Option<String>,
}

/// One planned or applied change.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlannedChange {
    #[serde(flatten)]
    pub change: AppliedChange,
    /// Whether the change is applied hot, and how.
    pub hot: Hotness,
    /// Dry runs only: the fields that differ (secret values redacted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<FieldChange>,
}

#[derive(Serialize, utoipa::ToSchema)]
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

/// How often a batch that did not pin a revision is re-validated and retried when another
/// write lands between its validation and its commit.
const MAX_ATTEMPTS: usize = 5;

pub async fn run(
    state: &AppState,
    who: &Principal,
    env: &str,
    batch: Batch<'_>,
) -> ApiResult<BatchResponse> {
    let mut attempt = 0;
    let outcome: CommitOutcome = loop {
        attempt += 1;
        let info = state.env_info(env).await?;
        // Validate against exactly the revision the commit will be conditional on, so no
        // concurrent write can slip in between and leave the environment invalid.
        let base = batch.expected_revision.unwrap_or(info.revision);
        if base > info.revision {
            return Err(conflict(env, base, info.revision));
        }
        let stored = state.store.entities(env, Some(base)).await?;
        let upserts = (batch.prepare)(&stored)?;
        if upserts.is_empty() && batch.delete.is_empty() {
            return Err(ApiError::bad_request(
                "nothing to do: no manifests and no deletions in the request",
            ));
        }
        check_deletions(&upserts, &batch.delete)?;
        validate(state, env, &stored, &upserts, &batch.delete)?;
        let changes = to_changes(state, &upserts, &batch.delete)?;
        if batch.dry_run {
            let (planned, unchanged) = plan(state, &stored, &changes)?;
            return Ok(BatchResponse {
                env: env.to_string(),
                revision: info.revision,
                previous_revision: info.revision,
                changed: !planned.is_empty(),
                dry_run: true,
                changes: planned,
                unchanged,
            });
        }
        let result = state
            .store
            .commit(CommitRequest {
                env: env.to_string(),
                actor: who.actor(),
                operation: batch.operation,
                expected_revision: Some(base),
                changes,
                detail: batch.detail.clone(),
            })
            .await;
        match result {
            Err(StoreError::Conflict { .. })
                if batch.expected_revision.is_none() && attempt < MAX_ATTEMPTS =>
            {
                tracing::debug!(env = %env, attempt, "environment moved during a write; re-validating");
            }
            other => break other?,
        }
    };
    publish(state, who, &outcome, batch.operation);
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
                hot: hotness(&c.kind),
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
pub fn publish(state: &AppState, who: &Principal, outcome: &CommitOutcome, operation: Operation) {
    if outcome.changes.is_empty() {
        return;
    }
    let env = &outcome.env;
    state
        .metrics
        .commits
        .get_or_create(&[("env", env.clone())])
        .inc();
    state.fanout.publish(
        RevisionEvent {
            env: env.clone(),
            revision: outcome.revision,
            changes: outcome
                .changes
                .iter()
                .map(|c| EntityRef {
                    kind: c.kind.clone(),
                    name: c.name.clone(),
                    version: c.new_version,
                })
                .collect(),
        },
        outcome.committed_at,
    );
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
        .find(|e| e.kind == "Environment" && e.name == env && !e.deleted)
    else {
        return Ok(None);
    };
    let text = state.reveal(e)?;
    match parse_str(format!("{env}/Environment (deployed)").into(), &text) {
        Ok(docs) => Ok(docs.into_iter().find_map(|d| match d.value {
            Manifest::Environment(EnvironmentManifest { spec, .. }) => Some(spec.variables),
            _ => None,
        })),
        Err(errors) => Err(invalid(
            format!("the stored Environment document of {env:?} no longer reads"),
            errors.0.iter().map(ToString::to_string).collect(),
        )),
    }
}

/// Entity changes as the store takes them (credentials sealed).
fn to_changes(
    state: &AppState,
    upserts: &[Upsert],
    delete: &[EntityKey],
) -> ApiResult<Vec<Change>> {
    let mut changes = Vec::with_capacity(upserts.len() + delete.len());
    for u in upserts {
        let m = &u.manifest.value;
        let json = m.canonical_json();
        // Credentials are stored sealed; the digest is of the clear form, so re-applying
        // the same secret changes nothing.
        let seal = |text: &str| {
            state
                .secrets
                .seal(text)
                .map_err(|why| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "seal_failed", why))
        };
        // A credential's template may hold secrets filled in from the CLI's environment.
        let (manifest, template) = if m.is_secret() {
            (seal(&json)?, u.template.as_deref().map(seal).transpose()?)
        } else {
            (json, u.template.clone())
        };
        changes.push(Change::Upsert {
            kind: m.kind().to_string(),
            name: m.name().to_string(),
            digest: u.manifest.digest.clone(),
            manifest,
            labels: u.labels.clone().unwrap_or_else(|| m.labels().clone()),
            template,
            template_digest: u.template.as_deref().map(|t| sha256_hex(t.as_bytes())),
        });
    }
    changes.extend(delete.iter().map(|k| Change::Delete {
        kind: k.kind.clone(),
        name: k.name.clone(),
    }));
    Ok(changes)
}

/// A deletion names a kind that exists and an entity the same batch does not also write.
fn check_deletions(upserts: &[Upsert], delete: &[EntityKey]) -> ApiResult<()> {
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, k) in delete.iter().enumerate() {
        if !Manifest::KINDS.contains(&k.kind.as_str()) {
            errors.push(format!(
                "delete[{i}].kind: unknown kind {:?} (expected one of {})",
                k.kind,
                Manifest::KINDS.join(", ")
            ));
        } else if upserts
            .iter()
            .any(|u| u.manifest.value.kind() == k.kind && u.manifest.value.name() == k.name)
        {
            errors.push(format!(
                "delete[{i}]: {} {:?} is also in the manifests of this request",
                k.kind, k.name
            ));
        } else if !seen.insert(k) {
            errors.push(format!(
                "delete[{i}]: {} {:?} is listed twice",
                k.kind, k.name
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(invalid("invalid deletions".to_string(), errors))
    }
}

/// The environment as it would be after the change (stored entities overlaid with the
/// batch, minus the deletions) must compile.
fn validate(
    state: &AppState,
    env: &str,
    stored: &[EntityRecord],
    upserts: &[Upsert],
    delete: &[EntityKey],
) -> ApiResult<()> {
    let mut all: Vec<Located<Manifest>> = Vec::with_capacity(stored.len() + upserts.len());
    for e in stored {
        if upserts
            .iter()
            .any(|u| u.manifest.value.kind() == e.kind && u.manifest.value.name() == e.name)
            || delete.iter().any(|k| k.kind == e.kind && k.name == e.name)
        {
            continue;
        }
        let name: Arc<str> = format!("{env}/{}/{} (deployed)", e.kind, e.name).into();
        match parse_str(name, &state.reveal(e)?) {
            Ok(mut docs) => all.append(&mut docs),
            Err(errors) => {
                return Err(invalid(
                    format!("stored entity {}/{} no longer reads", e.kind, e.name),
                    errors.0.iter().map(ToString::to_string).collect(),
                ));
            }
        }
    }
    all.extend(upserts.iter().map(|u| u.manifest.clone()));
    compile(&all, None).map(|_| ()).map_err(|errors| {
        invalid(
            format!("the change would leave {env:?} invalid"),
            errors.0.iter().map(ToString::to_string).collect(),
        )
    })
}

pub fn invalid(message: String, details: Vec<String>) -> ApiError {
    let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_config", message);
    e.details = details;
    e
}

/// What a commit of `changes` would do to `stored`, with each changed entity's fields,
/// and the entities it would leave as they are.
fn plan(
    state: &AppState,
    stored: &[EntityRecord],
    changes: &[Change],
) -> ApiResult<(Vec<PlannedChange>, Vec<EntityKey>)> {
    let mut out = Vec::new();
    let mut unchanged = Vec::new();
    for c in changes {
        let (kind, name) = match c {
            Change::Upsert { kind, name, .. } | Change::Delete { kind, name } => (kind, name),
        };
        let current = stored
            .iter()
            .find(|e| &e.kind == kind && &e.name == name && !e.deleted);
        let (change, new_text) = match (c, current) {
            (
                Change::Upsert {
                    digest,
                    template_digest,
                    ..
                },
                Some(e),
            ) if &e.digest == digest && &e.template_digest == template_digest => {
                unchanged.push(EntityKey {
                    kind: kind.clone(),
                    name: name.clone(),
                });
                continue;
            }
            (Change::Upsert { digest, .. }, current) => (
                AppliedChange {
                    kind: kind.clone(),
                    name: name.clone(),
                    old_version: current.map(|e| e.version),
                    new_version: Some(current.map_or(1, |e| e.version + 1)),
                    digest: digest.clone(),
                },
                Some(c),
            ),
            (Change::Delete { .. }, None) => continue,
            (Change::Delete { .. }, Some(e)) => (
                AppliedChange {
                    kind: kind.clone(),
                    name: name.clone(),
                    old_version: Some(e.version),
                    new_version: None,
                    digest: String::new(),
                },
                None,
            ),
        };
        let old_text = current.map(|e| state.reveal(e)).transpose()?;
        let new_text = match new_text {
            Some(Change::Upsert { manifest, .. }) if kind == "Credential" => {
                Some(state.secrets.open(manifest).map_err(|why| {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "seal_failed", why)
                })?)
            }
            Some(Change::Upsert { manifest, .. }) => Some(manifest.clone()),
            _ => None,
        };
        // A creation or a deletion is the whole entity: only updates list fields.
        let mut diff = match (&old_text, &new_text) {
            (Some(_), Some(_)) => field_changes(kind, old_text.as_deref(), new_text.as_deref()),
            _ => Vec::new(),
        };
        if current.is_some() && diff.is_empty() {
            // Same manifest here, another text as written (e.g. a literal became a
            // variable): recorded, so promotions resolve what is written now.
            diff.push(FieldChange {
                path: "(template: the document as written changed; it resolves to the same manifest here)".to_string(),
                old: None,
                new: None,
                secret: false,
            });
        }
        out.push(PlannedChange {
            hot: hotness(kind),
            diff,
            change,
        });
    }
    Ok((out, unchanged))
}
