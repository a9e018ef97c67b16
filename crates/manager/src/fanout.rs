//! Notification fan-out: one broadcast channel per environment and the Workers connected
//! to each here (written down in the store by `presence.rs`, where every Manager reads who
//! is connected and who was expected to pick up each revision). Writes never wait for
//! Workers: a publish is a non-blocking send, and a slow subscriber that lags simply
//! re-syncs by revision.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use switchyard_api::records::{Millis, now_millis};
use switchyard_api::sync::{RevisionEvent, UpgradeDirective};
use switchyard_store::WorkerConnection;
use tokio::sync::{broadcast, watch};

use crate::presence::Presence;

/// A Worker with an event stream open: who it says it is, and the token it connected
/// with (its reports are accepted only with that token).
#[derive(Debug, Clone, Serialize)]
pub struct ConnectedWorker {
    pub id: String,
    pub address: Option<String>,
    /// Its binary version and schemas (`x-switchyard-version`), as it last said.
    pub version: Option<String>,
    pub connected_at: Millis,
    /// The processes with a stream open under this id (`x-switchyard-instance`), oldest
    /// first: two while a handover is under way.
    pub instances: Vec<String>,
    /// The public id of the token its streams were opened with.
    #[serde(skip)]
    pub token_id: String,
    /// Its streams here, as written down in the store (see [`Presence`]).
    #[serde(skip)]
    pub session: String,
}

/// A Worker asking for an event stream: the id it gives (`x-switchyard-worker`), its
/// traffic address, and the token it asks with.
#[derive(Debug, Clone)]
pub struct WorkerClaim {
    pub id: String,
    /// The process (`x-switchyard-instance`), if it says.
    pub instance: Option<String>,
    pub address: Option<String>,
    pub version: Option<String>,
    pub token_id: String,
}

/// Whether a Worker id may report with a token: it must have an event stream open, opened
/// with that same token. This is what binds a report to the Worker that sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// Connected with this token.
    Bound,
    /// No stream of this Worker id is open.
    NotConnected,
    /// Connected, with another token.
    OtherToken,
}

/// A stream was refused: the Worker id is connected with another token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "worker {id:?} is connected with another token; a Worker id belongs to one token while its streams are open"
)]
pub struct ClaimedElsewhere {
    pub id: String,
}

#[derive(Default)]
struct EnvState {
    tx: Option<broadcast::Sender<RevisionEvent>>,
    directives: Option<broadcast::Sender<UpgradeDirective>>,
    /// worker id → (connection count, info)
    workers: HashMap<String, (usize, ConnectedWorker)>,
    /// The highest revision announced here (published, or found already current when this
    /// Manager first looked): a revision at or below it is not announced again.
    announced: u64,
    /// Bumped whenever something a viewer of the environment sees changes here: a
    /// revision announced, a Worker report received, a Worker connecting or going away
    /// (the dashboard's stream, `ui/stream.rs`).
    changes: Option<watch::Sender<u64>>,
}

impl EnvState {
    fn changed(&mut self) {
        if let Some(tx) = &self.changes {
            tx.send_modify(|v| *v += 1);
        }
    }
}

/// The notification fan-out of every environment, shared by the handlers.
#[derive(Default, Clone)]
pub struct Fanout {
    envs: Arc<Mutex<HashMap<String, EnvState>>>,
    /// Where connections are written down (none in unit tests).
    presence: Option<Arc<Presence>>,
}

/// Keeps a Worker listed as connected while its stream is open.
pub struct Subscription {
    pub rx: broadcast::Receiver<RevisionEvent>,
    /// UpgradeDirectives to Worker processes of the environment (each stream keeps its own).
    pub directives: broadcast::Receiver<UpgradeDirective>,
    /// Keep alive as long as the stream is.
    pub guard: ConnectionGuard,
}

pub struct ConnectionGuard {
    fanout: Fanout,
    env: String,
    worker: Option<String>,
    instance: Option<String>,
}

impl ConnectionGuard {
    /// The Worker id this stream counts for, if it said.
    pub fn worker(&self) -> Option<&str> {
        self.worker.as_deref()
    }

    /// The Worker id and process this stream is, when it said both.
    pub fn process(&self) -> Option<(String, String)> {
        self.worker.clone().zip(self.instance.clone())
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let Some(id) = &self.worker else { return };
        let mut envs = self.fanout.lock();
        if let Some(state) = envs.get_mut(&self.env)
            && let Some((count, w)) = state.workers.get_mut(id)
        {
            *count -= 1;
            if let Some(i) = &self.instance
                && let Some(at) = w.instances.iter().position(|x| x == i)
            {
                w.instances.remove(at);
            }
            if *count == 0 {
                let session = std::mem::take(&mut w.session);
                state.workers.remove(id);
                state.changed();
                tracing::info!(env = %self.env, worker = %id, "worker disconnected");
                if let Some(p) = &self.fanout.presence {
                    p.disconnected(self.env.clone(), id.clone(), session);
                }
            }
        }
    }
}

impl Fanout {
    /// A fan-out whose connections are written down by `presence`.
    pub fn new(presence: Arc<Presence>) -> Fanout {
        Fanout {
            envs: Arc::default(),
            presence: Some(presence),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, EnvState>> {
        self.envs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Subscribes to an environment's notifications; `worker` (if any) is listed as
    /// connected until the subscription is dropped. Refused when that Worker id is
    /// connected with another token.
    pub fn subscribe(
        &self,
        env: &str,
        worker: Option<WorkerClaim>,
    ) -> Result<Subscription, ClaimedElsewhere> {
        let mut envs = self.lock();
        let state = envs.entry(env.to_string()).or_default();
        if let Some(claim) = &worker
            && let Some((_, held)) = state.workers.get(&claim.id)
            && held.token_id != claim.token_id
        {
            return Err(ClaimedElsewhere {
                id: claim.id.clone(),
            });
        }
        let tx = state
            .tx
            .get_or_insert_with(|| broadcast::channel(256).0)
            .clone();
        let directives = state
            .directives
            .get_or_insert_with(|| broadcast::channel(64).0)
            .subscribe();
        let mut instance_held = None;
        let worker_id = worker.map(|claim| {
            let WorkerClaim {
                id,
                instance,
                address,
                version,
                token_id,
            } = claim;
            let entry = state.workers.entry(id.clone()).or_insert_with(|| {
                tracing::info!(env, worker = %id, "worker connected");
                (
                    0,
                    ConnectedWorker {
                        id: id.clone(),
                        address: address.clone(),
                        version: version.clone(),
                        connected_at: now_millis(),
                        instances: Vec::new(),
                        token_id,
                        session: self
                            .presence
                            .as_ref()
                            .map(|p| p.next_session())
                            .unwrap_or_default(),
                    },
                )
            });
            entry.0 += 1;
            if let Some(i) = instance {
                entry.1.instances.push(i.clone());
                instance_held = Some(i);
            }
            if address.is_some() {
                entry.1.address = address;
            }
            // A successor of a handover connects under the same id before its
            // predecessor hangs up: the newest stream says what runs now.
            if version.is_some() {
                entry.1.version = version;
            }
            id
        });
        if worker_id.is_some() {
            state.changed();
        }
        Ok(Subscription {
            rx: tx.subscribe(),
            directives,
            guard: ConnectionGuard {
                fanout: self.clone(),
                env: env.to_string(),
                worker: worker_id,
                instance: instance_held,
            },
        })
    }

    /// Whether `worker` may report to `env` with the token `token_id` (see [`Binding`]).
    pub fn binding(&self, env: &str, worker: &str, token_id: &str) -> Binding {
        match self.lock().get(env).and_then(|s| s.workers.get(worker)) {
            None => Binding::NotConnected,
            Some((_, w)) if w.token_id == token_id => Binding::Bound,
            Some(_) => Binding::OtherToken,
        }
    }

    /// Watches what a viewer of `env` sees change here (see `EnvState::changes`): the value
    /// only ever grows.
    pub fn watch_changes(&self, env: &str) -> watch::Receiver<u64> {
        let mut envs = self.lock();
        let state = envs.entry(env.to_string()).or_default();
        state
            .changes
            .get_or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Something a viewer of `env` sees changed here (a Worker report was recorded).
    pub fn changed(&self, env: &str) {
        if let Some(state) = self.lock().get_mut(env) {
            state.changed();
        }
    }

    /// Notifies every subscriber of `event` (never waits).
    pub fn publish(&self, event: RevisionEvent) {
        let mut envs = self.lock();
        let state = envs.entry(event.env.clone()).or_default();
        // Announced already (by this Manager's commit, or by another's notice or poll).
        if event.revision <= state.announced {
            return;
        }
        state.announced = event.revision;
        state.changed();
        if let Some(tx) = &state.tx {
            // No receivers is fine: nobody is connected.
            let _ = tx.send(event);
        }
    }

    /// Re-announces `revision` of `env` (already announced) to its streams: something
    /// about it other than its content changed (a canary's share or state), and Workers
    /// pull again to learn what. Never waits.
    pub fn nudge(&self, env: &str, revision: u64) {
        if let Some(tx) = self.lock().get(env).and_then(|s| s.tx.as_ref()) {
            let _ = tx.send(RevisionEvent {
                env: env.to_string(),
                revision,
                changes: Vec::new(),
            });
        }
    }

    /// Sends `directive` to the streams of `env`; the one of the process it names acts on
    /// it. `false` when no stream of the environment is open.
    pub fn direct(&self, env: &str, directive: UpgradeDirective) -> bool {
        let envs = self.lock();
        envs.get(env)
            .and_then(|s| s.directives.as_ref())
            .is_some_and(|tx| tx.send(directive).is_ok())
    }

    /// The processes connected under Worker id `worker` of `env`, oldest first.
    pub fn instances(&self, env: &str, worker: &str) -> Vec<String> {
        self.lock()
            .get(env)
            .and_then(|s| s.workers.get(worker))
            .map(|(_, w)| w.instances.clone())
            .unwrap_or_default()
    }

    pub fn connected(&self, env: &str) -> Vec<ConnectedWorker> {
        let envs = self.lock();
        let mut out: Vec<ConnectedWorker> = envs
            .get(env)
            .map(|s| s.workers.values().map(|(_, w)| w.clone()).collect())
            .unwrap_or_default();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// The stream of Worker `worker` of `env` held here, as the store keeps it.
    pub fn connection(&self, env: &str, worker: &str) -> Option<WorkerConnection> {
        let envs = self.lock();
        let (_, w) = envs.get(env)?.workers.get(worker)?;
        Some(row(env, w, self.manager()))
    }

    /// Every stream held here, as the store keeps them (refreshed periodically).
    pub fn held(&self) -> Vec<WorkerConnection> {
        let manager = self.manager();
        self.lock()
            .iter()
            .flat_map(|(env, s)| s.workers.values().map(|(_, w)| row(env, w, manager)))
            .collect()
    }

    fn manager(&self) -> &str {
        self.presence.as_ref().map_or("", |p| p.manager())
    }

    /// The environments with Workers connected here, and the highest revision announced
    /// to each (`None`: nothing yet).
    pub fn followed(&self) -> Vec<(String, Option<u64>)> {
        self.lock()
            .iter()
            .filter(|(_, s)| !s.workers.is_empty())
            .map(|(env, s)| (env.clone(), (s.announced > 0).then_some(s.announced)))
            .collect()
    }

    /// Takes `revision` as announced for `env` without notifying anyone (what Workers
    /// connecting now pull anyway).
    pub fn baseline(&self, env: &str, revision: u64) {
        let mut envs = self.lock();
        let state = envs.entry(env.to_string()).or_default();
        state.announced = state.announced.max(revision);
    }

    /// The highest revision of `env` announced here, if any.
    pub fn announced_revision(&self, env: &str) -> Option<u64> {
        self.lock().get(env).map(|s| s.announced).filter(|r| *r > 0)
    }

    /// Whether `revision` of `env` was announced here.
    pub fn announced(&self, env: &str, revision: u64) -> bool {
        self.lock()
            .get(env)
            .is_some_and(|s| revision <= s.announced)
    }

    /// Number of connected Workers per environment.
    pub fn connected_counts(&self) -> Vec<(String, usize)> {
        self.lock()
            .iter()
            .map(|(env, s)| (env.clone(), s.workers.len()))
            .collect()
    }
}

fn row(env: &str, w: &ConnectedWorker, manager: &str) -> WorkerConnection {
    WorkerConnection {
        env: env.to_string(),
        worker_id: w.id.clone(),
        manager: manager.to_string(),
        session: w.session.clone(),
        address: w.address.clone(),
        version: w.version.clone(),
        connected_at: w.connected_at,
        last_seen: now_millis(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn claim(id: &str, token: &str) -> Option<WorkerClaim> {
        Some(WorkerClaim {
            id: id.into(),
            instance: None,
            address: None,
            version: None,
            token_id: token.into(),
        })
    }

    #[test]
    fn a_worker_id_is_bound_to_the_token_of_its_open_streams() {
        let fanout = Fanout::default();
        let first = fanout.subscribe("dev", claim("w1", "tok_a")).unwrap();
        assert_eq!(fanout.binding("dev", "w1", "tok_a"), Binding::Bound);
        assert_eq!(fanout.binding("dev", "w1", "tok_b"), Binding::OtherToken);
        assert_eq!(fanout.binding("dev", "w2", "tok_a"), Binding::NotConnected);
        assert_eq!(fanout.binding("prod", "w1", "tok_a"), Binding::NotConnected);
        // Another token cannot take the id over while it is connected …
        let refused = fanout.subscribe("dev", claim("w1", "tok_b")).err().unwrap();
        assert_eq!(refused.id, "w1");
        // … the same token may open a second stream (a reconnect overlapping the old one).
        let second = fanout.subscribe("dev", claim("w1", "tok_a")).unwrap();
        drop(first);
        assert_eq!(fanout.binding("dev", "w1", "tok_a"), Binding::Bound);
        drop(second);
        assert_eq!(fanout.binding("dev", "w1", "tok_a"), Binding::NotConnected);
        // Once every stream is closed the id is free again.
        let _other = fanout.subscribe("dev", claim("w1", "tok_b")).unwrap();
        assert_eq!(fanout.binding("dev", "w1", "tok_b"), Binding::Bound);
    }
}
