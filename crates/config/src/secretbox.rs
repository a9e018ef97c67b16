//! Encryption of secret values at rest (AES-256-GCM, a fresh random nonce per value).
//! The Manager seals credentials in its store; Workers seal them in their cache.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Prefix of a sealed value (format version 1).
const PREFIX: &str = "sb1:";

/// A key file holds 44 characters of base64 (or 64 hex digits) and a newline.
const MAX_KEY_FILE_BYTES: u64 = 4096;

pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(<key hidden>)")
    }
}

impl SecretBox {
    pub fn new(key: &[u8; 32]) -> SecretBox {
        SecretBox {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)),
        }
    }

    /// A key given as text: base64 of 32 bytes, or 64 hex digits.
    pub fn key_from_text(text: &str) -> Result<[u8; 32], String> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|e| e.to_string())?
        } else {
            STANDARD.decode(text).map_err(|_| {
                "a secret key is 32 bytes, written as base64 or 64 hex digits".to_string()
            })?
        };
        bytes
            .try_into()
            .map_err(|_| "a secret key is 32 bytes, written as base64 or 64 hex digits".to_string())
    }

    /// Reads the key file, or creates it (mode 0600) with a random key.
    /// The file must be a regular file (a FIFO or device in its place is refused, not
    /// waited on).
    pub fn load_or_create(path: &Path) -> Result<[u8; 32], String> {
        match crate::files::read_regular(path, MAX_KEY_FILE_BYTES) {
            Ok(bytes) => std::str::from_utf8(&bytes)
                .map_err(|_| "not UTF-8 text".to_string())
                .and_then(Self::key_from_text)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| format!("no randomness for a key: {e}"))?;
                write_private(path, &STANDARD.encode(key))
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                Ok(key)
            }
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    pub fn seal(&self, plaintext: &str) -> Result<String, String> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| format!("no randomness for a nonce: {e}"))?;
        let ciphertext = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
            .map_err(|_| "encryption failed".to_string())?;
        let mut out = Vec::with_capacity(12 + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(format!("{PREFIX}{}", STANDARD.encode(out)))
    }

    pub fn open(&self, sealed: &str) -> Result<String, String> {
        let body = sealed
            .strip_prefix(PREFIX)
            .ok_or_else(|| "not a sealed value".to_string())?;
        let bytes = STANDARD
            .decode(body)
            .map_err(|_| "sealed value is not base64".to_string())?;
        if bytes.len() < 12 + 16 {
            return Err("sealed value is too short".into());
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| "cannot decrypt: wrong key or corrupted value".to_string())?;
        String::from_utf8(plain).map_err(|_| "decrypted value is not UTF-8".to_string())
    }

    pub fn is_sealed(value: &str) -> bool {
        value.starts_with(PREFIX)
    }
}

pub use crate::files::write_private;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper_detection() {
        let b = SecretBox::new(&[7u8; 32]);
        let sealed = b.seal("top secret").unwrap();
        assert!(!sealed.contains("top secret"));
        assert_ne!(
            sealed,
            b.seal("top secret").unwrap(),
            "fresh nonce each time"
        );
        assert_eq!(b.open(&sealed).unwrap(), "top secret");
        let other = SecretBox::new(&[8u8; 32]);
        assert!(other.open(&sealed).is_err());
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push('A');
        assert!(b.open(&tampered).is_err() || b.open(&tampered).unwrap() != "top secret");
    }

    #[test]
    fn keys_from_text_and_files() {
        let hex = "00".repeat(32);
        assert_eq!(SecretBox::key_from_text(&hex).unwrap(), [0u8; 32]);
        assert!(SecretBox::key_from_text("short").is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let k1 = SecretBox::load_or_create(&p).unwrap();
        let k2 = SecretBox::load_or_create(&p).unwrap();
        assert_eq!(k1, k2);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
