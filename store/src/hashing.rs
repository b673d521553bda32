//! Incremental BLAKE3 + SHA-256 + length over a stream of chunks.

use bytes::Bytes;

use crate::{Blake3Digest, Digests, Sha256Digest, StoreError};

/// Chunks up to this size are hashed inline on the async executor (well under a millisecond);
/// larger ones, such as a whole body handed to `put_bytes`, are hashed on the blocking pool so
/// that one big upload cannot stall every other request on the same worker thread.
const INLINE_HASH_LIMIT: usize = 256 * 1024;

/// Computes every digest the store records, in one pass over the bytes.
pub(crate) struct Hasher {
    blake3: blake3::Hasher,
    sha256: ring::digest::Context,
    size: u64,
}

impl Hasher {
    pub(crate) fn new() -> Self {
        Self {
            blake3: blake3::Hasher::new(),
            sha256: ring::digest::Context::new(&ring::digest::SHA256),
            size: 0,
        }
    }

    /// Bytes hashed so far.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    pub(crate) fn update(&mut self, chunk: &[u8]) {
        self.blake3.update(chunk);
        self.sha256.update(chunk);
        self.size += chunk.len() as u64;
    }

    /// Like [`Hasher::update`], but moves large chunks off the async executor.
    pub(crate) async fn update_async(mut self, chunk: Bytes) -> Result<Self, StoreError> {
        if chunk.len() <= INLINE_HASH_LIMIT {
            self.update(&chunk);
            return Ok(self);
        }
        tokio::task::spawn_blocking(move || {
            self.update(&chunk);
            self
        })
        .await
        .map_err(|source| StoreError::Backend(object_store::Error::JoinError { source }))
    }

    pub(crate) fn finish(self) -> Digests {
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(self.sha256.finish().as_ref());
        Digests {
            blake3: Blake3Digest(*self.blake3.finalize().as_bytes()),
            sha256: Sha256Digest(sha256),
            size: self.size,
        }
    }
}

/// One-shot digests of a byte slice (the reference the incremental path must agree with).
#[cfg(test)]
pub(crate) fn digests_of(bytes: &[u8]) -> Digests {
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    Digests {
        blake3: Blake3Digest(*blake3::hash(bytes).as_bytes()),
        sha256: Sha256Digest(sha256),
        size: bytes.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_input_has_the_well_known_digests() {
        let d = Hasher::new().finish();
        assert_eq!(
            d.sha256.hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            d.blake3.hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(d.size, 0);
    }

    #[tokio::test]
    async fn large_chunks_hashed_off_the_executor_agree_with_one_shot() {
        let body: Vec<u8> = (0..INLINE_HASH_LIMIT * 3 + 7)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut h = Hasher::new();
        h = h
            .update_async(Bytes::copy_from_slice(&body[..10]))
            .await
            .unwrap();
        h = h
            .update_async(Bytes::copy_from_slice(&body[10..]))
            .await
            .unwrap();
        assert_eq!(h.finish(), digests_of(&body));
    }

    proptest! {
        #[test]
        fn incremental_hashing_equals_one_shot(
            body in proptest::collection::vec(any::<u8>(), 0..20_000),
            cuts in proptest::collection::vec(any::<usize>(), 0..16),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (body.len() + 1)).collect();
            cuts.sort_unstable();
            let mut h = Hasher::new();
            let mut start = 0;
            for cut in cuts.into_iter().chain([body.len()]) {
                h.update(&body[start..cut]);
                start = cut;
            }
            prop_assert_eq!(h.finish(), digests_of(&body));
        }
    }
}
