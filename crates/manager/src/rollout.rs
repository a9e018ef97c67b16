//! Rollouts: a revision Workers take only by starting a new process (restart-required
//! changes, a new binary) is brought to each Worker of the environment in turn — the
//! Manager asks one process to hand over (`event: upgrade` on its stream), waits until its
//! successor is connected and ACKs the revision (or the old process NACKs it, or the step
//! times out), then moves on. The first failure stops it: the Workers after it are not
//! touched and keep serving. Every step is an audit record; the Manager drives it, so the
//! client that started it may go away.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use switchyard_api::admin::{RolloutState, RolloutStatus, RolloutStepState, RolloutWorker};
use switchyard_api::records::{Operation, ReportStatus, now_millis};
use switchyard_api::sync::UpgradeDirective;
use switchyard_store::{AuditEvent, Store};

use crate::state::AppState;

/// How often a step looks at the Worker's connections and reports.
const POLL: Duration = Duration::from_millis(100);
/// A step's deadline when the request does not give one.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a rollout saved as running by another Manager (or before a restart) without
/// progress is taken to be driven still: past it, its Manager is taken to be gone and a
/// new rollout may start.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(2 * DEFAULT_STEP_TIMEOUT.as_secs());

/// The latest rollout of each environment: driven from this Manager's memory, and saved to
/// the store at every change (in order, by one writer task) so that every Manager on the
/// database — and this one after a restart — shows it. The audit trail keeps every step.
#[derive(Default, Clone)]
pub struct Rollouts {
    by_env: Arc<Mutex<HashMap<String, RolloutStatus>>>,
    /// Where each change is sent to be saved (none in unit tests).
    saved: Option<tokio::sync::mpsc::UnboundedSender<RolloutStatus>>,
}

impl Rollouts {
    /// Rollouts saved to `store` (starts the writer task; it ends with the last clone).
    pub fn new(store: Arc<dyn Store>) -> Rollouts {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<RolloutStatus>();
        tokio::spawn(async move {
            while let Some(status) = rx.recv().await {
                let saved = match serde_json::to_string(&status) {
                    Ok(json) => store.save_rollout(&status.env, &json).await,
                    Err(e) => Err(switchyard_store::StoreError::Database(e.to_string())),
                };
                if let Err(e) = saved {
                    tracing::warn!(env = %status.env, rollout = %status.id, error = %e, "cannot save the rollout's progress; other Managers show an older state");
                }
            }
        });
        Rollouts {
            by_env: Arc::default(),
            saved: Some(tx),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RolloutStatus>> {
        self.by_env.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn save(&self, status: &RolloutStatus) {
        if let Some(tx) = &self.saved {
            let _ = tx.send(status.clone());
        }
    }

    pub fn get(&self, env: &str) -> Option<RolloutStatus> {
        self.lock().get(env).cloned()
    }

    /// `env`'s latest rollout: the one driven here, else the one saved (by another Manager,
    /// or by this one before a restart) with how long ago it last moved.
    pub async fn latest(
        &self,
        store: &dyn Store,
        env: &str,
    ) -> Result<Option<(RolloutStatus, Duration)>, switchyard_store::StoreError> {
        if let Some(here) = self.get(env) {
            return Ok(Some((here, Duration::ZERO)));
        }
        let Some((json, at)) = store.rollout(env).await? else {
            return Ok(None);
        };
        let status: RolloutStatus = serde_json::from_str(&json)
            .map_err(|e| switchyard_store::StoreError::Database(format!("saved rollout: {e}")))?;
        let age = Duration::from_millis(u64::try_from(now_millis() - at).unwrap_or(0));
        Ok(Some((status, age)))
    }

    /// Whether a rollout of `env` is running.
    pub fn running(&self, env: &str) -> Option<String> {
        self.lock()
            .get(env)
            .filter(|r| r.state == RolloutState::Running)
            .map(|r| r.id.clone())
    }

    /// Records `status` as `env`'s rollout, unless one is running: `Err` with its id.
    pub fn begin(&self, status: RolloutStatus) -> Result<(), String> {
        let mut all = self.lock();
        if let Some(r) = all.get(&status.env)
            && r.state == RolloutState::Running
        {
            return Err(r.id.clone());
        }
        self.save(&status);
        all.insert(status.env.clone(), status);
        Ok(())
    }

    fn update(&self, env: &str, f: impl FnOnce(&mut RolloutStatus)) {
        if let Some(r) = self.lock().get_mut(env) {
            f(r);
            self.save(r);
        }
    }
}

/// Walks the Workers of the rollout recorded for `env` (see the module's documentation).
pub async fn drive(state: AppState, env: String, step_timeout: Duration, max_unavailable: usize) {
    let Some(status) = state.rollouts.get(&env) else {
        return;
    };
    let (id, revision, actor) = (status.id.clone(), status.revision, status.actor.clone());
    let binary = status.binary.clone();
    let names: Vec<String> = status.workers.iter().map(|w| w.id.clone()).collect();
    audit(
        &state,
        &env,
        &actor,
        "Environment",
        &env,
        revision,
        format!(
            "rollout {id} started: r{revision} to {} Worker(s): {}{}",
            names.len(),
            names.join(", "),
            binary
                .as_deref()
                .map(|b| format!("; successors run {b}"))
                .unwrap_or_default()
        ),
    )
    .await;
    // `max_unavailable` Workers at a time; the first group with a failure is the last.
    for group in (0..names.len())
        .collect::<Vec<_>>()
        .chunks(max_unavailable.max(1))
    {
        let mut steps = tokio::task::JoinSet::new();
        for &i in group {
            let worker = Step {
                state: state.clone(),
                env: env.clone(),
                rollout: id.clone(),
                actor: actor.clone(),
                index: i,
                worker: names[i].clone(),
                revision,
                binary: binary.clone(),
                timeout: step_timeout,
            };
            steps.spawn(worker.run());
        }
        let mut failed = false;
        while let Some(done) = steps.join_next().await {
            failed |= !done.unwrap_or(false);
        }
        if failed {
            state.rollouts.update(&env, |r| {
                r.state = RolloutState::Failed;
                r.finished_at = Some(now_millis());
            });
            return;
        }
    }
    audit(
        &state,
        &env,
        &actor,
        "Environment",
        &env,
        revision,
        format!(
            "rollout {id} finished: {} Worker(s) serve r{revision}",
            names.len()
        ),
    )
    .await;
    state.rollouts.update(&env, |r| {
        r.state = RolloutState::Succeeded;
        r.finished_at = Some(now_millis());
    });
}

/// One Worker: ask its (newest) process to hand over, then wait for a new process of it
/// that ACKs `revision` or later. `Ok((from, to, took_ms))`.
/// One Worker's step of a rollout, run as a task of its own (several at once with
/// `max_unavailable` above 1).
struct Step {
    state: AppState,
    env: String,
    rollout: String,
    actor: String,
    /// Its place in the rollout's status.
    index: usize,
    worker: String,
    revision: u64,
    binary: Option<String>,
    timeout: Duration,
}

impl Step {
    /// Hands the Worker over and records the outcome (status and audit); whether it
    /// succeeded.
    async fn run(self) -> bool {
        let Step {
            state,
            env,
            rollout: id,
            actor,
            index: i,
            worker,
            revision,
            binary,
            timeout,
        } = self;
        state.rollouts.update(&env, |r| {
            r.workers[i].state = RolloutStepState::HandingOver;
        });
        let directive = Directive {
            rollout: &id,
            worker: &worker,
            revision,
            binary: binary.as_deref(),
        };
        match step(&state, &env, directive, timeout).await {
            Ok((from, to, took)) => {
                let detail = format!(
                    "rollout {id}: Worker {worker} handed over (process {from} -> {to}) and \
                     serves r{revision}, in {took} ms"
                );
                audit(&state, &env, &actor, "Worker", &worker, revision, detail).await;
                state.rollouts.update(&env, |r| {
                    let w = &mut r.workers[i];
                    w.state = RolloutStepState::Done;
                    w.from_instance = Some(from);
                    w.to_instance = Some(to);
                    w.took_ms = Some(took);
                });
                true
            }
            Err(why) => {
                let detail = format!(
                    "rollout {id} stopped at Worker {worker}: {why}; the Workers not handed \
                     over serve their previous revision"
                );
                tracing::error!(env = %env, rollout = %id, worker = %worker, "{detail}");
                audit(&state, &env, &actor, "Worker", &worker, revision, detail).await;
                state.rollouts.update(&env, |r| {
                    r.workers[i].state = RolloutStepState::Failed;
                    r.workers[i].error = Some(why.clone());
                    if r.error.is_none() {
                        r.error = Some(format!("Worker {worker}: {why}"));
                    }
                });
                false
            }
        }
    }
}

/// What one step asks of one Worker.
struct Directive<'a> {
    rollout: &'a str,
    worker: &'a str,
    revision: u64,
    binary: Option<&'a str>,
}

async fn step(
    state: &AppState,
    env: &str,
    d: Directive<'_>,
    timeout: Duration,
) -> Result<(String, String, u64), String> {
    let Directive {
        rollout,
        worker,
        revision,
        binary,
    } = d;
    let before = state.fanout.instances(env, worker);
    let Some(target) = before.last().cloned() else {
        return Err("not connected to this Manager (or it does not name its process)".into());
    };
    let started = now_millis();
    let deadline = tokio::time::Instant::now() + timeout;
    let directive = UpgradeDirective {
        worker: worker.to_string(),
        instance: target.clone(),
        rollout: rollout.to_string(),
        revision,
        binary: binary.map(str::to_string),
    };
    if !state.fanout.direct(env, directive) {
        return Err("its event stream is gone".into());
    }
    loop {
        tokio::time::sleep(POLL).await;
        let report = state
            .store
            .latest_reports(env)
            .await
            .ok()
            .and_then(|all| all.into_iter().find(|r| r.worker_id == worker))
            .filter(|r| r.received_at >= started && r.revision >= revision);
        if let Some(r) = &report
            && r.status == ReportStatus::Nack
        {
            return Err(r.error.clone().unwrap_or_else(|| "NACK".into()));
        }
        let successor = state
            .fanout
            .instances(env, worker)
            .into_iter()
            .find(|i| !before.contains(i));
        if let (Some(to), Some(r)) = (successor, &report)
            && r.status == ReportStatus::Ack
        {
            let took = u64::try_from(now_millis() - started).unwrap_or(0);
            return Ok((target, to, took));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "no successor process ACKed r{revision} within {}s (the Worker's own \
                 --handover-timeout kills a successor that is not ready; see its log)",
                timeout.as_secs()
            ));
        }
    }
}

async fn audit(
    state: &AppState,
    env: &str,
    actor: &str,
    subject_kind: &str,
    subject_name: &str,
    revision: u64,
    detail: String,
) {
    let event = AuditEvent {
        env: env.to_string(),
        actor: actor.to_string(),
        operation: Operation::Rollout,
        subject_kind: subject_kind.to_string(),
        subject_name: subject_name.to_string(),
        revision: Some(revision),
        detail,
    };
    if let Err(e) = state.store.record_event(event).await {
        tracing::error!(env, error = %e, "cannot write a rollout audit record");
    }
}

/// A new rollout's status: every Worker connected to `env` now, waiting.
pub fn new_status(
    state: &AppState,
    env: &str,
    revision: u64,
    actor: &str,
    commit: Option<switchyard_api::admin::BatchResponse>,
    binary: Option<String>,
) -> RolloutStatus {
    let started_at = now_millis();
    RolloutStatus {
        id: format!("{env}-r{revision}-{started_at}"),
        env: env.to_string(),
        revision,
        binary,
        state: RolloutState::Running,
        actor: actor.to_string(),
        started_at,
        finished_at: None,
        commit,
        workers: state
            .fanout
            .connected(env)
            .into_iter()
            .map(|w| RolloutWorker {
                id: w.id,
                state: RolloutStepState::Waiting,
                from_instance: None,
                to_instance: None,
                took_ms: None,
                error: None,
            })
            .collect(),
        error: None,
    }
}
