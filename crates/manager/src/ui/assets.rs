//! The dashboard's files, embedded in the binary (no build step, no CDN): `GET /ui/` is
//! `index.html`, `GET /ui/NAME` one of the modules or the stylesheet. Every `/ui` answer
//! carries a strict Content-Security-Policy (no inline scripts or styles, nothing from
//! another origin) and is not cached without revalidation.

use axum::Router;
use axum::extract::Request;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

/// The policy of every `/ui` answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

const JS: &str = "text/javascript; charset=utf-8";

/// Name under `/ui/`, content type, bytes.
const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../ui/index.html"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../ui/app.css"),
    ),
    ("app.js", JS, include_str!("../../ui/app.js")),
    ("api.js", JS, include_str!("../../ui/api.js")),
    ("dom.js", JS, include_str!("../../ui/dom.js")),
    ("views.js", JS, include_str!("../../ui/views.js")),
    ("live.js", JS, include_str!("../../ui/live.js")),
    ("charts.js", JS, include_str!("../../ui/charts.js")),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../../ui/favicon.svg"),
    ),
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(redirect))
        .route("/ui/", get(|| async { file("index.html") }))
        .route(
            "/ui/{name}",
            get(
                |axum::extract::Path(name): axum::extract::Path<String>| async move { file(&name) },
            ),
        )
        .layer(axum::middleware::from_fn(security_headers))
}

async fn redirect() -> Response {
    (StatusCode::PERMANENT_REDIRECT, [(LOCATION, "/ui/")]).into_response()
}

fn file(name: &str) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => ([(CONTENT_TYPE, *content_type)], *body).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [(CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no such file in the dashboard\n",
        )
            .into_response(),
    }
}

/// The headers of every `/ui` answer.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    for (name, value) in [
        (CONTENT_SECURITY_POLICY, CSP),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (REFERRER_POLICY, "no-referrer"),
        (X_FRAME_OPTIONS, "DENY"),
        (CACHE_CONTROL, "no-cache"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_an_asset_imports_is_embedded() {
        for (name, _, body) in FILES {
            for line in body.lines() {
                let line = line.trim();
                if let Some(rest) = line.strip_prefix("import ") {
                    let spec = rest.rsplit("from").next().unwrap_or("");
                    let spec = spec.trim().trim_end_matches(';').trim_matches(['"', '\'']);
                    let file = spec.trim_start_matches("./");
                    assert!(
                        FILES.iter().any(|(n, _, _)| *n == file),
                        "{name} imports {spec}, which is not embedded"
                    );
                }
            }
        }
    }
}
