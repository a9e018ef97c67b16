//! Manager mode: the Worker follows one environment on a Manager.
//!
//! Notifications (SSE) are hints: on each, and on a periodic revision check, the Worker
//! pulls what changed since the revision it serves, verifies digests, compiles, swaps, and
//! reports ACK or NACK. It never goes backwards, never waits for other Workers, keeps
//! serving its last good revision when the Manager is down or a revision is rejected, and
//! keeps a last-known-good cache on disk for starts without a Manager.

pub mod cache;
pub mod sse;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http_body_util::BodyExt;
use switchyard_api::records::ReportStatus;
use switchyard_api::sync::{ReportBody, SyncEntity, SyncPayload, state_digest};
use switchyard_config::Kind;
use switchyard_config::{ConfigErrors, Located, Manifest, parse_str};
use switchyard_engine::{Change, Numbering};
use tokio::sync::watch;

use self::sse::{SseItem, SseParser};
use crate::reload::{ReloadOutcome, Reloader};
pub use switchyard_api::ClientError;
use switchyard_api::SyncClient;

/// How a Worker finds and follows its Manager.
#[derive(Debug, Clone)]
pub struct ManagedOptions {
    /// `http://host:port` of the Manager.
    pub manager: String,
    pub env: String,
    /// A `worker` token for `env`.
    pub token: String,
    /// Names this Worker in the Manager's status and audit records.
    pub worker_id: String,
    /// Where the last-known-good cache lives.
    pub cache_dir: PathBuf,
    /// The Worker's traffic address, reported to the Manager.
    pub address: Option<String>,
    /// How often the Worker compares its revision with the Manager's (catches missed
    /// notifications even when the stream looks healthy).
    pub check_interval: Duration,
    /// The stream is considered dead after this long without a byte (heartbeats included).
    pub stream_timeout: Duration,
    /// How long to wait for the Manager at start before falling back to the cache.
    pub start_timeout: Duration,
}

impl ManagedOptions {
    /// The client for this Worker's calls to its Manager.
    fn client(&self) -> Result<SyncClient, ClientError> {
        SyncClient::new(
            &self.manager,
            &self.token,
            &self.env,
            &self.worker_id,
            self.address.as_deref(),
        )
    }

    pub fn new(manager: &str, env: &str, token: &str, worker_id: &str, cache_dir: PathBuf) -> Self {
        ManagedOptions {
            manager: manager.to_string(),
            env: env.to_string(),
            token: token.to_string(),
            worker_id: worker_id.to_string(),
            cache_dir,
            address: None,
            check_interval: Duration::from_secs(5),
            stream_timeout: Duration::from_secs(15),
            start_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "cannot start: the Manager is unreachable ({manager}) and there is no usable cache ({cache})"
    )]
    NoConfig { manager: String, cache: String },
    #[error(transparent)]
    Client(#[from] ClientError),
}

type Key = (Kind, String);

/// The live entities by kind and name; persistent, so applying a pull to a copy costs
/// O(pulled · log n), not a copy of the environment.
type Entities = imbl::OrdMap<Key, SyncEntity>;

/// At most this many revisions are ACKed when a Worker catches up over a gap.
const MAX_ACKS_PER_CATCH_UP: u64 = 256;

/// The sync task's own state: the entity set of the revision being served.
pub struct SyncState {
    entities: Entities,
    /// The parsed form of `entities` (live ones).
    parsed: Parsed,
    revision: u64,
    /// A revision that failed to compile here; not retried until the Manager moves on.
    rejected: Option<u64>,
    /// Reports not yet delivered (delivered in order once the Manager answers).
    pending: Vec<ReportBody>,
}

pub struct Syncer {
    opts: ManagedOptions,
    client: SyncClient,
    reloader: Arc<Reloader>,
    state: SyncState,
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn now_text() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// Parsed manifests of the live entities, with the version each was parsed from. Kept
/// across syncs so a change re-parses only the entities that changed; persistent, so the
/// next set is a cheap copy plus the change.
type Parsed = imbl::OrdMap<Key, (u64, Arc<Located<Manifest>>)>;

/// Parses what is not parsed yet (or changed version) and returns the numbering (the
/// Manager's revision and proxy versions).
fn parse_set(
    env: &str,
    entities: &Entities,
    revision: u64,
    cache: &Parsed,
) -> Result<(Parsed, Numbering), ConfigErrors> {
    let mut parsed = Parsed::new();
    let mut errors = Vec::new();
    let mut numbering = Numbering {
        revision: Some(revision),
        ..Numbering::default()
    };
    for (key, e) in entities.iter().filter(|(_, e)| !e.deleted) {
        if e.kind == Kind::Proxy {
            numbering.versions.insert(e.name.clone(), e.version);
        }
        if let Some((v, m)) = cache.get(key)
            && *v == e.version
        {
            parsed.insert(key.clone(), (*v, m.clone()));
            continue;
        }
        let name = format!("{env}/{}/{} v{}", e.kind, e.name, e.version);
        match parse_str(name.into(), &e.manifest) {
            Ok(docs) => {
                for d in docs {
                    parsed.insert(key.clone(), (e.version, Arc::new(d)));
                }
            }
            Err(mut err) => errors.append(&mut err.0),
        }
    }
    if errors.is_empty() {
        Ok((parsed, numbering))
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Compiles and swaps a parsed set (blocking).
fn apply_parsed(reloader: &Reloader, parsed: &Parsed, numbering: &Numbering) -> ReloadOutcome {
    let refs: Vec<&Located<Manifest>> = parsed.values().map(|(_, m)| m.as_ref()).collect();
    reloader.apply(Change::Set(&refs), numbering)
}

/// The entities an incremental pull changed, parsed.
struct ParsedChanges {
    /// The parsed set after the change.
    parsed: Parsed,
    /// New or changed entities, by kind and name.
    upserts: Vec<Arc<Located<Manifest>>>,
    removed: Vec<Key>,
    /// The Manager's revision and the versions of the upserted proxies.
    numbering: Numbering,
}

/// Parses the entities of an incremental pull (the last word on each, as [`merge`] takes
/// it), reusing `cache` for versions already parsed. Work grows with the pull, not with
/// the environment.
fn parse_changes(
    env: &str,
    changed: &[SyncEntity],
    revision: u64,
    cache: &Parsed,
) -> Result<ParsedChanges, ConfigErrors> {
    let last: BTreeMap<Key, &SyncEntity> = changed
        .iter()
        .map(|e| ((e.kind, e.name.clone()), e))
        .collect();
    let mut out = ParsedChanges {
        parsed: cache.clone(),
        upserts: Vec::new(),
        removed: Vec::new(),
        numbering: Numbering {
            revision: Some(revision),
            ..Numbering::default()
        },
    };
    let mut errors = Vec::new();
    for (key, e) in last {
        if e.deleted {
            out.parsed.remove(&key);
            out.removed.push(key);
            continue;
        }
        if e.kind == Kind::Proxy {
            out.numbering.versions.insert(e.name.clone(), e.version);
        }
        let manifest = match cache.get(&key) {
            Some((v, m)) if *v == e.version => Some(m.clone()),
            _ => {
                let name = format!("{env}/{}/{} v{}", e.kind, e.name, e.version);
                match parse_str(name.into(), &e.manifest) {
                    Ok(docs) => docs.into_iter().last().map(Arc::new),
                    Err(mut err) => {
                        errors.append(&mut err.0);
                        continue;
                    }
                }
            }
        };
        match manifest {
            Some(m) => {
                out.parsed.insert(key, (e.version, m.clone()));
                out.upserts.push(m);
            }
            None => {
                out.parsed.remove(&key);
                out.removed.push(key);
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Compiles and swaps the change only (blocking).
fn apply_changes(reloader: &Reloader, changes: &ParsedChanges) -> ReloadOutcome {
    let upserts: Vec<&Located<Manifest>> = changes.upserts.iter().map(|m| m.as_ref()).collect();
    let removed: Vec<(Kind, &str)> = changes
        .removed
        .iter()
        .map(|(kind, name)| (*kind, name.as_str()))
        .collect();
    let delta = Change::Delta {
        upserts: &upserts,
        removed: &removed,
    };
    reloader.apply(delta, &changes.numbering)
}

/// Applies a pull to an entity set, checking every digest and the state digest.
fn merge(base: &Entities, payload: &SyncPayload) -> Result<Entities, String> {
    let mut next = if payload.full {
        Entities::new()
    } else {
        base.clone()
    };
    for e in &payload.entities {
        if !e.verify() {
            return Err(format!(
                "digest mismatch for {}/{} v{}",
                e.kind, e.name, e.version
            ));
        }
        let key = (e.kind, e.name.clone());
        if e.deleted {
            next.remove(&key);
        } else {
            next.insert(key, e.clone());
        }
    }
    let digest = state_digest(
        next.values()
            .map(|e| (e.kind, e.name.as_str(), e.version, e.digest.as_str())),
    );
    if digest != payload.state_digest {
        return Err(format!(
            "state digest mismatch at revision {} (local merge differs from the Manager)",
            payload.revision
        ));
    }
    Ok(next)
}

impl Syncer {
    /// Builds the first generation: from the Manager if it answers in time, else from the
    /// last-known-good cache.
    pub async fn start(
        opts: ManagedOptions,
        build: impl Fn(&[&Located<Manifest>], &Numbering) -> Result<Reloader, ConfigErrors>,
    ) -> Result<(Reloader, SyncState, &'static str, Option<String>), StartError> {
        let client = opts.client()?;
        let mut pending = Vec::new();
        let manager_error = match tokio::time::timeout(opts.start_timeout, client.pull(0)).await {
            Ok(Ok(payload)) => match merge(&Entities::new(), &payload) {
                Ok(entities) => {
                    let built = parse_set(&opts.env, &entities, payload.revision, &Parsed::new())
                        .and_then(|(p, o)| build(&refs(&p), &o).map(|r| (r, p)));
                    match built {
                        Ok((reloader, parsed)) => {
                            if let Err(e) = cache::save(
                                &opts.cache_dir,
                                &opts.env,
                                payload.revision,
                                &entities.values().cloned().collect::<Vec<_>>(),
                            ) {
                                tracing::warn!(error = %e, "cannot write the last-known-good cache");
                            }
                            pending.push(report(payload.revision, None, opts.address.clone()));
                            return Ok((
                                reloader,
                                SyncState {
                                    entities,
                                    parsed,
                                    revision: payload.revision,
                                    rejected: None,
                                    pending,
                                },
                                "manager",
                                None,
                            ));
                        }
                        Err(errors) => {
                            pending.push(report(
                                payload.revision,
                                Some(errors.to_string()),
                                opts.address.clone(),
                            ));
                            format!("revision {} rejected: {errors}", payload.revision)
                        }
                    }
                }
                Err(e) => e,
            },
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", opts.start_timeout),
        };
        tracing::warn!(error = %manager_error, "Manager unavailable at start; trying the last-known-good cache");
        let cached = cache::load(&opts.cache_dir, &opts.env);
        let file = match cached {
            Ok(Some(f)) => f,
            Ok(None) => {
                return Err(StartError::NoConfig {
                    manager: manager_error,
                    cache: format!(
                        "{} does not exist",
                        cache::path(&opts.cache_dir, &opts.env).display()
                    ),
                });
            }
            Err(e) => {
                return Err(StartError::NoConfig {
                    manager: manager_error,
                    cache: e,
                });
            }
        };
        let entities: Entities = file
            .entities
            .into_iter()
            .filter(|e| !e.deleted)
            .map(|e| ((e.kind, e.name.clone()), e))
            .collect();
        let (reloader, parsed) = parse_set(&opts.env, &entities, file.revision, &Parsed::new())
            .and_then(|(p, o)| build(&refs(&p), &o).map(|r| (r, p)))
            .map_err(|e| StartError::NoConfig {
                manager: manager_error.clone(),
                cache: format!(
                    "the cached revision {} does not compile: {e}",
                    file.revision
                ),
            })?;
        tracing::warn!(
            revision = file.revision,
            "serving the last-known-good cache until the Manager answers"
        );
        Ok((
            reloader,
            SyncState {
                entities,
                parsed,
                revision: file.revision,
                rejected: None,
                pending,
            },
            "cache",
            Some(manager_error),
        ))
    }

    pub fn new(
        opts: ManagedOptions,
        reloader: Arc<Reloader>,
        state: SyncState,
    ) -> Result<Syncer, ClientError> {
        Ok(Syncer {
            client: opts.client()?,
            opts,
            reloader,
            state,
        })
    }

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
                    tracing::warn!(error = %e, retry_in = ?delay, "lost the Manager; still serving revision {}", self.state.revision);
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
            .events(self.state.revision)
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
                frame = tokio::time::timeout(self.opts.stream_timeout, body.frame()) => {
                    let frame = match frame {
                        Err(_) => return Err(format!("no heartbeat for {:?}", self.opts.stream_timeout)),
                        Ok(None) => return Err("the Manager closed the event stream".into()),
                        Ok(Some(Err(e))) => return Err(format!("event stream broken: {e}")),
                        Ok(Some(Ok(f))) => f,
                    };
                    let Ok(data) = frame.into_data() else { continue };
                    let items = parser.push(&data).map_err(str::to_string)?;
                    let mut newer = false;
                    for item in items {
                        if let SseItem::Event(ev) = item
                            && ev.event == "revision"
                            && let Some(rev) = ev.id.as_deref().and_then(|s| s.parse::<u64>().ok())
                        {
                            self.reloader.update_sync_status(|s| s.manager_revision = Some(rev));
                            newer |= rev > self.state.revision;
                        }
                    }
                    if newer {
                        self.catch_up().await?;
                    }
                }
                _ = check.tick() => {
                    let rev = self.client.revision().await.map_err(|e| e.to_string())?;
                    self.reloader.update_sync_status(|s| s.manager_revision = Some(rev));
                    if rev > self.state.revision {
                        tracing::info!(manager_revision = rev, serving = self.state.revision, "periodic check found a newer revision");
                        self.catch_up().await?;
                    }
                    self.flush_reports().await;
                }
                _ = crate::server::stopped(stop) => return Ok(()),
            }
        }
    }

    /// Pulls and applies everything newer than the served revision.
    async fn catch_up(&mut self) -> Result<(), String> {
        let payload = self
            .client
            .pull(self.state.revision)
            .await
            .map_err(|e| e.to_string())?;
        self.reloader
            .update_sync_status(|s| s.manager_revision = Some(payload.revision));
        if payload.revision <= self.state.revision && !payload.full {
            return Ok(());
        }
        if payload.revision < self.state.revision {
            // Never go backwards (a Manager restored from an older backup, say).
            tracing::warn!(
                manager = payload.revision,
                serving = self.state.revision,
                "the Manager is behind this Worker; keeping the newer revision"
            );
            return Ok(());
        }
        if self.state.rejected == Some(payload.revision) {
            return Ok(());
        }
        // An incremental pull that verifies is compiled as a change; anything else (a full
        // pull, or a fallback to one) as a whole set.
        let (merged, incremental) = match merge(&self.state.entities, &payload) {
            Ok(m) => (m, !payload.full),
            Err(e) => {
                tracing::warn!(error = %e, "incremental pull did not verify; pulling everything");
                let full = self.client.pull(0).await.map_err(|e| e.to_string())?;
                let m = merge(&Entities::new(), &full)
                    .map_err(|e| format!("full pull did not verify: {e}"))?;
                (m, false)
            }
        };
        let revision = payload.revision;
        let reloader = self.reloader.clone();
        let parsed = if incremental {
            parse_changes(
                &self.opts.env,
                &payload.entities,
                revision,
                &self.state.parsed,
            )
            .map(|changes| {
                tokio::task::spawn_blocking(move || {
                    (apply_changes(&reloader, &changes), changes.parsed)
                })
            })
        } else {
            parse_set(&self.opts.env, &merged, revision, &self.state.parsed).map(
                |(parsed, numbering)| {
                    tokio::task::spawn_blocking(move || {
                        (apply_parsed(&reloader, &parsed, &numbering), parsed)
                    })
                },
            )
        };
        let (outcome, parsed) = match parsed {
            Ok(task) => {
                let (outcome, parsed) = task
                    .await
                    .map_err(|e| format!("compile task failed: {e}"))?;
                (outcome, Some(parsed))
            }
            Err(errors) => (
                ReloadOutcome::Rejected {
                    revision: self.state.revision,
                    errors,
                },
                None,
            ),
        };
        let applied_at = now_millis();
        let previous = self.state.revision;
        match outcome {
            ReloadOutcome::Applied { .. } | ReloadOutcome::Unchanged { .. } => {
                self.state.entities = merged;
                if let Some(parsed) = parsed {
                    self.state.parsed = parsed;
                }
                self.state.revision = revision;
                self.state.rejected = None;
                let list: Vec<SyncEntity> = self.state.entities.values().cloned().collect();
                let cache_error =
                    cache::save(&self.opts.cache_dir, &self.opts.env, revision, &list).err();
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
                // A Worker that jumped several revisions applied each of their changes at
                // this moment (the newest state contains them): it ACKs every one, so the
                // audit trail records the change on this Worker. Bounded for very long
                // absences.
                let first = (previous + 1).max(revision.saturating_sub(MAX_ACKS_PER_CATCH_UP - 1));
                for rev in first..=revision {
                    let mut ack = report(rev, None, self.opts.address.clone());
                    ack.applied_at = applied_at;
                    self.state.pending.push(ack);
                }
            }
            ReloadOutcome::Rejected { errors, .. } => {
                tracing::error!(
                    revision,
                    "revision rejected; still serving {}:\n{errors}",
                    self.state.revision
                );
                self.state.rejected = Some(revision);
                self.reloader
                    .update_sync_status(|s| s.rejected_revision = Some(revision));
                self.state.pending.push(report(
                    revision,
                    Some(errors.to_string()),
                    self.opts.address.clone(),
                ));
            }
        }
        self.flush_reports().await;
        Ok(())
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

fn report(revision: u64, error: Option<String>, address: Option<String>) -> ReportBody {
    ReportBody {
        revision,
        status: if error.is_some() {
            ReportStatus::Nack
        } else {
            ReportStatus::Ack
        },
        error,
        applied_at: now_millis(),
        address,
    }
}

/// Exponential backoff with full jitter: 100 ms doubling up to 5 s.
struct Backoff {
    attempts: u32,
    seed: u64,
}

impl Backoff {
    fn new(worker_id: &str) -> Backoff {
        let mut seed = now_millis() as u64 ^ 0x9e37_79b9_7f4a_7c15;
        for b in worker_id.bytes() {
            seed = seed.rotate_left(5) ^ u64::from(b);
        }
        Backoff {
            attempts: 0,
            seed: seed | 1,
        }
    }

    fn next(&mut self) -> Duration {
        let cap_ms = (100u64 << self.attempts.min(6)).min(5_000);
        self.attempts += 1;
        // xorshift64
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        Duration::from_millis(cap_ms / 2 + self.seed % (cap_ms / 2 + 1))
    }
}

fn refs(parsed: &Parsed) -> Vec<&Located<Manifest>> {
    parsed.values().map(|(_, m)| m.as_ref()).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn proxy(name: &str, version: u64, path: &str) -> SyncEntity {
        let manifest = format!(
            r#"{{"apiVersion":"switchyard.dev/v1","kind":"Proxy","metadata":{{"name":"{name}"}},"spec":{{"routes":[{{"pathPrefix":"{path}"}}],"upstream":{{"targets":[{{"url":"http://127.0.0.1:1"}}]}}}}}}"#
        );
        SyncEntity {
            kind: Kind::Proxy,
            name: name.into(),
            version,
            digest: switchyard_config::manifest::sha256_hex(manifest.as_bytes()),
            manifest,
            deleted: false,
        }
    }

    #[test]
    fn a_pull_is_parsed_as_a_change_against_the_cache() {
        let base: Entities = [proxy("a", 1, "/a"), proxy("b", 1, "/b")]
            .into_iter()
            .map(|e| ((e.kind, e.name.clone()), e))
            .collect();
        let (cache, _) = parse_set("dev", &base, 1, &Parsed::new()).unwrap();
        let deleted = SyncEntity {
            deleted: true,
            manifest: String::new(),
            ..proxy("b", 2, "/b")
        };
        // `c` twice: the last word counts, as in `merge`.
        let pull = [
            proxy("c", 1, "/c"),
            deleted,
            proxy("a", 1, "/a"),
            proxy("c", 2, "/c2"),
        ];
        let changes = parse_changes("dev", &pull, 2, &cache).unwrap();
        assert_eq!(changes.removed, [(Kind::Proxy, "b".to_string())]);
        let names: Vec<(&str, u64)> = changes
            .parsed
            .iter()
            .map(|((_, n), (v, _))| (n.as_str(), *v))
            .collect();
        assert_eq!(names, [("a", 1), ("c", 2)]);
        assert_eq!(changes.upserts.len(), 2);
        // `a` was not parsed again.
        let cached_a = &cache.get(&(Kind::Proxy, "a".to_string())).unwrap().1;
        assert!(changes.upserts.iter().any(|m| Arc::ptr_eq(m, cached_a)));
        assert_eq!(changes.numbering.revision, Some(2));
        assert_eq!(changes.numbering.versions.get("c"), Some(&2));
        // The cache itself is unchanged.
        assert_eq!(cache.len(), 2);
    }
}
