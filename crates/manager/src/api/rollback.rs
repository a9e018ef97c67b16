//! `POST /v1/envs/{env}/rollback`: a new revision whose content equals an earlier one.
//! History is never rewritten: the entities live at the target revision are upserted as
//! they were stored then (credentials stay sealed, with their digests and labels), the ones
//! created since are deleted, and the whole is committed as one revision with
//! `Operation::Rollback`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use switchyard_config::parse_str;
use switchyard_engine::compile;
use switchyard_store::{AppliedChange, Change, CommitRequest, EntityRecord, Operation, StoreError};

use super::batch::{BatchResponse, PlannedChange};
use super::openapi::{
    AUDIT_FAILED, BAD_REQUEST_BODY, FORBIDDEN, SERVER_ERROR, UNAUTHORIZED, UNSUPPORTED_MEDIA_TYPE,
};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The revision whose content the environment returns to (1 ..= current).
    pub to_revision: u64,
    /// Refuse with 409 unless the environment is still at this revision.
    #[serde(default)]
    pub expected_revision: Option<u64>,
    /// Validate and report what would change, without writing.
    #[serde(default)]
    pub dry_run: bool,
}

/// How often a rollback that did not pin a revision is recomputed and retried when another
/// write lands between its computation and its commit.
const MAX_ATTEMPTS: usize = 5;

/// Roll an environment back to an earlier revision's content, as a new revision.
///
/// The entities live at `to_revision` are restored exactly as they were stored (same
/// digests), the entities that did not exist then are deleted, and the result — which must
/// compile as a whole — is committed as one new revision (`rollback` in the audit trail,
/// detail "rollback to revision R"). `changed` is false, and nothing is written, when the
/// environment already has that content (e.g. `to_revision` is the current revision).
#[utoipa::path(
    post,
    path = "/v1/envs/{env}/rollback",
    operation_id = "rollback",
    tag = "entities",
    params(("env" = String, Path, description = "Environment name")),
    request_body = RollbackRequest,
    responses(
        (status = 200, description = "Committed (or, with `dry_run`, planned); `changed` is false when the environment already has that content", body = BatchResponse),
        (status = 400, description = BAD_REQUEST_BODY, content(
            (ErrorBody = "application/json"),
            (String = "text/plain"),
        )),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = "No such environment (`unknown_environment`), or `to_revision` is past the current revision (`unknown_revision`)", body = ErrorBody),
        (status = 409, description = "The environment is no longer at `expected_revision` (`revision_conflict`)", body = ErrorBody),
        (status = 415, description = UNSUPPORTED_MEDIA_TYPE, body = String),
        (status = 422, description = "`to_revision` is 0 (`invalid_revision`), or the environment at that revision does not compile any more (`invalid_config`, every error in `details`); plain text when the JSON body does not have the expected fields", content(
            (ErrorBody = "application/json"),
            (String = "text/plain"),
        )),
        (status = 500, description = SERVER_ERROR, body = ErrorBody),
        (status = 503, description = AUDIT_FAILED, body = ErrorBody),
    )
)]
pub async fn rollback(
    State(state): State<AppState>,
    who: Principal,
    Path(env): Path<String>,
    Json(req): Json<RollbackRequest>,
) -> ApiResult<Json<BatchResponse>> {
    who.require_write(&env)?;
    let to = req.to_revision;
    if to == 0 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_revision",
            "revision 0 is the empty environment, not a revision to roll back to; \
             give --to-revision 1 or later",
        ));
    }
    let detail = format!("rollback to revision {to}");
    let mut attempt = 0;
    let outcome = loop {
        attempt += 1;
        // The current state, tombstones included (so versions are planned exactly), and
        // the revision it is at, read together.
        let (current, stored) = state.store.changes_since(&env, 0).await?;
        if to > current {
            return Err(ApiError::not_found(
                "unknown_revision",
                format!(
                    "environment {env:?} has no revision {to} (it is at revision {current}); \
                     a rollback goes back to an earlier revision"
                ),
            ));
        }
        if let Some(expected) = req.expected_revision
            && expected != current
        {
            return Err(StoreError::Conflict {
                env,
                expected,
                actual: current,
            }
            .into());
        }
        let target = state.store.entities(&env, Some(to)).await?;
        let (changes, planned) = diff(&stored, &target);
        if changes.is_empty() {
            return Ok(Json(BatchResponse {
                env,
                revision: current,
                previous_revision: current,
                changed: false,
                dry_run: req.dry_run,
                changes: Vec::new(),
                unchanged: Vec::new(),
            }));
        }
        validate(&state, &env, to, &target)?;
        if req.dry_run {
            return Ok(Json(BatchResponse {
                env,
                revision: current,
                previous_revision: current,
                changed: true,
                dry_run: true,
                changes: planned.into_iter().map(unplanned).collect(),
                unchanged: Vec::new(),
            }));
        }
        let result = state
            .store
            .commit(CommitRequest {
                env: env.clone(),
                actor: who.actor(),
                operation: Operation::Rollback,
                expected_revision: Some(current),
                changes,
                detail: Some(detail.clone()),
            })
            .await;
        match result {
            Err(StoreError::Conflict { .. })
                if req.expected_revision.is_none() && attempt < MAX_ATTEMPTS =>
            {
                tracing::debug!(env = %env, attempt, "environment moved during rollback; recomputing");
            }
            other => break other?,
        }
    };
    let changed = !outcome.changes.is_empty();
    if changed {
        super::batch::publish(&state, &who, &outcome, Operation::Rollback);
        tracing::info!(env = %env, revision = outcome.revision, to_revision = to, "rolled back");
    }
    Ok(Json(BatchResponse {
        env,
        revision: outcome.revision,
        previous_revision: outcome.previous_revision,
        changed,
        dry_run: false,
        changes: outcome.changes.into_iter().map(unplanned).collect(),
        unchanged: Vec::new(),
    }))
}

/// A rollback restores stored versions as they were: no field diff is computed.
fn unplanned(change: AppliedChange) -> PlannedChange {
    PlannedChange {
        hot: switchyard_config::plan::hotness(&change.kind),
        change,
        diff: Vec::new(),
    }
}

/// The changes that turn `stored` (every entity, tombstones included) into `target` (the
/// live entities of the earlier revision), and what committing them would do.
fn diff(stored: &[EntityRecord], target: &[EntityRecord]) -> (Vec<Change>, Vec<AppliedChange>) {
    let now: HashMap<(&str, &str), &EntityRecord> = stored
        .iter()
        .map(|e| ((e.kind.as_str(), e.name.as_str()), e))
        .collect();
    let mut changes = Vec::new();
    let mut planned = Vec::new();
    for t in target {
        let current = now.get(&(t.kind.as_str(), t.name.as_str()));
        let (old_version, new_version) = match current {
            Some(e)
                if !e.deleted && e.digest == t.digest && e.template_digest == t.template_digest =>
            {
                continue;
            }
            Some(e) if e.deleted => (None, e.version + 1),
            Some(e) => (Some(e.version), e.version + 1),
            None => (None, 1),
        };
        changes.push(Change::Upsert {
            kind: t.kind.clone(),
            name: t.name.clone(),
            digest: t.digest.clone(),
            // As stored: a credential stays sealed, under the same key.
            manifest: t.manifest.clone(),
            labels: t.labels.clone(),
            template: t.template.clone(),
            template_digest: t.template_digest.clone(),
        });
        planned.push(AppliedChange {
            kind: t.kind.clone(),
            name: t.name.clone(),
            old_version,
            new_version: Some(new_version),
            digest: t.digest.clone(),
        });
    }
    for e in stored.iter().filter(|e| !e.deleted) {
        if !target.iter().any(|t| t.kind == e.kind && t.name == e.name) {
            changes.push(Change::Delete {
                kind: e.kind.clone(),
                name: e.name.clone(),
            });
            planned.push(AppliedChange {
                kind: e.kind.clone(),
                name: e.name.clone(),
                old_version: Some(e.version),
                new_version: None,
                digest: String::new(),
            });
        }
    }
    (changes, planned)
}

/// The environment as it would be after the rollback (exactly the entities of revision
/// `to`) must compile. It did at `to`, but the compiler may have grown stricter since.
fn validate(state: &AppState, env: &str, to: u64, target: &[EntityRecord]) -> ApiResult<()> {
    let mut all = Vec::with_capacity(target.len());
    let mut errors = Vec::new();
    for e in target {
        let name: Arc<str> = format!("{env}/{}/{} (revision {to})", e.kind, e.name).into();
        match parse_str(name, &state.reveal(e)?) {
            Ok(mut docs) => all.append(&mut docs),
            Err(errs) => errors.extend(errs.0.iter().map(ToString::to_string)),
        }
    }
    if errors.is_empty()
        && let Err(errs) = compile(&all, None)
    {
        errors.extend(errs.0.iter().map(ToString::to_string));
    }
    if errors.is_empty() {
        return Ok(());
    }
    Err(super::batch::invalid(
        format!("{env:?} at revision {to} does not compile any more; it cannot be rolled back to"),
        errors,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: &str, name: &str, version: u64, digest: &str, deleted: bool) -> EntityRecord {
        EntityRecord {
            kind: kind.into(),
            name: name.into(),
            version,
            revision: 1,
            digest: digest.into(),
            manifest: format!("{{\"d\":\"{digest}\"}}"),
            labels: Default::default(),
            deleted,
            template: None,
            template_digest: None,
        }
    }

    #[test]
    fn the_diff_restores_changed_recreates_deleted_and_deletes_new() {
        let stored = [
            rec("Proxy", "same", 1, "a", false),
            rec("Proxy", "changed", 2, "b2", false),
            rec("Proxy", "gone", 3, "", true),
            rec("Proxy", "new", 1, "n", false),
            rec("Proxy", "dead-then-and-now", 2, "", true),
        ];
        let target = [
            rec("Proxy", "same", 1, "a", false),
            rec("Proxy", "changed", 1, "b1", false),
            rec("Proxy", "gone", 2, "g", false),
        ];
        let (changes, planned) = diff(&stored, &target);
        let summary: Vec<_> = planned
            .iter()
            .map(|c| (c.name.as_str(), c.old_version, c.new_version))
            .collect();
        assert_eq!(
            summary,
            [
                ("changed", Some(2), Some(3)),
                ("gone", None, Some(4)),
                ("new", Some(1), None),
            ]
        );
        assert_eq!(changes.len(), 3);
        assert!(matches!(
            &changes[0],
            Change::Upsert { digest, manifest, .. } if digest == "b1" && manifest == "{\"d\":\"b1\"}"
        ));
        assert!(matches!(&changes[2], Change::Delete { name, .. } if name == "new"));
        // Already equal: nothing.
        assert!(diff(&target, &target).0.is_empty());
    }
}
