//! One immutable configuration generation: every proxy, compiled, plus the route table.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::Method;

use super::pipeline::Pipeline;
use super::routes::{RouteMatch, RouteTable};
use super::upstream::Upstream;

/// A complete, immutable configuration. Swapped in whole; never mutated.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Increases by one with every change that is applied.
    pub revision: u64,
    /// Sorted by name. Unchanged proxies are the same `Arc` as in the previous snapshot.
    pub proxies: Vec<Arc<Proxy>>,
    pub routes: RouteTable,
}

impl Snapshot {
    /// The route, proxy and route index for a request, if any route matches.
    pub fn route(
        &self,
        host: Option<&str>,
        path: &str,
        method: &Method,
    ) -> Option<(RouteMatch, &Arc<Proxy>, &Route)> {
        let m = self.routes.lookup(host, path, method)?;
        let proxy = self.proxies.get(m.proxy)?;
        let route = proxy.routes.get(m.route)?;
        Some((m, proxy, route))
    }

    pub fn proxy(&self, name: &str) -> Option<&Arc<Proxy>> {
        self.proxies
            .binary_search_by(|p| (*p.name).cmp(name))
            .ok()
            .map(|i| &self.proxies[i])
    }
}

/// One proxy at one version.
#[derive(Debug)]
pub struct Proxy {
    pub name: Arc<str>,
    /// Bumped each time the proxy's manifest changes.
    pub version: u64,
    /// SHA-256 of the manifest that produced this version (hex).
    pub digest: String,
    pub labels: BTreeMap<String, String>,
    pub routes: Vec<Route>,
    pub pipeline: Pipeline,
    pub upstream: Upstream,
}

/// One compiled route of a proxy.
#[derive(Debug)]
pub struct Route {
    /// `payments#0`: proxy name and route index, for logs and metrics.
    pub id: Arc<str>,
    /// Set when `stripPrefix` is on: the prefix removed before forwarding.
    pub strip: Option<String>,
    /// The match rule (its `target` is filled in when the route table is built).
    pub rule: super::routes::RouteRule,
}
