//! The last-known-good cache: the entity set of the revision a Worker serves, with the
//! store it belongs to, so a Worker that starts while the Manager is down can serve it.
//!
//! The whole file is authenticated: an HMAC-SHA256, keyed by the Worker's cache key
//! (`cache.key` beside the cache, mode 0600), over everything in it — environment, store
//! id, revision, state digest and entities. A file edited by anyone without the key (a
//! `revision` pushed to 99999, say) is reported as corrupt and never served. Credentials
//! are also sealed with that key: no secret is ever written in clear. Files are opened
//! without blocking and must be regular files (a FIFO in the cache's place is refused, not
//! waited on); everything is written mode 0600, replaced atomically.

use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use switchyard_api::sync::{SyncEntity, state_digest};
use switchyard_config::files::{read_regular, replace_private};
use switchyard_config::secretbox::SecretBox;

/// The first line of a cache file: this magic, the format, and the MAC of the rest.
const MAGIC: &str = "switchyard-lkg";
const FORMAT: u32 = 2;
/// The largest cache file read (an environment of many thousands of proxies fits).
const MAX_CACHE_BYTES: u64 = 512 * 1024 * 1024;
/// Keeps the MAC key apart from the sealing key, though both come from `cache.key`.
const MAC_KEY_CONTEXT: &[u8] = b"switchyard last-known-good cache mac\0";

type HmacSha256 = Hmac<Sha256>;

/// What a cache file holds (after its first line): the state of one revision of one
/// environment of one store, exactly as the Worker served it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheFile {
    pub env: String,
    /// The Manager's store the revision belongs to ([`SyncPayload::store_id`]).
    ///
    /// [`SyncPayload::store_id`]: switchyard_api::sync::SyncPayload::store_id
    pub store_id: String,
    pub revision: u64,
    pub saved_at: String,
    pub state_digest: String,
    pub entities: Vec<SyncEntity>,
}

pub fn path(dir: &Path, env: &str) -> PathBuf {
    dir.join(format!("{env}.lkg.json"))
}

fn key_path(dir: &Path) -> PathBuf {
    dir.join("cache.key")
}

/// The key of this cache directory (created, mode 0600, on first use).
fn key(dir: &Path) -> Result<[u8; 32], String> {
    SecretBox::load_or_create(&key_path(dir))
}

/// The key of this cache directory, if it has one: reading a cache never creates one.
fn existing_key(dir: &Path) -> Result<[u8; 32], String> {
    let p = key_path(dir);
    let bytes = read_regular(&p, 4096).map_err(|e| format!("{}: {e}", p.display()))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| format!("{}: not UTF-8", p.display()))?;
    SecretBox::key_from_text(text).map_err(|e| format!("{}: {e}", p.display()))
}

/// The MAC of a cache file's content under `key`.
fn mac(key: &[u8; 32], body: &[u8]) -> Result<HmacSha256, String> {
    let mut derived = Sha256::new();
    derived.update(MAC_KEY_CONTEXT);
    derived.update(key);
    let mut m = <HmacSha256 as Mac>::new_from_slice(&derived.finalize())
        .map_err(|e| format!("cannot key the cache's MAC: {e}"))?;
    m.update(format!("{MAGIC} {FORMAT}\n").as_bytes());
    m.update(body);
    Ok(m)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn is_secret(e: &SyncEntity) -> bool {
    e.kind.is_secret() && !e.deleted
}

/// Writes the cache of `revision` of `store_id`'s `env` atomically (temp file, fsync,
/// rename, fsync of the directory), mode 0600, authenticated, credentials sealed.
pub fn save(
    dir: &Path,
    env: &str,
    store_id: &str,
    revision: u64,
    entities: &[SyncEntity],
) -> Result<(), String> {
    create_private_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let key = key(dir)?;
    let sealer = SecretBox::new(&key);
    let mut stored = Vec::with_capacity(entities.len());
    for e in entities {
        let mut e = e.clone();
        if is_secret(&e) {
            e.manifest = sealer.seal(&e.manifest)?;
        }
        stored.push(e);
    }
    let file = CacheFile {
        env: env.to_string(),
        store_id: store_id.to_string(),
        revision,
        saved_at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        state_digest: state_digest(
            entities
                .iter()
                .filter(|e| !e.deleted)
                .map(|e| (e.kind, e.name.as_str(), e.version, e.digest.as_str())),
        ),
        entities: stored,
    };
    let body = serde_json::to_vec(&file).map_err(|e| e.to_string())?;
    let tag = hex(&mac(&key, &body)?.finalize().into_bytes());
    let mut text = format!("{MAGIC} {FORMAT} {tag}\n").into_bytes();
    text.extend_from_slice(&body);
    let target = path(dir, env);
    replace_private(&target, &text).map_err(|e| format!("cannot write {}: {e}", target.display()))
}

/// The cache directory, created mode 0700 if missing (an existing one is left as it is).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Reads and verifies the cache. `Ok(None)` when there is none; `Err` says why one that
/// is there is not served (not a regular file, not authentic, not of this environment,
/// not consistent).
pub fn load(dir: &Path, env: &str) -> Result<Option<CacheFile>, String> {
    let p = path(dir, env);
    let bytes = match read_regular(&p, MAX_CACHE_BYTES) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "cannot read cache {}: {e}; not serving it",
                p.display()
            ));
        }
    };
    let corrupt = |why: String| format!("cache {} is corrupt ({why}); not serving it", p.display());
    let (header, body) = match bytes.iter().position(|b| *b == b'\n') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => return Err(corrupt("no header line".into())),
    };
    let header = std::str::from_utf8(header).map_err(|_| corrupt("header is not text".into()))?;
    let tag = match header.split(' ').collect::<Vec<_>>()[..] {
        [MAGIC, format, tag] if format == FORMAT.to_string() => tag,
        [MAGIC, format, ..] => {
            return Err(corrupt(format!(
                "format {format}, this Worker reads format {FORMAT}"
            )));
        }
        _ => return Err(corrupt("not a last-known-good cache".into())),
    };
    let tag = unhex(tag).ok_or_else(|| corrupt("its MAC is not hex".into()))?;
    let key = existing_key(dir).map_err(|e| corrupt(format!("no key to check it with: {e}")))?;
    mac(&key, body)
        .map_err(corrupt)?
        .verify_slice(&tag)
        .map_err(|_| {
            corrupt("its MAC does not match: it was changed, or written with another key".into())
        })?;
    let mut file: CacheFile = serde_json::from_slice(body).map_err(|e| corrupt(e.to_string()))?;
    if file.env != env {
        return Err(corrupt(format!("it belongs to environment {:?}", file.env)));
    }
    if file.entities.iter().any(is_secret) {
        let opener = SecretBox::new(&key);
        for e in file.entities.iter_mut().filter(|e| is_secret(e)) {
            e.manifest = opener
                .open(&e.manifest)
                .map_err(|why| corrupt(format!("{}/{}: {why}", e.kind, e.name)))?;
        }
    }
    // Secrets' digests are keyed by the Manager; the file's MAC (checked above) covers
    // them with everything else.
    if let Some(bad) = file
        .entities
        .iter()
        .find(|e| !e.kind.is_secret() && !e.verify(None))
    {
        return Err(corrupt(format!(
            "digest mismatch for {}/{}",
            bad.kind, bad.name
        )));
    }
    let digest = state_digest(
        file.entities
            .iter()
            .filter(|e| !e.deleted)
            .map(|e| (e.kind, e.name.as_str(), e.version, e.digest.as_str())),
    );
    if digest != file.state_digest {
        return Err(corrupt("state digest mismatch".into()));
    }
    Ok(Some(file))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use switchyard_config::Kind;
    use switchyard_config::manifest::sha256_hex;

    fn entity() -> SyncEntity {
        let manifest = "{\"a\":1}".to_string();
        SyncEntity {
            kind: Kind::Proxy,
            name: "p".into(),
            version: 3,
            digest: sha256_hex(manifest.as_bytes()),
            manifest,
            deleted: false,
        }
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn credentials_are_sealed_in_the_file_and_clear_after_load() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = "{\"spec\":{\"value\":\"hunter2-secret\"}}".to_string();
        let cred = SyncEntity {
            kind: Kind::Credential,
            name: "k".into(),
            version: 1,
            digest: sha256_hex(manifest.as_bytes()),
            manifest: manifest.clone(),
            deleted: false,
        };
        save(dir.path(), "dev", "st_1", 2, &[cred.clone(), entity()]).unwrap();
        let text = std::fs::read_to_string(path(dir.path(), "dev")).unwrap();
        assert!(!text.contains("hunter2-secret"), "{text}");
        let loaded = load(dir.path(), "dev").unwrap().unwrap();
        assert_eq!(loaded.entities[0], cred);
        // Without the key the cache is unreadable, and said to be; reading it does not
        // make a new key.
        std::fs::remove_file(dir.path().join("cache.key")).unwrap();
        let e = load(dir.path(), "dev").unwrap_err();
        assert!(e.contains("corrupt (no key to check it with"), "{e}");
        assert!(!dir.path().join("cache.key").exists());
    }

    #[test]
    fn round_trip_with_the_store_and_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        assert!(load(&cache, "dev").unwrap().is_none());
        save(&cache, "dev", "st_abc", 7, &[entity()]).unwrap();
        let f = load(&cache, "dev").unwrap().unwrap();
        assert_eq!((f.revision, f.store_id.as_str()), (7, "st_abc"));
        assert_eq!(f.entities, vec![entity()]);
        assert_eq!(mode(&path(&cache, "dev")), 0o600);
        assert_eq!(mode(&cache.join("cache.key")), 0o600);
        assert_eq!(mode(&cache), 0o700);
        // Saved again (a later revision): still private, nothing left beside it.
        save(&cache, "dev", "st_abc", 8, &[entity()]).unwrap();
        assert_eq!(mode(&path(&cache, "dev")), 0o600);
        let names: Vec<String> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    /// Anything changed without the key — the revision, the store, an entity, the
    /// digests recomputed to match — is refused as corrupt.
    #[test]
    fn every_edit_without_the_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), "dev", "st_abc", 7, &[entity()]).unwrap();
        let p = path(dir.path(), "dev");
        let original = std::fs::read_to_string(&p).unwrap();
        let edits: Vec<(&str, String)> = vec![
            (
                "revision",
                original.replace("\"revision\":7", "\"revision\":99999"),
            ),
            ("store", original.replace("st_abc", "st_xyz")),
            ("entity", original.replace("\\\"a\\\":1", "\\\"a\\\":2")),
            (
                "header",
                original.replacen("switchyard-lkg 2 ", "switchyard-lkg 2 00", 1),
            ),
            (
                "format",
                original.replacen("switchyard-lkg 2", "switchyard-lkg 1", 1),
            ),
            (
                "no header",
                original.split_once('\n').unwrap().1.to_string(),
            ),
            ("not json", "{not json".into()),
        ];
        for (what, text) in edits {
            assert_ne!(text, original, "{what}: the edit must change something");
            std::fs::write(&p, &text).unwrap();
            let e = load(dir.path(), "dev").unwrap_err();
            assert!(
                e.contains("is corrupt") && e.ends_with("not serving it"),
                "{what}: {e}"
            );
        }
        let e = {
            std::fs::write(&p, original.replace("\"revision\":7", "\"revision\":99999")).unwrap();
            load(dir.path(), "dev").unwrap_err()
        };
        assert!(e.contains("its MAC does not match"), "{e}");
        // A cache of another environment, authentic or not, is not this one's.
        std::fs::write(&p, &original).unwrap();
        std::fs::rename(&p, path(dir.path(), "prod")).unwrap();
        let e = load(dir.path(), "prod").unwrap_err();
        assert!(e.contains("belongs to environment \"dev\""), "{e}");
    }

    #[test]
    fn a_fifo_in_the_caches_place_is_refused_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "dev");
        let made = std::process::Command::new("mkfifo")
            .arg(&p)
            .status()
            .unwrap();
        assert!(made.success());
        let e = load(dir.path(), "dev").unwrap_err();
        assert!(e.contains("not a regular file (a FIFO)"), "{e}");
        // The key too.
        std::fs::remove_file(&p).unwrap();
        let key = dir.path().join("cache.key");
        let made = std::process::Command::new("mkfifo")
            .arg(&key)
            .status()
            .unwrap();
        assert!(made.success());
        let e = save(dir.path(), "dev", "st_1", 1, &[entity()]).unwrap_err();
        assert!(e.contains("not a regular file (a FIFO)"), "{e}");
    }
}
