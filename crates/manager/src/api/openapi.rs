//! The OpenAPI 3.1 document of the admin API, served at `GET /v1/openapi.json`.
//!
//! Generated from the handlers' `#[utoipa::path]` attributes and the `ToSchema` /
//! `IntoParams` derives on the request and response types, so it follows the code.
//! Every operation needs the bearer token except this document itself.

use std::sync::LazyLock;

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    apply, canary, credentials, diff, envs, promote, rollback, rollout, stats, sync, tokens, views,
};

/// Name of the security scheme (`Authorization: Bearer <token>`) in the document; the
/// `security(("bearer" = []))` below must name it (the attribute takes only a literal).
const BEARER_SCHEME: &str = "bearer";

// Descriptions of the error responses shared by many operations. Every error answer is
// JSON (`ErrorBody`), axum's own rejections included (`crate::error::json_errors`);
// `ErrorResponses` below makes the document say so for every operation.
pub(super) const UNAUTHORIZED: &str = "Missing, malformed, unknown or revoked bearer token \
    (`unauthorized`), or an expired one (`token_expired`, the message says when it expired); \
    `WWW-Authenticate: Bearer` names the scheme";
pub(super) const FORBIDDEN: &str =
    "The token's role or environments do not allow this (`forbidden`)";
pub(super) const UNKNOWN_ENV: &str = "No such environment (`unknown_environment`)";
pub(super) const SERVER_ERROR: &str = "Store error (`store_error`) or another server fault";
pub(super) const AUDIT_FAILED: &str =
    "The audit record could not be written, so nothing was changed (`audit_failed`)";
pub(super) const BAD_REQUEST_BODY: &str =
    "Invalid request (`bad_request`): a field value, or a body that is not JSON";
pub(super) const UNSUPPORTED_MEDIA_TYPE: &str =
    "The request has no `Content-Type: application/json` (`unsupported_media_type`)";
pub(super) const UNPROCESSABLE_BODY: &str =
    "The JSON body does not have the expected fields or types (`invalid_body`)";
pub(super) const PAYLOAD_TOO_LARGE: &str =
    "The request body is larger than 8 MiB (`payload_too_large`)";
const _: () = assert!(
    super::MAX_BODY_BYTES == 8 * 1024 * 1024,
    "update PAYLOAD_TOO_LARGE"
);
pub(super) const BAD_QUERY: &str =
    "A query or path parameter that does not parse or is out of range (`bad_request`)";
const TOO_MANY_AUTH_FAILURES: &str = "This address sent too many wrong tokens and has failed \
    requests waiting: refused without checking the token (`too_many_auth_failures`); \
    `Retry-After` says when to try again";
/// Environment names, as `POST /v1/envs` accepts them (`super::check_env_name`).
pub(super) const ENV_NAME: &str = "^[a-z0-9][a-z0-9-]{0,62}$";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchyard Manager API",
        version = env!("CARGO_PKG_VERSION"),
        description = "The admin API of the Switchyard Manager (control plane): environments, \
            entities, revisions, Workers' sync and reports, audit trail and tokens. Every \
            operation except this document needs `Authorization: Bearer <token>`."
    ),
    paths(
        envs::list,
        envs::create,
        envs::get_one,
        envs::delete,
        apply::apply,
        rollout::start,
        rollout::status,
        canary::status,
        canary::promote,
        canary::abort,
        promote::promote,
        credentials::set_value,
        rollback::rollback,
        views::entities,
        views::revisions,
        views::revision,
        diff::revision_diff,
        views::workers,
        sync::pull,
        sync::events,
        sync::report,
        stats::report,
        stats::series,
        views::audit,
        tokens::list,
        tokens::create,
        tokens::revoke,
        openapi_json,
    ),
    components(schemas(switchyard_api::sync::RevisionEvent)),
    modifiers(&BearerAuth, &ErrorResponses),
    security(("bearer" = [])),
    tags(
        (name = "environments", description = "Environments and their current revision"),
        (name = "entities", description = "Applying manifests, rolling back, and reading entities"),
        (name = "revisions", description = "Revisions and how they propagated to Workers"),
        (name = "workers", description = "Worker pull, notifications and ACK/NACK reports"),
        (name = "audit", description = "The audit trail"),
        (name = "tokens", description = "API tokens (admin only)"),
        (name = "meta", description = "This document"),
    )
)]
pub struct ApiDoc;

/// One event of `GET /v1/envs/{env}/events` as an SSE parser reads it (the document's
/// schema of the stream's items; heartbeats are comments, not events).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct RevisionEventFrame {
    /// Always `revision`.
    #[schema(pattern = "^revision$")]
    event: String,
    /// The revision, in decimal.
    #[schema(pattern = "^[0-9]+$")]
    id: String,
    /// A `RevisionEvent` as JSON.
    data: String,
}

/// Declares the bearer security scheme that every operation refers to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                BEARER_SCHEME,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(
                            "An API token: `Authorization: Bearer <token>`. Admins create \
                             tokens with `POST /v1/tokens` or `switchyard manager token create`.",
                        ))
                        .build(),
                ),
            );
    }
}

/// Makes the document state what the server does with every request it refuses:
///
/// - every error response is the JSON `ErrorBody` (never plain text);
/// - a 401 carries `WWW-Authenticate: Bearer`;
/// - an operation with a JSON body lists 400 (not JSON), 413, 415 and 422 (wrong fields);
/// - one with query parameters, or path parameters other than text, lists 400;
/// - every operation that needs a token lists 429 (`too_many_auth_failures`, `Retry-After`);
/// - every `{env}` path parameter has the pattern of environment names.
struct ErrorResponses;

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
        use utoipa::openapi::{Content, HeaderBuilder, RefOr, Response};

        let error_body = || {
            Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                "ErrorBody",
            ))))
        };
        let text_header = |description: &str| {
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .description(Some(description))
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                let params = op.parameters.as_deref().unwrap_or_default();
                let parses_params = params.iter().any(|p| match p.parameter_in {
                    ParameterIn::Query => true,
                    ParameterIn::Path => !matches!(
                        &p.schema,
                        Some(RefOr::T(Schema::Object(o))) if o.schema_type == Type::String.into()
                    ),
                    _ => false,
                });
                let public = op.security.as_ref().is_some_and(|s| {
                    s.iter()
                        .all(|r| serde_json::to_value(r).is_ok_and(|v| v == serde_json::json!({})))
                });
                let mut add = |status: &str, description: &str| {
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| RefOr::T(Response::new(description)));
                };
                if op.request_body.is_some() {
                    add("400", BAD_REQUEST_BODY);
                    add("413", PAYLOAD_TOO_LARGE);
                    add("415", UNSUPPORTED_MEDIA_TYPE);
                    add("422", UNPROCESSABLE_BODY);
                }
                if parses_params {
                    add("400", BAD_QUERY);
                }
                if !public {
                    add("429", TOO_MANY_AUTH_FAILURES);
                }
                for (status, response) in &mut op.responses.responses {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    if !(status.starts_with('4') || status.starts_with('5')) {
                        continue;
                    }
                    response.content.clear();
                    response
                        .content
                        .insert("application/json".to_string(), error_body());
                    match status.as_str() {
                        "401" => {
                            response.headers.insert(
                                "WWW-Authenticate".to_string(),
                                text_header("`Bearer realm=\"switchyard\"`"),
                            );
                        }
                        "429" => {
                            response.headers.insert(
                                "Retry-After".to_string(),
                                text_header("Seconds to wait before retrying"),
                            );
                        }
                        _ => {}
                    }
                }
                for p in op.parameters.iter_mut().flatten() {
                    if p.parameter_in == ParameterIn::Path
                        && p.name == "env"
                        && let Some(RefOr::T(Schema::Object(o))) = &mut p.schema
                    {
                        o.pattern = Some(ENV_NAME.to_string());
                    }
                }
            }
        }
    }
}

/// Built once, on first request.
static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(ApiDoc::openapi);

/// This OpenAPI document (no token needed).
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "getOpenApi",
    tag = "meta",
    security(),
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API", body = serde_json::Value),
    )
)]
pub async fn openapi_json() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(&*DOCUMENT)
}
