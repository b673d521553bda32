//! DSSE envelopes (Dead Simple Signing Envelope, v1): what arca statements travel in.
//!
//! A signature covers the pre-authentication encoding (PAE) of the payload type and the payload:
//! `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths as ASCII decimal.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::{KeyError, KeyId, PublicKey, Signer};

/// The pre-authentication encoding that DSSE signs.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// One DSSE signature. `keyid` is optional in DSSE; other tools may leave it empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DsseSignature {
    #[serde(default)]
    pub keyid: String,
    pub sig: String,
}

/// A DSSE envelope as JSON: `{"payloadType", "payload" (base64), "signatures"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub payload: String,
    pub signatures: Vec<DsseSignature>,
}

impl Envelope {
    /// Signs `payload` with every key given; the first key that fails to sign is the error.
    pub fn sign(
        payload_type: &str,
        payload: &[u8],
        keys: &[&dyn Signer],
    ) -> Result<Self, KeyError> {
        let msg = pae(payload_type, payload);
        let signatures = keys
            .iter()
            .map(|k| {
                Ok(DsseSignature {
                    keyid: k.key_id().to_string(),
                    sig: STANDARD.encode(k.sign(&msg)?),
                })
            })
            .collect::<Result<_, KeyError>>()?;
        Ok(Envelope {
            payload_type: payload_type.to_owned(),
            payload: STANDARD.encode(payload),
            signatures,
        })
    }

    pub fn from_slice(bytes: &[u8]) -> Result<Self, KeyError> {
        serde_json::from_slice(bytes).map_err(|e| KeyError::Malformed {
            what: "DSSE envelope",
            reason: e.to_string(),
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope encodes")
    }

    /// The decoded payload bytes.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, KeyError> {
        STANDARD
            .decode(&self.payload)
            .map_err(|e| KeyError::Malformed {
                what: "DSSE payload",
                reason: e.to_string(),
            })
    }

    /// The distinct keys among `keys` whose signature verifies. A signature with an empty or
    /// unknown key id is tried against every key (other DSSE tooling may omit key ids).
    pub fn valid_signers(
        &self,
        keys: &BTreeMap<KeyId, PublicKey>,
    ) -> Result<BTreeSet<KeyId>, KeyError> {
        let msg = pae(&self.payload_type, &self.payload_bytes()?);
        let mut valid = BTreeSet::new();
        for s in &self.signatures {
            let Ok(raw) = STANDARD.decode(&s.sig) else {
                continue;
            };
            let named = s
                .keyid
                .parse::<KeyId>()
                .ok()
                .filter(|id| keys.contains_key(id));
            match named {
                Some(id) => {
                    if keys[&id].verify(&msg, &raw) {
                        valid.insert(id);
                    }
                }
                None => {
                    for (id, key) in keys {
                        if key.verify(&msg, &raw) {
                            valid.insert(id.clone());
                        }
                    }
                }
            }
        }
        Ok(valid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SigningKey;
    use proptest::prelude::*;

    #[test]
    fn pae_matches_the_spec_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    proptest! {
        #[test]
        fn pae_is_injective_on_type_body_split(t in "[a-z/]{0,12}", b in proptest::collection::vec(any::<u8>(), 0..24)) {
            // Moving a byte between type and body must change the encoding.
            let mut t2 = t.clone();
            t2.push('x');
            let mut b2 = vec![b'x'];
            b2.extend_from_slice(&b);
            prop_assert_ne!(pae(&t, &b2), pae(&t2, &b));
        }
    }

    #[test]
    fn sign_verify_and_tamper() {
        let k = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let keys: BTreeMap<_, _> = [(k.key_id(), k.public())].into();
        let env = Envelope::sign("application/vnd.in-toto+json", b"{}", &[&k]).unwrap();
        assert_eq!(env.valid_signers(&keys).unwrap().len(), 1);

        let mut t = env.clone();
        t.payload_type = "application/json".into();
        assert!(t.valid_signers(&keys).unwrap().is_empty());

        let mut t = env.clone();
        t.payload = STANDARD.encode(b"{\"a\":1}");
        assert!(t.valid_signers(&keys).unwrap().is_empty());

        let by_other = Envelope::sign("application/vnd.in-toto+json", b"{}", &[&other]).unwrap();
        assert!(by_other.valid_signers(&keys).unwrap().is_empty());

        // An empty key id (as other tools write) is matched by trying the trusted keys.
        let mut anon = env.clone();
        anon.signatures[0].keyid.clear();
        assert_eq!(anon.valid_signers(&keys).unwrap().len(), 1);
    }
}
