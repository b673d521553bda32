//! The signature check of every key type python-tuf's `ngclient` verifies (securesystemslib's
//! `SSlibKey`): ed25519 (a hex public key), ECDSA on P-256 and P-384, RSA-PSS and RSA PKCS#1
//! v1.5 (PEM `SubjectPublicKeyInfo` public keys). Signatures are hex, ECDSA's in ASN.1 DER.
//! ed25519 goes through `arca_keys`, the rest through ring. A key of any other type, or one
//! that does not parse, verifies nothing: it is skipped for a threshold, not an error.

use ring::signature::{self as sig, VerificationAlgorithm};
use spki::der::{self, Decode as _};

use super::metadata::MetaKey;

/// A public key that can check signatures.
pub enum Verifier {
    Ed25519(arca_keys::PublicKey),
    /// ring's algorithm and the key as ring takes it: the uncompressed point (ECDSA) or the
    /// DER `RSAPublicKey` (RSA), which is in both cases the `subjectPublicKey` bits.
    Ring {
        algorithm: &'static dyn VerificationAlgorithm,
        key: Vec<u8>,
    },
}

/// The object identifiers of `SubjectPublicKeyInfo` that these keys use.
mod oid {
    use spki::der::asn1::ObjectIdentifier as Oid;
    pub const RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
    pub const EC: Oid = Oid::new_unwrap("1.2.840.10045.2.1");
    pub const P256: Oid = Oid::new_unwrap("1.2.840.10045.3.1.7");
    pub const P384: Oid = Oid::new_unwrap("1.3.132.0.34");
}

impl Verifier {
    /// The verifier of `key`, if arca knows its type and scheme and its public key parses.
    pub fn of(key: &MetaKey) -> Option<Verifier> {
        let public = key.keyval.get("public")?;
        let ring = |algorithm: &'static dyn VerificationAlgorithm,
                    want: &[spki::der::asn1::ObjectIdentifier]| {
            let key = spki_bits(public, want)?;
            Some(Verifier::Ring { algorithm, key })
        };
        match (key.keytype.as_str(), key.scheme.as_str()) {
            ("ed25519", "ed25519") => {
                let raw = hex::decode(public).ok()?;
                arca_keys::PublicKey::from_bytes(&raw)
                    .ok()
                    .map(Verifier::Ed25519)
            }
            ("ecdsa" | "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256") => {
                ring(&sig::ECDSA_P256_SHA256_ASN1, &[oid::EC, oid::P256])
            }
            ("ecdsa" | "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp384") => {
                ring(&sig::ECDSA_P384_SHA384_ASN1, &[oid::EC, oid::P384])
            }
            ("rsa", "rsassa-pss-sha256") => ring(&sig::RSA_PSS_2048_8192_SHA256, &[oid::RSA]),
            ("rsa", "rsassa-pss-sha384") => ring(&sig::RSA_PSS_2048_8192_SHA384, &[oid::RSA]),
            ("rsa", "rsassa-pss-sha512") => ring(&sig::RSA_PSS_2048_8192_SHA512, &[oid::RSA]),
            ("rsa", "rsa-pkcs1v15-sha256") => ring(&sig::RSA_PKCS1_2048_8192_SHA256, &[oid::RSA]),
            ("rsa", "rsa-pkcs1v15-sha384") => ring(&sig::RSA_PKCS1_2048_8192_SHA384, &[oid::RSA]),
            ("rsa", "rsa-pkcs1v15-sha512") => ring(&sig::RSA_PKCS1_2048_8192_SHA512, &[oid::RSA]),
            _ => None,
        }
    }

    /// Whether `signature` (raw bytes) is this key's over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Verifier::Ed25519(k) => k.verify(message, signature),
            Verifier::Ring { algorithm, key } => sig::UnparsedPublicKey::new(*algorithm, key)
                .verify(message, signature)
                .is_ok(),
        }
    }

    /// The key material, to tell one key listed under two ids from two keys.
    pub fn material(&self) -> Vec<u8> {
        match self {
            Verifier::Ed25519(k) => hex::decode(k.to_hex()).unwrap_or_default(),
            Verifier::Ring { key, .. } => key.clone(),
        }
    }
}

/// The `subjectPublicKey` bits of a PEM `PUBLIC KEY`, if its algorithm is `want[0]` (with the
/// named curve `want[1]`, for EC keys).
fn spki_bits(pem: &str, want: &[spki::der::asn1::ObjectIdentifier]) -> Option<Vec<u8>> {
    let (label, doc) = der::Document::from_pem(pem).ok()?;
    if label != "PUBLIC KEY" {
        return None;
    }
    let info = spki::SubjectPublicKeyInfoRef::from_der(doc.as_bytes()).ok()?;
    if info.algorithm.oid != want[0] {
        return None;
    }
    if let Some(curve) = want.get(1) {
        let named: spki::der::asn1::ObjectIdentifier =
            info.algorithm.parameters?.decode_as().ok()?;
        if named != *curve {
            return None;
        }
    }
    info.subject_public_key.as_bytes().map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair};
    use std::collections::BTreeMap;

    /// A PEM `PUBLIC KEY` of an EC point on `curve`.
    fn ec_pem(curve: spki::der::asn1::ObjectIdentifier, point: &[u8]) -> String {
        use spki::der::{EncodePem, asn1::BitString};
        let info = spki::SubjectPublicKeyInfoOwned {
            algorithm: spki::AlgorithmIdentifierOwned {
                oid: oid::EC,
                parameters: Some(spki::der::Any::encode_from(&curve).unwrap()),
            },
            subject_public_key: BitString::from_bytes(point).unwrap(),
        };
        info.to_pem(spki::der::pem::LineEnding::LF).unwrap()
    }

    fn key(keytype: &str, scheme: &str, public: String) -> MetaKey {
        MetaKey {
            keytype: keytype.into(),
            scheme: scheme.into(),
            keyval: BTreeMap::from([("public".to_owned(), public)]),
        }
    }

    #[test]
    fn ecdsa_p256_and_p384_signatures_verify_and_others_do_not() {
        let rng = SystemRandom::new();
        for (signing, scheme, curve) in [
            (
                &sig::ECDSA_P256_SHA256_ASN1_SIGNING,
                "ecdsa-sha2-nistp256",
                oid::P256,
            ),
            (
                &sig::ECDSA_P384_SHA384_ASN1_SIGNING,
                "ecdsa-sha2-nistp384",
                oid::P384,
            ),
        ] {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
            let pair = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref(), &rng).unwrap();
            let pem = ec_pem(curve, pair.public_key().as_ref());
            let signature = pair.sign(&rng, b"signed").unwrap();
            for keytype in ["ecdsa", scheme] {
                let v = Verifier::of(&key(keytype, scheme, pem.clone())).expect(scheme);
                assert!(
                    v.verify(b"signed", signature.as_ref()),
                    "{keytype} {scheme}"
                );
                assert!(
                    !v.verify(b"other", signature.as_ref()),
                    "{scheme}: other message"
                );
            }
            // The curve must be the scheme's.
            let other = if scheme.ends_with("256") {
                "ecdsa-sha2-nistp384"
            } else {
                "ecdsa-sha2-nistp256"
            };
            assert!(
                Verifier::of(&key("ecdsa", other, pem.clone())).is_none(),
                "{scheme} as {other}"
            );
            // An EC key is no RSA key.
            assert!(Verifier::of(&key("rsa", "rsassa-pss-sha256", pem)).is_none());
        }
    }

    #[test]
    fn unknown_types_and_unparsable_keys_verify_nothing() {
        assert!(Verifier::of(&key("ed448", "ed448", "00".repeat(57))).is_none());
        assert!(Verifier::of(&key("ed25519", "ed25519", "zz".into())).is_none());
        assert!(Verifier::of(&key("ecdsa", "ecdsa-sha2-nistp256", "not pem".into())).is_none());
        let no_public = MetaKey {
            keyval: BTreeMap::new(),
            ..key("ed25519", "ed25519", String::new())
        };
        assert!(Verifier::of(&no_public).is_none());
    }

    /// A 2048-bit RSA key and its signatures of "signed" (made with Python's `cryptography`, as
    /// securesystemslib signs: PSS with MGF1-SHA256 and a salt of the digest's length).
    const RSA_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAx8dHzuO53NtTuOyhuxXI\nCuX0/bLkHTMu4zKHWhavuQq1q1M9e0JS8IMBFkJqKC6FU9lO+HeFYdvmTFnMNLdM\nYDx1OpTaXu3VBCTYMCnaPUQjuY0TqdKVfqdd7fSmMwFstHJDMVAjjIxpn01dONEq\nQxA76RcjcWaYNdGwHefM7AHQWTz52VP1BiZ4dtZbV+XCFSosEjmp/aMgVKg808Av\nOBJQacUXXfyOaOFibvQe5yAVbHNRSve6TD4QdLX2hFR8Qb/2XfSTq5QRxyVEsx1z\nJ6ExA7WkKTONCfmmg59bAAe3v1CLjjtwMAQ5JFq7iT+hKsdHkWKdHbJ0tonqZdHx\ndQIDAQAB\n-----END PUBLIC KEY-----";
    const RSA_PSS: &[&str] = &[
        "25b76b0340123864d86278e4b728f15fd943868ec728475294478506a114ec0f",
        "a82f07708fac91c781626a17820a63c892260282754f00c414f7d116a6950ffb",
        "f702ee7d2cd741c4dcf00c2b8b3690d4567c636e6e36b3e867799c36f7d0f0c8",
        "dcc7de2e3ad777896d77f0aff73d2d91426e603ff8ea52742b6946eca8e8b1dd",
        "ea85e9db4067d857a20d2d5cc94d0ddd267f3fab78b7912cdc0b4846d0b8e108",
        "53993347329fdfcc25a5c7d18362d4b638f2cfd285948fcd1a16136989ede092",
        "91b834fc42b4bf605828eaa2be41e8355f3fc51b652854b27503897058f93948",
        "5cfa38bab8ab8546f8b8cfdcacc9fc6b458f21891e4b4fefb6b98ca82192c053",
    ];
    const RSA_PKCS1: &[&str] = &[
        "025951207943e77bf390feb536d63cf299de29385eb1a7c81b95df244c3ddc22",
        "afb9ce44a9aefa90bc91222f3778ee032eb374a0fab6227acabb989edc365aa4",
        "11ba7065e49402d2eaf372d28abb9a8954f9e6fb1ecf643a339287d9a385b02a",
        "dfd1e5ff87639ca7921b2750951e1a7d23b328e41b4dbb4d1979808a62479520",
        "d55cd226ca5670243a8fdb69c55d5e32466db3b058f37bbc7411ff852dfd11bf",
        "c9f0134648b5183c25f490b99c50abd08ec723ada515e4113cf788263e7e8531",
        "0f6d7bdf2b1bd5e5fab3ea075c53ec2713ae0711258983d44ce22b0eb9f1efd5",
        "a93e0e5c10196e6274fd844e50b45cc8202a5f05d2562f1da4049b3a26b9ee72",
    ];

    #[test]
    fn rsa_pss_and_pkcs1_signatures_verify_under_their_own_scheme_only() {
        let (pss, pkcs1) = (
            hex::decode(RSA_PSS.concat()).unwrap(),
            hex::decode(RSA_PKCS1.concat()).unwrap(),
        );
        let as_pss = Verifier::of(&key("rsa", "rsassa-pss-sha256", RSA_PEM.into())).unwrap();
        let as_pkcs1 = Verifier::of(&key("rsa", "rsa-pkcs1v15-sha256", RSA_PEM.into())).unwrap();
        assert!(as_pss.verify(b"signed", &pss));
        assert!(as_pkcs1.verify(b"signed", &pkcs1));
        assert!(
            !as_pss.verify(b"signed", &pkcs1),
            "a PKCS#1 signature is no PSS one"
        );
        assert!(
            !as_pkcs1.verify(b"signed", &pss),
            "a PSS signature is no PKCS#1 one"
        );
        assert!(!as_pss.verify(b"other", &pss));
        assert!(
            Verifier::of(&key("ecdsa", "ecdsa-sha2-nistp256", RSA_PEM.into())).is_none(),
            "an RSA key is no EC key"
        );
    }
}
