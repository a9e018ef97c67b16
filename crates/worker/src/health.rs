//! Active health checks: one task per Worker. Each round it looks at the current
//! configuration generation (so a swap changes what is checked at the next round, and a
//! removed proxy is no longer checked), starts the checks that are due, and sleeps until
//! the next one is due (at most a second, and less if a new revision arrives).
//!
//! A check is `GET <target>/<path>` within the check's `timeout`, sent with one pooled
//! client; 2xx and 3xx answers are successes. Results go to the target's shared state
//! (`TargetState`), which flips it unhealthy or healthy at the configured thresholds; the
//! request path reads that state when it picks a target. No lock is held across an await:
//! the generation is loaded and released before any check starts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Uri, header};
use http_body::Body;
use switchyard_engine::runtime::TargetState;
use switchyard_engine::runtime::health::{ActiveCheck, Transition};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::pool::{HostPool, SendError};
use crate::proxy::body::{ClientBody, RequestBody};
use crate::runtime::Runtime;

/// The longest the task sleeps between rounds (new configurations are noticed at once
/// anyway, through the revision channel).
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// The shortest: a check still running past its next due time must not make the task spin.
const MIN_SLEEP: Duration = Duration::from_millis(20);
/// Bytes of a check's response body read (so the connection can be reused) before giving up
/// on it.
const MAX_BODY: usize = 64 * 1024;

/// Runs active health checks until `stop` turns true.
pub async fn run(
    current: Arc<ArcSwap<Runtime>>,
    mut revisions: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut running = JoinSet::new();
    loop {
        while running.try_join_next().is_some() {}
        let now = Instant::now();
        let mut next = now + MAX_SLEEP;
        {
            let rt = current.load();
            for proxy in rt.snapshot.proxies() {
                let upstream = &proxy.upstream;
                let Some(check) = &upstream.health.active else {
                    continue;
                };
                let pools = &rt.ext(proxy).pools;
                for (target, pool) in upstream.targets.iter().zip(pools) {
                    let Some(uri) = &target.check_uri else {
                        continue;
                    };
                    if target.state.begin_check(check.interval, now) {
                        running.spawn(probe(
                            pool.clone(),
                            uri.clone(),
                            check.clone(),
                            target.state.clone(),
                            proxy.name.clone(),
                            target.url.clone(),
                        ));
                    }
                    next = next.min(target.state.next_check());
                }
            }
        }
        let wake = tokio::time::Instant::from_std(next.max(now + MIN_SLEEP));
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            changed = revisions.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = crate::server::stopped(&mut stop) => break,
        }
    }
    running.abort_all();
}

/// Marks the target's check finished however the probe ends (aborted on shutdown too).
struct Finished(Arc<TargetState>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.check_finished();
    }
}

/// One check, on a fresh connection of the target's pool (TLS included for `https://`),
/// closed afterwards: the data-plane threads keep their connections to themselves.
async fn probe(
    pool: Arc<HostPool>,
    uri: Uri,
    check: ActiveCheck,
    state: Arc<TargetState>,
    proxy: Arc<str>,
    target: Arc<str>,
) {
    let _finished = Finished(state.clone());
    let origin = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let Ok(req) = Request::get(origin)
        .header(header::USER_AGENT, "switchyard-health-check")
        .body(RequestBody::Direct(ClientBody::empty()))
    else {
        return;
    };
    let answer = tokio::time::timeout(check.timeout, async {
        let (resp, mut lease) = pool.send(req, true, 0).await.map_err(|e| match e {
            SendError::Connect(e) => format!("connect: {e}"),
            SendError::NotSent(_, e) | SendError::Failed(e) => e.to_string(),
            SendError::Closed => "connection closed".to_string(),
        })?;
        let status = resp.status();
        // Read (a bounded amount of) the body, driving the connection; then it is closed.
        let mut body = resp.into_body();
        let mut read = 0;
        while read <= MAX_BODY {
            let frame = std::future::poll_fn(|cx| {
                lease.drive(cx);
                std::pin::Pin::new(&mut body).poll_frame(cx)
            })
            .await;
            match frame {
                Some(Ok(f)) => read += f.data_ref().map_or(0, Bytes::len),
                _ => break,
            }
        }
        Ok::<_, String>(status)
    })
    .await;
    let (ok, detail) = match answer {
        Ok(Ok(status)) => (
            status.is_success() || status.is_redirection(),
            status.as_str().to_string(),
        ),
        Ok(Err(e)) => (false, e),
        Err(_) => (false, "timed out".to_string()),
    };
    match state.active_result(&check, ok) {
        Some(Transition::BecameUnhealthy) => tracing::warn!(
            proxy = %proxy,
            target = %target,
            result = %detail,
            "upstream target marked unhealthy by active health checks"
        ),
        Some(Transition::BecameHealthy) => tracing::info!(
            proxy = %proxy,
            target = %target,
            "upstream target healthy again"
        ),
        None => {
            tracing::trace!(proxy = %proxy, target = %target, ok, result = %detail, "health check")
        }
    }
}
