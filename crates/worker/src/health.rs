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
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use switchyard_engine::runtime::TargetState;
use switchyard_engine::runtime::health::{ActiveCheck, Transition};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::pool::IDLE_TIMEOUT;
use crate::runtime::Runtime;

type CheckClient = Client<HttpConnector, Empty<Bytes>>;

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
    let client = client();
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
                for target in &upstream.targets {
                    let Some(uri) = &target.check_uri else {
                        continue;
                    };
                    if target.state.begin_check(check.interval, now) {
                        running.spawn(probe(
                            client.clone(),
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

fn client() -> CheckClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_max_idle_per_host(1)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}

/// Marks the target's check finished however the probe ends (aborted on shutdown too).
struct Finished(Arc<TargetState>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.check_finished();
    }
}

async fn probe(
    client: CheckClient,
    uri: Uri,
    check: ActiveCheck,
    state: Arc<TargetState>,
    proxy: Arc<str>,
    target: Arc<str>,
) {
    let _finished = Finished(state.clone());
    let Ok(req) = Request::get(uri)
        .header(header::USER_AGENT, "switchyard-health-check")
        .body(Empty::new())
    else {
        return;
    };
    let answer = tokio::time::timeout(check.timeout, async {
        let resp = client.request(req).await?;
        let status = resp.status();
        // Read (a bounded amount of) the body so the connection can be reused.
        let _ = Limited::new(resp.into_body(), MAX_BODY).collect().await;
        Ok::<_, hyper_util::client::legacy::Error>(status)
    })
    .await;
    let (ok, detail) = match answer {
        Ok(Ok(status)) => (
            status.is_success() || status.is_redirection(),
            status.as_str().to_string(),
        ),
        Ok(Err(e)) => (false, e.to_string()),
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
