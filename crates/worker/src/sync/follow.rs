//! The sync task's loop: open the notification stream, catch up, follow the stream and the
//! periodic check, apply each newer revision (compile and swap on the blocking pool) —
//! or resynchronise to exactly the Manager's state when its history is not the one served
//! — verify what is served, and report ACK or NACK; reconnecting with backoff whenever
//! the Manager is lost.

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use switchyard_api::ErrorCode;
use switchyard_api::sync::{ReportBody, ServedFrom, SyncEntity, SyncPayload, UpgradeDirective};
use switchyard_engine::Change;
use tokio::sync::watch;
use tokio::time::error::Elapsed;

use super::backoff::Backoff;
use super::sse::{SseItem, SseParser};
use super::state::{self, Entities, Parsed, Pulled, Step};
use super::{Syncer, cache, now_millis, now_text, report};
use crate::handover::{UpgradeHook, UpgradeState};
use crate::reload::{ReloadOutcome, Reloader};
use crate::status::Resync;

/// How often a handover a rollout asked for is checked on.
const UPGRADE_CHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// How often a Worker with a live canary sends its numbers.
const CANARY_STATS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// At most this many revisions are ACKed when a Worker catches up over a gap.
const MAX_ACKS_PER_CATCH_UP: u64 = 256;
/// At most this many reports wait for the Manager; older ones are dropped.
const MAX_PENDING_REPORTS: usize = 1024;

/// What the notification stream yielded within its timeout.
type Polled = Result<Option<Result<Frame<Bytes>, hyper::Error>>, Elapsed>;

impl Syncer {
    /// Follows the Manager until `stop` turns true.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(&self.opts.worker_id);
        // Managers tried since one was last followed.
        let mut tried = 0;
        loop {
            if *stop.borrow() {
                return;
            }
            let result = self.follow(&mut stop, &mut backoff).await;
            self.set_connected(false);
            match result {
                Ok(()) => return,
                Err(e) => {
                    // `follow` resets the attempts once it follows a Manager.
                    if backoff.attempts == 0 {
                        tried = 0;
                    }
                    tried += 1;
                    let managers = self.opts.managers().len();
                    // Another Manager of the control plane is tried at once; after a
                    // round of them all, the backoff applies.
                    let delay = if managers > 1 && tried % managers != 0 {
                        std::time::Duration::ZERO
                    } else {
                        backoff.next()
                    };
                    if managers > 1 {
                        self.next_manager();
                    }
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

    /// Moves on to the next Manager URL (the client keeps this Worker's identity).
    fn next_manager(&mut self) {
        let managers = self.opts.managers();
        let next = (self.current + 1) % managers.len();
        let url = managers[next].to_string();
        match self.opts.client_for(&url) {
            Ok(client) => {
                tracing::info!(manager = %url, "trying another Manager");
                self.client = client;
                self.current = next;
                self.reloader.update_sync_status(|s| s.manager = url);
            }
            Err(e) => tracing::warn!(manager = %url, error = %e, "cannot use this Manager URL"),
        }
    }

    /// One connection's life: open the stream (the Manager takes this Worker's reports
    /// only while it is open), deliver what is pending, catch up, then react to events and
    /// to the periodic check. Returns `Ok` on shutdown, `Err` when the Manager was lost.
    async fn follow(
        &mut self,
        stop: &mut watch::Receiver<bool>,
        backoff: &mut Backoff,
    ) -> Result<(), String> {
        let mut body = self
            .client
            .events(self.state.served.revision)
            .await
            .map_err(|e| e.to_string())?;
        self.set_connected(true);
        self.flush_reports().await;
        self.catch_up().await?;
        backoff.attempts = 0;
        let manager = self.opts.managers()[self.current];
        tracing::info!(manager = %manager, env = %self.opts.env, "following the Manager");
        let mut parser = SseParser::default();
        // The first check one period from now: the Worker has just caught up.
        let mut check = tokio::time::interval_at(
            tokio::time::Instant::now() + self.opts.check_interval,
            self.opts.check_interval,
        );
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A handover a rollout asked for, while it runs: its revision.
        let mut handing_over: Option<u64> = None;
        let mut upgrade_check = tokio::time::interval(UPGRADE_CHECK);
        // While a canary is live its numbers go every CANARY_STATS_INTERVAL (the Manager
        // judges it on them), else every `stats_interval`.
        let mut stats = tokio::time::interval(self.opts.stats_interval.min(CANARY_STATS_INTERVAL));
        let mut last_stats: Option<tokio::time::Instant> = None;
        stats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                polled = tokio::time::timeout(self.opts.stream_timeout, body.frame()) => {
                    if let Some(data) = self.stream_data(polled)? {
                        let (changed, upgrade) = self.read_events(&mut parser, &data)?;
                        if let Some(d) = upgrade {
                            handing_over = self.hand_over(d).or(handing_over);
                            self.flush_reports().await;
                        }
                        if changed {
                            self.catch_up().await?;
                        }
                    }
                }
                _ = upgrade_check.tick(), if handing_over.is_some() => {
                    if let Some(revision) = handing_over
                        && self.handover_failed(revision)
                    {
                        handing_over = None;
                        self.flush_reports().await;
                    }
                }
                // The periodic check is a pull since the served revision: it catches missed
                // notifications, and a Manager whose store or state is not the one served.
                _ = check.tick() => self.catch_up().await?,
                _ = stats.tick() => {
                    let due = last_stats.is_none_or(|at| at.elapsed() >= self.opts.stats_interval);
                    if due || self.state.canary.is_some() {
                        last_stats = Some(tokio::time::Instant::now());
                        self.send_stats();
                    }
                }
                _ = crate::server::stopped(stop) => return Ok(()),
            }
        }
    }

    /// Sends the running totals for the dashboard, off this loop: a slow Manager never
    /// delays events, and a lost sample is only a gap in a chart.
    fn send_stats(&self) {
        let client = self.client.clone();
        let body = self.reloader.stats();
        tokio::spawn(async move {
            if let Err(e) = client.stats(&body).await {
                tracing::debug!(error = %e, "statistics not sent");
            }
        });
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

    /// Feeds `data` to the event parser: whether an event announces a revision other
    /// than the served one (newer, or older: a Manager that went back is followed too),
    /// and an upgrade request addressed to this process, if any.
    fn read_events(
        &self,
        parser: &mut SseParser,
        data: &[u8],
    ) -> Result<(bool, Option<UpgradeDirective>), String> {
        let items = parser.push(data).map_err(str::to_string)?;
        let mut changed = false;
        let mut upgrade = None;
        for item in items {
            let SseItem::Event(ev) = item else { continue };
            if ev.event == "revision"
                && let Some(rev) = ev.id.as_deref().and_then(|s| s.parse::<u64>().ok())
            {
                self.reloader
                    .update_sync_status(|s| s.manager_revision = Some(rev));
                changed |= rev != self.state.served.revision;
            }
            if ev.event == "upgrade"
                && let Ok(d) = serde_json::from_str::<UpgradeDirective>(&ev.data)
                && d.instance == self.opts.instance
                && d.worker == self.opts.worker_id
            {
                upgrade = Some(d);
            }
        }
        Ok((changed, upgrade))
    }

    /// A rollout asks this process to hand over to a successor: asks the binary (the
    /// successor takes the sockets, loads the Manager's current revision, and ACKs it;
    /// this process then drains). A process that cannot hand over NACKs the revision,
    /// saying why, so the rollout stops there. Returns the revision when a handover began.
    fn hand_over(&mut self, d: UpgradeDirective) -> Option<u64> {
        tracing::info!(rollout = %d.rollout, revision = d.revision, "the Manager asks this Worker to hand over to a successor");
        let Some(hook) = self.upgrade.clone() else {
            self.nack(
                &self.state.served.store_id.clone(),
                d.revision,
                "this Worker process cannot hand over to a successor (it runs embedded, \
                 not as `switchyard worker`)"
                    .into(),
                None,
            );
            return None;
        };
        if !hook.request_binary(d.binary.map(std::path::PathBuf::from)) {
            // One is already under way: it answers for this request too.
            return Some(d.revision);
        }
        hook.set(UpgradeState::InProgress);
        Some(d.revision)
    }

    /// Whether the handover begun for `revision` failed (then NACKed with the reason: the
    /// rollout stops there, and this process carries on serving).
    fn handover_failed(&mut self, revision: u64) -> bool {
        let Some(UpgradeState::Failed { error }) =
            self.upgrade.as_ref().and_then(UpgradeHook::state)
        else {
            return false;
        };
        let store_id = self.state.served.store_id.clone();
        self.nack(
            &store_id,
            revision,
            format!("handover failed, this process carries on serving: {error}"),
            None,
        );
        true
    }

    /// Pulls what is newer than the served revision and acts on it (catches missed
    /// notifications, and a Manager whose history is not the one served), then delivers
    /// what is still to report.
    async fn catch_up(&mut self) -> Result<(), String> {
        let serving = self.state.served.revision;
        let payload = self.client.pull(serving).await.map_err(|e| e.to_string())?;
        self.state.pulled_at = Some(now_millis());
        self.reloader
            .update_sync_status(|s| s.manager_revision = Some(payload.revision));
        if let Some(d) = payload
            .canary
            .clone()
            .filter(|d| d.revision == payload.revision)
        {
            self.follow_canary(payload, d).await?;
            self.flush_reports().await;
            return Ok(());
        }
        // The canary's revision, without a directive: promoted.
        if let Some(c) = &self.state.canary
            && c.served.revision == payload.revision
            && c.served.store_id == payload.store_id
        {
            self.promote_canary();
            self.flush_reports().await;
            return Ok(());
        }
        match state::step(&self.state.served, &payload, self.state.rejected) {
            Step::UpToDate => {}
            Step::Apply => match state::merge(&self.state.served.entities, &payload) {
                Ok(merged) => self.apply(payload, merged, None).await?,
                Err(e) => {
                    let why = format!("the incremental pull did not verify ({e})");
                    self.resync(why, None).await?;
                }
            },
            // A pull since a revision the Manager does not have is already everything.
            Step::Resync(why) => self.resync(why, payload.full.then_some(payload)).await?,
        }
        self.flush_reports().await;
        Ok(())
    }

    /// Serves exactly the Manager's state, whatever its revision: `full` (a pull of
    /// everything already made), or a full pull.
    async fn resync(&mut self, why: String, full: Option<SyncPayload>) -> Result<(), String> {
        tracing::warn!(
            reason = %why,
            serving = self.state.served.revision,
            "resynchronising with the Manager: pulling everything"
        );
        let (full, merged) = match full {
            Some(full) => {
                let merged = merge_all(&full)?;
                (full, merged)
            }
            None => self.pull_all().await?,
        };
        // Reports not delivered yet are about the history left behind: under the same
        // store id they would be taken for reports on this one's revisions.
        let dropped = std::mem::take(&mut self.state.pending).len();
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "reports about the previous history dropped, undelivered"
            );
        }
        self.apply(full, merged, Some(why)).await
    }

    /// Everything the Manager has, verified.
    async fn pull_all(&mut self) -> Result<(SyncPayload, Entities), String> {
        let full = self.client.pull(0).await.map_err(|e| e.to_string())?;
        self.state.pulled_at = Some(now_millis());
        let merged = merge_all(&full)?;
        Ok((full, merged))
    }

    /// Parses, compiles and swaps `payload` (`entities`: the state it leads to, verified),
    /// then checks that what is served is the Manager's state before ACKing it. A state
    /// that does not verify is NACKed and rebuilt from a full pull, from nothing.
    pub(super) async fn apply(
        &mut self,
        payload: SyncPayload,
        entities: Entities,
        resync: Option<String>,
    ) -> Result<(), String> {
        let incremental = !payload.full && resync.is_none();
        let swapped = self
            .swap_checked(&payload, entities, incremental, Swap::OnServed, &resync)
            .await?;
        match swapped {
            None => {}
            Some((pulled, Ok(()))) => self.applied(pulled, resync),
            Some((pulled, Err(mismatch))) => self.rebuild(pulled, mismatch, resync).await?,
        }
        Ok(())
    }

    /// The swapped state did not verify: NACK it, then pull everything and compile it from
    /// nothing (no proxy reused), and ACK that only if it verifies.
    async fn rebuild(
        &mut self,
        pulled: Pulled,
        mismatch: String,
        resync: Option<String>,
    ) -> Result<(), String> {
        tracing::error!(
            revision = pulled.revision,
            "{mismatch}; rebuilding from a full pull"
        );
        self.nack(&pulled.store_id, pulled.revision, mismatch.clone(), resync);
        let (full, merged) = self.pull_all().await?;
        let swapped = self
            .swap_checked(&full, merged, false, Swap::FromNothing, &None)
            .await?;
        match swapped {
            None => {}
            Some((pulled, Ok(()))) => {
                self.applied(pulled, Some(format!("rebuilt after: {mismatch}")));
            }
            Some((pulled, Err(again))) => {
                let why = format!("{again} (after a rebuild from a full pull)");
                self.rejected(&pulled.store_id, pulled.revision, why, None);
            }
        }
        Ok(())
    }

    /// Parses `payload` (as a change when `incremental`), compiles and swaps it, and checks
    /// what is then served. `None` when it does not compile here (NACKed, not retried).
    async fn swap_checked(
        &mut self,
        payload: &SyncPayload,
        entities: Entities,
        incremental: bool,
        how: Swap,
        resync: &Option<String>,
    ) -> Result<Option<(Pulled, Result<(), String>)>, String> {
        let (store_id, revision) = (&payload.store_id, payload.revision);
        let served = &self.state.served;
        let pulled = match served.parse(&self.opts.env, payload, entities, incremental) {
            Ok(pulled) => pulled,
            Err(errors) => {
                self.rejected(store_id, revision, errors.to_string(), resync.clone());
                return Ok(None);
            }
        };
        let (outcome, pulled) = self.swap(pulled, how).await?;
        match outcome {
            ReloadOutcome::Rejected { errors, .. } => {
                self.rejected(store_id, revision, errors.to_string(), resync.clone());
                return Ok(None);
            }
            // Not NACKed (the revision is valid) and not retried: this process waits for
            // the successor a rollout starts, serving what it serves.
            ReloadOutcome::RestartRequired { why, .. } => {
                self.state.rejected = Some(revision);
                self.reloader.update_sync_status(|s| {
                    s.pending_restart = Some(format!("revision {revision}: {why}"));
                });
                return Ok(None);
            }
            ReloadOutcome::Applied { .. } | ReloadOutcome::Unchanged { .. } => {}
        }
        let verified = self.verify(&pulled);
        Ok(Some((pulled, verified)))
    }

    /// Whether the generation now served is exactly `pulled`: its revision, and the state
    /// digest of what it serves (computed from the snapshot, not from the pull) equal to
    /// the Manager's.
    fn verify(&self, pulled: &Pulled) -> Result<(), String> {
        let current = self.reloader.current().load_full();
        let snapshot = &current.snapshot;
        if snapshot.revision != pulled.revision {
            return Err(format!(
                "the Worker serves revision {} after the swap, not the Manager's {}",
                snapshot.revision, pulled.revision
            ));
        }
        let served = state::served_digest(snapshot, &pulled.entities);
        if served != pulled.state_digest {
            return Err(format!(
                "the state served after the swap (digest {served}) is not the Manager's \
                 state at revision {} (digest {})",
                pulled.revision, pulled.state_digest
            ));
        }
        Ok(())
    }

    /// Compiles and swaps `pulled` on the blocking pool.
    async fn swap(&self, pulled: Pulled, how: Swap) -> Result<(ReloadOutcome, Pulled), String> {
        let reloader = self.reloader.clone();
        tokio::task::spawn_blocking(move || {
            let outcome = compile_and_swap(&reloader, &pulled.parsed, how);
            (outcome, pulled)
        })
        .await
        .map_err(|e| format!("compile task failed: {e}"))
    }

    /// `pulled` is served and verified: the state moves on, the cache is written, and it is
    /// ACKed — every revision it covers after a plain pull (those before its own as caught
    /// up to it); only its own after a resynchronisation (with why), whose history is not
    /// the one served before.
    fn applied(&mut self, pulled: Pulled, resync: Option<String>) {
        let applied_at = now_millis();
        // A canary live beside the stable revision ended with the swap; it was ACKed
        // already, so the ACKs start after it.
        let canary = self.state.canary.take().map(|c| c.served.revision);
        let previous = self.state.served.revision.max(canary.unwrap_or(0));
        let revision = pulled.revision;
        let store_id = pulled.store_id.clone();
        if store_id != self.state.served.store_id {
            // Reports about the old store's revisions would be refused: they are moot.
            self.state
                .pending
                .retain(|r| r.store_id.as_deref().unwrap_or_default() == store_id);
        }
        self.state.served.advance(pulled);
        self.state.rejected = None;
        let list: Vec<SyncEntity> = self.state.served.entities.values().cloned().collect();
        let cache_error = cache::save(
            &self.opts.cache_dir,
            &self.opts.env,
            &store_id,
            revision,
            &list,
        )
        .err();
        if let Some(e) = &cache_error {
            tracing::warn!(error = %e, "cannot write the last-known-good cache");
        }
        if let Some(why) = &resync {
            tracing::warn!(from = previous, to = revision, store = %store_id, reason = %why, "resynchronised: serving exactly the Manager's state");
        }
        self.reloader.update_sync_status(|s| {
            s.pending_restart = None;
            s.served_from = ServedFrom::Manager;
            s.last_sync_at = Some(now_text());
            s.rejected_revision = None;
            s.last_error = None;
            s.cache_error = cache_error;
            s.store_id = Some(store_id.clone());
            if let Some(why) = &resync {
                s.last_resync = Some(Resync {
                    at: now_text(),
                    reason: why.clone(),
                    from_revision: previous,
                    to_revision: revision,
                });
            }
        });
        // A Worker that jumped several revisions applied each of their changes at this
        // moment (the newest state contains them): it ACKs every one, so the audit trail
        // records the change on this Worker, each skipped one marked as caught up to the
        // revision swapped in. Bounded for very long absences.
        let detail = resync.as_ref().map(|why| format!("resynchronised: {why}"));
        for (rev, caught_up_to) in acked(previous, revision, resync.is_some()) {
            let address = self.address();
            self.queue(ReportBody {
                applied_at,
                caught_up_to,
                ..report(&store_id, rev, None, address, detail.clone())
            });
        }
    }

    /// `revision` does not compile here (or does not verify): it is not retried until the
    /// Manager moves on, and it is NACKed.
    pub(super) fn rejected(
        &mut self,
        store_id: &str,
        revision: u64,
        error: String,
        resync: Option<String>,
    ) {
        tracing::error!(
            revision,
            "revision rejected; still serving {}:\n{error}",
            self.state.served.revision
        );
        self.state.rejected = Some(revision);
        self.reloader
            .update_sync_status(|s| s.rejected_revision = Some(revision));
        self.nack(store_id, revision, error, resync);
    }

    fn nack(&mut self, store_id: &str, revision: u64, error: String, resync: Option<String>) {
        let detail = resync.map(|why| format!("resynchronising: {why}"));
        let nack = report(store_id, revision, Some(error), self.address(), detail);
        self.queue(nack);
    }

    /// The traffic address reported: `--listen`'s, or the environment's listeners bound
    /// now.
    pub(super) fn address(&self) -> Option<String> {
        self.opts
            .address
            .clone()
            .or_else(|| self.reloader.traffic_addresses())
    }

    /// Queues a report; the oldest are dropped past [`MAX_PENDING_REPORTS`] (a Manager away
    /// that long learns the current state from the latest ones).
    pub(super) fn queue(&mut self, mut r: ReportBody) {
        r.pulled_at = r.pulled_at.or(self.state.pulled_at);
        self.state.pending.push(r);
        let excess = self.state.pending.len().saturating_sub(MAX_PENDING_REPORTS);
        if excess > 0 {
            self.state.pending.drain(..excess);
        }
    }

    /// Delivers pending reports in order; keeps the rest for later if the Manager is down
    /// (or does not see this Worker's stream yet). A report the Manager refuses for good
    /// (another store's revision, a revision it does not have) is dropped, and logged.
    async fn flush_reports(&mut self) {
        while let Some(r) = self.state.pending.first() {
            match self.client.report(r).await {
                Ok(()) => {
                    self.state.pending.remove(0);
                }
                Err(e) if e.is_retryable() || e.code() == Some(&ErrorCode::WorkerMismatch) => {
                    tracing::debug!(error = %e, "report not delivered yet");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, revision = r.revision, "report refused by the Manager; dropped");
                    self.state.pending.remove(0);
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

/// The revisions ACKed once `revision` is served, each with its `caught_up_to`: after a
/// plain pull from `previous`, every revision since (the last [`MAX_ACKS_PER_CATCH_UP`] of
/// them), those below `revision` caught up to it; after a resynchronisation only `revision`,
/// whose history is not the one served before.
fn acked(previous: u64, revision: u64, resync: bool) -> impl Iterator<Item = (u64, Option<u64>)> {
    let first = if resync {
        revision
    } else {
        (previous + 1).max(revision.saturating_sub(MAX_ACKS_PER_CATCH_UP - 1))
    };
    (first..=revision).map(move |rev| (rev, (rev < revision).then_some(revision)))
}

/// A full pull merged into nothing: every digest and the state digest checked.
fn merge_all(full: &SyncPayload) -> Result<Entities, String> {
    state::merge(&Entities::new(), full).map_err(|e| format!("full pull did not verify: {e}"))
}

/// How a pull is compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Swap {
    /// Against the served generation: only what changed is compiled.
    OnServed,
    /// From nothing: nothing of the served generation is reused.
    FromNothing,
}

/// Compiles and swaps a pull (blocking): a whole set, or only the change.
fn compile_and_swap(reloader: &Reloader, parsed: &Parsed, how: Swap) -> ReloadOutcome {
    match parsed {
        Parsed::Set { set, numbering } if how == Swap::FromNothing => {
            reloader.rebuild(&set.manifests(), numbering)
        }
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

#[cfg(test)]
mod tests {
    use super::{MAX_ACKS_PER_CATCH_UP, acked};

    #[test]
    fn a_jump_acks_the_skipped_revisions_as_caught_up_and_a_resync_only_its_own() {
        let acks =
            |previous, revision, resync| -> Vec<_> { acked(previous, revision, resync).collect() };
        assert_eq!(acks(4, 5, false), [(5, None)]);
        assert_eq!(acks(5, 8, false), [(6, Some(8)), (7, Some(8)), (8, None)]);
        assert_eq!(acks(5, 8, true), [(8, None)]);
        assert_eq!(acks(9, 3, true), [(3, None)]);
        let long = acks(0, 10_000, false);
        assert_eq!(long.len() as u64, MAX_ACKS_PER_CATCH_UP);
        assert_eq!(
            long.first(),
            Some(&(10_001 - MAX_ACKS_PER_CATCH_UP, Some(10_000)))
        );
        assert_eq!(long.last(), Some(&(10_000, None)));
    }
}
