//! One immutable configuration generation: every proxy and credential, compiled, plus the
//! route table. Its maps are persistent: cloning a snapshot is O(1), and a snapshot built
//! from the previous one shares every unchanged part with it.
//!
//! `X` is what the serving process attaches to each proxy version (see [`Attachment`]):
//! the Worker's metric handles and upstream client; `()` for a snapshot only inspected.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::Method;
use imbl::{OrdMap, OrdSet};

use super::error_format::ErrorFormat;
use super::gateway::{Gateway, GatewayState};
use super::pipeline::Pipeline;
use super::routes::{RouteRule, RouteTable};
use super::upstream::Upstream;
use switchyard_config::Kind;
use switchyard_config::error::{Position, SourceRef};
use switchyard_config::load::Located;
use switchyard_config::manifest::{CredentialSpec, Manifest};

/// A complete, immutable configuration. Swapped in whole; never mutated.
#[derive(Debug)]
pub struct Snapshot<X = ()> {
    /// Increases by one with every change that is applied.
    pub revision: u64,
    /// By name. Unchanged proxies are the same `Arc` as in the previous snapshot.
    pub(crate) proxies: OrdMap<Arc<str>, Arc<Proxy<X>>>,
    pub(crate) credentials: OrdMap<Arc<str>, Arc<Credential>>,
    pub(crate) routes: RouteTable<RouteMatch<X>>,
    /// A credential or certificate → the proxies that reference it (recompiled when it
    /// changes).
    pub(crate) users: OrdMap<(Kind, Arc<str>), OrdSet<Arc<str>>>,
    /// The environment's gateway settings and the document they came from.
    pub(crate) gateway: GatewayState,
    /// TLS certificates by name, and the index handshakes select from by SNI (rebuilt when
    /// a certificate changes).
    pub(crate) certificates: OrdMap<Arc<str>, Arc<crate::tls::Certificate>>,
    pub(crate) tls: Arc<crate::tls::CertificateIndex>,
    /// The environment's `kind: WorkerSettings`: taken when a Worker starts, compared (not
    /// served) afterwards.
    pub(crate) process: Arc<super::process::ProcessSettings>,
    /// The environment's listeners by name (`kind: Listener`): bound by the Worker, not
    /// read on the request path.
    pub(crate) listeners: OrdMap<Arc<str>, Arc<super::listener::Listener>>,
}

impl<X> Default for Snapshot<X> {
    fn default() -> Self {
        Snapshot {
            revision: 0,
            proxies: OrdMap::new(),
            credentials: OrdMap::new(),
            routes: RouteTable::default(),
            users: OrdMap::new(),
            gateway: GatewayState::default(),
            certificates: OrdMap::new(),
            tls: Arc::default(),
            process: Arc::default(),
            listeners: OrdMap::new(),
        }
    }
}

/// O(1): the maps are persistent.
impl<X> Clone for Snapshot<X> {
    fn clone(&self) -> Self {
        Snapshot {
            revision: self.revision,
            proxies: self.proxies.clone(),
            credentials: self.credentials.clone(),
            routes: self.routes.clone(),
            users: self.users.clone(),
            gateway: self.gateway.clone(),
            certificates: self.certificates.clone(),
            tls: self.tls.clone(),
            process: self.process.clone(),
            listeners: self.listeners.clone(),
        }
    }
}

/// What a route lookup finds: the match, its proxy and the route itself.
pub type Routed<'a, X> = (&'a RouteMatch<X>, &'a Arc<Proxy<X>>, &'a Route);

/// Where a request goes: a proxy and one of its routes.
#[derive(Debug)]
pub struct RouteMatch<X = ()> {
    pub proxy: Arc<Proxy<X>>,
    /// Index into the proxy's routes.
    pub route: usize,
}

impl<X> Clone for RouteMatch<X> {
    fn clone(&self) -> Self {
        RouteMatch {
            proxy: self.proxy.clone(),
            route: self.route,
        }
    }
}

impl<X> Snapshot<X> {
    /// The route, proxy and route index for a request, if any route matches.
    pub fn route(&self, host: Option<&str>, path: &str, method: &Method) -> Option<Routed<'_, X>> {
        let m = self.routes.lookup(host, path, method)?;
        let route = m.proxy.routes.get(m.route)?;
        Some((m, &m.proxy, route))
    }

    pub fn proxy(&self, name: &str) -> Option<&Arc<Proxy<X>>> {
        self.proxies.get(name)
    }

    /// Every proxy, sorted by name.
    pub fn proxies(&self) -> impl ExactSizeIterator<Item = &Arc<Proxy<X>>> {
        self.proxies.values()
    }

    /// The environment's gateway settings (paths, timeouts).
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway.settings
    }

    /// The environment's Worker process settings (`kind: WorkerSettings`).
    pub fn process(&self) -> &Arc<super::process::ProcessSettings> {
        &self.process
    }

    /// The environment's listeners (`kind: Listener`), by name.
    pub fn listeners(&self) -> &OrdMap<Arc<str>, Arc<super::listener::Listener>> {
        &self.listeners
    }

    /// The index a TLS handshake selects its certificate from (by SNI).
    pub fn tls(&self) -> &Arc<crate::tls::CertificateIndex> {
        &self.tls
    }

    /// The hosts routes name that no certificate names (`*.example.com` for a wildcard
    /// route), sorted; empty when the environment has no certificate (no TLS in use).
    /// A client reaching one of them over HTTPS gets the default certificate, which does
    /// not name it, or no handshake at all.
    pub fn uncovered_hosts(&self) -> Vec<String> {
        if self.certificates.is_empty() {
            return Vec::new();
        }
        let mut out: Vec<String> = self
            .proxies
            .values()
            .flat_map(|p| p.routes.iter())
            .flat_map(|r| r.rule.hosts.iter())
            .filter(|h| !self.tls.covers_pattern(h))
            .map(|h| match h {
                super::routes::HostPattern::Exact(h) => h.clone(),
                super::routes::HostPattern::Wildcard(s) => format!("*{s}"),
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The environment's certificates, by name.
    pub fn certificates(&self) -> impl Iterator<Item = &Arc<crate::tls::Certificate>> {
        self.certificates.values()
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
pub struct Proxy<X = ()> {
    pub name: Arc<str>,
    /// Bumped each time the proxy's manifest changes.
    pub version: u64,
    /// SHA-256 of the manifest that produced this version (hex).
    pub digest: String,
    pub labels: BTreeMap<String, String>,
    pub routes: Vec<Route>,
    pub pipeline: Pipeline,
    pub upstream: Upstream,
    /// How the proxy's own error answers are written.
    pub errors: ErrorFormat,
    /// Plain-HTTP requests are redirected to `https://` (`spec.httpsRedirect`).
    pub https_redirect: bool,
    /// The document this version was compiled from (route conflicts name it).
    pub source: SourceRef,
    /// The manifest, kept only when the proxy references credentials: a change to one of
    /// them recompiles the proxy from it.
    pub(crate) manifest: Option<Arc<Located<Manifest>>>,
    /// What the serving process attaches to this version.
    pub attachment: Attachment<X>,
}

/// One compiled route of a proxy.
#[derive(Debug)]
pub struct Route {
    /// `payments#0`: proxy name and route index, for logs and metrics.
    pub id: Arc<str>,
    /// Set when `stripPrefix` is on: the prefix removed before forwarding.
    pub strip: Option<String>,
    /// `maxStreamAge`: how long a stream on this route may outlive its generation being
    /// current (the Worker-wide cap applies too).
    pub max_stream_age: Option<Duration>,
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
/// handles and upstream client). It exists so that data lives as long as the
/// `Arc<Proxy>`: a swap keeps it for every proxy shared with the previous snapshot. Its
/// type is the snapshot's `X`, so what is attached is always what the process expects.
pub struct Attachment<X>(OnceLock<X>);

impl<X> Default for Attachment<X> {
    fn default() -> Self {
        Attachment(OnceLock::new())
    }
}

impl<X> Attachment<X> {
    /// The attached value, attaching `init()` first if nothing is attached yet.
    pub fn get_or_init(&self, init: impl FnOnce() -> X) -> &X {
        self.0.get_or_init(init)
    }

    /// The attached value, if one is attached.
    pub fn get(&self) -> Option<&X> {
        self.0.get()
    }
}

impl<X> fmt::Debug for Attachment<X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.0.get().is_some() {
            "set"
        } else {
            "empty"
        };
        write!(f, "Attachment({state})")
    }
}
