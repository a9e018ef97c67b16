//! `POST /v1/envs/{env}/rollback`: a new revision whose content equals an earlier one.
//! History is never rewritten: the entities live at the target revision are upserted as
//! they were stored then (credentials stay sealed, with their digests and labels), the ones
//! created since are deleted, and the whole is committed as one revision with
//! `Operation::Rollback`.

use std::collections::HashSet;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use switchyard_api::admin::BatchResponse;
use switchyard_api::records::Operation;
use switchyard_config::Kind;
use switchyard_store::{CanaryCommit, EntityRecord, StoreError};

use super::batch::{self, Batch, Prepared, Upsert};
use super::openapi::{
    AUDIT_FAILED, BAD_REQUEST_BODY, FORBIDDEN, SERVER_ERROR, UNAUTHORIZED, UNKNOWN_ENV,
};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;
use switchyard_api::ErrorCode;
use switchyard_api::admin::RollbackRequest;

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
        (status = 400, description = BAD_REQUEST_BODY, body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = UNKNOWN_ENV, body = ErrorBody),
        (status = 409, description = "The environment is no longer at `expected_revision` (`revision_conflict`), or `to_revision` is past its current revision (`unknown_revision`)", body = ErrorBody),
        (status = 422, description = "`to_revision` is 0 (`invalid_revision`) or older than the history the Manager retains (`history_pruned`), or the environment at that revision does not compile any more (`invalid_config`, every error in `details`), or a JSON body without the expected fields (`invalid_body`)", body = ErrorBody),
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
            ErrorCode::InvalidRevision,
            "revision 0 is the empty environment, not a revision to roll back to; \
             give --to-revision 1 or later",
        ));
    }
    let current = state.env_info(&env).await?.revision;
    if to > current {
        // The environment exists; its state is what refuses (as a stale expected revision).
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::UnknownRevision,
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
    let response = restore(
        &state,
        &who,
        &env,
        Restore {
            to,
            expected_revision: req.expected_revision,
            dry_run: req.dry_run,
            operation: Operation::Rollback,
            detail: format!("rollback to revision {to}"),
            canary: Default::default(),
        },
    )
    .await?;
    if response.changed && !response.dry_run {
        tracing::info!(env = %env, revision = response.revision, to_revision = to, "rolled back");
    }
    Ok(Json(response))
}

/// A return to an earlier revision's content: a rollback, or a canary rolled back or
/// aborted (which ends it in the same commit).
pub struct Restore {
    pub to: u64,
    pub expected_revision: Option<u64>,
    pub dry_run: bool,
    pub operation: Operation,
    pub detail: String,
    pub canary: CanaryCommit,
}

/// Commits revision `r.to`'s content as a new revision, through the one write path.
pub async fn restore(
    state: &AppState,
    who: &Principal,
    env: &str,
    r: Restore,
) -> ApiResult<BatchResponse> {
    // History never changes: revision `to`'s content is read once.
    let target = state.store.entities(env, Some(r.to)).await?;
    let prepare = |stored: &[EntityRecord]| Ok(diff(stored, &target));
    batch::run(
        state,
        who,
        env,
        Batch {
            prepare: &prepare,
            expected_revision: r.expected_revision,
            dry_run: r.dry_run,
            operation: r.operation,
            detail: Some(r.detail),
            refuse_empty: false,
            invalid_message: Some(format!(
                "{env:?} at revision {} does not compile any more; it cannot be rolled back to",
                r.to
            )),
            field_diffs: false,
            canary: r.canary,
        },
    )
    .await
}

/// What turns `stored` (the live entities now) into `target` (the live entities of the
/// earlier revision): the target's entities restored as they were stored (unchanged ones
/// are skipped by the batch), and the ones created since deleted.
fn diff(stored: &[EntityRecord], target: &[EntityRecord]) -> Prepared {
    let wanted: HashSet<(Kind, &str)> = target.iter().map(|t| (t.kind, t.name.as_str())).collect();
    Prepared {
        upserts: target.iter().cloned().map(Upsert::Restore).collect(),
        delete: stored
            .iter()
            .filter(|e| !e.deleted && !wanted.contains(&(e.kind, e.name.as_str())))
            .map(|e| (e.kind, e.name.clone()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: Kind, name: &str, version: u64, digest: &str, deleted: bool) -> EntityRecord {
        EntityRecord {
            kind,
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

    /// The versions each change gets are the batch's (and the store's) business; see
    /// `tests/rollback.rs` for a dry run over a tombstone.
    #[test]
    fn the_diff_restores_the_target_as_stored_and_deletes_what_came_since() {
        let p = Kind::Proxy;
        let stored = [
            rec(p, "same", 1, "a", false),
            rec(p, "changed", 2, "b2", false),
            rec(p, "new", 1, "n", false),
            rec(p, "dead-then-and-now", 2, "", true),
        ];
        let target = [
            rec(p, "same", 1, "a", false),
            rec(p, "changed", 1, "b1", false),
            rec(p, "gone", 2, "g", false),
        ];
        let prepared = diff(&stored, &target);
        let restored: Vec<(&str, &str, &str)> = prepared
            .upserts
            .iter()
            .map(|u| match u {
                Upsert::Restore(e) => (e.name.as_str(), e.digest.as_str(), e.manifest.as_str()),
                Upsert::Manifest { .. } => panic!("a rollback restores stored entities"),
            })
            .collect();
        assert_eq!(
            restored,
            [
                ("same", "a", "{\"d\":\"a\"}"),
                ("changed", "b1", "{\"d\":\"b1\"}"),
                ("gone", "g", "{\"d\":\"g\"}"),
            ]
        );
        assert_eq!(prepared.delete, [(Kind::Proxy, "new".to_string())]);
        // Already equal: nothing to delete (unchanged restores are skipped by the batch).
        assert!(diff(&target, &target).delete.is_empty());
    }
}
