//! [`EntitySet`]: an environment's entities (or a set of files) as parsed manifests, keyed
//! by kind and name. Every place that turns stored entities into something to compile — the
//! Manager's batch validation (apply, promote, credential set, rollback), the Worker's full
//! and incremental pulls, the CLI's local check — reads them through it, so an entity is
//! parsed once per version and a batch is overlaid on what is deployed the same way
//! everywhere.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use switchyard_config::error::{Position, SourceRef};
use switchyard_config::{ConfigError, ConfigErrors, Kind, Located, Manifest, parse_str};

use crate::compile::{Compiled, Numbering, compile_refs};
use crate::runtime::Snapshot;

/// An entity by kind and name.
pub type EntityKey = (Kind, String);

/// One entity of a set: its manifest and the version it was stored at (0 for files and
/// for batch entries not yet committed).
#[derive(Debug, Clone)]
pub struct Entry {
    pub version: u64,
    pub manifest: Arc<Located<Manifest>>,
    /// Order of insertion: a set compiles in this order (deployed entities first, then a
    /// batch), so errors name the newcomer, not the entity already there.
    seq: u64,
}

/// A stored entity about to be read into a set.
#[derive(Debug, Clone, Copy)]
pub struct Stored<'a> {
    pub kind: Kind,
    pub name: &'a str,
    pub version: u64,
    /// SHA-256 of the canonical JSON.
    pub digest: &'a str,
}

/// A stored entity whose text does not read as one manifest any more.
#[derive(Debug, Clone)]
pub struct Unreadable {
    pub kind: Kind,
    pub name: String,
    pub errors: ConfigErrors,
}

/// Entities keyed by `(kind, name)`, each parsed once; cheap to clone (manifests are
/// shared).
#[derive(Debug, Clone, Default)]
pub struct EntitySet {
    entries: BTreeMap<EntityKey, Entry>,
    next_seq: u64,
}

impl EntitySet {
    pub fn new() -> EntitySet {
        EntitySet::default()
    }

    /// A set of manifests as read from files (version 0), in their order.
    pub fn from_manifests(manifests: impl IntoIterator<Item = Located<Manifest>>) -> EntitySet {
        let mut set = EntitySet::new();
        for m in manifests {
            set.insert(0, Arc::new(m));
        }
        set
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, kind: Kind, name: &str) -> Option<&Entry> {
        self.entries.get(&(kind, name.to_string()))
    }

    pub fn contains(&self, kind: Kind, name: &str) -> bool {
        self.get(kind, name).is_some()
    }

    /// Entries by kind, then name.
    pub fn iter(&self) -> impl Iterator<Item = (&EntityKey, &Entry)> {
        self.entries.iter()
    }

    /// Adds or replaces an entity (a replaced one moves to the end of the compile order).
    /// Returns the entry it replaced.
    pub fn insert(&mut self, version: u64, manifest: Arc<Located<Manifest>>) -> Option<Entry> {
        let key = (manifest.value.kind(), manifest.value.name().to_string());
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.insert(
            key,
            Entry {
                version,
                manifest,
                seq,
            },
        )
    }

    pub fn remove(&mut self, kind: Kind, name: &str) -> Option<Entry> {
        self.entries.remove(&(kind, name.to_string()))
    }

    /// The same set without the entities that carry secrets (to keep a set around without
    /// holding secrets in clear).
    pub fn without_secrets(&self) -> EntitySet {
        EntitySet {
            entries: self
                .entries
                .iter()
                .filter(|((kind, _), _)| !kind.is_secret())
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect(),
            next_seq: self.next_seq,
        }
    }

    /// This set's manifest of an entity at exactly that version and digest, if it has it.
    pub fn cached(&self, s: &Stored<'_>) -> Option<Arc<Located<Manifest>>> {
        self.get(s.kind, s.name)
            .filter(|e| e.version == s.version && e.manifest.digest == s.digest)
            .map(|e| e.manifest.clone())
    }

    /// Parses one stored entity's text; `source` names it in errors.
    pub fn parse_one(source: Arc<str>, text: &str) -> Result<Located<Manifest>, ConfigErrors> {
        let mut docs = parse_str(source.clone(), text)?;
        match docs.len() {
            1 => Ok(docs.remove(0)),
            n => {
                let at = SourceRef {
                    file: source,
                    document: 0,
                    line_offset: 0,
                };
                Err(ConfigErrors(vec![ConfigError::new(
                    &at,
                    Position::UNKNOWN,
                    format!("expected one manifest document, found {n}"),
                )]))
            }
        }
    }

    /// Reads stored entities into a new set, in the order given, reusing this set's parse
    /// of any entity at the same version and digest. A secret keeps its stored digest
    /// (keyed, see `switchyard_api::sync::DigestKey`); every other entity's is recomputed
    /// from what was parsed. `text` gives the canonical JSON of an
    /// entity this set does not already hold, and the name its errors carry; it is not
    /// asked for the others (so a sealed secret is opened only when it changed).
    ///
    /// Entities that no longer read are returned apart; the set holds the others.
    pub fn reread<'a, E>(
        &self,
        stored: impl IntoIterator<Item = Stored<'a>>,
        mut text: impl FnMut(&Stored<'a>) -> Result<(Arc<str>, Cow<'a, str>), E>,
    ) -> Result<(EntitySet, Vec<Unreadable>), E> {
        let mut set = EntitySet::new();
        let mut unreadable = Vec::new();
        for s in stored {
            let manifest = match self.cached(&s) {
                Some(m) => m,
                None => {
                    let (source, text) = text(&s)?;
                    match EntitySet::parse_one(source, &text) {
                        // A secret's stored digest is keyed (an HMAC the Manager computed,
                        // checked by whoever received it): it stays the entity's digest.
                        Ok(mut m) if m.value.is_secret() => {
                            s.digest.clone_into(&mut m.digest);
                            Arc::new(m)
                        }
                        Ok(m) => Arc::new(m),
                        Err(errors) => {
                            unreadable.push(Unreadable {
                                kind: s.kind,
                                name: s.name.to_string(),
                                errors,
                            });
                            continue;
                        }
                    }
                }
            };
            set.insert(s.version, manifest);
        }
        Ok((set, unreadable))
    }

    /// The manifests in compile order.
    pub fn manifests(&self) -> Vec<&Located<Manifest>> {
        let mut entries: Vec<&Entry> = self.entries.values().collect();
        entries.sort_by_key(|e| e.seq);
        entries.into_iter().map(|e| &*e.manifest).collect()
    }

    /// The stored version of every proxy (what a Worker's compile is told to use).
    pub fn proxy_versions(&self) -> HashMap<String, u64> {
        self.entries
            .iter()
            .filter(|((kind, _), _)| *kind == Kind::Proxy)
            .map(|((_, name), e)| (name.clone(), e.version))
            .collect()
    }

    /// Compiles the whole set (against `prev`, reusing what did not change).
    pub fn compile(
        &self,
        prev: Option<&Snapshot>,
        numbering: &Numbering,
    ) -> Result<Compiled, ConfigErrors> {
        compile_refs(&self.manifests(), prev, numbering)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn proxy(name: &str, path: &str) -> String {
        format!(
            "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{name: {name}}}\nspec:\n  routes: [{{pathPrefix: {path}}}]\n  upstream: {{targets: [{{url: \"http://127.0.0.1:1\"}}]}}\n"
        )
    }

    fn stored<'a>(name: &'a str, version: u64, digest: &'a str) -> Stored<'a> {
        Stored {
            kind: Kind::Proxy,
            name,
            version,
            digest,
        }
    }

    #[test]
    fn a_reread_parses_only_what_changed_and_keeps_the_order_given() {
        let a = EntitySet::parse_one("a".into(), &proxy("a", "/a")).unwrap();
        let b = EntitySet::parse_one("b".into(), &proxy("b", "/b")).unwrap();
        let (da, db) = (a.digest.clone(), b.digest.clone());
        let cache = EntitySet::from_manifests([a]);
        let mut asked = Vec::new();
        let (set, bad) = cache
            .reread::<()>([stored("b", 0, &db), stored("a", 0, &da)], |s| {
                asked.push(s.name.to_string());
                Ok((s.name.into(), proxy(s.name, "/b").into()))
            })
            .unwrap();
        assert!(bad.is_empty());
        assert_eq!(asked, ["b"], "a is reused from the cache");
        let names: Vec<&str> = set.manifests().iter().map(|m| m.value.name()).collect();
        assert_eq!(names, ["b", "a"]);
        // Another version of the same content is parsed again (errors name the version).
        let (_, _) = cache
            .reread::<()>([stored("a", 2, &da)], |s| {
                asked.push(format!("{} again", s.name));
                Ok((s.name.into(), proxy("a", "/a").into()))
            })
            .unwrap();
        assert_eq!(asked.last().unwrap(), "a again");
    }

    #[test]
    fn unreadable_entities_are_returned_apart_and_a_replaced_entry_compiles_last() {
        let (set, bad) = EntitySet::new()
            .reread::<()>([stored("a", 1, "x"), stored("b", 1, "y")], |s| {
                Ok((
                    s.name.into(),
                    if s.name == "a" {
                        "kind: Nope".into()
                    } else {
                        proxy("b", "/b").into()
                    },
                ))
            })
            .unwrap();
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].name, "a");
        assert_eq!(set.len(), 1);
        let mut set = set;
        set.insert(
            0,
            Arc::new(EntitySet::parse_one("c".into(), &proxy("c", "/c")).unwrap()),
        );
        set.insert(
            0,
            Arc::new(EntitySet::parse_one("b2".into(), &proxy("b", "/b2")).unwrap()),
        );
        let names: Vec<&str> = set.manifests().iter().map(|m| m.value.name()).collect();
        assert_eq!(names, ["c", "b"]);
        assert_eq!(set.proxy_versions()["b"], 0);
        assert!(set.compile(None, &Numbering::default()).is_ok());
    }
}
