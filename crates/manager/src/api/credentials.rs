//! `PUT /v1/envs/{env}/credentials/{name}/value`: set or rotate the value of a `secret`
//! credential without a manifest (`switchyard credential set|rotate`).
//!
//! The change takes the same path as an apply: the credential's manifest (the stored one
//! with the new value, or a new `type: secret` one), sealed, its digest of the clear
//! canonical JSON, the whole environment validated with it, one commit (one revision, one
//! audit record), then the notification to the Workers. The value is never echoed: not in
//! the answer, the logs, nor the audit record (which holds the digest).
//!
//! It goes through the same batch path as `apply` (`batch.rs`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use switchyard_api::records::Operation;
use switchyard_config::Kind;
use switchyard_config::manifest::{API_VERSION, CredentialSpec};
use switchyard_config::{Located, Manifest, parse_str};
use switchyard_store::EntityRecord;

use super::batch::{self, Batch, Prepared, Upsert, invalid};
use super::openapi::{AUDIT_FAILED, BAD_REQUEST_BODY, FORBIDDEN, SERVER_ERROR, UNAUTHORIZED};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;
use switchyard_api::ErrorCode;
use switchyard_api::admin::{CredentialValueRequest, CredentialValueResponse};

/// Set or rotate the value of a `secret` credential, as one revision.
///
/// `rotate: false` creates a `type: secret` credential when none has this name, or replaces
/// the value of the existing one. `rotate: true` requires an existing credential and a value
/// different from the current one. Credentials of other types (`api-keys`, `basic-users`,
/// `jwks`) are changed through manifests. The environment is validated with the change, and
/// the commit writes one revision and one audit record (operation `set-credential` or
/// `rotate-credential`); Workers are notified as after an apply. The value is never returned.
#[utoipa::path(
    put,
    path = "/v1/envs/{env}/credentials/{name}/value",
    operation_id = "setCredentialValue",
    tag = "entities",
    params(
        ("env" = String, Path, description = "Environment name"),
        ("name" = String, Path, description = "Credential name"),
    ),
    request_body = CredentialValueRequest,
    responses(
        (status = 200, description = "Committed; `changed` is false when `set` gave the current value", body = CredentialValueResponse),
        (status = 400, description = BAD_REQUEST_BODY, body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = "No such environment (`unknown_environment`), or a rotate of a credential that does not exist (`unknown_credential`)", body = ErrorBody),
        (status = 409, description = "A rotate with the value the credential already has (`same_value`)", body = ErrorBody),
        (status = 422, description = "The credential is not of type `secret` (`not_a_secret`: change it through a manifest), or the change would leave the environment invalid (`invalid_config`, every error in `details`), or a JSON body without the expected fields (`invalid_body`)", body = ErrorBody),
        (status = 500, description = SERVER_ERROR, body = ErrorBody),
        (status = 503, description = AUDIT_FAILED, body = ErrorBody),
    )
)]
pub async fn set_value(
    State(state): State<AppState>,
    who: Principal,
    Path((env, name)): Path<(String, String)>,
    Json(req): Json<CredentialValueRequest>,
) -> ApiResult<Json<CredentialValueResponse>> {
    who.require_write(&env)?;
    if req.value.is_empty() {
        return Err(ApiError::bad_request(
            "empty value: a secret cannot be empty",
        ));
    }
    if name.is_empty() {
        return Err(ApiError::bad_request("empty credential name"));
    }
    let prepare = |stored: &[EntityRecord]| {
        let current = stored
            .iter()
            .find(|e| e.kind == Kind::Credential && e.name == name && !e.deleted);
        let manifest = credential_with_value(&state, &env, &name, current, &req)?;
        Ok(Prepared {
            upserts: vec![Upsert::Manifest {
                manifest: read_manifest(&name, &manifest)?,
                // The value is literal now: a template it came from no longer applies.
                template: None,
                labels: current.map(|e| e.labels.clone()),
            }],
            delete: Vec::new(),
        })
    };
    let response = batch::run(
        &state,
        &who,
        &env,
        Batch {
            prepare: &prepare,
            expected_revision: None,
            dry_run: false,
            refuse_empty: true,
            invalid_message: None,
            field_diffs: true,
            canary: Default::default(),
            operation: if req.rotate {
                Operation::RotateCredential
            } else {
                Operation::SetCredential
            },
            detail: None,
        },
    )
    .await?;
    let applied = response.changes.first().map(|c| &c.change);
    let (old_version, new_version) = match applied {
        Some(c) => (c.old_version, c.new_version.unwrap_or_default()),
        None => {
            // `set` with the current value: nothing was written.
            let v = state
                .store
                .entities(&env, Some(response.revision))
                .await?
                .into_iter()
                .find(|e| e.kind == Kind::Credential && e.name == name)
                .map(|e| e.version)
                .unwrap_or_default();
            (Some(v), v)
        }
    };
    Ok(Json(CredentialValueResponse {
        changed: response.changed,
        created: applied.is_some_and(|c| c.old_version.is_none()),
        rotated: req.rotate && response.changed,
        env,
        name,
        revision: response.revision,
        previous_revision: response.previous_revision,
        old_version,
        new_version,
    }))
}

/// The credential's manifest with the new value: the stored one (which must be a `secret`;
/// a rotation needs a different value), or a new `type: secret` one (`set` only).
fn credential_with_value(
    state: &AppState,
    env: &str,
    name: &str,
    current: Option<&EntityRecord>,
    req: &CredentialValueRequest,
) -> ApiResult<serde_json::Value> {
    let Some(e) = current else {
        if req.rotate {
            return Err(ApiError::not_found(
                ErrorCode::UnknownCredential,
                format!(
                    "environment {env:?} has no credential {name:?} to rotate; \
                     create it with `switchyard credential set`"
                ),
            ));
        }
        return Ok(serde_json::json!({
            "apiVersion": API_VERSION,
            "kind": Kind::Credential.as_str(),
            "metadata": { "name": name },
            "spec": { "type": "secret", "value": req.value },
        }));
    };
    let clear = state.reveal(e)?;
    let mut json: serde_json::Value = serde_json::from_str(&clear).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::StoreError,
            format!("stored credential {name:?} is not JSON"),
        )
    })?;
    let kind = json
        .pointer("/spec/type")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    if kind != "secret" {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::NotASecret,
            format!(
                "credential {name:?} in {env:?} is of type {kind}, not secret: \
                 change it through a manifest (switchyard apply)"
            ),
        ));
    }
    if req.rotate && json.pointer("/spec/value") == Some(&req.value.clone().into()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::SameValue,
            format!(
                "credential {name:?} in {env:?} already has this value: \
                 a rotation needs a new value"
            ),
        ));
    }
    json["spec"]["value"] = req.value.clone().into();
    Ok(json)
}

/// The credential manifest read as an apply reads it (the value never appears in errors:
/// the manifest is built from JSON values, so it always reads).
fn read_manifest(name: &str, json: &serde_json::Value) -> ApiResult<Located<Manifest>> {
    // YAML-safe JSON: the value may hold characters YAML does not allow raw.
    let text = switchyard_config::manifest::json_text::to_string(json).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            format!("cannot write the credential manifest: {e}"),
        )
    })?;
    let docs = parse_str(format!("credential {name:?}").into(), &text).map_err(|errors| {
        invalid(
            format!("credential {name:?} does not read as a manifest"),
            errors.0.iter().map(ToString::to_string).collect(),
        )
    })?;
    let mut docs = docs.into_iter();
    match (docs.next(), docs.next()) {
        (Some(m), None) if matches!(&m.value, Manifest::Credential(c) if matches!(c.spec, CredentialSpec::Secret { .. })) => {
            Ok(m)
        }
        _ => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "the credential manifest did not read back as one secret",
        )),
    }
}
