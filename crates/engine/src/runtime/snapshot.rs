//! One immutable configuration generation: every proxy and credential, compiled, plus the
//! route table. Its maps are persistent: cloning a snapshot is O(1), and a snapshot built
//! from the previous one shares every unchanged part with it.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use http::Method;
use imbl::{OrdMap, OrdSet};

use super::pipeline::Pipeline;
use super::routes::{RouteRule, RouteTable};
use super::upstream::Upstream;
use switchyard_config::error::{Position, SourceRef};
use switchyard_config::load::Located;
use switchyard_config::manifest::{CredentialSpec, Manifest};

/// A complete, immutable configuration. Swapped in whole; never mutated.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Increases by one with every change that is applied.
    pub revision: u64,
    /// By name. Unchanged proxies are the same `Arc` as in the previous snapshot.
    pub(crate) proxies: OrdMap<Arc<str>, Arc<Proxy>>,
    pub(crate) credentials: OrdMap<Arc<str>, Arc<Credential>>,
    pub(crate) routes: RouteTable<RouteMatch>,
    /// Credential name → the proxies that reference it (recompiled when it changes).
    pub(crate) credential_users: OrdMap<Arc<str>, OrdSet<Arc<str>>>,
}

/// Where a request goes: a proxy and one of its routes.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    pub proxy: Arc<Proxy>,
    /// Index into the proxy's routes.
    pub route: usize,
}

impl Snapshot {
    /// The route, proxy and route index for a request, if any route matches.
    pub fn route(
        &self,
        host: Option<&str>,
        path: &str,
        method: &Method,
    ) -> Option<(&RouteMatch, &Arc<Proxy>, &Route)> {
        let m = self.routes.lookup(host, path, method)?;
        let route = m.proxy.routes.get(m.route)?;
        Some((m, &m.proxy, route))
    }

    pub fn proxy(&self, name: &str) -> Option<&Arc<Proxy>> {
        self.proxies.get(name)
    }

    /// Every proxy, sorted by name.
    pub fn proxies(&self) -> impl ExactSizeIterator<Item = &Arc<Proxy>> {
        self.proxies.values()
    }

    pub fn proxy_count(&self) -> usize {
        self.proxies.len()
    }

    pub fn credential(&self, name: &str) -> Option<&Arc<Credential>> {
        self.credentials.get(name)
    }

    /// Every credential, sorted by name.
    pub fn credentials(&self) -> impl ExactSizeIterator<Item = &Arc<Credential>> {
        self.credentials.values()
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
    /// The document this version was compiled from (route conflicts name it).
    pub source: SourceRef,
    /// The manifest, kept only when the proxy references credentials: a change to one of
    /// them recompiles the proxy from it.
    pub(crate) manifest: Option<Arc<Located<Manifest>>>,
    /// What the serving process attaches to this version.
    pub attachment: Attachment,
}

/// One compiled route of a proxy.
#[derive(Debug)]
pub struct Route {
    /// `payments#0`: proxy name and route index, for logs and metrics.
    pub id: Arc<str>,
    /// Set when `stripPrefix` is on: the prefix removed before forwarding.
    pub strip: Option<String>,
    pub rule: RouteRule,
    /// Where the route is written in the proxy's document.
    pub position: Position,
}

/// A credential as the runtime holds it. `Debug` never shows its secret values.
pub struct Credential {
    pub name: Arc<str>,
    /// SHA-256 of the manifest (hex).
    pub digest: String,
    pub spec: CredentialSpec,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.spec.type_name();
        f.debug_struct("Credential")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .field("type", &kind)
            .finish_non_exhaustive()
    }
}

/// Data the serving process attaches to one proxy version, once (the Worker: its metric
/// handles and upstream client). It lives as long as the `Arc<Proxy>`, so a swap keeps it
/// for every proxy shared with the previous snapshot.
#[derive(Default)]
pub struct Attachment(OnceLock<Box<dyn Any + Send + Sync>>);

impl Attachment {
    /// The attached value, attaching `init()` first if nothing is attached yet. `None` when
    /// a value of another type is attached.
    pub fn get_or_init<T: Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> Option<&T> {
        let value: &(dyn Any + Send + Sync) = &**self
            .0
            .get_or_init(|| Box::new(init()) as Box<dyn Any + Send + Sync>);
        value.downcast_ref()
    }

    /// The attached value, if one of type `T` is attached.
    pub fn get<T: Any>(&self) -> Option<&T> {
        let value: &(dyn Any + Send + Sync) = &**self.0.get()?;
        value.downcast_ref()
    }
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.0.get().is_some() {
            "set"
        } else {
            "empty"
        };
        write!(f, "Attachment({state})")
    }
}
