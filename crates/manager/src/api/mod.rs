//! The admin REST API under `/v1`.

pub(crate) mod access;
mod apply;
mod batch;
mod canary;
mod credentials;
mod diff;
mod envs;
mod openapi;
mod promote;
pub(crate) mod rollback;
mod rollout;
mod stats;
pub(crate) mod sync;
mod tokens;
mod views;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::map_response;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use switchyard_telemetry::exposition::Format;

use crate::error::{ApiError, json_errors};
use crate::state::AppState;
use switchyard_api::ErrorCode;

/// Largest request body accepted (an apply of many manifests fits comfortably).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Runs the request in the context of its caller's trace (`traceparent`), if any.
async fn trace_context(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use opentelemetry::trace::FutureExt as _;
    let cx = switchyard_telemetry::trace_context::remote_context(req.headers());
    next.run(req).with_context(cx).await
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/envs", get(envs::list).post(envs::create))
        .route("/v1/envs/{env}", get(envs::get_one).delete(envs::delete))
        .route("/v1/envs/{env}/apply", post(apply::apply))
        .route("/v1/envs/{env}/promote", post(promote::promote))
        .route("/v1/envs/{env}/canary", get(canary::status))
        .route("/v1/envs/{env}/canary/promote", post(canary::promote))
        .route("/v1/envs/{env}/canary/abort", post(canary::abort))
        .route("/v1/envs/{env}/rollback", post(rollback::rollback))
        .route(
            "/v1/envs/{env}/rollout",
            get(rollout::status).post(rollout::start),
        )
        .route("/v1/envs/{env}/entities", get(views::entities))
        .route(
            "/v1/envs/{env}/credentials/{name}/value",
            put(credentials::set_value),
        )
        .route("/v1/envs/{env}/revisions", get(views::revisions))
        .route("/v1/envs/{env}/revisions/{rev}", get(views::revision))
        .route(
            "/v1/envs/{env}/revisions/{rev}/diff",
            get(diff::revision_diff),
        )
        .route("/v1/envs/{env}/workers", get(views::workers))
        .route("/v1/envs/{env}/sync", get(sync::pull))
        .route("/v1/envs/{env}/events", get(sync::events))
        .route("/v1/envs/{env}/reports", post(sync::report))
        .route(
            "/v1/envs/{env}/stats",
            get(stats::series).post(stats::report),
        )
        .route("/v1/audit", get(views::audit))
        .route("/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/v1/tokens/{id}", delete(tokens::revoke))
        .route("/v1/openapi.json", get(openapi::openapi_json))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(crate::ui::routes())
        .fallback(|| async {
            ApiError::not_found(
                ErrorCode::NotFound,
                "no such endpoint; the API lives under /v1",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::log_requests,
        ))
        // A request's `traceparent` is the parent of the spans it makes (an apply's).
        .layer(axum::middleware::from_fn(trace_context))
        // Outermost: axum's own rejections (and 405s) become JSON errors too.
        .layer(map_response(json_errors))
        .with_state(state)
}

/// Ready when the database answers: a Manager that cannot reach it answers 503 here (a
/// load balancer sends writes elsewhere) and to every write.
async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response(),
    }
}

async fn metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    for (env, n) in state.fanout.connected_counts() {
        state
            .metrics
            .connected
            .get_or_create(&[("env", env)])
            .set(n as i64);
    }
    let format = Format::negotiate(
        headers
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    (
        [(CONTENT_TYPE, format.content_type())],
        state.metrics.encode(format),
    )
}

/// Environment names: lowercase letters, digits and '-', 1..=63 characters.
pub fn check_env_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid environment name {name:?}: use lowercase letters, digits and '-'"
        )))
    }
}
