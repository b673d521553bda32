//! The one error type of this crate.

use crate::KeyId;

/// Everything that can go wrong while reading keys, signing or verifying.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    ReadFile {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write key file {path}: {source}")]
    WriteFile {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {path} is not a valid arca/TUF ed25519 key: {reason}")]
    BadKeyFile { path: String, reason: String },
    #[error("key file {path} is encrypted: it needs its passphrase")]
    Encrypted { path: String },
    #[error("key file {path} is already encrypted")]
    AlreadyEncrypted { path: String },
    #[error("wrong passphrase for key file {path} (or the file is damaged)")]
    WrongPassphrase { path: String },
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    #[error("cannot encrypt the key: {0}")]
    Encrypt(String),
    #[error("invalid key id {0:?}: expected 64 lowercase hex characters")]
    InvalidKeyId(String),
    #[error("invalid public key: {0}")]
    InvalidPublicKey(String),
    #[error("unsupported key type {keytype}/{scheme}: arca uses ed25519/ed25519")]
    UnsupportedKey { keytype: String, scheme: String },
    #[error("key id {claimed} does not match its public key (computed {computed})")]
    KeyIdMismatch { claimed: KeyId, computed: KeyId },
    #[error("the secure random generator failed")]
    Random,
    #[error("cannot encode canonical JSON: {0}")]
    Canonical(String),
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("{role}: {valid} valid signature(s) from distinct trusted keys, {threshold} required")]
    ThresholdNotMet {
        role: String,
        valid: usize,
        threshold: u32,
    },
    #[error(
        "trust document version {got} cannot follow version {current}: versions must increase by exactly one"
    )]
    VersionSkip { current: u64, got: u64 },
    #[error("trust document rejected: {0}")]
    InvalidTrust(String),
    #[error("invalid PKCS#11 URI {uri:?}: {reason}")]
    Pkcs11Uri { uri: String, reason: String },
    #[error("PKCS#11 token {token:?} refused the PIN (CKR_PIN_INCORRECT)")]
    PinIncorrect { token: String },
    #[error("PKCS#11 {key}: {reason}")]
    Pkcs11 { key: String, reason: String },
    #[error(
        "the sealed key {name} does not open with this master key (wrong master key, or a row moved or changed)"
    )]
    Unseal { name: String },
    #[error("key {key} failed to sign: {reason}")]
    SignFailed { key: String, reason: String },
}
