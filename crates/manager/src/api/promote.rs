//! `POST /v1/envs/{env}/promote`: copy proxies as they are deployed in one environment
//! into another, resolved with the target's own variables, as one revision of the target.

use std::collections::BTreeSet;
use std::sync::Arc;
use switchyard_config::Kind;

use axum::Json;
use axum::extract::{Path, State};
use switchyard_api::records::Operation;
use switchyard_config::for_env::resolve_template;
use switchyard_config::manifest::PolicySpec;
use switchyard_config::{Manifest, parse_str};
use switchyard_store::EntityRecord;

use super::apply::NO_PROCESS_ENV;
use super::batch::{self, Batch, Prepared, Upsert, invalid};
use super::openapi::{AUDIT_FAILED, BAD_REQUEST_BODY, FORBIDDEN, SERVER_ERROR, UNAUTHORIZED};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;
use switchyard_api::admin::BatchResponse;
use switchyard_api::admin::PromoteRequest;

/// Promote proxies from another environment into this one.
///
/// Each selected proxy is taken as it is deployed in `from` (its template when it uses
/// variables), resolved with this environment's variables, validated with this
/// environment's entities, and committed as one revision whose audit records say
/// `promoted from <from> (revision N)`. Refused, naming what is missing, when a variable
/// is not defined here or a credential the proxies use does not exist here. Credentials
/// themselves are never copied between environments.
#[utoipa::path(
    post,
    path = "/v1/envs/{env}/promote",
    operation_id = "promote",
    tag = "entities",
    params(("env" = String, Path, description = "Target environment")),
    request_body = PromoteRequest,
    responses(
        (status = 200, description = "Committed (or, with `dry_run`, planned); `changed` is false when the target already matches", body = BatchResponse),
        (status = 400, description = BAD_REQUEST_BODY, body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = "No target environment (`unknown_environment`)", body = ErrorBody),
        (status = 409, description = "The target is no longer at `expected_revision`", body = ErrorBody),
        (status = 422, description = "No source environment `from` (`unknown_environment`); an unknown proxy in the source, a variable or credential missing in the target, or a result that would be invalid (`invalid_config`, every problem in `details`)", body = ErrorBody),
        (status = 500, description = SERVER_ERROR, body = ErrorBody),
        (status = 503, description = AUDIT_FAILED, body = ErrorBody),
    )
)]
pub async fn promote(
    State(state): State<AppState>,
    who: Principal,
    Path(env): Path<String>,
    Json(req): Json<PromoteRequest>,
) -> ApiResult<Json<BatchResponse>> {
    who.require_read(&req.from)?;
    who.require_write(&env)?;
    if req.from == env {
        return Err(ApiError::bad_request(format!(
            "cannot promote {env:?} into itself: --from and --to must differ"
        )));
    }
    state.env_info(&env).await?;
    let source_info = state.referenced_env(&req.from).await?;
    let source = state
        .store
        .entities(&req.from, Some(source_info.revision))
        .await?;
    let selected = select(&req.from, &source, &req.proxies)?;
    let detail = format!(
        "promoted from {} (revision {})",
        req.from, source_info.revision
    );
    let prepare = |target: &[EntityRecord]| {
        Ok(Prepared {
            upserts: prepare(&state, (&req.from, &env), &selected, target)?,
            delete: Vec::new(),
        })
    };
    let response = batch::run(
        &state,
        &who,
        &env,
        Batch {
            prepare: &prepare,
            expected_revision: req.expected_revision,
            dry_run: req.dry_run,
            operation: Operation::Promote,
            detail: Some(detail),
            refuse_empty: true,
            invalid_message: None,
            field_diffs: true,
            canary: Default::default(),
        },
    )
    .await?;
    Ok(Json(response))
}

/// The source's proxies named in `names` (all of them when empty).
fn select<'s>(
    from: &str,
    source: &'s [EntityRecord],
    names: &[String],
) -> ApiResult<Vec<&'s EntityRecord>> {
    let proxies: Vec<&EntityRecord> = source
        .iter()
        .filter(|e| e.kind == Kind::Proxy && !e.deleted)
        .collect();
    if names.is_empty() {
        if proxies.is_empty() {
            return Err(invalid(
                format!("nothing to promote: {from:?} has no proxies"),
                Vec::new(),
            ));
        }
        return Ok(proxies);
    }
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for n in names {
        match proxies.iter().find(|e| &e.name == n) {
            Some(e) => out.push(*e),
            None => missing.push(format!("proxy {n:?} does not exist in {from:?}")),
        }
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(invalid(format!("unknown proxy in {from:?}"), missing))
    }
}

fn prepare(
    state: &AppState,
    (from, env): (&str, &str),
    selected: &[&EntityRecord],
    target: &[EntityRecord],
) -> ApiResult<Vec<Upsert>> {
    let vars = batch::stored_variables(state, env, target)?.unwrap_or_default();
    let mut upserts = Vec::with_capacity(selected.len());
    let mut errors = Vec::new();
    for e in selected {
        // The credentials it uses, as deployed in the source, must exist in the target.
        let deployed = state.reveal(e)?;
        if let Ok(docs) = parse_str(format!("{from}/Proxy/{}", e.name).into(), &deployed) {
            for d in &docs {
                let Manifest::Proxy(p) = &d.value else {
                    continue;
                };
                let refs: BTreeSet<&str> = p
                    .spec
                    .policies
                    .iter()
                    .flat_map(PolicySpec::credential_refs)
                    .collect();
                for c in refs {
                    let present = target
                        .iter()
                        .any(|t| t.kind == Kind::Credential && t.name == c && !t.deleted);
                    if !present {
                        errors.push(format!(
                            "credential {c:?} (used by proxy {:?}) does not exist in {env:?}: create it there first, e.g. `switchyard credential set --env {env} {c} --from-env VAR`",
                            e.name
                        ));
                    }
                }
            }
        }
        // Only proxies are promoted: their templates are never sealed.
        let template = e.template.clone().unwrap_or(deployed);
        let name: Arc<str> = format!("proxy {:?} as deployed in {from:?}", e.name).into();
        match resolve_template(&name, &template, env, &vars, NO_PROCESS_ENV) {
            Ok(m) => upserts.push(Upsert::Manifest {
                manifest: m,
                template: e.template.clone(),
                labels: Some(e.labels.clone()),
            }),
            Err(es) => errors.extend(es.0.iter().map(ToString::to_string)),
        }
    }
    if errors.is_empty() {
        Ok(upserts)
    } else {
        Err(invalid(format!("cannot promote into {env:?}"), errors))
    }
}
