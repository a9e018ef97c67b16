//! The OpenAPI 3.1 document of the admin API, served at `GET /v1/openapi.json`.
//!
//! Generated from the handlers' `#[utoipa::path]` attributes and the `ToSchema` /
//! `IntoParams` derives on the request and response types, so it follows the code.
//! Every operation needs the bearer token except this document itself.

use std::sync::LazyLock;

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{apply, credentials, envs, promote, rollback, sync, tokens, views};

/// Name of the security scheme (`Authorization: Bearer <token>`) in the document; the
/// `security(("bearer" = []))` below must name it (the attribute takes only a literal).
const BEARER_SCHEME: &str = "bearer";

// Descriptions of the error responses shared by many operations.
pub(super) const UNAUTHORIZED: &str = "Missing, malformed, unknown or revoked bearer token \
    (`unauthorized`), or an expired one (`token_expired`, the message says when it expired)";
pub(super) const FORBIDDEN: &str =
    "The token's role or environments do not allow this (`forbidden`)";
pub(super) const UNKNOWN_ENV: &str = "No such environment (`unknown_environment`)";
pub(super) const SERVER_ERROR: &str = "Store error (`store_error`) or another server fault";
pub(super) const AUDIT_FAILED: &str =
    "The audit record could not be written, so nothing was changed (`audit_failed`)";
pub(super) const BAD_REQUEST_BODY: &str =
    "Invalid request: a JSON error from the API, or plain text when the body is not JSON";
pub(super) const UNSUPPORTED_MEDIA_TYPE: &str =
    "The request has no `Content-Type: application/json` (plain text)";
pub(super) const UNPROCESSABLE_BODY: &str =
    "The JSON body does not have the expected fields or types (plain text)";
pub(super) const PAYLOAD_TOO_LARGE: &str = "The request body is larger than 8 MiB (plain text)";
const _: () = assert!(
    super::MAX_BODY_BYTES == 8 * 1024 * 1024,
    "update PAYLOAD_TOO_LARGE"
);
pub(super) const BAD_QUERY: &str = "Invalid query parameter (plain text)";

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
        apply::apply,
        promote::promote,
        credentials::set_value,
        rollback::rollback,
        views::entities,
        views::revisions,
        views::revision,
        views::workers,
        sync::pull,
        sync::events,
        sync::report,
        views::audit,
        tokens::list,
        tokens::create,
        openapi_json,
    ),
    components(schemas(switchyard_api::sync::RevisionEvent)),
    modifiers(&BearerAuth),
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
