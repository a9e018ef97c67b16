//! `GET /ui/stream?env=NAME`: what the dashboard listens to instead of polling. An SSE
//! stream that says `changed` (with a version that only grows) when the page should look
//! again — at once, then after each revision announced, Worker report recorded, Worker
//! connecting or going away here — and carries nothing else: the page reads what changed
//! through the admin API, with the same token, so roles and environment scopes apply as
//! they do everywhere. Bursts are folded: a viewer gets the latest version, not every bump.

use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::Deserialize;
use tokio_stream::wrappers::WatchStream;
use tokio_stream::{Stream, StreamExt};

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::state::AppState;

/// `?env=`: the environment to watch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    env: String,
}

pub async fn stream(
    State(state): State<AppState>,
    who: Principal,
    Query(query): Query<StreamQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    who.require_read(&query.env)?;
    state.env_info(&query.env).await?;
    let env = query.env;
    let changes = WatchStream::new(state.fanout.watch_changes(&env));
    // Ends the stream when the Manager shuts down (as the Workers' streams do).
    let shutdown = state.shutdown.clone();
    let stop = tokio_stream::once(()).then(move |()| {
        let mut shutdown = shutdown.clone();
        async move {
            let _ = shutdown.wait_for(|s| *s).await;
            None
        }
    });
    let events = changes
        .map(Some)
        .merge(stop)
        .take_while(Option::is_some)
        .filter_map(move |version| {
            version.map(|v| {
                Ok(Event::default()
                    .event("changed")
                    .data(serde_json::json!({ "env": env, "version": v }).to_string()))
            })
        });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(state.heartbeat).text("heartbeat")))
}
