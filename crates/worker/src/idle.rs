//! The one stall detector of the data plane: a deadline that starts when what it watches
//! stops making progress and is forgotten as soon as it makes some. Request bodies
//! (`requestBodyIdle`), upstream response bodies (`upstreamBodyIdle`) and writes to clients
//! (`send`) each carry one.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Fires when the watched stream has been stalled (polled, not ready) for `idle` in a row.
/// The timer is allocated the first time the stream stalls, and reused afterwards.
pub struct IdleTimer {
    idle: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl IdleTimer {
    pub fn new(idle: Duration) -> IdleTimer {
        IdleTimer {
            idle,
            sleep: None,
            armed: false,
        }
    }

    /// Call after each poll of the watched stream with whether it was ready. `true` once it
    /// has been pending for `idle` (the task is woken when that happens).
    pub fn stalled(&mut self, cx: &mut Context<'_>, ready: bool) -> bool {
        if ready {
            self.armed = false;
            return false;
        }
        if !self.armed {
            let now = Instant::now();
            // Bounded when compiled; `checked_add` keeps even a bad value from panicking.
            let deadline = now
                .checked_add(self.idle)
                .unwrap_or(now + Duration::from_secs(86_400));
            match &mut self.sleep {
                Some(s) => s.as_mut().reset(deadline),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.armed = true;
        }
        self.sleep
            .as_mut()
            .is_some_and(|s| s.as_mut().poll(cx).is_ready())
    }
}
