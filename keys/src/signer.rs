//! What signs: a key in memory ([`SigningKey`]) or one that never leaves its hardware
//! ([`crate::pkcs11::Pkcs11Key`]). Everything a key holder signs (trust changes, channel roots,
//! build statements, approvals, attestations) goes through [`Signer`], so a token key is taken
//! wherever a key file is; the server's own online keys stay [`SigningKey`].

use crate::{KeyError, KeyId, PublicKey, SigningKey};

/// A private ed25519 key that can sign. Signing may fail (a token removed, a session closed):
/// that is an error, never a panic.
pub trait Signer {
    /// The public half.
    fn public(&self) -> PublicKey;

    /// The TUF key id of [`Signer::public`].
    fn key_id(&self) -> KeyId {
        self.public().key_id()
    }

    /// A raw 64-byte ed25519 signature over `msg`, verifiable with [`Signer::public`] exactly
    /// as one made by a key file.
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError>;
}

impl Signer for SigningKey {
    fn public(&self) -> PublicKey {
        SigningKey::public(self)
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        Ok(SigningKey::sign(self, msg))
    }
}

impl<S: Signer + ?Sized> Signer for Box<S> {
    fn public(&self) -> PublicKey {
        (**self).public()
    }

    fn key_id(&self) -> KeyId {
        (**self).key_id()
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        (**self).sign(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_signs_the_same_through_the_trait() {
        let k = SigningKey::generate().unwrap();
        let boxed: Box<dyn Signer> = Box::new(SigningKey::from_seed(&[7; 32]));
        let s: &dyn Signer = &k;
        assert_eq!(s.key_id(), k.key_id());
        assert_eq!(s.sign(b"m").unwrap(), k.sign(b"m"));
        assert!(boxed.public().verify(b"m", &boxed.sign(b"m").unwrap()));
        assert_eq!(boxed.key_id(), SigningKey::from_seed(&[7; 32]).key_id());
    }
}
