//! The thread-per-core layout of the data plane: one OS thread per core, each running a
//! single-threaded tokio runtime of its own.
//!
//! Why: on tokio's work-stealing runtime a client connection, the request it carries and
//! the upstream connection that request uses can each be polled on a different thread,
//! and every hand-over is a cross-thread wake-up. Here the listener's accept loop hands
//! each accepted connection to one core (round-robin), and everything that connection
//! does afterwards (its requests, their upstream connections, taken from that core's lane
//! of the pool) stays on that core's thread, as in nginx's worker processes or Pingora's
//! no-steal runtime. The control plane (sync, admin API, health checks, reloads) stays on
//! the runtime that called [`Cores::start`].

use std::future::Future;
use std::io;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The data-plane threads, stopped (their runtimes dropped, with whatever tasks are left on
/// them) when this is dropped.
pub struct Cores {
    cores: Vec<Core>,
    next: AtomicUsize,
}

/// One core's thread: its runtime's handle, and the sender whose drop ends it.
struct Core {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Cores {
    /// Starts `n` data-plane threads, named `switchyard-core-N`.
    pub fn start(n: NonZeroUsize) -> io::Result<Cores> {
        let mut cores = Vec::with_capacity(n.get());
        for i in 0..n.get() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("switchyard-core-{i}"))
                .spawn(move || {
                    // Runs the tasks spawned onto this core until told to stop.
                    let _ = runtime.block_on(stopped);
                })?;
            cores.push(Core {
                handle,
                stop: Some(stop),
                thread: Some(thread),
            });
        }
        Ok(Cores {
            cores,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs `make(lane)`'s future on the next core (round-robin); `lane` is the core's
    /// index, for the pool.
    pub fn spawn<F, Fut>(&self, make: F)
    where
        F: FnOnce(usize) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let lane = self.next.fetch_add(1, Ordering::Relaxed) % self.cores.len();
        self.cores[lane].handle.spawn(make(lane));
    }
}

impl Drop for Cores {
    fn drop(&mut self) {
        for core in &mut self.cores {
            drop(core.stop.take());
        }
        for core in &mut self.cores {
            if let Some(t) = core.thread.take() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn connections_go_round_robin_and_each_core_runs_on_its_own_thread() {
        let cores = Cores::start(NonZeroUsize::new(2).unwrap()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..4 {
            let tx = tx.clone();
            cores.spawn(move |lane| async move {
                let name = std::thread::current().name().map(str::to_owned);
                tx.send((lane, name)).unwrap();
            });
        }
        let mut seen: Vec<_> = (0..4).map(|_| rx.recv().unwrap()).collect();
        seen.sort();
        let core = |i: usize| (i, Some(format!("switchyard-core-{i}")));
        assert_eq!(seen, vec![core(0), core(0), core(1), core(1)]);
    }
}
