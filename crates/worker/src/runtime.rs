//! The Worker's view of one configuration generation: the compiled model snapshot plus
//! what the Worker attaches to each proxy (metric handles, the upstream connection pool).
//! One `Arc<Runtime>` is loaded per request and held until its response body ends.

use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use switchyard_engine::{ChangeKind, ProxyChange, Snapshot};

use crate::access_log::AccessLog;
use crate::connections::Connections;
use crate::metrics::{Metrics, ProxyMetrics};
use crate::pool::{HostPool, Pools};

/// Shared by every generation: metrics, the access log and the client connections.
pub struct Observability {
    pub metrics: Metrics,
    pub access_log: AccessLog,
    pub connections: Arc<Connections>,
}

impl Observability {
    pub fn new(access_log: AccessLog) -> Observability {
        let metrics = Metrics::new();
        let connections = Arc::new(Connections::new(metrics.connections.clone()));
        Observability {
            metrics,
            access_log,
            connections,
        }
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
    _generation: GenerationToken,
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
        let runtime = Runtime {
            unmatched: obs.metrics.proxy(&Arc::from("_unmatched")),
            _generation: GenerationToken::new(&obs.metrics.live_generations),
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
