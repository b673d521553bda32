//! Incremental BLAKE3 + SHA-256 + length over a stream of chunks.

use bytes::Bytes;

use crate::{Blake3Digest, Digests, Sha256Digest, StoreError};

/// Chunks queued per hashing thread before the feeder waits: enough to ride out scheduling
/// hiccups, small enough that a slow hasher throttles the upload instead of buffering it.
const PARALLEL_QUEUE: usize = 16;

/// BLAKE3 and SHA-256, each on a thread of its own, fed the same chunks (shared, not copied).
///
/// A chunk costs the feeder two channel sends, so the network loop keeps receiving and writing
/// while the digests are computed beside it: on a machine with SHA extensions SHA-256 runs at
/// about 2 GB/s and BLAKE3 faster, and neither then sits on the request's path. Dropping the
/// hasher without [`ParallelHasher::finish`] simply ends the threads.
pub struct ParallelHasher {
    sha256: Option<Lane>,
    blake3: Option<Lane>,
    size: u64,
}

/// One digest being computed: on a thread of its own, or, when the process cannot start one
/// (it is at its thread limit), on the caller's thread — slower, never a panic.
enum Lane {
    Thread(
        tokio::sync::mpsc::Sender<Bytes>,
        std::thread::JoinHandle<[u8; 32]>,
    ),
    Inline(Box<dyn InlineHash>),
}

trait InlineHash: Send {
    fn update(&mut self, bytes: &[u8]);
    fn finish(self: Box<Self>) -> [u8; 32];
}

struct Inline<H> {
    state: H,
    update: fn(&mut H, &[u8]),
    finish: fn(H) -> [u8; 32],
}

impl<H: Send> InlineHash for Inline<H> {
    fn update(&mut self, bytes: &[u8]) {
        (self.update)(&mut self.state, bytes)
    }
    fn finish(self: Box<Self>) -> [u8; 32] {
        (self.finish)(self.state)
    }
}

/// A thread that feeds every chunk it receives to a `make()` state and returns its `finish`.
fn lane<H: Send + 'static>(
    name: &str,
    make: fn() -> H,
    update: fn(&mut H, &[u8]),
    finish: fn(H) -> [u8; 32],
) -> Lane {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(PARALLEL_QUEUE);
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut state = make();
            while let Some(chunk) = rx.blocking_recv() {
                update(&mut state, &chunk);
            }
            finish(state)
        });
    match spawned {
        Ok(handle) => Lane::Thread(tx, handle),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start a hashing thread; hashing inline");
            Lane::Inline(Box::new(Inline {
                state: make(),
                update,
                finish,
            }))
        }
    }
}

impl Lane {
    async fn update(&mut self, chunk: &Bytes) {
        match self {
            // A send fails only if the thread died; `finish` reports that.
            Lane::Thread(tx, _) => {
                let _ = tx.send(chunk.clone()).await;
            }
            Lane::Inline(h) => h.update(chunk),
        }
    }

    fn update_blocking(&mut self, chunk: &Bytes) {
        match self {
            Lane::Thread(tx, _) => {
                let _ = tx.blocking_send(chunk.clone());
            }
            Lane::Inline(h) => h.update(chunk),
        }
    }

    fn finish(self) -> Result<[u8; 32], StoreError> {
        match self {
            Lane::Thread(tx, handle) => {
                drop(tx);
                handle
                    .join()
                    .map_err(|_| StoreError::Body("a hashing thread panicked".into()))
            }
            Lane::Inline(h) => Ok(h.finish()),
        }
    }
}

impl Default for ParallelHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl ParallelHasher {
    pub fn new() -> Self {
        // OpenSSL's SHA-256 uses the CPU's SHA extensions (~1.9 GB/s here); ring 0.17 has no
        // such path (~1.1 GB/s), and SHA-256 is the slowest step of every upload and download.
        let sha256 = lane(
            "arca-sha256",
            openssl::sha::Sha256::new,
            |c, b| c.update(b),
            |c| c.finish(),
        );
        let blake3 = lane(
            "arca-blake3",
            blake3::Hasher::new,
            |h, b| {
                h.update(b);
            },
            |h| *h.finalize().as_bytes(),
        );
        ParallelHasher {
            sha256: Some(sha256),
            blake3: Some(blake3),
            size: 0,
        }
    }

    /// Bytes fed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Feeds a chunk from async code (waits, without blocking, when the hashers are behind).
    pub async fn update(&mut self, chunk: Bytes) {
        self.size += chunk.len() as u64;
        for lane in [&mut self.sha256, &mut self.blake3].into_iter().flatten() {
            lane.update(&chunk).await;
        }
    }

    /// Feeds a chunk from a plain thread (not from async code: it blocks).
    pub fn update_blocking(&mut self, chunk: Bytes) {
        self.size += chunk.len() as u64;
        for lane in [&mut self.sha256, &mut self.blake3].into_iter().flatten() {
            lane.update_blocking(&chunk);
        }
    }

    /// The digests of everything fed, from a plain thread.
    pub fn finish_blocking(mut self) -> Result<Digests, StoreError> {
        let join = |slot: Option<Lane>| slot.expect("finished once").finish();
        let sha256 = join(self.sha256.take())?;
        let blake3 = join(self.blake3.take())?;
        Ok(Digests {
            blake3: Blake3Digest(blake3),
            sha256: Sha256Digest(sha256),
            size: self.size,
        })
    }

    /// The digests of everything fed, from async code.
    pub async fn finish(self) -> Result<Digests, StoreError> {
        tokio::task::spawn_blocking(move || self.finish_blocking())
            .await
            .map_err(|source| StoreError::Backend(object_store::Error::JoinError { source }))?
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
        let d = ParallelHasher::new().finish_blocking().unwrap();
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

    proptest! {
        #[test]
        fn incremental_hashing_equals_one_shot(
            body in proptest::collection::vec(any::<u8>(), 0..20_000),
            cuts in proptest::collection::vec(any::<usize>(), 0..16),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (body.len() + 1)).collect();
            cuts.sort_unstable();
            let mut h = ParallelHasher::new();
            let mut start = 0;
            for cut in cuts.into_iter().chain([body.len()]) {
                h.update_blocking(Bytes::copy_from_slice(&body[start..cut]));
                start = cut;
            }
            prop_assert_eq!(h.finish_blocking().unwrap(), digests_of(&body));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_hasher_agrees_with_one_shot() {
        let body: Vec<u8> = (0..3_000_001u32).map(|i| (i % 253) as u8).collect();
        let mut h = ParallelHasher::new();
        for chunk in body.chunks(65_537) {
            h.update(Bytes::copy_from_slice(chunk)).await;
        }
        assert_eq!(h.size(), body.len() as u64);
        assert_eq!(h.finish().await.unwrap(), digests_of(&body));

        let mut h = ParallelHasher::new();
        let body2 = body.clone();
        let d = std::thread::spawn(move || {
            for chunk in body2.chunks(4096) {
                h.update_blocking(Bytes::copy_from_slice(chunk));
            }
            h.finish_blocking().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(d, digests_of(&body));
        assert_eq!(
            ParallelHasher::new().finish().await.unwrap(),
            digests_of(b"")
        );
    }
}
