//! References from proxies to credentials and certificates, and the reverse index (entity
//! → proxies) that lets a changed credential or certificate recompile exactly the proxies
//! that use it.

use std::sync::Arc;

use imbl::OrdMap;

use crate::runtime::{Credential, Proxy, Snapshot};
use switchyard_config::Kind;
use switchyard_config::manifest::{Manifest, PolicySpec, ProxyManifest};

/// Credentials by name, as a snapshot holds them.
pub(crate) type Credentials = OrdMap<Arc<str>, Arc<Credential>>;

/// Certificates by name, as a snapshot holds them.
pub(crate) type Certificates = OrdMap<Arc<str>, Arc<crate::tls::Certificate>>;

/// The credentials a proxy's policies reference, by name, sorted and deduplicated
/// ([`PolicySpec::credential_refs`]): the compiler keeps the proxy's manifest when there
/// are any, and recompiles the proxy whenever one of them changes or goes away.
pub(crate) fn credential_refs(m: &ProxyManifest) -> Vec<&str> {
    let mut refs: Vec<&str> = m
        .spec
        .policies
        .iter()
        .flat_map(PolicySpec::credential_refs)
        .chain(m.spec.upstream.tls.as_ref().and_then(|t| t.ca.as_deref()))
        .collect();
    #[cfg(test)]
    refs.extend(test_label_refs(m));
    refs.sort_unstable();
    refs.dedup();
    refs
}

/// Unit tests only: the credential named by [`TEST_REFERENCE_LABEL`], if any.
#[cfg(test)]
pub(crate) fn test_label_refs(m: &ProxyManifest) -> Vec<&str> {
    m.metadata
        .labels
        .get(TEST_REFERENCE_LABEL)
        .map(|n| vec![n.as_str()])
        .unwrap_or_default()
}

/// Unit tests only: a proxy carrying this label references the credential it names.
#[cfg(test)]
pub(crate) const TEST_REFERENCE_LABEL: &str = "test.switchyard.dev/credential";

/// Every entity a proxy manifest references: its credentials, and the certificate it
/// presents to upstreams (`spec.upstream.tls.clientCertificate`).
pub(crate) fn entity_refs(m: &ProxyManifest) -> Vec<(Kind, &str)> {
    let mut refs: Vec<(Kind, &str)> = credential_refs(m)
        .into_iter()
        .map(|n| (Kind::Credential, n))
        .collect();
    if let Some(c) = m
        .spec
        .upstream
        .tls
        .as_ref()
        .and_then(|t| t.client_certificate.as_deref())
    {
        refs.push((Kind::Certificate, c));
    }
    refs
}

/// `p`'s references (empty unless it kept its manifest).
fn refs_of<X>(p: &Proxy<X>) -> Vec<(Kind, &str)> {
    match p.manifest.as_deref().map(|m| &m.value) {
        Some(Manifest::Proxy(m)) => entity_refs(m),
        _ => Vec::new(),
    }
}

/// Whether every credential and certificate `p` references is the same in `next` as in
/// `prev`.
pub(crate) fn unchanged<X>(p: &Proxy<X>, prev: Option<&Snapshot<X>>, next: &Snapshot<X>) -> bool {
    refs_of(p).into_iter().all(|(kind, name)| match kind {
        Kind::Certificate => match (
            prev.and_then(|s| s.certificates.get(name)),
            next.certificates.get(name),
        ) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        },
        _ => match (
            prev.and_then(|s| s.credentials.get(name)),
            next.credentials.get(name),
        ) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        },
    })
}

/// Records `p` as a user of each entity it references.
pub(crate) fn add_user<X>(next: &mut Snapshot<X>, p: &Proxy<X>) {
    for (kind, name) in refs_of(p) {
        next.users
            .entry((kind, name.into()))
            .or_default()
            .insert(p.name.clone());
    }
}

/// Forgets `p` as a user of the entities it references.
pub(crate) fn remove_user<X>(next: &mut Snapshot<X>, p: &Proxy<X>) {
    for (kind, name) in refs_of(p) {
        let key = (kind, Arc::<str>::from(name));
        if let Some(users) = next.users.get_mut(&key) {
            users.remove(&*p.name);
            if users.is_empty() {
                next.users.remove(&key);
            }
        }
    }
}
