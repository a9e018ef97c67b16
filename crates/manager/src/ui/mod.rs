//! The operator's dashboard under `/ui/` (see `docs/dashboard.md`): static assets embedded
//! in the binary (`assets.rs`), rendered in the browser from the admin API's JSON with the
//! viewer's token, and a stream telling the page when to look again (`stream.rs`).

mod assets;
mod stream;

use axum::Router;

use crate::state::AppState;

/// The dashboard's routes, merged into the Manager's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/stream", axum::routing::get(stream::stream))
        .merge(assets::routes())
}
