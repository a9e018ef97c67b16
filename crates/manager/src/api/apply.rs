//! `POST /v1/envs/{env}/apply`: one batch of manifests, validated against the whole
//! environment, committed as one revision (or nothing, when nothing changed).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use switchyard_model::{Located, Manifest, compile, parse_str};
use switchyard_store::{AppliedChange, Change, CommitRequest, EntityRecord, Operation, StoreError};

use super::openapi::{
    AUDIT_FAILED, BAD_REQUEST_BODY, FORBIDDEN, PAYLOAD_TOO_LARGE, SERVER_ERROR, UNAUTHORIZED,
    UNKNOWN_ENV, UNSUPPORTED_MEDIA_TYPE,
};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// Manifest documents (YAML or JSON text), one per entry; multi-document text is fine.
    pub manifests: Vec<String>,
    /// Refuse with 409 unless the environment is still at this revision.
    #[serde(default)]
    pub expected_revision: Option<u64>,
    /// Validate and report what would change, without writing.
    #[serde(default)]
    pub dry_run: bool,
    /// Entities to delete in the same revision (skipped when they do not exist).
    #[serde(default)]
    pub delete: Vec<EntityKey>,
}

/// One entity by kind and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntityKey {
    /// `Proxy` or `Credential`.
    pub kind: String,
    pub name: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ApplyResponse {
    pub env: String,
    pub revision: u64,
    pub previous_revision: u64,
    /// False when the batch matched what is deployed (no new revision).
    pub changed: bool,
    pub dry_run: bool,
    pub changes: Vec<AppliedChange>,
}

/// How often an apply that did not pin a revision is re-validated and retried when another
/// write lands between its validation and its commit.
const MAX_ATTEMPTS: usize = 5;

/// Apply a batch of manifests to an environment as one revision.
///
/// The batch is validated against the whole environment (stored entities overlaid with the
/// batch must compile) and committed as one revision, or nothing when nothing changed.
#[utoipa::path(
    post,
    path = "/v1/envs/{env}/apply",
    operation_id = "apply",
    tag = "entities",
    params(("env" = String, Path, description = "Environment name")),
    request_body = ApplyRequest,
    responses(
        (status = 200, description = "Committed (or, with `dry_run`, planned); `changed` is false when nothing changed", body = ApplyResponse),
        (status = 400, description = BAD_REQUEST_BODY, content(
            (ErrorBody = "application/json"),
            (String = "text/plain"),
        )),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = UNKNOWN_ENV, body = ErrorBody),
        (status = 409, description = "The environment is no longer at `expected_revision` (`revision_conflict`)", body = ErrorBody),
        (status = 413, description = PAYLOAD_TOO_LARGE, body = String),
        (status = 415, description = UNSUPPORTED_MEDIA_TYPE, body = String),
        (status = 422, description = "Invalid manifests, or the change would leave the environment invalid (`invalid_config`, every error in `details`); plain text when the JSON body does not have the expected fields", content(
            (ErrorBody = "application/json"),
            (String = "text/plain"),
        )),
        (status = 500, description = SERVER_ERROR, body = ErrorBody),
        (status = 503, description = AUDIT_FAILED, body = ErrorBody),
    )
)]
pub async fn apply(
    State(state): State<AppState>,
    who: Principal,
    Path(env): Path<String>,
    Json(req): Json<ApplyRequest>,
) -> ApiResult<Json<ApplyResponse>> {
    who.require_write(&env)?;
    let batch = parse_batch(&req.manifests)?;
    if batch.is_empty() && req.delete.is_empty() {
        return Err(ApiError::bad_request(
            "nothing to do: no manifests and no deletions in the request",
        ));
    }
    check_deletions(&batch, &req.delete)?;
    let mut changes: Vec<Change> = Vec::with_capacity(batch.len());
    for m in &batch {
        let json = m.value.canonical_json();
        // Credentials are stored sealed; the digest is of the clear form, so re-applying
        // the same secret changes nothing.
        let manifest = if m.value.is_secret() {
            state.secrets.seal(&json).map_err(|why| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "seal_failed", why)
            })?
        } else {
            json
        };
        changes.push(Change::Upsert {
            kind: m.value.kind().to_string(),
            name: m.value.name().to_string(),
            digest: m.value.digest(),
            manifest,
            labels: m.value.labels().clone(),
        });
    }

    changes.extend(req.delete.iter().map(|k| Change::Delete {
        kind: k.kind.clone(),
        name: k.name.clone(),
    }));

    let mut attempt = 0;
    let outcome = loop {
        attempt += 1;
        let info = state.env_info(&env).await?;
        // Validate against exactly the revision the commit will be conditional on, so no
        // concurrent write can slip in between and leave the environment invalid.
        let base = req.expected_revision.unwrap_or(info.revision);
        let stored = state
            .store
            .entities(&env, Some(base.min(info.revision)))
            .await?;
        validate(&state, &env, &stored, &batch, &req.delete)?;
        if req.dry_run {
            let planned = plan(&stored, &changes);
            return Ok(Json(ApplyResponse {
                env,
                revision: info.revision,
                previous_revision: info.revision,
                changed: !planned.is_empty(),
                dry_run: true,
                changes: planned,
            }));
        }
        let result = state
            .store
            .commit(CommitRequest {
                env: env.clone(),
                actor: who.actor(),
                operation: Operation::Apply,
                expected_revision: Some(base),
                changes: changes.clone(),
                detail: None,
            })
            .await;
        match result {
            Err(StoreError::Conflict { .. })
                if req.expected_revision.is_none() && attempt < MAX_ATTEMPTS =>
            {
                tracing::debug!(env = %env, attempt, "environment moved during apply; re-validating");
            }
            other => break other?,
        }
    };
    let changed = !outcome.changes.is_empty();
    if changed {
        super::commit::publish(&state, &env, &outcome, &who.actor());
    }
    Ok(Json(ApplyResponse {
        env,
        revision: outcome.revision,
        previous_revision: outcome.previous_revision,
        changed,
        dry_run: false,
        changes: outcome.changes,
    }))
}

/// A deletion names a kind that exists and an entity the same batch does not also apply.
fn check_deletions(batch: &[Located<Manifest>], delete: &[EntityKey]) -> ApiResult<()> {
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, k) in delete.iter().enumerate() {
        if !Manifest::KINDS.contains(&k.kind.as_str()) {
            errors.push(format!(
                "delete[{i}].kind: unknown kind {:?} (expected one of {})",
                k.kind,
                Manifest::KINDS.join(", ")
            ));
        } else if batch
            .iter()
            .any(|b| b.value.kind() == k.kind && b.value.name() == k.name)
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
    batch: &[Located<Manifest>],
    delete: &[EntityKey],
) -> ApiResult<()> {
    let mut all: Vec<Located<Manifest>> = Vec::with_capacity(stored.len() + batch.len());
    for e in stored {
        if batch
            .iter()
            .any(|b| b.value.kind() == e.kind && b.value.name() == e.name)
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
    all.extend(batch.iter().cloned());
    compile(&all, None).map(|_| ()).map_err(|errors| {
        invalid(
            format!("the change would leave {env:?} invalid"),
            errors.0.iter().map(ToString::to_string).collect(),
        )
    })
}

fn parse_batch(texts: &[String]) -> ApiResult<Vec<Located<Manifest>>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        match parse_str(format!("manifests[{i}]").into(), text) {
            Ok(mut docs) => out.append(&mut docs),
            Err(e) => errors.extend(e.0.iter().map(ToString::to_string)),
        }
    }
    if !errors.is_empty() {
        return Err(invalid("invalid manifests".to_string(), errors));
    }
    let mut seen = std::collections::HashSet::new();
    for m in &out {
        if !seen.insert((m.value.kind(), m.value.name().to_string())) {
            return Err(invalid(
                "duplicate entity in one apply".to_string(),
                vec![format!(
                    "{} {:?} appears more than once",
                    m.value.kind(),
                    m.value.name()
                )],
            ));
        }
    }
    Ok(out)
}

fn invalid(message: String, details: Vec<String>) -> ApiError {
    let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_config", message);
    e.details = details;
    e
}

/// What a commit of `changes` would do to `stored`.
fn plan(stored: &[EntityRecord], changes: &[Change]) -> Vec<AppliedChange> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Upsert {
                kind, name, digest, ..
            } => {
                let current = stored.iter().find(|e| &e.kind == kind && &e.name == name);
                match current {
                    Some(e) if &e.digest == digest => None,
                    Some(e) => Some(AppliedChange {
                        kind: kind.clone(),
                        name: name.clone(),
                        old_version: Some(e.version),
                        new_version: Some(e.version + 1),
                        digest: digest.clone(),
                    }),
                    None => Some(AppliedChange {
                        kind: kind.clone(),
                        name: name.clone(),
                        old_version: None,
                        new_version: Some(1),
                        digest: digest.clone(),
                    }),
                }
            }
            Change::Delete { kind, name } => stored
                .iter()
                .find(|e| &e.kind == kind && &e.name == name && !e.deleted)
                .map(|e| AppliedChange {
                    kind: kind.clone(),
                    name: name.clone(),
                    old_version: Some(e.version),
                    new_version: None,
                    digest: String::new(),
                }),
        })
        .collect()
}
