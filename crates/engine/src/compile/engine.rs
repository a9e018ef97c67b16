//! Applies a batch of changes to a snapshot: the one compile path behind the full-set and
//! the delta APIs. Work grows with the batch (times log n): the maps and the route table are
//! persistent, so the result shares everything outside the batch with its base.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use switchyard_config::Kind;

use super::{ChangeKind, Compiled, Numbering, ProxyChange, Registries, credentials, proxy};
use crate::runtime::gateway::{self, GatewayState};
use crate::runtime::listener::{self, Listener};
use crate::runtime::{Credential, ProcessSettings, Proxy, RouteMatch, Snapshot};
use crate::tls;
use crate::validate::{self, Declared};
use switchyard_config::error::{ConfigError, Position};
use switchyard_config::load::Located;
use switchyard_config::manifest::{Manifest, ProxyManifest};

/// What changed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Batch<'a> {
    /// New or changed manifests, in the order their errors are reported.
    pub upserts: &'a [&'a Located<Manifest>],
    /// `(kind, name)` of entities to delete; a name that is also upserted is replaced.
    pub removed: &'a [(Kind, &'a str)],
}

/// What one compile is given besides the batch: the compiler's registries and the
/// numbering of the result.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub registries: &'a Registries,
    pub numbering: &'a Numbering,
}

/// Applies `batch` to `base`: `prev`'s content (a delta), or empty (a whole set). `prev`
/// decides reuse (same digest and version: the same `Arc`), versions, changes and revision.
///
/// Errors are those of the whole-set check over the base's entities followed by the
/// upserts: duplicate names, credentials, proxies, then route conflicts (only when nothing
/// else failed), each in that order. Proxies recompiled because a credential they use
/// changed count as base entities, by name.
pub(crate) fn apply<X>(
    prev: Option<&Snapshot<X>>,
    mut next: Snapshot<X>,
    batch: Batch<'_>,
    ctx: Ctx<'_>,
) -> Result<Compiled<X>, Vec<ConfigError>> {
    let decls: Vec<Declared<'_>> = batch.upserts.iter().map(|m| declared(m)).collect();
    let mut errors = validate::duplicate_names(&decls);
    let upserted: HashSet<(Kind, &str)> = decls.iter().map(|d| (d.kind, d.name)).collect();
    let removed = |kind: Kind| -> Vec<&str> {
        batch
            .removed
            .iter()
            .filter(|(k, n)| *k == kind && !upserted.contains(&(kind, *n)))
            .map(|(_, n)| *n)
            .collect()
    };

    let gateway_changed = apply_gateway(&mut next, &batch, &upserted, &mut errors);
    let process_changed = apply_process(&mut next, &batch, &upserted);
    let listeners_changed =
        apply_listeners(&mut next, &batch, &removed(Kind::Listener), &mut errors);

    // Credentials first: proxies resolve their references against the new set.
    let mut changed_credentials: Vec<Arc<str>> = Vec::new();
    for name in removed(Kind::Credential) {
        if let Some(c) = next.credentials.remove(name) {
            changed_credentials.push(c.name.clone());
        }
    }
    for m in batch.upserts {
        let Manifest::Credential(c) = &m.value else {
            continue;
        };
        errors.extend(validate::credential(&m.source, c));
        let name = c.metadata.name.value.as_str();
        let unchanged = prev
            .and_then(|p| p.credentials.get(name))
            .filter(|old| old.digest == m.digest);
        let credential = match unchanged {
            Some(old) => old.clone(),
            None => {
                changed_credentials.push(name.into());
                Arc::new(Credential {
                    name: name.into(),
                    digest: m.digest.clone(),
                    spec: c.spec.clone(),
                })
            }
        };
        next.credentials.insert(credential.name.clone(), credential);
    }

    let changed_certificates = apply_certificates(
        prev,
        &mut next,
        &batch,
        &removed(Kind::Certificate),
        !changed_credentials.is_empty(),
        &mut errors,
    );
    let certificates_changed = !changed_certificates.is_empty();

    // Proxies leaving the base: removed, replaced, or using a changed credential.
    let mut changes = Vec::new();
    for name in removed(Kind::Proxy) {
        if let Some(old) = take_out(&mut next, name) {
            changes.push(ProxyChange {
                name: old.name.to_string(),
                kind: ChangeKind::Removed,
                old_version: Some(old.version),
                new_version: None,
            });
        }
    }
    changes.sort_by(|a, b| a.name.cmp(&b.name));
    let removals = std::mem::take(&mut changes);
    let mut dependents = BTreeSet::new();
    let changed_entities = changed_credentials
        .iter()
        .map(|c| (Kind::Credential, c.clone()))
        .chain(
            changed_certificates
                .into_iter()
                .map(|c| (Kind::Certificate, c)),
        );
    for key in changed_entities {
        if let Some(users) = next.users.get(&key) {
            dependents.extend(
                users
                    .iter()
                    .filter(|p| !upserted.contains(&(Kind::Proxy, &***p)))
                    .cloned(),
            );
        }
    }
    // Only proxies that kept their manifest have users entries.
    let dependents: Vec<Arc<Located<Manifest>>> = dependents
        .iter()
        .filter_map(|name| next.proxies.get(&**name)?.manifest.clone())
        .collect();
    for m in &dependents {
        take_out(&mut next, &m.value.metadata().name.value);
    }
    for (kind, name) in &upserted {
        if *kind == Kind::Proxy {
            take_out(&mut next, name);
        }
    }

    // Compile what is new or changed; reuse the rest.
    let mut built = Vec::new();
    let mut rebuilt = 0;
    let proxies = dependents
        .iter()
        .map(|m| &**m)
        .chain(batch.upserts.iter().copied());
    for m in proxies {
        let Manifest::Proxy(manifest) = &m.value else {
            continue;
        };
        match build(prev, &next, m, manifest, ctx) {
            Ok(Built::Reused(p)) => built.push(p),
            Ok(Built::Compiled(p, change)) => {
                rebuilt += 1;
                changes.push(change);
                built.push(p);
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    // Route conflicts: each route against the table, which holds the base's routes and
    // those added before it.
    for p in &built {
        for (i, route) in p.routes.iter().enumerate() {
            errors.extend(validate::route_conflict(&next.routes, p, i));
            next.routes.insert(
                &route.rule,
                RouteMatch {
                    proxy: p.clone(),
                    route: i,
                },
            );
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    for p in built {
        credentials::add_user(&mut next, &p);
        next.proxies.insert(p.name.clone(), p);
    }

    changes.extend(removals);
    let prev_revision = prev.map_or(0, |s| s.revision);
    next.revision = match ctx.numbering.revision {
        Some(r) => r,
        None if changes.is_empty()
            && changed_credentials.is_empty()
            && !gateway_changed
            && !process_changed
            && !listeners_changed
            && !certificates_changed =>
        {
            prev_revision
        }
        None => prev_revision + 1,
    };
    Ok(Compiled {
        snapshot: next,
        changes,
        rebuilt,
    })
}

/// The environment's gateway settings after `batch`: from the one Environment document that
/// defines them (or that they came from), defaults when it is removed. Returns whether they
/// changed.
fn apply_gateway<X>(
    next: &mut Snapshot<X>,
    batch: &Batch<'_>,
    upserted: &HashSet<(Kind, &str)>,
    errors: &mut Vec<ConfigError>,
) -> bool {
    let mut changed = false;
    for (kind, name) in batch.removed {
        if *kind == Kind::Environment
            && !upserted.contains(&(*kind, *name))
            && next.gateway.is_named(name)
        {
            next.gateway = GatewayState::default();
            changed = true;
        }
    }
    for m in batch.upserts {
        let Manifest::Environment(e) = &m.value else {
            continue;
        };
        let name = e.metadata.name.value.as_str();
        if next.gateway.is_from(m) || (e.spec.gateway.is_default() && !next.gateway.is_named(name))
        {
            continue;
        }
        if let Some((other, _)) = &next.gateway.source
            && **other != *name
        {
            errors.push(
                ConfigError::new(
                    &m.source,
                    Position::from_location(&m.source, e.metadata.name.referenced),
                    format!(
                        "gateway settings are already defined by kind: Environment {other:?}; \
                         keep them in one document"
                    ),
                )
                .entity(Kind::Environment, name)
                .field("spec.gateway"),
            );
            continue;
        }
        match gateway::compile(m, e) {
            Ok(settings) => {
                changed |= *next.gateway.settings != settings;
                next.gateway = GatewayState {
                    source: (!e.spec.gateway.is_default())
                        .then(|| (Arc::from(name), m.digest.clone())),
                    settings: Arc::new(settings),
                };
            }
            Err(mut es) => errors.append(&mut es),
        }
    }
    changed
}

/// The Worker process settings after `batch`: from the environment's `kind:
/// WorkerSettings` (checked when read: one name, values in range), the defaults when it is
/// removed. Returns whether they changed.
fn apply_process<X>(
    next: &mut Snapshot<X>,
    batch: &Batch<'_>,
    upserted: &HashSet<(Kind, &str)>,
) -> bool {
    let before = next.process.clone();
    for (kind, name) in batch.removed {
        if *kind == Kind::WorkerSettings && !upserted.contains(&(*kind, *name)) {
            next.process = Arc::default();
        }
    }
    for m in batch.upserts {
        if let Manifest::WorkerSettings(w) = &m.value {
            next.process = ProcessSettings::from_document(&w.spec, &m.digest);
        }
    }
    *before != *next.process
}

/// The listeners after `batch`, each checked against the others (two listeners cannot
/// take one port). Returns whether they changed.
fn apply_listeners<X>(
    next: &mut Snapshot<X>,
    batch: &Batch<'_>,
    removed: &[&str],
    errors: &mut Vec<ConfigError>,
) -> bool {
    let before = next.listeners.clone();
    for name in removed {
        next.listeners.remove(*name);
    }
    let mut upserted = Vec::new();
    for m in batch.upserts {
        if let Manifest::Listener(l) = &m.value {
            let compiled = Arc::new(Listener::compile(m, l));
            next.listeners
                .insert(compiled.name.clone(), compiled.clone());
            upserted.push((*m, compiled));
        }
    }
    for (m, l) in upserted {
        errors.extend(listener::conflicts(&next.listeners, m, &l));
    }
    before != next.listeners
}

/// The certificates after `batch` (new or changed ones compiled, unchanged ones shared with
/// `prev`; those whose client CA credential changed recompiled from their document), and
/// the SNI index rebuilt when any changed. Returns the names of those that changed or went
/// away. `next` already holds the batch's credentials.
fn apply_certificates<X>(
    prev: Option<&Snapshot<X>>,
    next: &mut Snapshot<X>,
    batch: &Batch<'_>,
    removed: &[&str],
    credentials_changed: bool,
    errors: &mut Vec<ConfigError>,
) -> Vec<Arc<str>> {
    let mut changed = Vec::new();
    for name in removed {
        if let Some(c) = next.certificates.remove(*name) {
            changed.push(c.name.clone());
        }
    }
    let mut defaults_upserted = Vec::new();
    let mut upserted = HashSet::new();
    for m in batch.upserts {
        let Manifest::Certificate(c) = &m.value else {
            continue;
        };
        let name = c.metadata.name.value.as_str();
        upserted.insert(name);
        if c.spec.default {
            defaults_upserted.push((*m, c));
        }
        let unchanged = prev
            .and_then(|p| p.certificates.get(name))
            .filter(|old| old.digest == m.digest && client_ca_unchanged(old, next));
        match unchanged {
            Some(old) => {
                next.certificates.insert(old.name.clone(), old.clone());
            }
            None => match tls::compile_with_credentials(m, c, &next.credentials) {
                Ok(cert) => {
                    changed.push(cert.name.clone());
                    next.certificates.insert(cert.name.clone(), Arc::new(cert));
                }
                Err(mut es) => errors.append(&mut es),
            },
        }
    }
    // Certificates outside the batch whose client CA credential changed or went away:
    // recompiled from the document they keep (few: a scan of the certificates).
    if credentials_changed {
        let stale: Vec<Arc<Located<Manifest>>> = next
            .certificates
            .values()
            .filter(|c| !upserted.contains(&*c.name) && !client_ca_unchanged(c, next))
            .filter_map(|c| c.client_auth.as_ref().map(|a| a.manifest.clone()))
            .collect();
        for m in stale {
            let Manifest::Certificate(c) = &m.value else {
                continue;
            };
            match tls::compile_with_credentials(&m, c, &next.credentials) {
                Ok(cert) => {
                    changed.push(cert.name.clone());
                    next.certificates.insert(cert.name.clone(), Arc::new(cert));
                }
                Err(mut es) => errors.append(&mut es),
            }
        }
    }
    let defaults: Vec<&str> = next
        .certificates
        .values()
        .filter(|c| c.default)
        .map(|c| &*c.name)
        .collect();
    if defaults.len() > 1 {
        for (m, c) in defaults_upserted {
            errors.push(
                ConfigError::new(
                    &m.source,
                    Position::from_location(&m.source, c.metadata.name.referenced),
                    format!(
                        "more than one default certificate ({}); an environment has at most one",
                        defaults.join(", ")
                    ),
                )
                .entity(Kind::Certificate, &c.metadata.name.value)
                .field("spec.default"),
            );
        }
    }
    if !changed.is_empty() {
        next.tls = Arc::new(tls::CertificateIndex::build(&next.certificates));
    }
    changed
}

/// Whether the client CA credential `c` was compiled against is still the one `next` holds
/// (true without `clientAuth`).
fn client_ca_unchanged<X>(c: &tls::Certificate, next: &Snapshot<X>) -> bool {
    c.client_auth.as_ref().is_none_or(|a| {
        next.credentials
            .get(&*a.ca)
            .is_some_and(|cred| cred.digest == a.ca_digest)
    })
}

fn declared<'a>(m: &'a Located<Manifest>) -> Declared<'a> {
    let meta = m.value.metadata();
    Declared {
        kind: m.value.kind(),
        name: &meta.name.value,
        source: &m.source,
        position: Position::from_location(&m.source, meta.name.referenced),
    }
}

/// Removes a proxy, its routes and its credential references from `next`.
fn take_out<X>(next: &mut Snapshot<X>, name: &str) -> Option<Arc<Proxy<X>>> {
    let old = next.proxies.remove(name)?;
    for route in &old.routes {
        next.routes
            .remove(&route.rule, |m| Arc::ptr_eq(&m.proxy, &old));
    }
    credentials::remove_user(next, &old);
    Some(old)
}

enum Built<X> {
    /// The previous version: same digest, same version, same credentials.
    Reused(Arc<Proxy<X>>),
    Compiled(Arc<Proxy<X>>, ProxyChange),
}

fn build<X>(
    prev: Option<&Snapshot<X>>,
    next: &Snapshot<X>,
    m: &Located<Manifest>,
    manifest: &ProxyManifest,
    ctx: Ctx<'_>,
) -> Result<Built<X>, Vec<ConfigError>> {
    let name = manifest.metadata.name.value.as_str();
    let previous = prev.and_then(|s| s.proxies.get(name));
    let wanted = ctx.numbering.versions.get(name).copied();
    if let Some(p) = previous
        && p.digest == m.digest
        && wanted.is_none_or(|v| v == p.version)
        && credentials::unchanged(p, prev, next)
    {
        return Ok(Built::Reused(p.clone()));
    }
    let version = wanted.unwrap_or_else(|| previous.map_or(1, |p| p.version + 1));
    let compiled = proxy::compile_proxy(
        m,
        manifest,
        version,
        (&next.credentials, &next.certificates),
        ctx.registries,
    )?;
    let change = ProxyChange {
        name: name.to_string(),
        kind: if previous.is_some() {
            ChangeKind::Updated
        } else {
            ChangeKind::Added
        },
        old_version: previous.map(|p| p.version),
        new_version: Some(version),
    };
    Ok(Built::Compiled(Arc::new(compiled), change))
}
