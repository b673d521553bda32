//! ed25519 keys, TUF key ids and key files.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use ed25519_dalek::{Signer as _, Verifier};
use ring::rand::SecureRandom;
use serde::{Deserialize, Deserializer, Serialize};
use zeroize::Zeroizing;

use crate::{KeyError, canonical::to_canonical_json};

/// A key id: the SHA-256 of the canonical JSON of the public key in TUF form (TUF's rule), as
/// 64 lowercase hex characters. The only constructor validates, and serde goes through it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for KeyId {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let ok = s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if ok {
            Ok(KeyId(s.to_owned()))
        } else {
            Err(KeyError::InvalidKeyId(s.to_owned()))
        }
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The TUF wire form of a public key:
/// `{"keytype":"ed25519","scheme":"ed25519","keyval":{"public":"<hex>"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TufKey {
    pub keytype: String,
    pub scheme: String,
    pub keyval: KeyVal,
}

/// The `keyval` of a [`TufKey`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyVal {
    pub public: String,
}

/// An ed25519 public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyError::InvalidPublicKey(format!("{} bytes, not 32", bytes.len())))?;
        ed25519_dalek::VerifyingKey::from_bytes(&arr)
            .map(PublicKey)
            .map_err(|e| KeyError::InvalidPublicKey(e.to_string()))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    pub fn to_tuf(&self) -> TufKey {
        TufKey {
            keytype: "ed25519".into(),
            scheme: "ed25519".into(),
            keyval: KeyVal {
                public: self.to_hex(),
            },
        }
    }

    /// Parses the TUF form; refuses anything but ed25519.
    pub fn from_tuf(key: &TufKey) -> Result<Self, KeyError> {
        if key.keytype != "ed25519" || key.scheme != "ed25519" {
            return Err(KeyError::UnsupportedKey {
                keytype: key.keytype.clone(),
                scheme: key.scheme.clone(),
            });
        }
        let raw = hex::decode(&key.keyval.public)
            .map_err(|e| KeyError::InvalidPublicKey(e.to_string()))?;
        Self::from_bytes(&raw)
    }

    /// TUF key id: SHA-256 over the canonical JSON of [`PublicKey::to_tuf`].
    pub fn key_id(&self) -> KeyId {
        let canonical = to_canonical_json(&self.to_tuf()).expect("a TUF key always encodes");
        KeyId(hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            &canonical,
        )))
    }

    /// Verifies a raw 64-byte ed25519 signature over `msg` (strict verification: no malleable
    /// signatures, no weak keys).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(arr) = <[u8; 64]>::try_from(sig) else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(&arr);
        self.0.verify_strict(msg, &sig).is_ok() && self.0.verify(msg, &sig).is_ok()
    }

    /// Reads a `.pub` file (the TUF key JSON that `arca key gen` writes).
    pub fn read_file(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read(path).map_err(|source| KeyError::ReadFile {
            path: path.display().to_string(),
            source,
        })?;
        let tuf: TufKey = serde_json::from_slice(&text).map_err(|e| KeyError::BadKeyFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_tuf(&tuf)
    }
}

/// The private key file: the TUF key form plus the 32-byte seed, as hex.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrivateKeyFile {
    keytype: String,
    scheme: String,
    keyval: PrivateKeyVal,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrivateKeyVal {
    public: String,
    private: String,
}

/// An ed25519 signing key. Never printed, never logged.
pub struct SigningKey(ed25519_dalek::SigningKey);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.key_id())
    }
}

impl SigningKey {
    /// A new key from a seed drawn from the operating system's secure random generator (ring).
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| KeyError::Random)?;
        Ok(Self::from_seed(&seed))
    }

    pub fn from_seed(seed: &[u8; 32]) -> Self {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// The 32-byte private seed, for sealing ([`crate::sealed::MasterKey::seal`]).
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    pub fn key_id(&self) -> KeyId {
        self.public().key_id()
    }

    /// A raw 64-byte ed25519 signature over `msg`.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.0.sign(msg).to_bytes().to_vec()
    }

    /// Writes the private key unencrypted, as arca's JSON key file, to `path` (created with
    /// mode 0600, never overwriting) and the public key to `path.pub`. For keys that must sign
    /// unattended (the server's own) or that are explicitly asked for unencrypted; others are
    /// written with [`SigningKey::write_encrypted_files`].
    pub fn write_files(&self, path: &Path) -> Result<(), KeyError> {
        let public = self.public();
        let private = PrivateKeyFile {
            keytype: "ed25519".into(),
            scheme: "ed25519".into(),
            keyval: PrivateKeyVal {
                public: public.to_hex(),
                private: hex::encode(self.0.to_bytes()),
            },
        };
        let werr = |source| KeyError::WriteFile {
            path: path.display().to_string(),
            source,
        };
        let mut body =
            Zeroizing::new(serde_json::to_vec_pretty(&private).expect("key file encodes"));
        body.push(b'\n');
        write_new(path, &body, 0o600).map_err(werr)?;
        self.write_pub_file(path)
    }

    /// Reads an unencrypted private key file: the JSON that [`SigningKey::write_files`] writes
    /// (what the server's own keys are) or an unencrypted PKCS#8 PEM. An encrypted file is
    /// refused with [`KeyError::Encrypted`]; read those with [`KeyFile::read`].
    pub fn read_file(path: &Path) -> Result<Self, KeyError> {
        match KeyFile::read(path)? {
            KeyFile::Plain(key) => Ok(key),
            KeyFile::Encrypted(_) => Err(KeyError::Encrypted {
                path: path.display().to_string(),
            }),
        }
    }

    /// The private key as an encrypted PKCS#8 PEM (`-----BEGIN ENCRYPTED PRIVATE KEY-----`):
    /// PBES2 with scrypt (N = 2^14, r = 8, p = 1: OpenSSL 3's own choice, and the most it
    /// accepts by default) and AES-256-CBC, salt and IV from the secure random generator. The
    /// key inside is RFC 8410's ed25519 `PrivateKeyInfo` (version 1, as OpenSSL writes it).
    pub fn to_encrypted_pem(&self, passphrase: &[u8]) -> Result<Zeroizing<String>, KeyError> {
        use pkcs8::EncodePrivateKey;
        use pkcs8::pkcs5::{pbes2, scrypt};
        if passphrase.is_empty() {
            return Err(KeyError::EmptyPassphrase);
        }
        let enc = |e: &dyn fmt::Display| KeyError::Encrypt(e.to_string());
        let plain = ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: self.0.to_bytes(),
            public_key: None,
        }
        .to_pkcs8_der()
        .map_err(|e| enc(&e))?;
        let info: pkcs8::PrivateKeyInfoRef<'_> = plain.decode_msg().map_err(|e| enc(&e))?;
        let rng = ring::rand::SystemRandom::new();
        let mut salt = [0u8; 16];
        let mut iv = [0u8; 16];
        rng.fill(&mut salt).map_err(|_| KeyError::Random)?;
        rng.fill(&mut iv).map_err(|_| KeyError::Random)?;
        let cost = scrypt::Params::new(SCRYPT_LOG_N, 8, 1).map_err(|e| enc(&e))?;
        let params =
            pbes2::Parameters::generate_scrypt_aes256cbc(cost, &salt, iv).map_err(|e| enc(&e))?;
        info.encrypt_with_params(params, passphrase)
            .map_err(|e| enc(&e))?
            .to_pem("ENCRYPTED PRIVATE KEY", pkcs8::LineEnding::LF)
            .map_err(|e| enc(&e))
    }

    /// Writes the private key encrypted with `passphrase` ([`SigningKey::to_encrypted_pem`])
    /// to `path` (created with mode 0600, never overwriting) and the public key to `path.pub`.
    pub fn write_encrypted_files(&self, path: &Path, passphrase: &[u8]) -> Result<(), KeyError> {
        let pem = self.to_encrypted_pem(passphrase)?;
        write_new(path, pem.as_bytes(), 0o600).map_err(|source| KeyError::WriteFile {
            path: path.display().to_string(),
            source,
        })?;
        self.write_pub_file(path)
    }

    fn write_pub_file(&self, path: &Path) -> Result<(), KeyError> {
        let pub_path = pub_path(path);
        let mut pub_body = serde_json::to_vec_pretty(&self.public().to_tuf()).expect("key encodes");
        pub_body.push(b'\n');
        write_new(&pub_path, &pub_body, 0o644).map_err(|source| KeyError::WriteFile {
            path: pub_path.display().to_string(),
            source,
        })
    }

    /// Replaces the unencrypted key file at `path` with the same key encrypted with
    /// `passphrase`, atomically (a new file of mode 0600 beside it, synced, renamed over it):
    /// at every moment `path` holds the whole old file or the whole new one. Returns the key.
    pub fn encrypt_file(path: &Path, passphrase: &[u8]) -> Result<Self, KeyError> {
        let key = match KeyFile::read(path)? {
            KeyFile::Plain(key) => key,
            KeyFile::Encrypted(_) => {
                return Err(KeyError::AlreadyEncrypted {
                    path: path.display().to_string(),
                });
            }
        };
        let pem = key.to_encrypted_pem(passphrase)?;
        let werr = |source| KeyError::WriteFile {
            path: path.display().to_string(),
            source,
        };
        let mut suffix = [0u8; 8];
        ring::rand::SystemRandom::new()
            .fill(&mut suffix)
            .map_err(|_| KeyError::Random)?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", hex::encode(suffix)));
        let tmp = std::path::PathBuf::from(tmp);
        let replaced = write_new(&tmp, pem.as_bytes(), 0o600)
            .and_then(|()| std::fs::rename(&tmp, path))
            .and_then(|()| sync_parent(path));
        if let Err(e) = replaced {
            let _ = std::fs::remove_file(&tmp);
            return Err(werr(e));
        }
        Ok(key)
    }
}

/// scrypt's cost for new encrypted key files, as log2(N); see [`SigningKey::to_encrypted_pem`].
const SCRYPT_LOG_N: u8 = 14;

const ENCRYPTED_PEM: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
const PLAIN_PEM: &str = "-----BEGIN PRIVATE KEY-----";

/// A private key file as read from disk: usable at once, or encrypted (needing a passphrase).
pub enum KeyFile {
    /// An unencrypted file: arca's JSON key file, or an unencrypted PKCS#8 PEM.
    Plain(SigningKey),
    /// An encrypted PKCS#8 PEM, not yet decrypted.
    Encrypted(EncryptedKey),
}

impl KeyFile {
    /// Reads a private key file in any of the formats arca reads: arca's JSON key file (what
    /// [`SigningKey::write_files`] writes), an unencrypted PKCS#8 PEM (`BEGIN PRIVATE KEY`) or
    /// an encrypted one (`BEGIN ENCRYPTED PRIVATE KEY`, PBES2), all ed25519 (RFC 8410).
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let bad = |reason: String| KeyError::BadKeyFile {
            path: path.display().to_string(),
            reason,
        };
        let text = Zeroizing::new(std::fs::read(path).map_err(|source| KeyError::ReadFile {
            path: path.display().to_string(),
            source,
        })?);
        let start = text.trim_ascii_start();
        if start.starts_with(ENCRYPTED_PEM.as_bytes()) {
            let pem = std::str::from_utf8(start).map_err(|e| bad(e.to_string()))?;
            let (label, der) =
                pkcs8::Document::from_pem(pem).map_err(|e| bad(format!("PEM: {e}")))?;
            if label != "ENCRYPTED PRIVATE KEY" {
                return Err(bad(format!("PEM label {label:?}")));
            }
            pkcs8::EncryptedPrivateKeyInfoRef::try_from(der.as_bytes())
                .map_err(|e| bad(format!("encrypted PKCS#8: {e}")))?;
            return Ok(KeyFile::Encrypted(EncryptedKey {
                path: path.to_path_buf(),
                der,
            }));
        }
        if start.starts_with(PLAIN_PEM.as_bytes()) {
            let pem = std::str::from_utf8(start).map_err(|e| bad(e.to_string()))?;
            let (label, der) =
                pkcs8::SecretDocument::from_pem(pem).map_err(|e| bad(format!("PEM: {e}")))?;
            if label != "PRIVATE KEY" {
                return Err(bad(format!("PEM label {label:?}")));
            }
            return SigningKey::from_pkcs8_der(der.as_bytes())
                .map_err(bad)
                .map(KeyFile::Plain);
        }
        let file: PrivateKeyFile = serde_json::from_slice(&text)
            .map_err(|e| bad(format!("{e} (is this a .pub file?)")))?;
        if file.keytype != "ed25519" || file.scheme != "ed25519" {
            return Err(bad(format!("key type {}/{}", file.keytype, file.scheme)));
        }
        let seed: Zeroizing<[u8; 32]> = hex::decode(&file.keyval.private)
            .ok()
            .and_then(|v| v.try_into().ok())
            .map(Zeroizing::new)
            .ok_or_else(|| bad("private part is not 32 bytes of hex".into()))?;
        let key = SigningKey::from_seed(&seed);
        if key.public().to_hex() != file.keyval.public {
            return Err(bad("public part does not match the private seed".into()));
        }
        Ok(KeyFile::Plain(key))
    }
}

/// An encrypted PKCS#8 key file, read and parsed but not decrypted.
pub struct EncryptedKey {
    path: std::path::PathBuf,
    der: pkcs8::Document,
}

impl EncryptedKey {
    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Decrypts the key. A wrong passphrase is [`KeyError::WrongPassphrase`] (AES-CBC cannot
    /// tell a wrong passphrase from a damaged file: both fail the padding or the key's
    /// structure).
    pub fn decrypt(&self, passphrase: &[u8]) -> Result<SigningKey, KeyError> {
        let path = || self.path.display().to_string();
        let info =
            pkcs8::EncryptedPrivateKeyInfoRef::try_from(self.der.as_bytes()).map_err(|e| {
                KeyError::BadKeyFile {
                    path: path(),
                    reason: format!("encrypted PKCS#8: {e}"),
                }
            })?;
        let plain = info
            .decrypt(passphrase)
            .map_err(|_| KeyError::WrongPassphrase { path: path() })?;
        SigningKey::from_pkcs8_der(plain.as_bytes())
            .map_err(|_| KeyError::WrongPassphrase { path: path() })
    }
}

impl SigningKey {
    /// An ed25519 key from an unencrypted PKCS#8 `PrivateKeyInfo` (RFC 8410; version 2 with
    /// the public key is checked against the private key).
    fn from_pkcs8_der(der: &[u8]) -> Result<Self, String> {
        let info = pkcs8::PrivateKeyInfoRef::try_from(der).map_err(|e| e.to_string())?;
        let pair = ed25519_dalek::pkcs8::KeypairBytes::try_from(info)
            .map_err(|e| format!("not an ed25519 PKCS#8 key: {e}"))?;
        let key = Self::from_seed(&pair.secret_key);
        if let Some(public) = &pair.public_key
            && public.0 != *key.public().0.as_bytes()
        {
            return Err("public part does not match the private key".into());
        }
        Ok(key)
    }
}

/// `FILE` -> `FILE.pub`.
pub fn pub_path(path: &Path) -> std::path::PathBuf {
    let mut os = path.as_os_str().to_owned();
    os.push(".pub");
    os.into()
}

/// Syncs the directory holding `path`, so that a rename into it survives a crash.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

pub(crate) fn write_new(path: &Path, body: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(path)?;
    f.write_all(body)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_is_sha256_of_canonical_tuf_key() {
        // RFC 8032 test vector 1 public key.
        let public =
            hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
                .unwrap();
        let key = PublicKey::from_bytes(&public).unwrap();
        let canonical = format!(
            r#"{{"keytype":"ed25519","keyval":{{"public":"{}"}},"scheme":"ed25519"}}"#,
            hex::encode(&public)
        );
        let expected = hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            canonical.as_bytes(),
        ));
        assert_eq!(key.key_id().as_str(), expected);
    }

    #[test]
    fn rfc8032_vector_signs_and_verifies() {
        let seed: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap()
                .try_into()
                .unwrap();
        let key = SigningKey::from_seed(&seed);
        let sig = key.sign(b"");
        assert_eq!(
            hex::encode(&sig),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        assert!(key.public().verify(b"", &sig));
        assert!(!key.public().verify(b"x", &sig));
        let mut bad = sig.clone();
        bad[0] ^= 1;
        assert!(!key.public().verify(b"", &bad));
        assert!(!key.public().verify(b"", &sig[..63]));
    }

    #[test]
    fn key_files_round_trip_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let key = SigningKey::generate().unwrap();
        key.write_files(&path).unwrap();
        let back = SigningKey::read_file(&path).unwrap();
        assert_eq!(back.key_id(), key.key_id());
        let public = PublicKey::read_file(&pub_path(&path)).unwrap();
        assert_eq!(public.key_id(), key.key_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Never overwrites an existing key.
        assert!(SigningKey::generate().unwrap().write_files(&path).is_err());
        // A public key file is not a private key.
        assert!(SigningKey::read_file(&pub_path(&path)).is_err());
    }

    #[test]
    fn encrypted_key_files_round_trip_and_refuse_a_wrong_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let key = SigningKey::generate().unwrap();
        key.write_encrypted_files(&path, b"correct horse").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"),
            "{text}"
        );
        assert!(!text.contains(&hex::encode(key.0.to_bytes())));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            SigningKey::read_file(&path),
            Err(KeyError::Encrypted { .. })
        ));
        let KeyFile::Encrypted(enc) = KeyFile::read(&path).unwrap() else {
            panic!("not read as encrypted");
        };
        assert!(matches!(
            enc.decrypt(b"wrong horse"),
            Err(KeyError::WrongPassphrase { .. })
        ));
        assert_eq!(
            enc.decrypt(b"correct horse").unwrap().key_id(),
            key.key_id()
        );
        let public = PublicKey::read_file(&pub_path(&path)).unwrap();
        assert_eq!(public.key_id(), key.key_id());
        assert!(matches!(
            key.to_encrypted_pem(b""),
            Err(KeyError::EmptyPassphrase)
        ));
    }

    #[test]
    fn encrypt_file_replaces_a_plain_key_with_the_same_key_encrypted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let key = SigningKey::generate().unwrap();
        key.write_files(&path).unwrap();
        let back = SigningKey::encrypt_file(&path, b"pw").unwrap();
        assert_eq!(back.key_id(), key.key_id());
        let KeyFile::Encrypted(enc) = KeyFile::read(&path).unwrap() else {
            panic!("not encrypted");
        };
        assert_eq!(enc.decrypt(b"pw").unwrap().key_id(), key.key_id());
        assert!(matches!(
            SigningKey::encrypt_file(&path, b"pw"),
            Err(KeyError::AlreadyEncrypted { .. })
        ));
        // No temporary file is left beside it.
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["k.key", "k.key.pub"]);
    }

    #[test]
    fn reads_an_unencrypted_pkcs8_pem() {
        // RFC 8410 section 10.3's example private key (version 1, no public key).
        let pem = "-----BEGIN PRIVATE KEY-----\n\
                   MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
                   -----END PRIVATE KEY-----\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, pem).unwrap();
        let key = SigningKey::read_file(&path).unwrap();
        assert_eq!(
            key.public().to_hex(),
            "19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1"
        );
    }

    #[test]
    fn key_id_parsing_is_strict() {
        assert!("ab".parse::<KeyId>().is_err());
        assert!("A".repeat(64).parse::<KeyId>().is_err());
        assert!("g".repeat(64).parse::<KeyId>().is_err());
        assert!("a".repeat(64).parse::<KeyId>().is_ok());
        assert!(serde_json::from_str::<KeyId>("\"zz\"").is_err());
    }

    #[test]
    fn refuses_other_key_types() {
        let mut tuf = SigningKey::generate().unwrap().public().to_tuf();
        tuf.keytype = "rsa".into();
        assert!(matches!(
            PublicKey::from_tuf(&tuf),
            Err(KeyError::UnsupportedKey { .. })
        ));
    }
}
