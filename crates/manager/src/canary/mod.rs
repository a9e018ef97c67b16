//! Canary revisions on the Manager: the Workers' per-generation totals kept per step
//! ([`Canaries`]), the judge that compares the canary with the stable revision every
//! [`TICK`] and acts — the next step, promotion, or a rollback committed through the one
//! write path with the numbers in its audit record — and the status every caller shows.
//!
//! The store decides: a step moves, or a canary ends, only if it is still where this
//! Manager saw it (a conditional write), so two Managers on one database act once. Each
//! judges the Workers that report to it.

mod window;

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use switchyard_api::canary::{
    CanaryDirective, CanaryState, CanaryStatus, GenerationCounters, WindowNumbers, percent,
};
use switchyard_api::records::{Operation, now_millis};
use switchyard_store::{CanaryCommit, CanaryRecord};

use crate::api::rollback::{Restore, restore};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
pub use window::Verdict;

/// How often running canaries are judged.
pub const TICK: Duration = Duration::from_secs(1);

/// Which step of which canary a window belongs to: a new step starts a new window.
type StepKey = (u64, u32, i64);

/// One environment's window: per Worker, per generation, the totals at the step's start
/// and the latest.
#[derive(Default)]
struct EnvWindow {
    step: Option<StepKey>,
    workers: HashMap<String, HashMap<u64, window::Totals>>,
    /// The canary's directive as last read from the store (answers pulls while the
    /// database is down: a Worker must not take a canary revision for a plain one).
    directive: Option<CanaryDirective>,
    /// Where the judge last saw the latest canary (revision, step, state).
    seen: Option<(u64, u32, CanaryState)>,
}

/// The canary windows of every environment, in this Manager's memory.
#[derive(Default)]
pub struct Canaries {
    envs: Mutex<HashMap<String, EnvWindow>>,
}

impl Canaries {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, EnvWindow>> {
        self.envs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps a Worker's per-generation totals (from its statistics).
    pub fn record(&self, env: &str, worker: &str, generations: &[GenerationCounters]) {
        if generations.is_empty() {
            return;
        }
        let mut envs = self.lock();
        let w = envs.entry(env.to_string()).or_default();
        let first_step = w.step.is_some_and(|(_, step, _)| step == 0);
        let canary_revision = w.step.map(|(r, _, _)| r);
        let gens = w.workers.entry(worker.to_string()).or_default();
        for g in generations {
            let totals = gens.entry(g.revision).or_insert_with(|| window::Totals {
                // The canary's own generation counts from zero in its first step (it was
                // born with it); anything else from the first totals seen in the step.
                baseline: if first_step && canary_revision == Some(g.revision) {
                    GenerationCounters {
                        revision: g.revision,
                        ..GenerationCounters::default()
                    }
                } else {
                    g.clone()
                },
                latest: g.clone(),
            });
            totals.latest = g.clone();
        }
    }

    /// The numbers of `c`'s current step (a new step starts from each Worker's latest).
    fn window(&self, c: &CanaryRecord) -> (WindowNumbers, WindowNumbers) {
        let mut envs = self.lock();
        let w = envs.entry(c.env.clone()).or_default();
        let key = (c.revision, c.step, c.step_started_at);
        if w.step != Some(key) {
            w.step = Some(key);
            for gens in w.workers.values_mut() {
                gens.retain(|rev, _| *rev == c.revision || *rev == c.stable_revision);
                for (rev, t) in gens.iter_mut() {
                    t.baseline = if c.step == 0 && *rev == c.revision {
                        GenerationCounters {
                            revision: *rev,
                            ..GenerationCounters::default()
                        }
                    } else {
                        t.latest.clone()
                    };
                }
            }
        }
        (
            window::numbers(c.revision, &w.workers),
            window::numbers(c.stable_revision, &w.workers),
        )
    }

    /// Whether `c` moved since the judge last looked (another Manager moved its step or
    /// ended it); the first look is not a move.
    fn moved(&self, c: &CanaryRecord) -> bool {
        let mut envs = self.lock();
        let w = envs.entry(c.env.clone()).or_default();
        let now = Some((c.revision, c.step, c.state));
        let moved = w.seen.is_some() && w.seen != now;
        w.seen = now;
        moved
    }

    fn set_directive(&self, env: &str, d: Option<CanaryDirective>) {
        self.lock().entry(env.to_string()).or_default().directive = d;
    }

    /// The directive last read for `env` (for pulls answered while the store is down).
    pub fn last_directive(&self, env: &str) -> Option<CanaryDirective> {
        self.lock().get(env).and_then(|w| w.directive.clone())
    }
}

/// What Workers are told about `c`: its share now, while it runs.
pub fn directive(c: &CanaryRecord) -> Option<CanaryDirective> {
    (c.state == CanaryState::Running).then(|| CanaryDirective {
        revision: c.revision,
        stable_revision: c.stable_revision,
        share_ppm: share(c),
        key: c.spec.key.clone(),
    })
}

fn share(c: &CanaryRecord) -> u32 {
    if c.state != CanaryState::Running {
        return 0;
    }
    usize::try_from(c.step)
        .ok()
        .and_then(|i| c.spec.steps_ppm.get(i))
        .copied()
        .unwrap_or(0)
}

/// The running canary's directive for a pull of `env` (`None` when none runs); remembered
/// for answers while the store is down.
pub async fn current_directive(state: &AppState, env: &str) -> ApiResult<Option<CanaryDirective>> {
    match state.store.canary(env).await {
        Ok(c) => {
            let d = c.as_ref().and_then(directive);
            state.canaries.set_directive(env, d.clone());
            Ok(d)
        }
        Err(switchyard_store::StoreError::Unavailable(_)) => Ok(state.canaries.last_directive(env)),
        Err(e) => Err(e.into()),
    }
}

/// `c` as shown: with its step's numbers and the verdict so far while it runs.
pub fn status(state: &AppState, c: &CanaryRecord) -> CanaryStatus {
    let running = c.state == CanaryState::Running;
    let step_ms = i64::try_from(c.spec.step_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let (numbers, verdict) = if running {
        let (canary, stable) = state.canaries.window(c);
        let verdict =
            match window::judge(&c.spec, &canary, &stable, now_millis() - c.step_started_at) {
                Verdict::Breach(why) => format!("breach: {why}"),
                Verdict::Held(why) | Verdict::Wait(why) => why,
            };
        (Some((canary, stable)), Some(verdict))
    } else {
        (None, None)
    };
    let (canary, stable) = numbers.unzip();
    CanaryStatus {
        env: c.env.clone(),
        revision: c.revision,
        stable_revision: c.stable_revision,
        spec: c.spec.clone(),
        state: c.state,
        step: c.step,
        share_ppm: share(c),
        actor: c.actor.clone(),
        started_at: c.started_at,
        step_started_at: c.step_started_at,
        step_ends_at: running.then(|| c.step_started_at.saturating_add(step_ms)),
        ended_at: c.ended_at,
        reason: c.reason.clone(),
        rollback_revision: c.rollback_revision,
        canary,
        stable,
        verdict,
    }
}

/// The judge: every [`TICK`], each environment with Workers connected here that has a
/// running canary is judged, until `shutdown` turns true.
pub async fn follow(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                for (env, _) in state.fanout.followed() {
                    if let Err(e) = judge_env(&state, &env).await {
                        tracing::warn!(env, error = %e.message, "cannot judge the canary");
                    }
                }
            }
            () = crate::commits::stopped(&mut shutdown) => return,
        }
    }
}

/// The Manager itself, as the actor of what the judge does.
fn judge_principal() -> Principal {
    Principal::system("manager", "canary-judge")
}

async fn judge_env(state: &AppState, env: &str) -> ApiResult<()> {
    let share_gauge = state
        .metrics
        .canary_share_ppm
        .get_or_create(&[("env", env.to_string())])
        .clone();
    let Some(c) = state.store.canary(env).await? else {
        return Ok(());
    };
    share_gauge.set(i64::from(share(&c)));
    // Moved elsewhere (another Manager on the database): the Workers here look again now,
    // rather than at their next periodic check.
    if state.canaries.moved(&c) {
        nudge(state, env, c.revision);
    }
    if c.state != CanaryState::Running {
        return Ok(());
    }
    // A Worker that cannot serve the canary (it NACKed it) serves the stable revision to
    // every request: the canary cannot be judged there, and would not be promoted there.
    let refused = state
        .store
        .reports_for(env, c.revision)
        .await?
        .into_iter()
        .find(|r| r.status == switchyard_api::records::ReportStatus::Nack);
    let (canary, stable) = state.canaries.window(&c);
    let verdict = match refused {
        Some(r) => Verdict::Breach(format!(
            "Worker {} refused the canary r{}: {}",
            r.worker_id,
            c.revision,
            r.error.unwrap_or_default()
        )),
        None => window::judge(&c.spec, &canary, &stable, now_millis() - c.step_started_at),
    };
    match verdict {
        Verdict::Wait(_) => Ok(()),
        Verdict::Breach(why) => {
            let reason = format!(
                "rolled back by the Manager at {}: {why}",
                percent(share(&c))
            );
            tracing::warn!(env, canary = c.revision, reason = %reason, "canary breached its limits");
            end(
                state,
                &judge_principal(),
                &c,
                CanaryState::RolledBack,
                reason,
            )
            .await?;
            Ok(())
        }
        Verdict::Held(why) => {
            let next = c.step + 1;
            let last = usize::try_from(next).map_or(true, |n| n >= c.spec.steps_ppm.len());
            let at = percent(share(&c));
            let actor = judge_principal().actor();
            let moved = if last {
                let detail = format!("every step held; last step at {at}: {why}");
                state
                    .store
                    .promote_canary(env, c.revision, &actor, &detail)
                    .await?
            } else {
                let detail = format!(
                    "step {}/{} held at {at}, now step {}/{} at {}: {why}",
                    c.step + 1,
                    c.spec.steps_ppm.len(),
                    next + 1,
                    c.spec.steps_ppm.len(),
                    percent(
                        usize::try_from(next)
                            .ok()
                            .and_then(|i| c.spec.steps_ppm.get(i))
                            .copied()
                            .unwrap_or_default()
                    )
                );
                state
                    .store
                    .canary_step(env, c.revision, c.step, next, &actor, &detail)
                    .await?
            };
            if moved {
                tracing::info!(
                    env,
                    canary = c.revision,
                    promoted = last,
                    "canary step held"
                );
                nudge(state, env, c.revision);
            }
            Ok(())
        }
    }
}

/// Tells the Workers connected here to look at the canary again (its share or state
/// changed; the revision did not), and viewers to refresh.
pub fn nudge(state: &AppState, env: &str, revision: u64) {
    state.fanout.nudge(env, revision);
    state.fanout.changed(env);
}

/// Ends running canary `c` by committing its stable content as a new revision, which ends
/// it in the same transaction (rolled back or aborted, with `reason`).
pub async fn end(
    state: &AppState,
    who: &Principal,
    c: &CanaryRecord,
    how: CanaryState,
    reason: String,
) -> ApiResult<()> {
    let response = restore(
        state,
        who,
        &c.env,
        Restore {
            to: c.stable_revision,
            expected_revision: None,
            dry_run: false,
            operation: Operation::Rollback,
            detail: format!("canary r{} {}: {reason}", c.revision, how.as_str()),
            canary: CanaryCommit::End {
                revision: c.revision,
                state: how,
                reason,
            },
        },
    )
    .await?;
    if !response.changed {
        return Err(ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            switchyard_api::ErrorCode::Internal,
            format!(
                "canary r{} could not be ended: the stable revision r{} has the same content",
                c.revision, c.stable_revision
            ),
        ));
    }
    state.metrics.canary_ended(&c.env, how);
    state.fanout.changed(&c.env);
    Ok(())
}
