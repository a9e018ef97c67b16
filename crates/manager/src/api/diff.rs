//! `GET /v1/envs/{env}/revisions/{rev}/diff`: what a committed revision changed, field by
//! field, computed from the retained history exactly as a `plan` computes it before the
//! commit (secret values redacted), with how each change reached the Workers.

use axum::Json;
use axum::extract::{Path, State};
use switchyard_api::admin::{PlannedChange, RevisionDiff};
use switchyard_config::plan::{ChangeClass, field_changes};
use switchyard_engine::classify;
use switchyard_store::EntityRecord;

use super::batch::or_template_only;
use super::openapi::{FORBIDDEN, SERVER_ERROR, UNAUTHORIZED};
use super::views::{pruned_is_not_found, revision_record};
use crate::auth::Principal;
use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;

/// Show what a revision changed, field by field (secret values redacted).
#[utoipa::path(
    get,
    path = "/v1/envs/{env}/revisions/{rev}/diff",
    operation_id = "getRevisionDiff",
    tag = "revisions",
    params(
        ("env" = String, Path, description = "Environment name"),
        ("rev" = u64, Path, description = "Revision number"),
    ),
    responses(
        (status = 200, description = "The fields each change of the revision changed", body = RevisionDiff),
        (status = 400, description = "`rev` is not a revision number (`bad_request`)", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = "No such environment (`unknown_environment`) or revision (`unknown_revision`), or the revision or the one before it is older than the history the Manager retains (`history_pruned`)", body = ErrorBody),
        (status = 500, description = SERVER_ERROR, body = ErrorBody),
    )
)]
pub async fn revision_diff(
    State(state): State<AppState>,
    who: Principal,
    Path((env, rev)): Path<(String, u64)>,
) -> ApiResult<Json<RevisionDiff>> {
    who.require_read(&env)?;
    state.env_info(&env).await?;
    let record = revision_record(&state, &env, rev).await?;
    let previous = rev.saturating_sub(1);
    let before = state
        .store
        .entities(&env, Some(previous))
        .await
        .map_err(pruned_is_not_found)?;
    let after = state
        .store
        .entities(&env, Some(rev))
        .await
        .map_err(pruned_is_not_found)?;
    let find = |list: &'_ [EntityRecord], c: &switchyard_api::records::AppliedChange| {
        list.iter()
            .find(|e| e.kind == c.kind && e.name == c.name)
            .cloned()
    };
    let mut changes = Vec::with_capacity(record.changes.len());
    for c in record.changes {
        let old = c.old_version.and_then(|_| find(&before, &c));
        let new = c.new_version.and_then(|_| find(&after, &c));
        let old_text = old.as_ref().map(|e| state.reveal(e)).transpose()?;
        let new_text = new.as_ref().map(|e| state.reveal(e)).transpose()?;
        let created_or_deleted = old_text.is_none() || new_text.is_none();
        // Against an empty document, a created (deleted) entity lists its top-level fields.
        let mut diff = field_changes(
            c.kind,
            Some(old_text.as_deref().unwrap_or("{}")),
            Some(new_text.as_deref().unwrap_or("{}")),
        );
        if !created_or_deleted {
            diff = or_template_only(diff);
        }
        let hot = classify::classify(c.kind, created_or_deleted, &mut diff);
        changes.push(PlannedChange {
            change: c,
            hot,
            diff,
        });
    }
    let class = changes
        .iter()
        .map(|c| c.hot.class)
        .max()
        .unwrap_or(ChangeClass::Hot);
    Ok(Json(RevisionDiff {
        env,
        revision: rev,
        previous_revision: previous,
        class,
        changes,
    }))
}
