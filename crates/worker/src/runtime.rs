//! The Worker's view of one configuration generation: the compiled model snapshot plus
//! what the Worker attaches to each proxy (metric handles, the upstream connection pool).
//! One `Arc<Runtime>` is loaded per request and held until its response body ends.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::metrics::gauge::Gauge;
use switchyard_engine::{ChangeKind, ProxyChange, Snapshot};

use crate::access_log::AccessLog;
use crate::canary::Canary;
use crate::connections::Connections;
use crate::metrics::{GenerationMetrics, Metrics, ProxyMetrics};
use crate::pool::{HostPool, Pools};

/// Shared by every generation: metrics, the access log and the client connections.
pub struct Observability {
    pub metrics: Metrics,
    pub access_log: AccessLog,
    /// Request traces, when tracing is on (an OTLP endpoint is set).
    pub tracing: Option<crate::trace::Tracing>,
    pub connections: Arc<Connections>,
    /// `--max-pinned-age`: how long a generation that is no longer current may stay
    /// pinned by long-lived streams.
    pub max_pinned_age: Duration,
    /// Every generation built, for the age of the oldest pinned one (at each scrape).
    generations: Mutex<Vec<Weak<Generation>>>,
    /// Notified (all waiters) at each swap: long-lived streams on old generations look at
    /// their age limits again (`proxy/age.rs`).
    pub swapped: Arc<tokio::sync::Notify>,
    /// The current generation, for those streams to read the limits in force now.
    current: OnceLock<Weak<ArcSwap<Runtime>>>,
}

impl Observability {
    pub fn new(access_log: AccessLog) -> Observability {
        let metrics = Metrics::new();
        let connections = Arc::new(Connections::new(metrics.connections.clone()));
        Observability {
            metrics,
            access_log,
            tracing: None,
            connections,
            max_pinned_age: crate::DEFAULT_MAX_PINNED_AGE,
            generations: Mutex::default(),
            swapped: Arc::default(),
            current: OnceLock::new(),
        }
    }

    /// Where the current generation is published (set once, by the reloader).
    pub fn follow(&self, current: &Arc<ArcSwap<Runtime>>) {
        let _ = self.current.set(Arc::downgrade(current));
    }

    /// The current generation, if it is published.
    pub fn current(&self) -> Option<Arc<Runtime>> {
        self.current.get()?.upgrade().map(|c| c.load_full())
    }

    /// `old` was replaced: marks it, and wakes every stream watching its age.
    pub fn swapped(&self, old: &Runtime) {
        old.generation.supersede();
        self.swapped.notify_waiters();
    }

    fn track(&self, generation: &Arc<Generation>) {
        let mut all = self
            .generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        all.retain(|g| g.strong_count() > 0);
        all.push(Arc::downgrade(generation));
    }

    /// How long the oldest generation still alive has not been the current one (zero when
    /// only the current one is alive).
    pub fn oldest_pinned_age(&self) -> Duration {
        let now = tokio::time::Instant::now();
        let all = self
            .generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        all.iter()
            .filter_map(Weak::upgrade)
            .filter_map(|g| g.superseded())
            .map(|at| now.saturating_duration_since(at))
            .max()
            .unwrap_or_default()
    }
}

/// When a generation stopped being the current one: what lets a long-lived stream (a
/// WebSocket, a streamed response) know that the generation it pins is old, so
/// `maxStreamAge` and `--max-pinned-age` can close it (and the metric of the oldest pinned
/// generation can be computed).
#[derive(Default)]
pub struct Generation {
    superseded: OnceLock<tokio::time::Instant>,
    /// Requests run on this generation and the gateway errors among them.
    pub metrics: GenerationMetrics,
}

impl Generation {
    pub fn new(metrics: GenerationMetrics) -> Generation {
        Generation {
            superseded: OnceLock::new(),
            metrics,
        }
    }

    /// When another generation replaced this one (`None` while it is current).
    pub fn superseded(&self) -> Option<tokio::time::Instant> {
        self.superseded.get().copied()
    }

    /// Another generation was swapped in.
    pub fn supersede(&self) {
        let _ = self.superseded.set(tokio::time::Instant::now());
    }
}

/// A proxy version as the Worker serves it: its [`ProxyExt`] attached.
pub type Proxy = switchyard_engine::runtime::Proxy<ProxyExt>;

/// One configuration generation.
pub struct Runtime {
    pub snapshot: Snapshot<ProxyExt>,
    pub unmatched: Arc<ProxyMetrics>,
    pub obs: Arc<Observability>,
    pools: Arc<Pools>,
    /// Whether (and since when) this generation is an old one.
    pub generation: Arc<Generation>,
    /// Counts the generation live while any of its `Runtime`s is (shared by the copy that
    /// carries a canary, which is the same generation).
    _generation: Arc<GenerationToken>,
    /// A canary generation compiled against this one, and the share of requests it gets
    /// (`canary.rs`).
    pub canary: Option<Canary>,
}

/// What the Worker attaches to each proxy version (as its `Attachment`): built once, when
/// the version is compiled, and kept by every generation that shares the proxy.
pub struct ProxyExt {
    pub metrics: Arc<ProxyMetrics>,
    /// The connection pool of each of the upstream's targets, in the targets' order
    /// (shared with every proxy version that has the same target).
    pub pools: Box<[Arc<HostPool>]>,
}

impl std::fmt::Debug for ProxyExt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyExt").finish_non_exhaustive()
    }
}

impl Runtime {
    /// A generation serving `snapshot`. Only the proxies `changes` names as added or
    /// updated get their `ProxyExt` built here (a swap costs O(changed)); the others are
    /// shared with the previous generation and keep theirs.
    pub fn new(
        snapshot: Snapshot<ProxyExt>,
        changes: &[ProxyChange],
        obs: &Arc<Observability>,
        pools: &Arc<Pools>,
    ) -> Runtime {
        let generation = Arc::new(Generation::new(obs.metrics.generation(snapshot.revision)));
        obs.track(&generation);
        let runtime = Runtime {
            generation,
            unmatched: obs.metrics.proxy(&Arc::from("_unmatched")),
            _generation: Arc::new(GenerationToken::new(&obs.metrics.live_generations)),
            canary: None,
            obs: obs.clone(),
            pools: pools.clone(),
            snapshot,
        };
        for c in changes.iter().filter(|c| c.kind != ChangeKind::Removed) {
            if let Some(p) = runtime.snapshot.proxy(&c.name) {
                runtime.ext(p);
            }
        }
        runtime
    }

    /// This generation with `canary` beside it (or none): the same generation — snapshot,
    /// metrics and live count shared — for the reloader to publish in its place.
    pub fn with_canary(&self, canary: Option<Canary>) -> Runtime {
        Runtime {
            snapshot: self.snapshot.clone(),
            unmatched: self.unmatched.clone(),
            obs: self.obs.clone(),
            pools: self.pools.clone(),
            generation: self.generation.clone(),
            _generation: self._generation.clone(),
            canary,
        }
    }

    /// The generation a request with `headers` from `client` runs on: the canary's when
    /// there is one and the split picks it, else this one. Decided once, when the request
    /// is accepted.
    pub fn assign(self: Arc<Self>, headers: &http::HeaderMap, client: IpAddr) -> Arc<Runtime> {
        match &self.canary {
            Some(c) if c.split.picks_canary(headers, client) => c.runtime.clone(),
            _ => self,
        }
    }

    /// The Worker's part of `proxy`. Attached when the proxy's version was compiled, so
    /// this is one atomic load; a proxy somehow not attached yet is attached now.
    pub fn ext<'a>(&self, proxy: &'a Proxy) -> &'a ProxyExt {
        proxy.attachment.get_or_init(|| ProxyExt {
            metrics: self.obs.metrics.proxy(&proxy.name),
            pools: proxy
                .upstream
                .targets
                .iter()
                .map(|t| {
                    let tls = (t.scheme == http::uri::Scheme::HTTPS)
                        .then_some(proxy.upstream.tls.as_deref())
                        .flatten();
                    self.pools.get(
                        &t.authority,
                        proxy.upstream.connect_timeout,
                        tls,
                        proxy.upstream.protocol,
                    )
                })
                .collect(),
        })
    }
}

/// Counts live generations: +1 when a runtime is built, -1 when the last request holding it
/// ends and it is dropped.
struct GenerationToken(Gauge);

impl GenerationToken {
    fn new(g: &Gauge) -> Self {
        g.inc();
        GenerationToken(g.clone())
    }
}

impl Drop for GenerationToken {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use switchyard_config::{Located, Manifest, parse_str};
    use switchyard_engine::{Change, Compiler, Numbering};

    use super::*;

    fn proxy(name: &str, port: u16) -> Located<Manifest> {
        let text = format!(
            "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: {name} }}\nspec:\n  routes:\n    - pathPrefix: /{name}\n  upstream:\n    targets:\n      - url: http://127.0.0.1:{port}\n"
        );
        parse_str(format!("{name}.yaml").into(), &text)
            .unwrap()
            .pop()
            .unwrap()
    }

    #[test]
    fn a_swap_attaches_only_changed_proxies() {
        let obs = Arc::new(Observability::new(AccessLog::off()));
        let pools = Arc::new(Pools::default());
        let compiler = Compiler::<ProxyExt>::new();
        let (a1, b1) = (proxy("a", 1), proxy("b", 1));
        let first = compiler
            .compile(None, Change::Set(&[&a1, &b1]), &Numbering::default())
            .unwrap();
        let a = Runtime::new(first.snapshot, &first.changes, &obs, &pools);
        for p in a.snapshot.proxies() {
            assert!(p.attachment.get().is_some(), "{}", p.name);
        }
        let b2 = proxy("b", 2);
        let delta = Change::Delta {
            upserts: &[&b2],
            removed: &[],
        };
        let next = compiler
            .compile(Some(&a.snapshot), delta, &Numbering::default())
            .unwrap();
        let b = Runtime::new(next.snapshot, &next.changes, &obs, &pools);
        let ext = |rt: &Runtime, name: &str| {
            let p = rt.snapshot.proxy(name).unwrap();
            std::ptr::from_ref(p.attachment.get().unwrap())
        };
        assert_eq!(ext(&a, "a"), ext(&b, "a"));
        assert_ne!(ext(&a, "b"), ext(&b, "b"));
    }
}
