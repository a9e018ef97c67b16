//! The last-known-good cache: the entity set of the revision a Worker serves, written with
//! an atomic replace and a checksum, so a Worker that starts while the Manager is down can
//! serve it — and a corrupt file is detected, reported and never served. Credentials are
//! sealed with the Worker's own key (`cache.key` beside the cache, mode 0600): no secret is
//! ever written in clear.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use switchyard_api::sync::{SyncEntity, state_digest};
use switchyard_config::manifest::sha256_hex;
use switchyard_config::secretbox::SecretBox;

const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheFile {
    pub format: u32,
    pub env: String,
    pub revision: u64,
    pub saved_at: String,
    pub state_digest: String,
    pub entities: Vec<SyncEntity>,
    /// SHA-256 of the JSON of `entities`.
    pub checksum: String,
}

pub fn path(dir: &Path, env: &str) -> PathBuf {
    dir.join(format!("{env}.lkg.json"))
}

/// The key that seals credentials in this cache directory (created on first use).
pub fn key(dir: &Path) -> Result<SecretBox, String> {
    SecretBox::load_or_create(&dir.join("cache.key")).map(|k| SecretBox::new(&k))
}

fn is_secret(e: &SyncEntity) -> bool {
    e.kind.is_secret() && !e.deleted
}

/// Writes the cache atomically: temp file, fsync, rename, fsync of the directory.
pub fn save(dir: &Path, env: &str, revision: u64, entities: &[SyncEntity]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let sealer = key(dir)?;
    let mut stored = Vec::with_capacity(entities.len());
    for e in entities {
        let mut e = e.clone();
        if is_secret(&e) {
            e.manifest = sealer.seal(&e.manifest)?;
        }
        stored.push(e);
    }
    let entities = &stored[..];
    let body = serde_json::to_string(entities).map_err(|e| e.to_string())?;
    let file = CacheFile {
        format: FORMAT,
        env: env.to_string(),
        revision,
        saved_at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        state_digest: state_digest(
            entities
                .iter()
                .filter(|e| !e.deleted)
                .map(|e| (e.kind, e.name.as_str(), e.version, e.digest.as_str())),
        ),
        entities: entities.to_vec(),
        checksum: sha256_hex(body.as_bytes()),
    };
    let text = serde_json::to_vec(&file).map_err(|e| e.to_string())?;
    let target = path(dir, env);
    let tmp = dir.join(format!(".{env}.lkg.json.tmp"));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    };
    write().map_err(|e| format!("cannot write {}: {e}", target.display()))
}

/// Reads and verifies the cache. `Ok(None)` when there is none.
pub fn load(dir: &Path, env: &str) -> Result<Option<CacheFile>, String> {
    let p = path(dir, env);
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", p.display())),
    };
    let corrupt = |why: String| format!("cache {} is corrupt ({why}); not serving it", p.display());
    let file: CacheFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if file.format != FORMAT {
        return Err(corrupt(format!("unknown format {}", file.format)));
    }
    if file.env != env {
        return Err(corrupt(format!("it belongs to environment {:?}", file.env)));
    }
    let body = serde_json::to_string(&file.entities).map_err(|e| corrupt(e.to_string()))?;
    if sha256_hex(body.as_bytes()) != file.checksum {
        return Err(corrupt("checksum mismatch".into()));
    }
    let mut file = file;
    if file.entities.iter().any(is_secret) {
        let opener = key(dir).map_err(corrupt)?;
        for e in file.entities.iter_mut().filter(|e| is_secret(e)) {
            e.manifest = opener
                .open(&e.manifest)
                .map_err(|why| corrupt(format!("{}/{}: {why}", e.kind, e.name)))?;
        }
    }
    if let Some(bad) = file.entities.iter().find(|e| !e.verify()) {
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
mod tests {
    use super::*;
    use switchyard_config::Kind;

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
        save(dir.path(), "dev", 2, &[cred.clone(), entity()]).unwrap();
        let text = std::fs::read_to_string(path(dir.path(), "dev")).unwrap();
        assert!(!text.contains("hunter2-secret"), "{text}");
        let loaded = load(dir.path(), "dev").unwrap().unwrap();
        assert_eq!(loaded.entities[0], cred);
        // Without the key the cache is unreadable, and said to be.
        std::fs::remove_file(dir.path().join("cache.key")).unwrap();
        assert!(load(dir.path(), "dev").unwrap_err().contains("corrupt"));
    }

    #[test]
    fn round_trip_and_corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path(), "dev").unwrap().is_none());
        save(dir.path(), "dev", 7, &[entity()]).unwrap();
        let f = load(dir.path(), "dev").unwrap().unwrap();
        assert_eq!(f.revision, 7);
        assert_eq!(f.entities, vec![entity()]);

        let p = path(dir.path(), "dev");
        let text = std::fs::read_to_string(&p)
            .unwrap()
            .replace("\\\"a\\\":1", "\\\"a\\\":2");
        std::fs::write(&p, text).unwrap();
        let err = load(dir.path(), "dev").unwrap_err();
        assert!(err.contains("corrupt"), "{err}");

        std::fs::write(&p, b"{not json").unwrap();
        assert!(load(dir.path(), "dev").unwrap_err().contains("corrupt"));
    }
}
