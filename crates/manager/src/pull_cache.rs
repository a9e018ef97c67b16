//! Pull answers by (environment, since, revision). A revision's content never changes
//! (history is never rewritten; pruning only forgets old revisions), so the answer to
//! "what changed after `since`, up to `revision`" is immutable: when a commit notifies
//! hundreds of Workers, the first pull builds it and the others get the same bytes (single
//! flight: concurrent pulls of the same key wait for the one that builds it instead of
//! each reading the store). A pull since a revision older than the retained history is
//! answered in full, under `since` 0: a delta from a pruned revision is never looked up
//! (one cached before the pruning would still be right, but is not served from then on)
//! and never built (the store refuses it, `StoreError::Pruned`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::OnceCell;

/// How many answers are kept (oldest dropped first). Workers in step ask for the same few
/// keys; a lagging Worker's key is simply rebuilt.
const CAPACITY: usize = 64;

type Key = (String, u64, u64);

#[derive(Default)]
pub struct PullCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Key, Arc<OnceCell<Bytes>>>,
    order: VecDeque<Key>,
}

impl PullCache {
    /// The cached answer for `(env, since, revision)`, or the one `build` makes (once, however
    /// many callers ask at the same time). A failed build is not cached.
    pub async fn get_or_build<E, F, Fut>(
        &self,
        env: &str,
        since: u64,
        revision: u64,
        build: F,
    ) -> Result<Bytes, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
    {
        let cell = {
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            let key = (env.to_string(), since, revision);
            if let Some(cell) = inner.map.get(&key) {
                cell.clone()
            } else {
                let cell = Arc::new(OnceCell::new());
                inner.map.insert(key.clone(), cell.clone());
                inner.order.push_back(key);
                while inner.order.len() > CAPACITY {
                    if let Some(old) = inner.order.pop_front() {
                        inner.map.remove(&old);
                    }
                }
                cell
            }
        };
        cell.get_or_try_init(build).await.cloned()
    }

    /// The answer to give a Worker at `since` while the store cannot be reached: of the
    /// newest revision answered here, the delta from `since` if it was built, else the full
    /// state (right for any `since`). `None` when no answer of `env` was built.
    pub fn last_answer(&self, env: &str, since: u64) -> Option<Bytes> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let built = |key: &Key| inner.map.get(key).and_then(|c| c.get().cloned());
        let newest = inner
            .order
            .iter()
            .filter(|(e, s, _)| e == env && (*s == 0 || *s == since))
            .filter(|key| built(key).is_some())
            .map(|(_, _, r)| *r)
            .max()?;
        built(&(env.to_string(), since, newest)).or_else(|| built(&(env.to_string(), 0, newest)))
    }

    /// Drops every answer of `env` (it was deleted: a new environment of that name starts
    /// again at revision 0, and must not be answered with the old one's content).
    pub fn forget(&self, env: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.map.retain(|(e, _, _), _| e != env);
        inner.order.retain(|(e, _, _)| e != env);
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn concurrent_pulls_of_one_revision_build_once() {
        let cache = Arc::new(PullCache::default());
        let builds = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, builds) = (cache.clone(), builds.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_build("dev", 4, 5, || async {
                        builds.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok::<_, ()>(Bytes::from_static(b"{}"))
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), Bytes::from_static(b"{}"));
        }
        assert_eq!(builds.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn failures_are_not_cached_and_keys_are_distinct() {
        let cache = PullCache::default();
        let r = cache
            .get_or_build("dev", 0, 1, || async { Err::<Bytes, _>("store down") })
            .await;
        assert_eq!(r, Err("store down"));
        let r = cache
            .get_or_build("dev", 0, 1, || async {
                Ok::<_, &str>(Bytes::from_static(b"a"))
            })
            .await;
        assert_eq!(r.unwrap(), Bytes::from_static(b"a"));
        let r = cache
            .get_or_build("prod", 0, 1, || async {
                Ok::<_, &str>(Bytes::from_static(b"b"))
            })
            .await;
        assert_eq!(r.unwrap(), Bytes::from_static(b"b"));
    }

    #[tokio::test]
    async fn without_the_store_the_newest_answer_is_given() {
        let cache = PullCache::default();
        assert_eq!(cache.last_answer("dev", 3), None);
        for (since, revision, body) in [(0, 4, "full4"), (3, 4, "d3-4"), (0, 5, "full5")] {
            let _ = cache
                .get_or_build("dev", since, revision, || async move {
                    Ok::<_, ()>(Bytes::from_static(body.as_bytes()))
                })
                .await;
        }
        // The newest revision's full state: no delta to it from 3 was built.
        assert_eq!(
            cache.last_answer("dev", 3).unwrap(),
            Bytes::from_static(b"full5")
        );
        let _ = cache
            .get_or_build("dev", 3, 5, || async {
                Ok::<_, ()>(Bytes::from_static(b"d3-5"))
            })
            .await;
        assert_eq!(
            cache.last_answer("dev", 3).unwrap(),
            Bytes::from_static(b"d3-5")
        );
        assert_eq!(cache.last_answer("prod", 3), None);
    }

    #[tokio::test]
    async fn it_stays_bounded() {
        let cache = PullCache::default();
        for since in 0..(CAPACITY as u64 * 3) {
            let _ = cache
                .get_or_build("dev", since, 1000, || async { Ok::<_, ()>(Bytes::new()) })
                .await;
        }
        assert_eq!(cache.len(), CAPACITY);
    }
}
