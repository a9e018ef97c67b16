//! One log line per admin API request: method, path, status, actor, duration and peer —
//! never a header, a query string or a body, so never a token or a secret. A request whose
//! token was refused gets none: the authentication's own line says it, rate-limited per
//! peer (`auth/throttle.rs`), so a brute force cannot flood the log through this one. Probes
//! (`/healthz`, `/readyz`) and scrapes (`/metrics`) are logged at debug level, the rest at
//! info, under the target `switchyard::admin` (`SWITCHYARD_LOG=switchyard::admin=warn`
//! silences them). Also counts `switchyard_manager_api_requests_total{method,route,code}`.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::listener::Peer;
use crate::state::AppState;

/// Where the authentication of a request writes who it was (`Principal::actor`), or that
/// its token was refused, so the request's log line can say so after the handler ran.
#[derive(Clone, Default)]
pub struct ActorSlot(Arc<OnceLock<Authenticated>>);

/// What the authentication of a request found.
enum Authenticated {
    Actor(String),
    Refused,
}

impl ActorSlot {
    pub fn set(&self, actor: String) {
        let _ = self.0.set(Authenticated::Actor(actor));
    }

    pub fn refused(&self) {
        let _ = self.0.set(Authenticated::Refused);
    }
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn log_requests(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    // A bounded label: the route's pattern (`/v1/envs/{env}/apply`), not the path.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let peer = req
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|c| c.0.addr.to_string());
    let actor = ActorSlot::default();
    req.extensions_mut().insert(actor.clone());
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    state.metrics.api_request(
        switchyard_telemetry::labels::method(&method),
        &route,
        status,
    );
    let actor = match actor.0.get() {
        Some(Authenticated::Refused) => return response,
        Some(Authenticated::Actor(a)) => a.as_str(),
        None => "-",
    };
    let peer = peer.as_deref().unwrap_or("-");
    // Probes, scrapes and Workers' periodic statistics: debug.
    let periodic = matches!(route.as_str(), "/healthz" | "/readyz" | "/metrics")
        || (route == "/v1/envs/{env}/stats" && method == axum::http::Method::POST);
    if periodic {
        tracing::debug!(target: "switchyard::admin", method = %method, path, status, actor, duration_ms, peer, "admin request");
    } else {
        tracing::info!(target: "switchyard::admin", method = %method, path, status, actor, duration_ms, peer, "admin request");
    }
    response
}
