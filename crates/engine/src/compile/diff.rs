//! A full manifest set compared with the previous snapshot: which entities are new or
//! changed (in manifest order) and which are gone. One hash-set insert and one map lookup
//! per manifest; nothing is compiled here.

use std::collections::HashSet;
use switchyard_config::Kind;

use super::Numbering;
use crate::runtime::Snapshot;
use switchyard_config::load::Located;
use switchyard_config::manifest::{Manifest, WORKER_SETTINGS_NAME};

pub(crate) enum Diff<'a> {
    /// Two manifests of one kind share a name.
    Duplicates,
    Changes {
        upserts: Vec<&'a Located<Manifest>>,
        /// `(kind, name)`.
        removed: Vec<(Kind, &'a str)>,
    },
}

pub(crate) fn diff<'a, X>(
    manifests: &[&'a Located<Manifest>],
    prev: &'a Snapshot<X>,
    numbering: &Numbering,
) -> Diff<'a> {
    let mut seen: HashSet<(Kind, &str), foldhash::fast::RandomState> =
        HashSet::with_capacity_and_hasher(manifests.len(), Default::default());
    let (mut kept_proxies, mut kept_credentials, mut kept_certificates) = (0, 0, 0);
    let mut kept_listeners = 0;
    let mut upserts = Vec::new();
    for m in manifests {
        let name = m.value.metadata().name.value.as_str();
        if !seen.insert((m.value.kind(), name)) {
            return Diff::Duplicates;
        }
        let unchanged = match &m.value {
            Manifest::Proxy(_) => prev.proxies.get(name).is_some_and(|p| {
                kept_proxies += 1;
                p.digest == m.digest && numbering.versions.get(name).is_none_or(|v| *v == p.version)
            }),
            Manifest::Credential(_) => prev.credentials.get(name).is_some_and(|c| {
                kept_credentials += 1;
                c.digest == m.digest
            }),
            Manifest::Certificate(_) => prev.certificates.get(name).is_some_and(|c| {
                kept_certificates += 1;
                c.digest == m.digest
            }),
            Manifest::WorkerSettings(_) => prev.process.digest.as_deref() == Some(&*m.digest),
            Manifest::Listener(_) => prev.listeners.get(name).is_some_and(|l| {
                kept_listeners += 1;
                l.digest == m.digest
            }),
            // Variables are resolved before compiling; only gateway settings are served:
            // a document is compiled when it is (or would become) where they come from.
            Manifest::Environment(e) => {
                prev.gateway.is_from(m)
                    || (e.spec.gateway.is_default() && !prev.gateway.is_named(name))
            }
        };
        if !unchanged {
            upserts.push(*m);
        }
    }
    let mut removed = Vec::new();
    if kept_proxies < prev.proxies.len() {
        removed.extend(
            prev.proxies
                .keys()
                .filter(|n| !seen.contains(&(Kind::Proxy, &***n)))
                .map(|n| (Kind::Proxy, &**n)),
        );
    }
    if kept_credentials < prev.credentials.len() {
        removed.extend(
            prev.credentials
                .keys()
                .filter(|n| !seen.contains(&(Kind::Credential, &***n)))
                .map(|n| (Kind::Credential, &**n)),
        );
    }
    if kept_certificates < prev.certificates.len() {
        removed.extend(
            prev.certificates
                .keys()
                .filter(|n| !seen.contains(&(Kind::Certificate, &***n)))
                .map(|n| (Kind::Certificate, &**n)),
        );
    }
    if kept_listeners < prev.listeners.len() {
        removed.extend(
            prev.listeners
                .keys()
                .filter(|n| !seen.contains(&(Kind::Listener, &***n)))
                .map(|n| (Kind::Listener, &**n)),
        );
    }
    if prev.process.digest.is_some()
        && !seen.contains(&(Kind::WorkerSettings, WORKER_SETTINGS_NAME))
    {
        removed.push((Kind::WorkerSettings, WORKER_SETTINGS_NAME));
    }
    if let Some((source, _)) = &prev.gateway.source
        && !seen.contains(&(Kind::Environment, &**source))
    {
        removed.push((Kind::Environment, &**source));
    }
    Diff::Changes { upserts, removed }
}
