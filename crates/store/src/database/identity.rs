//! The store's identity, and the witness that notices when the database was put back to
//! an older state.
//!
//! The id is created with the database (migration `0004`). The witness is a small file
//! beside the database (`switchyard.db.witness`, mode 0600) that remembers the id it saw
//! and how far the audit log had got at the last commit. A database restored from a
//! backup is behind its witness (its audit log is shorter), or is another store (another
//! id): on open it is given a new id, audited, so every Worker that followed the old
//! history sees a store it does not know and resynchronises. The check is automatic: an
//! operator who restores `switchyard.db` and starts the Manager cannot forget it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;

use super::rows::db;
use crate::{Result, StoreError, sql};

/// What the witness file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Witness {
    pub store_id: String,
    /// The highest audit id at the last commit the witness saw.
    pub audit_sequence: i64,
}

/// Largest witness file read (it is a few dozen bytes).
const MAX_WITNESS_BYTES: u64 = 4096;

/// The witness of one database file: where it is, and reading and replacing it.
#[derive(Debug)]
pub(super) struct WitnessFile {
    path: PathBuf,
}

impl WitnessFile {
    /// The witness of the database at `db`: `DB.witness`.
    pub fn beside(db: &Path) -> WitnessFile {
        let mut name = db.as_os_str().to_owned();
        name.push(".witness");
        WitnessFile {
            path: PathBuf::from(name),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `Ok(None)` when there is no witness yet; `Err` names why one cannot be read.
    pub fn read(&self) -> std::result::Result<Option<Witness>, String> {
        match switchyard_config::files::read_regular(&self.path, MAX_WITNESS_BYTES) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("{}: {e}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        }
    }

    pub fn write(&self, w: &Witness) -> std::result::Result<(), String> {
        let text = serde_json::to_vec(w).map_err(|e| e.to_string())?;
        switchyard_config::files::replace_private(&self.path, &text)
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }
}

/// Why a database must be given a new identity, given its witness; `None` when it is the
/// store the witness saw, at or past where it saw it.
pub(super) fn restored(
    witness: &std::result::Result<Option<Witness>, String>,
    store_id: &str,
    audit_sequence: i64,
) -> Option<String> {
    match witness {
        Ok(None) => None,
        Ok(Some(w)) if w.store_id != store_id => Some(format!(
            "the database is store {store_id}, but its witness last saw store {}: another \
             database (a backup?) was put in its place",
            w.store_id
        )),
        Ok(Some(w)) if audit_sequence < w.audit_sequence => Some(format!(
            "the database is behind its witness (audit log at {audit_sequence}, the witness \
             saw {}): it was restored from an older backup",
            w.audit_sequence
        )),
        Ok(Some(_)) => None,
        Err(why) => Some(format!(
            "its witness cannot be read ({why}), so a restore cannot be ruled out"
        )),
    }
}

/// A new random store id: `st_` and 32 hex digits.
pub(super) fn new_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| StoreError::Database(format!("no randomness for a store id: {e}")))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("st_{hex}"))
}

pub(super) async fn read_id(conn: &mut AnyConnection) -> Result<String> {
    sqlx::query_scalar(sql::IDENTITY_GET)
        .fetch_one(conn)
        .await
        .map_err(db("read the store's identity"))
}

pub(super) async fn audit_sequence(conn: &mut AnyConnection) -> Result<i64> {
    sqlx::query_scalar(sql::AUDIT_SEQUENCE)
        .fetch_one(conn)
        .await
        .map_err(db("read the audit sequence"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_is_told_from_the_same_store_further_on() {
        let seen = |id: &str, seq| {
            Ok(Some(Witness {
                store_id: id.into(),
                audit_sequence: seq,
            }))
        };
        assert_eq!(restored(&Ok(None), "st_a", 0), None);
        assert_eq!(restored(&seen("st_a", 10), "st_a", 10), None);
        assert_eq!(restored(&seen("st_a", 10), "st_a", 12), None);
        let behind = restored(&seen("st_a", 10), "st_a", 9).unwrap();
        assert!(behind.contains("restored from an older backup"), "{behind}");
        let other = restored(&seen("st_b", 1), "st_a", 50).unwrap();
        assert!(other.contains("another database"), "{other}");
        let unreadable = restored(&Err("garbage".into()), "st_a", 50).unwrap();
        assert!(unreadable.contains("garbage"), "{unreadable}");
    }
}
