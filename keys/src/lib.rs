//! arca-keys: the signing and trust layer that arca's server, CLI and agent share.
//!
//! - [`SigningKey`] / [`PublicKey`]: ed25519 keys, key files (private key mode 0600, `.pub`
//!   beside it; [`KeyFile`] reads arca's JSON key files and PKCS#8 PEM, encrypted or not) and TUF key ids ([`KeyId`]: SHA-256 of the canonical JSON of the public key).
//! - [`Signer`]: what signs, a [`SigningKey`] in memory or a [`pkcs11::Pkcs11Key`] on a token
//!   (an HSM, a YubiKey, SoftHSM) named by an RFC 7512 `pkcs11:` URI.
//! - [`canonical::to_canonical_json`]: OLPC canonical JSON, the only bytes arca signs.
//! - [`SignedEnvelope`]: TUF-style `{"signed", "signatures"}` documents and threshold checks that
//!   count distinct trusted key ids (a key listed twice counts once).
//! - [`dsse::Envelope`] and [`intoto::Statement`]: statements about artifacts (build
//!   signatures, attestations, approvals), as other in-toto tooling writes them.
//! - [`sealed::MasterKey`]: the key that seals the server's own keys where they are kept (the
//!   database), so that every server holding it can sign and none without it can.
//! - [`trust::TrustDocument`]: the root-signed list of keys, roles and scopes, and its
//!   rotation chain.
//!
//! No I/O happens here beyond reading and writing key files and talking to PKCS#11 modules.
//!
//! ```
//! use arca_keys::{SigningKey, SignedEnvelope};
//! let key = SigningKey::generate().unwrap();
//! let env = SignedEnvelope::sign(&serde_json::json!({"version": 1}), &[&key]).unwrap();
//! let trusted = [(key.key_id(), key.public())].into();
//! assert!(env.verify_threshold("root", &trusted, 1).is_ok());
//! ```

pub mod canonical;
pub mod dsse;
mod error;
pub mod intoto;
mod key;
pub mod pkcs11;
pub mod sealed;
mod signed;
mod signer;
pub mod trust;

pub use error::KeyError;
pub use key::{EncryptedKey, KeyFile, KeyId, KeyVal, PublicKey, SigningKey, TufKey, pub_path};
pub use signed::{Signature, SignedEnvelope};
pub use signer::Signer;
pub use trust::{KeyEntry, KeyStatus, Role, RootRole, TrustDocument};
/// Holds passphrases and key bytes; wiped when dropped.
pub use zeroize::Zeroizing;

/// Formats a time the way TUF and arca write it: exactly `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}
