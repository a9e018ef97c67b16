//! The sync task's loop: catch up, follow the notification stream and the periodic
//! revision check, apply each newer revision (compile and swap on the blocking pool), and
//! report ACK or NACK — reconnecting with backoff whenever the Manager is lost.

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use switchyard_api::sync::{SyncEntity, SyncPayload};
use switchyard_config::ConfigErrors;
use switchyard_engine::Change;
use tokio::sync::watch;
use tokio::time::error::Elapsed;

use super::backoff::Backoff;
use super::sse::{SseItem, SseParser};
use super::state::{self, Entities, Parsed, Pulled};
use super::{Syncer, cache, now_millis, now_text, report};
use crate::reload::{ReloadOutcome, Reloader};

/// At most this many revisions are ACKed when a Worker catches up over a gap.
const MAX_ACKS_PER_CATCH_UP: u64 = 256;

/// What the notification stream yielded within its timeout.
type Polled = Result<Option<Result<Frame<Bytes>, hyper::Error>>, Elapsed>;

impl Syncer {
    /// Follows the Manager until `stop` turns true.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(&self.opts.worker_id);
        loop {
            if *stop.borrow() {
                return;
            }
            let result = self.follow(&mut stop, &mut backoff).await;
            self.set_connected(false);
            match result {
                Ok(()) => return,
                Err(e) => {
                    let delay = backoff.next();
                    tracing::warn!(error = %e, retry_in = ?delay, "lost the Manager; still serving revision {}", self.state.served.revision);
                    self.reloader.update_sync_status(|s| s.last_error = Some(e));
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = crate::server::stopped(&mut stop) => return,
                    }
                }
            }
        }
    }

    /// One connection's life: catch up, open the stream, react to events and to the
    /// periodic check. Returns `Ok` on shutdown, `Err` when the Manager was lost.
    async fn follow(
        &mut self,
        stop: &mut watch::Receiver<bool>,
        backoff: &mut Backoff,
    ) -> Result<(), String> {
        self.flush_reports().await;
        self.catch_up().await?;
        let mut body = self
            .client
            .events(self.state.served.revision)
            .await
            .map_err(|e| e.to_string())?;
        self.set_connected(true);
        backoff.attempts = 0;
        tracing::info!(manager = %self.opts.manager, env = %self.opts.env, "following the Manager");
        let mut parser = SseParser::default();
        let mut check = tokio::time::interval(self.opts.check_interval);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                polled = tokio::time::timeout(self.opts.stream_timeout, body.frame()) => {
                    if let Some(data) = self.stream_data(polled)?
                        && self.announces_newer(&mut parser, &data)?
                    {
                        self.catch_up().await?;
                    }
                }
                _ = check.tick() => self.periodic_check().await?,
                _ = crate::server::stopped(stop) => return Ok(()),
            }
        }
    }

    /// The bytes of a frame of the stream (`None` for a frame without data); `Err` when
    /// the stream is dead.
    fn stream_data(&self, polled: Polled) -> Result<Option<Bytes>, String> {
        match polled {
            Err(_) => Err(format!("no heartbeat for {:?}", self.opts.stream_timeout)),
            Ok(None) => Err("the Manager closed the event stream".into()),
            Ok(Some(Err(e))) => Err(format!("event stream broken: {e}")),
            Ok(Some(Ok(frame))) => Ok(frame.into_data().ok()),
        }
    }

    /// Feeds `data` to the event parser; true when an event announces a revision newer
    /// than the served one.
    fn announces_newer(&self, parser: &mut SseParser, data: &[u8]) -> Result<bool, String> {
        let items = parser.push(data).map_err(str::to_string)?;
        let mut newer = false;
        for item in items {
            if let SseItem::Event(ev) = item
                && ev.event == "revision"
                && let Some(rev) = ev.id.as_deref().and_then(|s| s.parse::<u64>().ok())
            {
                self.reloader
                    .update_sync_status(|s| s.manager_revision = Some(rev));
                newer |= rev > self.state.served.revision;
            }
        }
        Ok(newer)
    }

    /// Compares the served revision with the Manager's (catches missed notifications).
    async fn periodic_check(&mut self) -> Result<(), String> {
        let rev = self.client.revision().await.map_err(|e| e.to_string())?;
        self.reloader
            .update_sync_status(|s| s.manager_revision = Some(rev));
        if rev > self.state.served.revision {
            tracing::info!(
                manager_revision = rev,
                serving = self.state.served.revision,
                "periodic check found a newer revision"
            );
            self.catch_up().await?;
        }
        self.flush_reports().await;
        Ok(())
    }

    /// Pulls and applies everything newer than the served revision.
    async fn catch_up(&mut self) -> Result<(), String> {
        let Some(payload) = self.pull_newer().await? else {
            return Ok(());
        };
        let (entities, incremental) = self.verified(&payload).await?;
        let revision = payload.revision;
        let served = &self.state.served;
        match served.parse(&self.opts.env, &payload, entities, incremental) {
            Ok(pulled) => match self.swap(pulled).await? {
                (ReloadOutcome::Rejected { errors, .. }, _) => self.rejected(revision, errors),
                (_, pulled) => self.applied(pulled),
            },
            Err(errors) => self.rejected(revision, errors),
        }
        self.flush_reports().await;
        Ok(())
    }

    /// A pull of what is newer than the served revision; `None` when there is nothing to
    /// apply (no newer revision, a Manager behind this Worker, a revision rejected here).
    async fn pull_newer(&mut self) -> Result<Option<SyncPayload>, String> {
        let serving = self.state.served.revision;
        let payload = self.client.pull(serving).await.map_err(|e| e.to_string())?;
        self.reloader
            .update_sync_status(|s| s.manager_revision = Some(payload.revision));
        if payload.revision <= serving && !payload.full {
            return Ok(None);
        }
        if payload.revision < serving {
            // Never go backwards (a Manager restored from an older backup, say).
            tracing::warn!(
                manager = payload.revision,
                serving,
                "the Manager is behind this Worker; keeping the newer revision"
            );
            return Ok(None);
        }
        if self.state.rejected == Some(payload.revision) {
            return Ok(None);
        }
        Ok(Some(payload))
    }

    /// The entity state `payload` leads to, and whether it may be compiled as a change: an
    /// incremental pull that verifies may; anything else (a full pull, or the full pull
    /// made when an incremental one does not verify) is compiled as a whole set.
    async fn verified(&self, payload: &SyncPayload) -> Result<(Entities, bool), String> {
        match state::merge(&self.state.served.entities, payload) {
            Ok(merged) => Ok((merged, !payload.full)),
            Err(e) => {
                tracing::warn!(error = %e, "incremental pull did not verify; pulling everything");
                let full = self.client.pull(0).await.map_err(|e| e.to_string())?;
                let merged = state::merge(&Entities::new(), &full)
                    .map_err(|e| format!("full pull did not verify: {e}"))?;
                Ok((merged, false))
            }
        }
    }

    /// Compiles and swaps `pulled` on the blocking pool.
    async fn swap(&self, pulled: Pulled) -> Result<(ReloadOutcome, Pulled), String> {
        let reloader = self.reloader.clone();
        tokio::task::spawn_blocking(move || (compile_and_swap(&reloader, &pulled.parsed), pulled))
            .await
            .map_err(|e| format!("compile task failed: {e}"))
    }

    /// `pulled` is served: the state moves on, the cache is written, and every revision
    /// it covers is ACKed.
    fn applied(&mut self, pulled: Pulled) {
        let applied_at = now_millis();
        let previous = self.state.served.revision;
        let revision = pulled.revision;
        self.state.served.advance(pulled);
        self.state.rejected = None;
        let list: Vec<SyncEntity> = self.state.served.entities.values().cloned().collect();
        let cache_error = cache::save(&self.opts.cache_dir, &self.opts.env, revision, &list).err();
        if let Some(e) = &cache_error {
            tracing::warn!(error = %e, "cannot write the last-known-good cache");
        }
        self.reloader.update_sync_status(|s| {
            s.served_from = "manager".into();
            s.last_sync_at = Some(now_text());
            s.rejected_revision = None;
            s.last_error = None;
            s.cache_error = cache_error;
        });
        // A Worker that jumped several revisions applied each of their changes at this
        // moment (the newest state contains them): it ACKs every one, so the audit trail
        // records the change on this Worker. Bounded for very long absences.
        let first = (previous + 1).max(revision.saturating_sub(MAX_ACKS_PER_CATCH_UP - 1));
        for rev in first..=revision {
            let mut ack = report(rev, None, self.opts.address.clone());
            ack.applied_at = applied_at;
            self.state.pending.push(ack);
        }
    }

    /// `revision` does not compile here: it is not retried until the Manager moves on,
    /// and it is NACKed.
    fn rejected(&mut self, revision: u64, errors: ConfigErrors) {
        tracing::error!(
            revision,
            "revision rejected; still serving {}:\n{errors}",
            self.state.served.revision
        );
        self.state.rejected = Some(revision);
        self.reloader
            .update_sync_status(|s| s.rejected_revision = Some(revision));
        let nack = report(
            revision,
            Some(errors.to_string()),
            self.opts.address.clone(),
        );
        self.state.pending.push(nack);
    }

    /// Delivers pending reports in order; keeps the rest for later if the Manager is down.
    async fn flush_reports(&mut self) {
        while let Some(r) = self.state.pending.first() {
            match self.client.report(r).await {
                Ok(()) => {
                    self.state.pending.remove(0);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "report not delivered yet");
                    break;
                }
            }
        }
        let n = self.state.pending.len();
        self.reloader.update_sync_status(|s| s.pending_reports = n);
    }

    fn set_connected(&self, connected: bool) {
        self.reloader
            .update_sync_status(|s| s.connected = connected);
    }
}

/// Compiles and swaps a pull (blocking): a whole set, or only the change.
fn compile_and_swap(reloader: &Reloader, parsed: &Parsed) -> ReloadOutcome {
    match parsed {
        Parsed::Set { set, numbering } => reloader.apply(Change::Set(&set.manifests()), numbering),
        Parsed::Delta(changes) => {
            let upserts = changes.upserts.manifests();
            let removed = changes.removed_refs();
            let delta = Change::Delta {
                upserts: &upserts,
                removed: &removed,
            };
            reloader.apply(delta, &changes.numbering)
        }
    }
}
