//! `POST /v1/envs/{env}/apply`: one batch of manifests, validated against the whole
//! environment, committed as one revision (or nothing, when nothing changed).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use switchyard_api::records::Operation;
use switchyard_config::for_env::{EnvSource, resolve_template, resolve_texts};
use switchyard_store::{CanaryCommit, EntityRecord};

use super::batch::{self, Batch, Prepared, Upsert, invalid};
use super::openapi::{
    AUDIT_FAILED, BAD_REQUEST_BODY, FORBIDDEN, SERVER_ERROR, UNAUTHORIZED, UNKNOWN_ENV,
};
use crate::auth::Principal;
use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;
use switchyard_api::admin::ApplyRequest;
use switchyard_api::admin::BatchResponse;

/// Apply a batch of manifests to an environment as one revision.
///
/// The batch is validated against the whole environment (stored entities overlaid with the
/// batch must compile) and committed as one revision, or nothing when nothing changed.
/// A dry run lists each change with its field-level diff (secrets redacted) and whether it
/// is applied hot. When the batch changes the environment's variables, deployed entities
/// whose templates use them are re-resolved in the same revision.
#[utoipa::path(
    post,
    path = "/v1/envs/{env}/apply",
    operation_id = "apply",
    tag = "entities",
    params(("env" = String, Path, description = "Environment name")),
    request_body = ApplyRequest,
    responses(
        (status = 200, description = "Committed (or, with `dry_run`, planned); `changed` is false when nothing changed", body = BatchResponse),
        (status = 400, description = BAD_REQUEST_BODY, body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = UNKNOWN_ENV, body = ErrorBody),
        (status = 409, description = "The environment is no longer at `expected_revision` (`revision_conflict`)", body = ErrorBody),
        (status = 422, description = "Invalid manifests, or the change would leave the environment invalid (`invalid_config`, every error in `details`), or a JSON body without the expected fields (`invalid_body`)", body = ErrorBody),
        (status = 500, description = SERVER_ERROR, body = ErrorBody),
        (status = 503, description = AUDIT_FAILED, body = ErrorBody),
    )
)]
pub async fn apply(
    State(state): State<AppState>,
    who: Principal,
    Path(env): Path<String>,
    Json(req): Json<ApplyRequest>,
) -> ApiResult<Json<BatchResponse>> {
    who.require_write(&env)?;
    let response = commit_manifests(&state, &who, &env, &req, Operation::Apply).await?;
    Ok(Json(response))
}

/// An apply's write (`operation` `Apply`, or `Rollout`, which may carry restart-required
/// changes).
pub async fn commit_manifests(
    state: &AppState,
    who: &Principal,
    env: &str,
    req: &ApplyRequest,
    operation: Operation,
) -> ApiResult<BatchResponse> {
    let texts: Vec<(Arc<str>, String)> = req
        .manifests
        .iter()
        .enumerate()
        .map(|(i, t)| (Arc::<str>::from(format!("manifests[{i}]")), t.clone()))
        .collect();
    let prepare = |stored: &[EntityRecord]| {
        let upserts = prepare(state, env, &texts, stored)?;
        let delete = batch::check_deletions(&upserts, &req.delete)?;
        Ok(Prepared { upserts, delete })
    };
    batch::run(
        state,
        who,
        env,
        Batch {
            prepare: &prepare,
            expected_revision: req.expected_revision,
            dry_run: req.dry_run,
            operation,
            detail: None,
            refuse_empty: true,
            invalid_message: None,
            field_diffs: true,
            canary: match &req.canary {
                Some(spec) => CanaryCommit::Start(spec.clone()),
                None => CanaryCommit::None,
            },
        },
    )
    .await
}

/// `${env:…}` is the applying process's business, never the Manager's.
pub const NO_PROCESS_ENV: &str = "`${env:…}` references are filled in by `switchyard apply` from its own environment; the Manager does not read its environment for manifests";

/// The request's manifests resolved for `env`, plus the deployed entities whose templates
/// resolve differently when the request changes the environment's variables.
fn prepare(
    state: &AppState,
    env: &str,
    texts: &[(Arc<str>, String)],
    stored: &[EntityRecord],
) -> ApiResult<Vec<Upsert>> {
    let kept = batch::stored_variables(state, env, stored)?;
    let resolved = resolve_texts(
        texts,
        env,
        kept.as_ref(),
        &EnvSource::Refuse(NO_PROCESS_ENV),
    )
    .map_err(|e| {
        invalid(
            "invalid manifests".to_string(),
            e.0.iter().map(ToString::to_string).collect(),
        )
    })?;
    if let Some(other) = resolved.skipped_environments.first() {
        return Err(invalid(
            "an Environment document for another environment".to_string(),
            vec![format!(
                "kind: Environment {other:?} was sent in an apply to {env:?}: send only {env:?}'s (the CLI does)"
            )],
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for m in &resolved.manifests {
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
    let mut upserts: Vec<Upsert> = resolved
        .manifests
        .into_iter()
        .zip(resolved.templates)
        .map(|(manifest, template)| Upsert::Manifest {
            template: uses_variables(&template).then_some(template),
            manifest,
            labels: None,
        })
        .collect();
    // New variables: deployed templates that use them follow in the same revision.
    if let Some(vars) = resolved
        .variables
        .as_ref()
        .filter(|v| Some(*v) != kept.as_ref())
    {
        upserts.extend(re_resolved(state, env, stored, &upserts, vars)?);
    }
    Ok(upserts)
}

fn uses_variables(template: &str) -> bool {
    !switchyard_config::env_refs::variables_in(template).is_empty()
}

/// Deployed entities not in the batch whose templates resolve differently with `vars`.
fn re_resolved(
    state: &AppState,
    env: &str,
    stored: &[EntityRecord],
    batch: &[Upsert],
    vars: &BTreeMap<String, String>,
) -> ApiResult<Vec<Upsert>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for e in stored {
        if e.deleted {
            continue;
        }
        let Some(template) = state.reveal_template(e)? else {
            continue;
        };
        if batch.iter().any(|u| match u {
            Upsert::Manifest { manifest, .. } => {
                manifest.value.kind() == e.kind && manifest.value.name() == e.name
            }
            Upsert::Restore(_) => false,
        }) {
            continue;
        }
        let name: Arc<str> = format!("{env}/{}/{} (deployed template)", e.kind, e.name).into();
        match resolve_template(&name, &template, env, vars, NO_PROCESS_ENV) {
            Ok(m) if m.digest == e.digest || state.keyed_digest(env, &m) == e.digest => {}
            Ok(m) => out.push(Upsert::Manifest {
                manifest: m,
                template: Some(template),
                labels: Some(e.labels.clone()),
            }),
            Err(es) => errors.extend(es.0.iter().map(ToString::to_string)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(invalid(
            format!("the new variables of {env:?} do not fit its deployed entities"),
            errors,
        ))
    }
}
