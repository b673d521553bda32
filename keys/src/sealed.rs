//! The master key and the server keys sealed with it.
//!
//! A server signs unattended with its online keys (each channel's targets, snapshot and
//! timestamp) and its audit key. Their seeds are kept in the database, each sealed with the
//! master key: ChaCha20-Poly1305 with a fresh random 96-bit nonce per seal, and the row's name
//! and the key's id as associated data, so that a sealed seed moved to another row, or
//! relabelled with another key id, no longer opens. Every server of one database holds a copy
//! of the same master key file; the database alone opens nothing.
//!
//! ```
//! use arca_keys::{SigningKey, sealed::MasterKey};
//! let master = MasterKey::generate().unwrap();
//! let key = SigningKey::generate().unwrap();
//! let sealed = master.seal("online/dev", &key).unwrap();
//! let id = key.key_id();
//! assert_eq!(master.unseal("online/dev", id.as_str(), &sealed).unwrap().key_id(), id);
//! assert!(master.unseal("online/prod", id.as_str(), &sealed).is_err());
//! ```

use std::path::Path;

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::{KeyError, SigningKey};

/// The 32-byte symmetric key that seals the server keys. Never printed, never logged.
pub struct MasterKey {
    bytes: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A new key from the operating system's secure random generator (ring).
    pub fn generate() -> Result<Self, KeyError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| KeyError::Random)?;
        Ok(MasterKey { bytes })
    }

    /// Writes the key as hex and a newline to the new file `path`, mode 0600 (never
    /// overwriting).
    pub fn write_file(&self, path: &Path) -> Result<(), KeyError> {
        let mut body = Zeroizing::new(hex::encode(self.bytes.as_ref()));
        body.push('\n');
        crate::key::write_new(path, body.as_bytes(), 0o600).map_err(|source| KeyError::WriteFile {
            path: path.display().to_string(),
            source,
        })
    }

    /// Reads a master key file. A file that its group or others may read is refused: whoever
    /// reads it (with the database) holds every server key.
    pub fn read_file(path: &Path) -> Result<Self, KeyError> {
        let shown = || path.display().to_string();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(path).map_err(|source| KeyError::ReadFile {
                path: shown(),
                source,
            })?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::BadKeyFile {
                    path: shown(),
                    reason: format!(
                        "its mode is {mode:04o}: a master key must be readable by its owner only (chmod 600)"
                    ),
                });
            }
        }
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::ReadFile {
                    path: shown(),
                    source,
                })?,
            );
        let bytes: Zeroizing<[u8; 32]> = hex::decode(text.trim())
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
            .map(Zeroizing::new)
            .ok_or_else(|| KeyError::BadKeyFile {
                path: shown(),
                reason: "a master key is 64 hex characters (32 bytes) and a newline".into(),
            })?;
        Ok(MasterKey { bytes })
    }

    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(
            UnboundKey::new(&CHACHA20_POLY1305, self.bytes.as_ref()).expect("a 32-byte key"),
        )
    }

    /// Seals `key`'s seed for the row `name`: nonce || ciphertext || tag.
    pub fn seal(&self, name: &str, key: &SigningKey) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| KeyError::Random)?;
        let mut body = Zeroizing::new(key.seed().to_vec());
        self.aead()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(name, key.key_id().as_str())),
                &mut *body,
            )
            .map_err(|_| KeyError::Encrypt(format!("sealing {name}")))?;
        let mut out = Vec::with_capacity(NONCE_LEN + body.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Opens the row `name` sealed for `key_id`: the key, whose id is `key_id`. Fails
    /// ([`KeyError::Unseal`]) for another master key, another row name or key id, or changed
    /// bytes.
    pub fn unseal(&self, name: &str, key_id: &str, sealed: &[u8]) -> Result<SigningKey, KeyError> {
        let fail = || KeyError::Unseal {
            name: name.to_owned(),
        };
        if sealed.len() < NONCE_LEN {
            return Err(fail());
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| fail())?;
        let mut body = Zeroizing::new(body.to_vec());
        let seed = self
            .aead()
            .open_in_place(nonce, Aad::from(aad(name, key_id)), &mut body)
            .map_err(|_| fail())?;
        let seed: Zeroizing<[u8; 32]> = <[u8; 32]>::try_from(&*seed)
            .map(Zeroizing::new)
            .map_err(|_| fail())?;
        let key = SigningKey::from_seed(&seed);
        if key.key_id().as_str() != key_id {
            return Err(fail());
        }
        Ok(key)
    }
}

/// The associated data of a sealed row: its name, a NUL, the key id.
fn aad(name: &str, key_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 1 + key_id.len());
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out.extend_from_slice(key_id.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_opens_only_with_its_master_key_row_and_id() {
        let master = MasterKey::generate().unwrap();
        let key = SigningKey::generate().unwrap();
        let id = key.key_id().to_string();
        let sealed = master.seal("audit", &key).unwrap();
        assert_eq!(
            master.unseal("audit", &id, &sealed).unwrap().key_id(),
            key.key_id()
        );
        // The seed is not in the sealed bytes.
        let seed = key.seed();
        assert!(!sealed.windows(32).any(|w| w == seed.as_slice()));
        // Two seals of one key differ (fresh nonce).
        assert_ne!(master.seal("audit", &key).unwrap(), sealed);
        let other = SigningKey::generate().unwrap().key_id().to_string();
        assert!(master.unseal("online/dev", &id, &sealed).is_err());
        assert!(master.unseal("audit", &other, &sealed).is_err());
        assert!(
            MasterKey::generate()
                .unwrap()
                .unseal("audit", &id, &sealed)
                .is_err()
        );
        let mut flipped = sealed.clone();
        flipped[20] ^= 1;
        assert!(master.unseal("audit", &id, &flipped).is_err());
        assert!(master.unseal("audit", &id, &sealed[..8]).is_err());
    }

    #[test]
    fn master_key_files_round_trip_and_open_files_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let master = MasterKey::generate().unwrap();
        master.write_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65);
        assert!(text.ends_with('\n'));
        let key = SigningKey::generate().unwrap();
        let sealed = master.seal("audit", &key).unwrap();
        let back = MasterKey::read_file(&path).unwrap();
        back.unseal("audit", key.key_id().as_str(), &sealed)
            .unwrap();
        assert!(master.write_file(&path).is_err(), "overwrote");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = MasterKey::read_file(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "abcd\n").unwrap();
        assert!(MasterKey::read_file(&path).is_err());
    }
}
