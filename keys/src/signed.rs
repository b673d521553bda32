//! TUF-style signed documents: `{"signed": {...}, "signatures": [{"keyid", "sig"}]}`, where each
//! signature is ed25519 over the canonical JSON of `signed`, and threshold verification that
//! counts distinct trusted key ids.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{KeyError, KeyId, PublicKey, Signer, canonical::to_canonical_json};

/// One signature of a [`SignedEnvelope`]: the key id and the hex ed25519 signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub keyid: KeyId,
    pub sig: String,
}

/// A signed document as it travels: `signed` is kept as raw JSON so that verification covers
/// exactly the bytes the signers saw, whatever this version of arca knows of its fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedEnvelope {
    pub signed: serde_json::Value,
    pub signatures: Vec<Signature>,
}

impl SignedEnvelope {
    /// Wraps `signed` and signs it with every key given.
    pub fn sign<T: Serialize>(signed: &T, keys: &[&dyn Signer]) -> Result<Self, KeyError> {
        let signed =
            serde_json::to_value(signed).map_err(|e| KeyError::Canonical(e.to_string()))?;
        let mut env = SignedEnvelope {
            signed,
            signatures: Vec::new(),
        };
        for key in keys {
            env.add_signature(*key)?;
        }
        Ok(env)
    }

    /// Parses an envelope from bytes (strictly: unknown top-level fields are an error).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, KeyError> {
        serde_json::from_slice(bytes).map_err(|e| KeyError::Malformed {
            what: "signed document",
            reason: e.to_string(),
        })
    }

    /// The canonical bytes that signatures cover.
    pub fn canonical_signed(&self) -> Result<Vec<u8>, KeyError> {
        to_canonical_json(&self.signed)
    }

    /// Adds (or replaces) the signature of `key`. A key that fails to sign leaves the
    /// signatures as they were.
    pub fn add_signature(&mut self, key: &dyn Signer) -> Result<(), KeyError> {
        let msg = self.canonical_signed()?;
        let keyid = key.key_id();
        let sig = hex::encode(key.sign(&msg)?);
        self.signatures.retain(|s| s.keyid != keyid);
        self.signatures.push(Signature { keyid, sig });
        Ok(())
    }

    /// The distinct key ids among `keys` whose signature over `signed` verifies.
    /// Signatures by unknown keys, malformed signatures and duplicates are ignored.
    pub fn valid_signers(
        &self,
        keys: &BTreeMap<KeyId, PublicKey>,
    ) -> Result<BTreeSet<KeyId>, KeyError> {
        let msg = self.canonical_signed()?;
        let mut valid = BTreeSet::new();
        for s in &self.signatures {
            if valid.contains(&s.keyid) {
                continue;
            }
            let Some(key) = keys.get(&s.keyid) else {
                continue;
            };
            let Ok(raw) = hex::decode(&s.sig) else {
                continue;
            };
            if key.verify(&msg, &raw) {
                valid.insert(s.keyid.clone());
            }
        }
        Ok(valid)
    }

    /// Checks that at least `threshold` distinct keys of `keys` signed; returns who did.
    pub fn verify_threshold(
        &self,
        role: &str,
        keys: &BTreeMap<KeyId, PublicKey>,
        threshold: u32,
    ) -> Result<BTreeSet<KeyId>, KeyError> {
        let valid = self.valid_signers(keys)?;
        if threshold == 0 || valid.len() < threshold as usize {
            return Err(KeyError::ThresholdNotMet {
                role: role.to_owned(),
                valid: valid.len(),
                threshold,
            });
        }
        Ok(valid)
    }

    /// Decodes `signed` into a typed document.
    pub fn decode<T: DeserializeOwned>(&self, what: &'static str) -> Result<T, KeyError> {
        serde_json::from_value(self.signed.clone()).map_err(|e| KeyError::Malformed {
            what,
            reason: e.to_string(),
        })
    }

    /// The JSON bytes to store or serve (canonical, so the same document is always the same bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        to_canonical_json(self).expect("a parsed envelope re-encodes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SigningKey;
    use serde_json::json;

    fn keys(n: usize) -> (Vec<SigningKey>, BTreeMap<KeyId, PublicKey>) {
        let ks: Vec<SigningKey> = (0..n).map(|_| SigningKey::generate().unwrap()).collect();
        let map = ks.iter().map(|k| (k.key_id(), k.public())).collect();
        (ks, map)
    }

    #[test]
    fn threshold_counts_distinct_trusted_keys() {
        let (ks, trusted) = keys(3);
        let doc = json!({"a": 1});
        let env = SignedEnvelope::sign(&doc, &[&ks[0], &ks[1]]).unwrap();
        assert_eq!(env.verify_threshold("root", &trusted, 2).unwrap().len(), 2);
        assert!(env.verify_threshold("root", &trusted, 3).is_err());

        // The same key listed twice counts once.
        let mut dup = SignedEnvelope::sign(&doc, &[&ks[0]]).unwrap();
        dup.signatures.push(dup.signatures[0].clone());
        assert!(matches!(
            dup.verify_threshold("root", &trusted, 2),
            Err(KeyError::ThresholdNotMet { valid: 1, .. })
        ));
    }

    #[test]
    fn untrusted_or_tampered_signatures_do_not_count() {
        let (ks, trusted) = keys(1);
        let (other, _) = keys(1);
        let env = SignedEnvelope::sign(&json!({"a": 1}), &[&other[0]]).unwrap();
        assert!(env.verify_threshold("root", &trusted, 1).is_err());

        let mut env = SignedEnvelope::sign(&json!({"a": 1}), &[&ks[0]]).unwrap();
        env.signed = json!({"a": 2});
        assert!(env.verify_threshold("root", &trusted, 1).is_err());

        let mut env = SignedEnvelope::sign(&json!({"a": 1}), &[&ks[0]]).unwrap();
        env.signatures[0].sig = "zz".into();
        assert!(env.verify_threshold("root", &trusted, 1).is_err());
    }

    #[test]
    fn zero_threshold_never_passes() {
        let (ks, trusted) = keys(1);
        let env = SignedEnvelope::sign(&json!({}), &[&ks[0]]).unwrap();
        assert!(env.verify_threshold("root", &trusted, 0).is_err());
    }

    #[test]
    fn signature_covers_canonical_form_not_key_order() {
        let (ks, trusted) = keys(1);
        let env = SignedEnvelope::sign(&json!({"b": 1, "a": 2}), &[&ks[0]]).unwrap();
        let reparsed = SignedEnvelope::from_slice(
            format!(
                r#"{{"signatures":{},"signed":{{"a":2,"b":1}}}}"#,
                serde_json::to_string(&env.signatures).unwrap()
            )
            .as_bytes(),
        )
        .unwrap();
        assert!(reparsed.verify_threshold("x", &trusted, 1).is_ok());
    }
}
