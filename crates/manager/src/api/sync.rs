//! The Worker side of the API: pull (`sync`), notifications (`events`, SSE), and
//! ACK/NACK reports.

use std::convert::Infallible;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use switchyard_api::records::{ReportStatus, WorkerReport, now_millis};
use switchyard_api::sync::{
    ReportBody, RevisionEvent, SyncEntity, SyncPayload, WORKER_ADDRESS_HEADER, WORKER_ID_HEADER,
    WORKER_INSTANCE_HEADER, WORKER_VERSION_HEADER, state_digest,
};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::{Stream, StreamExt};

use super::openapi::{
    AUDIT_FAILED, BAD_QUERY, SERVER_ERROR, UNAUTHORIZED, UNKNOWN_ENV, UNSUPPORTED_MEDIA_TYPE,
};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::fanout::{Binding, WorkerClaim};
use crate::state::AppState;
use switchyard_api::ErrorCode;
use switchyard_api::sync::PullQuery;

/// Pull what changed after a revision, with credentials in clear (Workers and admins).
///
/// Everything that changed after `since` (all live entities, `full`, when `since` is 0,
/// ahead of the Manager, or older than the history it retains), with the digest of the
/// full state to check against.
#[utoipa::path(
    get,
    path = "/v1/envs/{env}/sync",
    operation_id = "pull",
    tag = "workers",
    params(("env" = String, Path, description = "Environment name"), PullQuery),
    responses(
        (status = 200, description = "The entities that changed (all of them when `full`) and the state digest", body = SyncPayload),
        (status = 400, description = BAD_QUERY, body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = "Not a worker token of this environment, nor an admin token (`forbidden`)", body = ErrorBody),
        (status = 404, description = "No such environment (`unknown_environment`), or `at` names a revision it does not have or no longer retains (`unknown_revision`)", body = ErrorBody),
        (status = 500, description = SERVER_ERROR, body = ErrorBody),
    )
)]
pub async fn pull(
    State(state): State<AppState>,
    who: Principal,
    Path(env): Path<String>,
    Query(q): Query<PullQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    // Pulls carry credentials in clear: Workers (and admins) only.
    who.require_worker(&env)?;
    if let Some(id) = header(&headers, WORKER_ID_HEADER) {
        who.require_worker_name(&id)?;
    }
    let mut attempt = 0;
    let body = loop {
        attempt += 1;
        let info = match state.env_info(&env).await {
            Ok(info) => info,
            // The database is down: answer from what this Manager built last (the revision
            // it announced), so Workers that connect or fail over meanwhile still get it.
            // (Not a pull of an earlier revision: only the current one is kept here.)
            Err(e) if e.code == ErrorCode::StoreUnavailable && q.at.is_none() => {
                let body = answer_without_store(&state, &env, q.since).ok_or(e)?;
                break with_canary(&state, &env, body).await?;
            }
            Err(e) => return Err(e),
        };
        // The whole state at an earlier revision, when asked for one (a canary's stable
        // revision, for a Worker that does not serve it yet).
        if let Some(at) = q.at {
            if at > info.revision || at < info.history_from {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    ErrorCode::UnknownRevision,
                    format!(
                        "{env:?} has no revision {at} to pull (it is at revision {}, its \
                         history starts at {})",
                        info.revision, info.history_from
                    ),
                ));
            }
            break state
                .pulls
                .get_or_build(&env, 0, at, || build_pull(&state, &env, 0, at))
                .await?;
        }
        // Everything when asked for, when the Worker is ahead of this store, or when its
        // revision is older than the retained history: what changed since then can no
        // longer be told (deletions may be gone), the whole state can — no error, no gap.
        let full = q.since == 0 || q.since > info.revision || q.since < info.history_from;
        let since = if full { 0 } else { q.since };
        let built = state
            .pulls
            .get_or_build(&env, since, info.revision, || {
                build_pull(&state, &env, since, info.revision)
            })
            .await;
        match built {
            // Pruned between reading `info` and building the answer: read it again (the
            // Worker's revision is then older than the history, and it gets everything).
            Err(e) if e.code == ErrorCode::HistoryPruned && attempt < MAX_PULL_ATTEMPTS => {}
            other => break with_canary(&state, &env, other?).await?,
        }
    };
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// The pull answer `body`, with the canary directive when its revision is a running
/// canary: a Worker must serve it beside the stable revision, never to every request.
async fn with_canary(state: &AppState, env: &str, body: Bytes) -> ApiResult<Bytes> {
    let Some(directive) = crate::canary::current_directive(state, env).await? else {
        return Ok(body);
    };
    let mut payload: SyncPayload = serde_json::from_slice(&body).map_err(encode_error)?;
    if payload.revision != directive.revision {
        return Ok(body);
    }
    payload.canary = Some(directive);
    serde_json::to_vec(&payload)
        .map(Bytes::from)
        .map_err(encode_error)
}

fn encode_error(e: serde_json::Error) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Internal,
        format!("cannot encode the pull answer: {e}"),
    )
}

/// A pull answered while the database is down, from the newest answer built here: the
/// delta from `since` or the full state; "nothing changed" to a Worker already at that
/// revision; nothing (`None`: 503) to a Worker ahead of it, which must not be taken back.
fn answer_without_store(state: &AppState, env: &str, since: u64) -> Option<Bytes> {
    let body = state.pulls.last_answer(env, since)?;
    let payload: SyncPayload = serde_json::from_slice(&body).ok()?;
    if since < payload.revision || since == 0 {
        return Some(body);
    }
    if since > payload.revision {
        return None;
    }
    let unchanged = SyncPayload {
        since,
        full: false,
        entities: Vec::new(),
        ..payload
    };
    serde_json::to_vec(&unchanged).ok().map(Bytes::from)
}

/// Builds the full-state answer of `revision` in the background, so that a Worker that
/// starts or fails over to this Manager while the database is down can still be answered.
pub fn warm_pull(state: &AppState, env: &str, revision: u64) {
    let (state, env) = (state.clone(), env.to_string());
    tokio::spawn(async move {
        let built = state
            .pulls
            .get_or_build(&env, 0, revision, || build_pull(&state, &env, 0, revision))
            .await;
        if let Err(e) = built {
            tracing::debug!(env, revision, error = %e.message, "cannot prepare the revision's full pull answer");
        }
    });
}
/// How often a pull is built again when a pruning overtook it.
const MAX_PULL_ATTEMPTS: usize = 3;

/// The pull answer: what changed after `since` (everything when 0), at `revision` or, when a
/// commit lands meanwhile, at the newer revision (the payload is self-consistent either way:
/// its entities and digest are of the revision it names).
async fn build_pull(
    state: &AppState,
    env: &str,
    since: u64,
    revision: u64,
) -> Result<Bytes, ApiError> {
    let full = since == 0;
    let (revision, entities) = if full {
        (revision, state.store.entities(env, Some(revision)).await?)
    } else {
        state.store.changes_since(env, since).await?
    };
    // The digest of the state at exactly `revision`, whatever was committed since (a full
    // answer is that state: no second read).
    let digest_of = |at: &[switchyard_store::EntityRecord]| {
        state_digest(
            at.iter()
                .map(|e| (e.kind, e.name.as_str(), e.version, e.digest.as_str())),
        )
    };
    let digest = if full {
        digest_of(&entities)
    } else {
        digest_of(&state.store.entities(env, Some(revision)).await?)
    };
    let mut out = Vec::with_capacity(entities.len());
    for e in entities.into_iter().filter(|e| e.revision <= revision) {
        let manifest = state.reveal(&e)?;
        out.push(SyncEntity {
            kind: e.kind,
            name: e.name,
            version: e.version,
            digest: e.digest,
            manifest,
            deleted: e.deleted,
        });
    }
    let payload = SyncPayload {
        env: env.to_string(),
        revision,
        since,
        full,
        entities: out,
        state_digest: digest,
        digest_key: Some(state.digest_key(env).to_hex()),
        store_id: state.store.store_id(),
        canary: None,
    };
    serde_json::to_vec(&payload)
        .map(Bytes::from)
        .map_err(encode_error)
}

/// Stream revision notifications (Server-Sent Events).
///
/// Server-Sent Events: one `revision` event per commit (id = revision), no payload beyond
/// the revision and the changed entities' versions. On connect, the current revision is
/// sent at once when the client's `Last-Event-ID` is behind. Heartbeat comments keep the
/// connection observably alive.
#[utoipa::path(
    get,
    path = "/v1/envs/{env}/events",
    operation_id = "events",
    tag = "workers",
    params(
        ("env" = String, Path, description = "Environment name"),
        ("Last-Event-ID" = Option<String>, Header, description = "The last revision the client saw, a number (anything else counts as absent); the current revision is sent at once when this is behind or absent"),
        ("x-switchyard-worker" = Option<String>, Header, description = "The Worker's id: the connection counts as that Worker's"),
        ("x-switchyard-address" = Option<String>, Header, description = "The Worker's traffic address, shown in `GET /v1/envs/{env}/workers`"),
        ("x-switchyard-version" = Option<String>, Header, description = "The Worker's binary version and the manifest schemas it reads, shown in `GET /v1/envs/{env}/workers`"),
    ),
    responses(
        (status = 200, description = "An event stream: `event: revision`, `id: <revision>`, `data:` a `RevisionEvent` as JSON; `heartbeat` comments keep it alive", content_type = "text/event-stream", body = super::openapi::RevisionEventFrame),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = "The token's role or environments do not allow this (`forbidden`), or the Worker id is connected with another token (`worker_mismatch`)", body = ErrorBody),
        (status = 404, description = UNKNOWN_ENV, body = ErrorBody),
        (status = 500, description = SERVER_ERROR, body = ErrorBody),
    )
)]
pub async fn events(
    State(state): State<AppState>,
    who: Principal,
    Path(env): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    who.require_read(&env)?;
    let info = match state.env_info(&env).await {
        Ok(info) => info,
        // The database is down: an environment announced here is followed from the
        // revision announced (what this Manager can answer pulls with).
        Err(e) if e.code == ErrorCode::StoreUnavailable => {
            let revision = state.fanout.announced_revision(&env).ok_or(e)?;
            switchyard_api::records::EnvInfo {
                name: env.clone(),
                revision,
                created_at: 0,
                history_from: 0,
            }
        }
        Err(e) => return Err(e),
    };
    if let Some(id) = header(&headers, WORKER_ID_HEADER) {
        who.require_worker_name(&id)?;
    }
    let worker = header(&headers, WORKER_ID_HEADER).map(|id| WorkerClaim {
        id,
        instance: header(&headers, WORKER_INSTANCE_HEADER),
        address: header(&headers, WORKER_ADDRESS_HEADER),
        version: header(&headers, WORKER_VERSION_HEADER),
        token_id: who.token_id.clone(),
    });
    let last_seen: Option<u64> = header(&headers, "last-event-id").and_then(|v| v.parse().ok());
    let sub = state.fanout.subscribe(&env, worker).map_err(|e| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::WorkerMismatch,
            e.to_string(),
        )
    })?;
    let initial = (last_seen.is_none_or(|seen| seen < info.revision)).then(|| RevisionEvent {
        env: env.clone(),
        revision: info.revision,
        changes: Vec::new(),
    });
    let crate::fanout::Subscription {
        rx,
        directives,
        guard,
    } = sub;
    // Written down before the stream is answered: from now on a commit, through any
    // Manager, expects this Worker to pick it up.
    if let Some(id) = guard.worker()
        && let Some(row) = state.fanout.connection(&env, id)
    {
        state.presence.connected(row).await;
    }
    let me = guard.process();
    let live = BroadcastStream::new(rx).filter_map(move |msg| {
        let _connected = &guard;
        // A lagging subscriber skips events: harmless, the next one carries a newer
        // revision and the Worker pulls by revision anyway.
        msg.ok().map(|ev| to_event(&ev))
    });
    // Upgrade requests addressed to this stream's process (a rollout step).
    let mine = BroadcastStream::new(directives).filter_map(move |msg| {
        let d = msg.ok()?;
        let ours = me
            .as_ref()
            .is_some_and(|(w, i)| *w == d.worker && *i == d.instance);
        ours.then(|| {
            Event::default()
                .event("upgrade")
                .data(serde_json::to_string(&d).unwrap_or_default())
        })
    });
    let live = live.merge(mine);
    // Ends the stream when the Manager shuts down.
    let shutdown = state.shutdown.clone();
    let stop = tokio_stream::once(()).then(move |()| {
        let mut shutdown = shutdown.clone();
        async move {
            let _ = shutdown.wait_for(|s| *s).await;
            None::<RevisionEvent>
        }
    });
    let stream = tokio_stream::iter(initial.map(|ev| to_event(&ev)))
        .chain(live)
        .map(Some)
        .merge(stop.map(|_: Option<RevisionEvent>| None))
        .take_while(Option::is_some)
        .filter_map(|ev| ev.map(Ok));
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(state.heartbeat).text("heartbeat")))
}

fn to_event(ev: &RevisionEvent) -> Event {
    Event::default()
        .event("revision")
        .id(ev.revision.to_string())
        .data(serde_json::to_string(ev).unwrap_or_default())
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.len() <= 200)
}

/// Report a Worker's ACK or NACK of a revision.
///
/// A Worker's ACK or NACK. Stored with an audit record on that Worker. Accepted only from
/// the Worker it names: that Worker id must have an event stream open with the same token
/// (`worker_mismatch` otherwise), and only for a revision the environment has
/// (`unknown_revision`) of this Manager's store (`store_mismatch`).
#[utoipa::path(
    post,
    path = "/v1/envs/{env}/reports",
    operation_id = "report",
    tag = "workers",
    params(
        ("env" = String, Path, description = "Environment name"),
        ("x-switchyard-worker" = String, Header, description = "The reporting Worker's id (visible ASCII, 1 to 200 characters)", pattern = "^[!-~]([ -~]{0,198}[!-~])?$"),
    ),
    request_body = ReportBody,
    responses(
        (status = 204, description = "Recorded"),
        (status = 400, description = "Missing `x-switchyard-worker` header, or a body that is not JSON (`bad_request`)", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = "Not a worker token of this environment, nor an admin token (`forbidden`); or the named Worker has no event stream open with this token (`worker_mismatch`)", body = ErrorBody),
        (status = 404, description = UNKNOWN_ENV, body = ErrorBody),
        (status = 409, description = "The report is about a revision of another store: the Manager's was restored or replaced since (`store_mismatch`)", body = ErrorBody),
        (status = 415, description = UNSUPPORTED_MEDIA_TYPE, body = ErrorBody),
        (status = 422, description = "A revision (or `caught_up_to`) the environment does not have (`unknown_revision`); a `caught_up_to` that is not after `revision`, or on a NACK, or a JSON body without the expected fields or types (`invalid_body`)", body = ErrorBody),
        (status = 500, description = SERVER_ERROR, body = ErrorBody),
        (status = 503, description = AUDIT_FAILED, body = ErrorBody),
    )
)]
pub async fn report(
    State(state): State<AppState>,
    who: Principal,
    Path(env): Path<String>,
    headers: HeaderMap,
    Json(body): Json<ReportBody>,
) -> ApiResult<StatusCode> {
    let worker_id = reporting_worker(&who, &env, &headers)?;
    check_report(&state, &who, &env, &worker_id, &body).await?;
    let status = body.status;
    state
        .reports
        .record(WorkerReport {
            env: env.clone(),
            worker_id: worker_id.clone(),
            revision: body.revision,
            status,
            error: body.error.clone(),
            applied_at: body.applied_at,
            pulled_at: body.pulled_at,
            received_at: now_millis(),
            address: body.address.clone(),
            detail: body.detail.clone(),
            caught_up_to: body.caught_up_to,
        })
        .await?;
    state
        .metrics
        .reports
        .get_or_create(&[
            ("env", env.clone()),
            ("status", status.as_str().to_string()),
        ])
        .inc();
    state.fanout.changed(&env);
    match status {
        ReportStatus::Ack => {
            tracing::info!(env = %env, worker = %worker_id, revision = body.revision, "worker ACK")
        }
        ReportStatus::Nack => {
            tracing::warn!(env = %env, worker = %worker_id, revision = body.revision, error = body.error.as_deref().unwrap_or(""), "worker NACK")
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A report is accepted only from the Worker it names, bound to the token it comes with
/// (that Worker id has an event stream open with this token), about a revision this
/// environment has, of this Manager's store.
/// The Worker a report (or its statistics) comes from: a worker token of `env` (or an
/// admin's), naming a Worker id the token may use in `x-switchyard-worker`.
pub(super) fn reporting_worker(
    who: &Principal,
    env: &str,
    headers: &HeaderMap,
) -> Result<String, ApiError> {
    who.require_worker(env)?;
    let worker_id = header(headers, WORKER_ID_HEADER)
        .ok_or_else(|| ApiError::bad_request(format!("missing {WORKER_ID_HEADER} header")))?;
    who.require_worker_name(&worker_id)?;
    Ok(worker_id)
}

/// What binds a report to the Worker that sends it: that Worker has an event stream open
/// on `env` here, opened with this same token.
fn check_bound(
    state: &AppState,
    who: &Principal,
    env: &str,
    worker_id: &str,
) -> Result<(), ApiError> {
    let mismatch =
        |message: String| ApiError::new(StatusCode::FORBIDDEN, ErrorCode::WorkerMismatch, message);
    match state.fanout.binding(env, worker_id, &who.token_id) {
        Binding::Bound => Ok(()),
        Binding::NotConnected => Err(mismatch(format!(
            "worker {worker_id:?} has no event stream open on {env:?} with token {}: a report is accepted from a Worker connected as that id with the same token (GET /v1/envs/{env}/events with {WORKER_ID_HEADER}: {worker_id})",
            who.token_id
        ))),
        Binding::OtherToken => Err(mismatch(format!(
            "worker {worker_id:?} is connected to {env:?} with another token; token {} may not report for it",
            who.token_id
        ))),
    }
}

async fn check_report(
    state: &AppState,
    who: &Principal,
    env: &str,
    worker_id: &str,
    body: &ReportBody,
) -> Result<(), ApiError> {
    let info = state.env_info(env).await?;
    check_bound(state, who, env, worker_id)?;
    if let Some(theirs) = &body.store_id {
        let ours = state.store.store_id();
        if *theirs != ours {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::StoreMismatch,
                format!(
                    "the report is about revision {} of store {theirs}, but this Manager's store is {ours} (restored from a backup or replaced since): pull again",
                    body.revision
                ),
            ));
        }
    }
    if body.revision > info.revision {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::UnknownRevision,
            format!(
                "environment {env:?} has no revision {}: it is at revision {}",
                body.revision, info.revision
            ),
        ));
    }
    if let Some(to) = body.caught_up_to {
        if body.status == ReportStatus::Nack || to <= body.revision {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::InvalidBody,
                format!(
                    "caught_up_to {to} must be a revision after the ACKed revision {} (a NACK \
                     is never caught up)",
                    body.revision
                ),
            ));
        }
        if to > info.revision {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::UnknownRevision,
                format!(
                    "environment {env:?} has no revision {to} (caught_up_to): it is at \
                     revision {}",
                    info.revision
                ),
            ));
        }
    }
    Ok(())
}
