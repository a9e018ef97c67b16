//! The entity state a Worker follows, with no I/O: what to do with a pull (apply it, or
//! resynchronise because the Manager's history is not the one served), pulls merged into
//! the state (every digest and the state digest checked), the state digest of what a
//! snapshot really serves, and the entities read into the [`EntitySet`] its compiles use —
//! each entity parsed once per version, a pull re-reading only what it changed.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use switchyard_api::sync::{DigestKey, SyncEntity, SyncPayload, state_digest};
use switchyard_config::{ConfigErrors, Kind};
use switchyard_engine::entity_set::{Stored, Unreadable};
use switchyard_engine::{EntitySet, Numbering, Snapshot};

/// An entity by kind and name.
pub type Key = (Kind, String);

/// The live entities by kind and name, as the Manager sent them; persistent, so applying a
/// pull to a copy costs O(pulled · log n), not a copy of the environment.
pub type Entities = imbl::OrdMap<Key, SyncEntity>;

/// The state of the revision a Worker serves. Kept in two forms because each has its own
/// use: the entities as sent (the next pull is merged into them and checked against the
/// Manager's state digest; the last-known-good cache is written from them), and parsed (so
/// the next compile re-parses only what changed).
#[derive(Debug, Clone, Default)]
pub struct Served {
    pub entities: Entities,
    pub parsed: EntitySet,
    pub revision: u64,
    /// The Manager's store the revision belongs to (empty: a Manager without one).
    pub store_id: String,
    /// The Manager's state digest of `revision` (that of `entities`).
    pub state_digest: String,
}

/// A pull, verified and parsed: what to compile, and the state it leads to once applied.
#[derive(Debug)]
pub struct Pulled {
    pub revision: u64,
    pub store_id: String,
    /// The Manager's digest of the state at `revision`: what the served snapshot must
    /// have before it is ACKed.
    pub state_digest: String,
    /// The entity state after the pull.
    pub entities: Entities,
    pub parsed: Parsed,
}

/// What a Worker does with a pull of what is newer than the revision it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The Manager is where the Worker is: nothing to do.
    UpToDate,
    /// The same history, further on: merge the pull and apply it.
    Apply,
    /// Another history than the one served (the reason says how it shows): pull
    /// everything and serve exactly the Manager's state, even if that is "backwards".
    Resync(String),
}

/// What to do with `payload` (a pull since the served revision), given what is served and
/// the revision last rejected here.
pub fn step(served: &Served, payload: &SyncPayload, rejected: Option<u64>) -> Step {
    let serving = served.revision;
    if payload.store_id != served.store_id {
        let was = if served.store_id.is_empty() {
            "none".to_string()
        } else {
            served.store_id.clone()
        };
        return Step::Resync(format!(
            "the Manager's store is another one (store {}, revision {}; this Worker served \
             revision {serving} of store {was}): restored from a backup or replaced",
            payload.store_id, payload.revision
        ));
    }
    if payload.revision < serving {
        return Step::Resync(format!(
            "the Manager is at revision {}, behind the revision {serving} this Worker \
             serves: its store went back in time (restored from a backup?)",
            payload.revision
        ));
    }
    if payload.revision == serving {
        if payload.state_digest != served.state_digest {
            return Step::Resync(format!(
                "the Manager's state at revision {serving} is not the one this Worker serves"
            ));
        }
        return Step::UpToDate;
    }
    if rejected == Some(payload.revision) {
        return Step::UpToDate;
    }
    Step::Apply
}

/// The state digest (as [`state_digest`] computes it) of what `snapshot` serves: each
/// proxy's version and digest as compiled, each credential's and certificate's digest as
/// compiled. What a
/// snapshot does not hold is taken from `entities` (the state it was compiled from): the
/// versions of credentials (a credential of another digest still makes its row differ)
/// and the entities nothing serves (`kind: Environment` variables, resolved before a
/// Worker sees anything). Equal to the Manager's digest exactly when the Worker serves
/// the Manager's state.
pub fn served_digest<X>(snapshot: &Snapshot<X>, entities: &Entities) -> String {
    let version = |kind: Kind, name: &str| {
        entities
            .get(&(kind, name.to_string()))
            .map_or(0, |e| e.version)
    };
    let served = snapshot
        .proxies()
        .map(|p| (Kind::Proxy, &*p.name, p.version, p.digest.as_str()))
        .chain(snapshot.credentials().map(|c| {
            (
                Kind::Credential,
                &*c.name,
                version(Kind::Credential, &c.name),
                c.digest.as_str(),
            )
        }))
        .chain(snapshot.certificates().map(|c| {
            (
                Kind::Certificate,
                &*c.name,
                version(Kind::Certificate, &c.name),
                c.digest.as_str(),
            )
        }))
        .chain(snapshot.listeners().values().map(|l| {
            (
                Kind::Listener,
                &*l.name,
                version(Kind::Listener, &l.name),
                l.digest.as_str(),
            )
        }));
    let unserved = entities.values().filter(|e| match e.kind {
        Kind::Proxy | Kind::Credential | Kind::Certificate | Kind::Listener => false,
        // Variables are resolved before a Worker sees anything; process settings are
        // taken at start (a snapshot with others is not swapped in).
        Kind::Environment | Kind::WorkerSettings => true,
    });
    state_digest(
        served.chain(unserved.map(|e| (e.kind, e.name.as_str(), e.version, e.digest.as_str()))),
    )
}

/// A pull as the compiler takes it.
#[derive(Debug)]
pub enum Parsed {
    /// The whole set (a full pull, or an incremental one that did not verify).
    Set {
        set: EntitySet,
        numbering: Numbering,
    },
    /// What an incremental pull changed.
    Delta(ParsedChanges),
}

/// The entities an incremental pull changed, parsed. Kept apart from the served set until
/// the change is applied ([`Served::advance`]), so a rejected change leaves it as it was.
#[derive(Debug)]
pub struct ParsedChanges {
    /// New or changed entities, in kind and name order.
    pub upserts: EntitySet,
    pub removed: Vec<Key>,
    /// The Manager's revision and the versions of the upserted proxies.
    pub numbering: Numbering,
}

impl ParsedChanges {
    /// `(kind, name)` of the removed entities, as the compiler takes them.
    pub fn removed_refs(&self) -> Vec<(Kind, &str)> {
        self.removed
            .iter()
            .map(|(kind, name)| (*kind, name.as_str()))
            .collect()
    }
}

impl Served {
    /// The state after `pulled` was applied.
    pub fn advance(&mut self, pulled: Pulled) {
        self.entities = pulled.entities;
        self.revision = pulled.revision;
        self.store_id = pulled.store_id;
        self.state_digest = pulled.state_digest;
        match pulled.parsed {
            Parsed::Set { set, .. } => self.parsed = set,
            Parsed::Delta(changes) => {
                for (_, e) in changes.upserts.iter() {
                    self.parsed.insert(e.version, e.manifest.clone());
                }
                for (kind, name) in &changes.removed {
                    self.parsed.remove(*kind, name);
                }
            }
        }
    }

    /// Parses a verified pull against this state: as a change when it is `incremental`
    /// (`payload` names the changed entities), else as the whole of `entities`.
    pub fn parse(
        &self,
        env: &str,
        payload: &SyncPayload,
        entities: Entities,
        incremental: bool,
    ) -> Result<Pulled, ConfigErrors> {
        let revision = payload.revision;
        let parsed = if incremental {
            Parsed::Delta(parse_changes(
                env,
                &payload.entities,
                revision,
                &self.parsed,
            )?)
        } else {
            let (set, numbering) = parse_set(env, &entities, revision, &self.parsed)?;
            Parsed::Set { set, numbering }
        };
        Ok(Pulled {
            revision,
            store_id: payload.store_id.clone(),
            state_digest: payload.state_digest.clone(),
            entities,
            parsed,
        })
    }
}

/// Applies a pull to an entity set, checking every digest and the state digest.
pub fn merge(base: &Entities, payload: &SyncPayload) -> Result<Entities, String> {
    let mut next = if payload.full {
        Entities::new()
    } else {
        base.clone()
    };
    let key = payload.digest_key.as_deref().and_then(DigestKey::from_hex);
    for e in &payload.entities {
        if !e.verify(key.as_ref()) {
            return Err(format!(
                "digest mismatch for {}/{} v{}",
                e.kind, e.name, e.version
            ));
        }
        let key = (e.kind, e.name.clone());
        if e.deleted {
            next.remove(&key);
        } else {
            next.insert(key, e.clone());
        }
    }
    let digest = state_digest(
        next.values()
            .map(|e| (e.kind, e.name.as_str(), e.version, e.digest.as_str())),
    );
    if digest != payload.state_digest {
        return Err(format!(
            "state digest mismatch at revision {} (local merge differs from the Manager)",
            payload.revision
        ));
    }
    Ok(next)
}

/// The live entities of a cache file, by kind and name.
pub fn entities_of(list: Vec<SyncEntity>) -> Entities {
    list.into_iter()
        .filter(|e| !e.deleted)
        .map(|e| ((e.kind, e.name.clone()), e))
        .collect()
}

/// Reads `entities` (live ones, in kind and name order) into a new set, reusing `cache`'s
/// parse of any entity at the same version and digest. All read errors, in that order.
fn read(env: &str, entities: &[&SyncEntity], cache: &EntitySet) -> Result<EntitySet, ConfigErrors> {
    let texts: BTreeMap<(Kind, &str), &str> = entities
        .iter()
        .map(|e| ((e.kind, e.name.as_str()), e.manifest.as_str()))
        .collect();
    let stored = entities.iter().map(|e| Stored {
        kind: e.kind,
        name: &e.name,
        version: e.version,
        digest: &e.digest,
    });
    let Ok((set, unreadable)) = cache.reread::<Infallible>(stored, |s| {
        let name = format!("{env}/{}/{} v{}", s.kind, s.name, s.version);
        let text = texts.get(&(s.kind, s.name)).copied().unwrap_or_default();
        Ok((Arc::from(name), Cow::Borrowed(text)))
    });
    if unreadable.is_empty() {
        Ok(set)
    } else {
        Err(ConfigErrors(
            unreadable
                .into_iter()
                .flat_map(|u: Unreadable| u.errors.0)
                .collect(),
        ))
    }
}

/// Parses the whole set (reusing `cache`) and returns it with its numbering: the Manager's
/// revision and proxy versions.
pub fn parse_set(
    env: &str,
    entities: &Entities,
    revision: u64,
    cache: &EntitySet,
) -> Result<(EntitySet, Numbering), ConfigErrors> {
    let live: Vec<&SyncEntity> = entities.values().filter(|e| !e.deleted).collect();
    let set = read(env, &live, cache)?;
    let numbering = Numbering {
        revision: Some(revision),
        versions: set.proxy_versions(),
    };
    Ok((set, numbering))
}

/// Parses the entities of an incremental pull (the last word on each, as [`merge`] takes
/// it), reusing `cache` for versions already parsed. Work grows with the pull, not with
/// the environment.
pub fn parse_changes(
    env: &str,
    changed: &[SyncEntity],
    revision: u64,
    cache: &EntitySet,
) -> Result<ParsedChanges, ConfigErrors> {
    let last: BTreeMap<(Kind, &str), &SyncEntity> = changed
        .iter()
        .map(|e| ((e.kind, e.name.as_str()), e))
        .collect();
    let removed = last
        .values()
        .filter(|e| e.deleted)
        .map(|e| (e.kind, e.name.clone()))
        .collect();
    let live: Vec<&SyncEntity> = last.values().copied().filter(|e| !e.deleted).collect();
    let upserts = read(env, &live, cache)?;
    let numbering = Numbering {
        revision: Some(revision),
        versions: upserts.proxy_versions(),
    };
    Ok(ParsedChanges {
        upserts,
        removed,
        numbering,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use switchyard_config::manifest::sha256_hex;

    /// A proxy as the Manager sends it: canonical JSON, digest of that text.
    fn proxy(name: &str, version: u64, path: &str) -> SyncEntity {
        let yaml = format!(
            "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{name: {name}}}\nspec:\n  routes: [{{pathPrefix: {path}}}]\n  upstream: {{targets: [{{url: \"http://127.0.0.1:1\"}}]}}\n"
        );
        let parsed = switchyard_config::parse_str("p".into(), &yaml).unwrap();
        let manifest = parsed[0].value.canonical_json();
        SyncEntity {
            kind: Kind::Proxy,
            name: name.into(),
            version,
            digest: sha256_hex(manifest.as_bytes()),
            manifest,
            deleted: false,
        }
    }

    fn deleted(name: &str, version: u64) -> SyncEntity {
        SyncEntity {
            deleted: true,
            manifest: String::new(),
            ..proxy(name, version, "/gone")
        }
    }

    fn entities(list: &[SyncEntity]) -> Entities {
        entities_of(list.to_vec())
    }

    fn names(set: &EntitySet) -> Vec<(&str, u64)> {
        set.iter()
            .map(|((_, n), e)| (n.as_str(), e.version))
            .collect()
    }

    #[test]
    fn a_pull_is_parsed_as_a_change_against_the_cache() {
        let base = entities(&[proxy("a", 1, "/a"), proxy("b", 1, "/b")]);
        let (cache, _) = parse_set("dev", &base, 1, &EntitySet::new()).unwrap();
        // `c` twice: the last word counts, as in `merge`.
        let pull = [
            proxy("c", 1, "/c"),
            deleted("b", 2),
            proxy("a", 1, "/a"),
            proxy("c", 2, "/c2"),
        ];
        let changes = parse_changes("dev", &pull, 2, &cache).unwrap();
        assert_eq!(changes.removed, [(Kind::Proxy, "b".to_string())]);
        assert_eq!(changes.removed_refs(), [(Kind::Proxy, "b")]);
        assert_eq!(names(&changes.upserts), [("a", 1), ("c", 2)]);
        // `a` was not parsed again.
        let cached_a = &cache.get(Kind::Proxy, "a").unwrap().manifest;
        let upserted_a = &changes.upserts.get(Kind::Proxy, "a").unwrap().manifest;
        assert!(Arc::ptr_eq(upserted_a, cached_a));
        assert_eq!(changes.numbering.revision, Some(2));
        assert_eq!(changes.numbering.versions.get("c"), Some(&2));
        // The cache itself is unchanged; the served state moves on once applied.
        assert_eq!(cache.len(), 2);
        let mut served = Served {
            entities: base,
            parsed: cache,
            revision: 1,
            ..Served::default()
        };
        served.advance(Pulled {
            revision: 2,
            store_id: "st_1".into(),
            state_digest: "d2".into(),
            entities: Entities::new(),
            parsed: Parsed::Delta(changes),
        });
        assert_eq!(names(&served.parsed), [("a", 1), ("c", 2)]);
        assert_eq!(served.revision, 2);
        assert_eq!((&*served.store_id, &*served.state_digest), ("st_1", "d2"));
    }

    #[test]
    fn a_full_set_reuses_what_is_parsed_and_carries_the_managers_numbers() {
        let base = entities(&[proxy("a", 3, "/a"), proxy("b", 1, "/b")]);
        let (cache, _) = parse_set("dev", &base, 4, &EntitySet::new()).unwrap();
        let next = entities(&[proxy("a", 3, "/a"), proxy("b", 2, "/b2")]);
        let (set, numbering) = parse_set("dev", &next, 5, &cache).unwrap();
        assert_eq!(names(&set), [("a", 3), ("b", 2)]);
        assert!(Arc::ptr_eq(
            &set.get(Kind::Proxy, "a").unwrap().manifest,
            &cache.get(Kind::Proxy, "a").unwrap().manifest
        ));
        assert_eq!(numbering.revision, Some(5));
        assert_eq!(
            numbering.versions,
            [("a".into(), 3), ("b".into(), 2)].into()
        );
    }

    #[test]
    fn every_unreadable_entity_is_reported_in_order() {
        let broken = |name: &str| SyncEntity {
            manifest: "kind: Nope".into(),
            digest: sha256_hex(b"kind: Nope"),
            ..proxy(name, 1, "/x")
        };
        let set = entities(&[broken("b"), proxy("c", 1, "/c"), broken("a")]);
        let errors = parse_set("dev", &set, 1, &EntitySet::new()).unwrap_err();
        let files: Vec<&str> = errors.0.iter().map(|e| &*e.file).collect();
        assert_eq!(files, ["dev/Proxy/a v1", "dev/Proxy/b v1"]);
    }

    #[test]
    fn a_merge_checks_every_digest_and_the_state_digest() {
        let a = proxy("a", 1, "/a");
        let digest_of = |es: &Entities| {
            state_digest(
                es.values()
                    .map(|e| (e.kind, e.name.as_str(), e.version, e.digest.as_str())),
            )
        };
        let full = |list: Vec<SyncEntity>, state_digest: String| SyncPayload {
            env: "dev".into(),
            revision: 1,
            since: 0,
            full: true,
            entities: list,
            store_id: "st_1".into(),
            digest_key: None,
            state_digest,
            canary: None,
        };
        let want = digest_of(&entities(std::slice::from_ref(&a)));
        let merged = merge(&Entities::new(), &full(vec![a.clone()], want.clone())).unwrap();
        assert_eq!(merged.len(), 1);
        let tampered = SyncEntity {
            manifest: a.manifest.replace("/a", "/b"),
            ..a.clone()
        };
        let e = merge(&Entities::new(), &full(vec![tampered], want)).unwrap_err();
        assert_eq!(e, "digest mismatch for Proxy/a v1");
        let e = merge(&Entities::new(), &full(vec![a], "0".into())).unwrap_err();
        assert!(e.starts_with("state digest mismatch at revision 1"), "{e}");
    }

    /// Any YAML document as the Manager sends it: canonical JSON, digest of that text.
    fn entity(yaml: &str, version: u64) -> SyncEntity {
        let parsed = switchyard_config::parse_str("e".into(), yaml).unwrap();
        let manifest = parsed[0].value.canonical_json();
        SyncEntity {
            kind: parsed[0].value.kind(),
            name: parsed[0].value.name().to_string(),
            version,
            digest: sha256_hex(manifest.as_bytes()),
            manifest,
            deleted: false,
        }
    }

    fn digest_of(es: &Entities) -> String {
        state_digest(
            es.values()
                .map(|e| (e.kind, e.name.as_str(), e.version, e.digest.as_str())),
        )
    }

    fn payload(store_id: &str, revision: u64, state_digest: &str) -> SyncPayload {
        SyncPayload {
            env: "dev".into(),
            revision,
            since: 4,
            full: false,
            entities: Vec::new(),
            store_id: store_id.into(),
            digest_key: None,
            state_digest: state_digest.into(),
            canary: None,
        }
    }

    #[test]
    fn another_store_a_manager_behind_or_other_content_means_a_resync() {
        let served = Served {
            revision: 4,
            store_id: "st_a".into(),
            state_digest: "d4".into(),
            ..Served::default()
        };
        let step = |p: SyncPayload, rejected| super::step(&served, &p, rejected);
        assert_eq!(step(payload("st_a", 4, "d4"), None), Step::UpToDate);
        assert_eq!(step(payload("st_a", 5, "d5"), None), Step::Apply);
        assert_eq!(step(payload("st_a", 5, "d5"), Some(5)), Step::UpToDate);
        assert_eq!(step(payload("st_a", 6, "d6"), Some(5)), Step::Apply);
        let resync = |p, rejected| match step(p, rejected) {
            Step::Resync(why) => why,
            other => panic!("{other:?}"),
        };
        // Another store: whatever its revision, even a rejected one.
        for rev in [3, 4, 5] {
            let why = resync(payload("st_b", rev, "x"), Some(rev));
            assert!(
                why.starts_with(&format!(
                    "the Manager's store is another one (store st_b, revision {rev}; this \
                     Worker served revision 4 of store st_a)"
                )),
                "{why}"
            );
        }
        let why = resync(payload("st_a", 3, "d3"), None);
        assert!(
            why.starts_with("the Manager is at revision 3, behind the revision 4"),
            "{why}"
        );
        let why = resync(payload("st_a", 4, "other"), None);
        assert_eq!(
            why,
            "the Manager's state at revision 4 is not the one this Worker serves"
        );
        // A Worker started on a Manager without store ids serves store "": a Manager that
        // has one now is another.
        let old = Served {
            store_id: String::new(),
            ..served.clone()
        };
        assert!(matches!(
            super::step(&old, &payload("st_a", 4, "d4"), None),
            Step::Resync(why) if why.contains("of store none")
        ));
    }

    #[test]
    fn the_served_digest_is_the_managers_exactly_when_the_snapshot_serves_its_state() {
        let cred = |value: &str, version| {
            entity(
                &format!(
                    "apiVersion: switchyard.dev/v1\nkind: Credential\nmetadata: {{name: k}}\nspec: {{type: secret, value: {value}}}\n"
                ),
                version,
            )
        };
        let vars = entity(
            "apiVersion: switchyard.dev/v1\nkind: Environment\nmetadata: {name: dev}\nspec: {variables: {A: b}}\n",
            2,
        );
        let manager = entities(&[
            proxy("a", 3, "/a"),
            proxy("b", 1, "/b"),
            cred("s3cret-value", 2),
            vars.clone(),
        ]);
        let compile = |es: &Entities| {
            let (set, numbering) = parse_set("dev", es, 9, &EntitySet::new()).unwrap();
            set.compile(None, &numbering).unwrap().snapshot
        };
        let want = digest_of(&manager);
        assert_eq!(served_digest(&compile(&manager), &manager), want);
        // A snapshot serving other content under the same names and versions — a proxy, a
        // credential — or missing an entity, or with one more, is not the Manager's state.
        let wrong = [
            entities(&[
                proxy("a", 3, "/other"),
                proxy("b", 1, "/b"),
                cred("s3cret-value", 2),
            ]),
            entities(&[proxy("a", 3, "/a"), proxy("b", 1, "/b"), cred("another", 2)]),
            entities(&[proxy("a", 3, "/a"), cred("s3cret-value", 2)]),
            entities(&[
                proxy("a", 3, "/a"),
                proxy("b", 1, "/b"),
                proxy("c", 1, "/c"),
                cred("s3cret-value", 2),
            ]),
            entities(&[
                proxy("a", 4, "/a"),
                proxy("b", 1, "/b"),
                cred("s3cret-value", 2),
            ]),
        ];
        for served in &wrong {
            assert_ne!(served_digest(&compile(served), &manager), want);
        }
    }
}
