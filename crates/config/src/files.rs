//! Reading and writing the files a Manager or Worker keeps for itself (keys, tokens, the
//! last-known-good cache, the store's witness): a read never blocks on something that is
//! not a regular file (a FIFO or a device put in a file's place), and a write creates the
//! file readable by its owner only, replacing it atomically when asked to.

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Reads a whole regular file of at most `max_bytes`. The file is opened without blocking
/// (`O_NONBLOCK`), then checked to be a regular file before a byte is read: a FIFO, a
/// socket or a device is refused with [`std::io::ErrorKind::InvalidInput`], never waited
/// on. A missing file is [`std::io::ErrorKind::NotFound`], as for `std::fs::read`.
pub fn read_regular(path: &Path, max_bytes: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("not a regular file ({})", file_type(&meta)),
        ));
    }
    if meta.len() > max_bytes {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} bytes, more than the {max_bytes} allowed", meta.len()),
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("grew past the {max_bytes} bytes allowed while being read"),
        ));
    }
    Ok(bytes)
}

fn file_type(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a file"
    }
}

/// Writes a new file readable only by its owner.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// Replaces `path` with `bytes` atomically, mode 0600: a fresh temporary file beside it
/// (created exclusively, so nothing already in its place — a link, a FIFO — is followed or
/// opened), fsync, rename over `path`, fsync of the directory. A reader sees the old
/// content or the new, never a mix.
pub fn replace_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = dir.join(format!(".{name}.tmp"));
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_fifo_is_refused_without_blocking_and_limits_hold() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Nobody writes to the FIFO: a blocking open would never return.
        let e = read_regular(&fifo, 100).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert_eq!(e.to_string(), "not a regular file (a FIFO)");
        let e = read_regular(dir.path(), 100).unwrap_err();
        assert_eq!(e.to_string(), "not a regular file (a directory)");
        let e = read_regular(&dir.path().join("none"), 100).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        let f = dir.path().join("f");
        std::fs::write(&f, b"12345").unwrap();
        assert_eq!(read_regular(&f, 5).unwrap(), b"12345");
        assert_eq!(
            read_regular(&f, 4).unwrap_err().to_string(),
            "5 bytes, more than the 4 allowed"
        );
    }

    #[test]
    fn a_replace_is_private_and_does_not_follow_what_is_in_the_temporary_place() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("data.json");
        std::fs::write(&target, b"old").unwrap();
        // Something left (or planted) where the temporary file goes.
        let elsewhere = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&elsewhere, dir.path().join(".data.json.tmp")).unwrap();
        replace_private(&target, b"new").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(mode(&target), 0o600);
        assert!(!elsewhere.exists(), "the link was not followed");
        write_private(&dir.path().join("key"), "k").unwrap();
        assert_eq!(mode(&dir.path().join("key")), 0o600);
    }
}
