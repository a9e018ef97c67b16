//! How long a long-lived stream may keep an old configuration generation alive.
//!
//! A stream (a WebSocket, a streamed response body) runs on the generation current when it
//! was accepted, like any request, and a swap never closes it. But a stream open for hours
//! would keep its generation — and everything it holds — alive for hours, so two limits
//! apply once its generation is **no longer the current one**:
//!
//! - the route's `maxStreamAge`: a stream open longer than that is closed;
//! - the Worker's `--max-pinned-age` (default 1 h): a generation replaced longer ago than
//!   that lets go of its streams, however young they are.
//!
//! A stream on the current generation is never closed for its age. Closing is graceful: a
//! WebSocket gets close code 1001 (going away), a response body simply ends.
//!
//! [`StreamAge`] costs nothing while the stream's generation is current but one registered
//! waiter on the generation's [`Generation::swapped`] notification (no timer, no wake-up):
//! the swap wakes it, and only then is a deadline computed and a timer armed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::futures::OwnedNotified;
use tokio::time::{Instant, Sleep};

use crate::runtime::{Generation, Observability};

/// When a stream opened at `opened` must be closed, its generation having been replaced at
/// `superseded`: `route_age` after it opened, or `cap` after its generation was replaced,
/// whichever comes first. (A deadline already past means now.)
pub fn close_at(
    opened: Instant,
    route_age: Option<Duration>,
    cap: Duration,
    superseded: Instant,
) -> Instant {
    // Bounded when compiled; `checked_add` keeps even a bad value from panicking.
    let far = |t: Instant, d: Duration| t.checked_add(d).unwrap_or(t + YEAR);
    let by_cap = far(superseded, cap);
    match route_age {
        Some(age) => far(opened, age).min(by_cap),
        None => by_cap,
    }
}

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// The age watch of one open stream: completes when the stream must close. Made when a
/// stream turns out to be long-lived (a WebSocket at once, a response body the first time
/// it waits on the upstream), so the plain request path never builds one.
///
/// While its generation is current it only listens for swaps (no timer). At each swap it
/// looks again: once its generation is old, it arms a timer for the deadline, computed with
/// the route's `maxStreamAge` **as the current configuration has it** (the same proxy's
/// route at the same position; the stream's own generation's value if the route is gone),
/// so lowering `maxStreamAge` in a new configuration also applies to older streams.
pub struct StreamAge {
    opened: Instant,
    /// The stream's proxy (none for a request no route matched) and route position.
    proxy: Option<Arc<str>>,
    route: usize,
    /// The route's `maxStreamAge` in the stream's own generation.
    pinned_age: Option<Duration>,
    generation: Arc<Generation>,
    obs: Arc<Observability>,
    /// Listening for the next swap.
    listen: Option<Pin<Box<OwnedNotified>>>,
    /// Armed once the generation is old.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl StreamAge {
    /// Watches a stream opened at `opened` on `generation`, on route `route` of `proxy`
    /// whose `maxStreamAge` there is `pinned_age`.
    pub fn new(
        opened: Instant,
        (proxy, route, pinned_age): (Option<Arc<str>>, usize, Option<Duration>),
        generation: Arc<Generation>,
        obs: Arc<Observability>,
    ) -> StreamAge {
        StreamAge {
            opened,
            proxy,
            route,
            pinned_age,
            generation,
            obs,
            listen: None,
            sleep: None,
        }
    }

    /// `Ready` once the stream must be closed (and on every poll after that); registers
    /// the task to be woken at the deadline or the next swap.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.listen.is_none() {
                // Listening before looking: a swap from here on is heard.
                self.listen = Some(Box::pin(self.obs.swapped.clone().notified_owned()));
                self.rearm();
            }
            if let Some(sleep) = &mut self.sleep
                && sleep.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(());
            }
            let swapped = self
                .listen
                .as_mut()
                .is_some_and(|l| l.as_mut().poll(cx).is_ready());
            if !swapped {
                return Poll::Pending;
            }
            self.listen = None;
        }
    }

    /// Completes when the stream must be closed.
    pub async fn expired(&mut self) {
        std::future::poll_fn(|cx| self.poll_expired(cx)).await;
    }

    /// Sets the timer for the deadline, once the generation is old.
    fn rearm(&mut self) {
        let Some(at) = self.generation.superseded() else {
            self.sleep = None;
            return;
        };
        let deadline = close_at(self.opened, self.route_age(), self.obs.max_pinned_age, at);
        match &mut self.sleep {
            Some(s) => s.as_mut().reset(deadline),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }

    /// The route's `maxStreamAge` in force now.
    fn route_age(&self) -> Option<Duration> {
        let Some(name) = &self.proxy else {
            return self.pinned_age;
        };
        let now = self.obs.current().and_then(|rt| {
            rt.snapshot
                .proxy(name)
                .and_then(|p| p.routes.get(self.route))
                .map(|r| r.max_stream_age)
        });
        now.unwrap_or(self.pinned_age)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_route_age_counts_from_the_stream_open_and_the_cap_from_the_swap() {
        let t0 = Instant::now();
        // Opened at t0, generation replaced at t0+10s.
        let swap = t0 + S(10);
        // maxStreamAge 5s: already past at the swap.
        assert_eq!(close_at(t0, Some(S(5)), S(3600), swap), t0 + S(5));
        // maxStreamAge 60s: at t0+60s.
        assert_eq!(close_at(t0, Some(S(60)), S(3600), swap), t0 + S(60));
        // No maxStreamAge: the cap, from the swap.
        assert_eq!(close_at(t0, None, S(3600), swap), swap + S(3600));
        // A cap shorter than the route's age wins.
        assert_eq!(close_at(t0, Some(S(600)), S(30), swap), swap + S(30));
        // Absurd values do not panic.
        let _ = close_at(t0, Some(Duration::MAX), Duration::MAX, swap);
    }

    fn obs(cap: Duration) -> Arc<Observability> {
        let mut obs = Observability::new(crate::access_log::AccessLog::off());
        obs.max_pinned_age = cap;
        Arc::new(obs)
    }

    fn swap(obs: &Observability, generation: &Generation) {
        generation.supersede();
        obs.swapped.notify_waiters();
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_on_the_current_generation_never_expires_and_an_old_one_does() {
        let obs = obs(S(3600));
        let generation = Arc::new(Generation::default());
        let route = (Some(Arc::from("p")), 0, Some(S(1)));
        let mut age = StreamAge::new(Instant::now(), route, generation.clone(), obs.clone());
        // Current: an hour later it is still open.
        let current = tokio::time::timeout(S(3600), age.expired()).await;
        assert!(
            current.is_err(),
            "a stream on the current generation expired"
        );
        // Replaced: past its age already, it expires at once.
        swap(&obs, &generation);
        tokio::time::timeout(S(1), age.expired()).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_cap_closes_young_streams_of_an_old_generation() {
        let obs = obs(S(30));
        let generation = Arc::new(Generation::default());
        let mut age = StreamAge::new(
            Instant::now(),
            (None, 0, None),
            generation.clone(),
            obs.clone(),
        );
        swap(&obs, &generation);
        let early = tokio::time::timeout(S(29), age.expired()).await;
        assert!(early.is_err());
        tokio::time::timeout(S(2), age.expired()).await.unwrap();
    }
}
