//! The operator's dashboard under `/ui/` (issue #20): static assets embedded in the binary
//! (`assets.rs`), rendered in the browser from the admin API's JSON.

use axum::Router;

use crate::state::AppState;

mod assets;

/// The dashboard's routes, merged into the Manager's router.
pub fn routes() -> Router<AppState> {
    Router::new().merge(assets::routes())
}
