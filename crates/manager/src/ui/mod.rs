//! The operator's dashboard under `/ui/` (see `docs/dashboard.md`): embedded assets that
//! call the admin API with the viewer's token, and a stream telling them when to look again.

mod stream;

use axum::Router;

use crate::state::AppState;

/// The dashboard's routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/ui/stream", axum::routing::get(stream::stream))
}
