//! Digest newtypes: the only way a digest enters the store is through a validating constructor.

use std::fmt;
use std::str::FromStr;

use crate::StoreError;

/// Defines a 32-byte digest newtype whose text form is exactly 64 lowercase hex characters.
macro_rules! digest_type {
    ($(#[$doc:meta])* $name:ident, $algorithm:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The digest as 64 lowercase hex characters.
            pub fn hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($algorithm, ":{}"), self.hex())
            }
        }

        impl FromStr for $name {
            type Err = StoreError;

            /// Accepts exactly 64 lowercase hex characters. Uppercase is refused so that one
            /// digest has one spelling (object paths, database keys and URLs compare as text).
            fn from_str(s: &str) -> Result<Self, StoreError> {
                parse_hex32(s).map(Self)
            }
        }
    };
}

digest_type!(
    /// A BLAKE3 digest: the identity of a blob in the store.
    Blake3Digest,
    "blake3"
);

digest_type!(
    /// A SHA-256 digest, computed alongside BLAKE3 for TUF clients and `sha256sum` users.
    Sha256Digest,
    "sha256"
);

fn parse_hex32(s: &str) -> Result<[u8; 32], StoreError> {
    let well_formed = s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !well_formed {
        return Err(StoreError::InvalidDigest(s.to_owned()));
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| StoreError::InvalidDigest(s.to_owned()))?;
    Ok(out)
}

/// What the server computed for a blob while its bytes streamed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digests {
    pub blake3: Blake3Digest,
    pub sha256: Sha256Digest,
    pub size: u64,
}

/// What a client claims about an upload; every field that is `Some` must match what the
/// server computed, or the upload stores nothing.
#[derive(Default, Clone, Debug)]
pub struct Expected {
    pub blake3: Option<Blake3Digest>,
    pub sha256: Option<Sha256Digest>,
    pub size: Option<u64>,
}

impl Expected {
    pub(crate) fn check(&self, actual: &Digests) -> Result<(), StoreError> {
        let mismatch = |field, expected: String, actual: String| {
            Err(StoreError::DigestMismatch {
                field,
                expected,
                actual,
            })
        };
        match (self.size, self.blake3, self.sha256) {
            (Some(size), _, _) if size != actual.size => {
                mismatch("size", size.to_string(), actual.size.to_string())
            }
            (_, Some(b3), _) if b3 != actual.blake3 => {
                mismatch("blake3", b3.hex(), actual.blake3.hex())
            }
            (_, _, Some(sha)) if sha != actual.sha256 => {
                mismatch("sha256", sha.hex(), actual.sha256.hex())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

    #[test]
    fn digest_round_trips_through_text() {
        let d: Blake3Digest = GOOD.parse().unwrap();
        assert_eq!(d.to_string(), GOOD);
        assert_eq!(d.hex(), GOOD);
        assert_eq!(d.0, *blake3::hash(b"").as_bytes());
        let s: Sha256Digest = GOOD.parse().unwrap();
        assert_eq!(s.to_string(), GOOD);
    }

    #[test]
    fn digest_from_str_rejects_malformed() {
        let upper = GOOD.to_uppercase();
        let short = &GOOD[..63];
        let long = format!("{GOOD}0");
        let non_hex = format!("{}g", &GOOD[..63]);
        let prefixed = format!("0x{}", &GOOD[..62]);
        let spaced = format!(" {}", &GOOD[..63]);
        let non_ascii = format!("{}é", &GOOD[..62]);
        for bad in [
            upper.as_str(),
            short,
            &long,
            &non_hex,
            &prefixed,
            &spaced,
            &non_ascii,
            "",
        ] {
            let err = bad.parse::<Blake3Digest>().unwrap_err();
            assert!(
                matches!(&err, StoreError::InvalidDigest(s) if s == bad),
                "{bad:?} gave {err:?}"
            );
            assert!(bad.parse::<Sha256Digest>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn one_uppercase_letter_is_enough_to_reject() {
        let mut mixed = GOOD.to_owned();
        mixed.replace_range(2..3, "F");
        assert!(mixed.parse::<Blake3Digest>().is_err());
    }
}
