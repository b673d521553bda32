//! Content-addressed blob storage for arca, over [`object_store`] (local disk, S3, GCS, Azure).
//!
//! A blob is named by the BLAKE3 digest of its bytes and stored at `blobs/<hex>`. Guarantees:
//!
//! - **The server computes the digests.** BLAKE3, SHA-256 and the size are computed while the
//!   bytes stream in; a client's claims ([`Expected`]) are only compared against them, and any
//!   mismatch stores nothing.
//! - **Uploads are bounded and streamed.** The size limit is enforced as bytes arrive, and the
//!   body goes to the backend in fixed-size multipart parts, so memory stays flat for any size.
//! - **Nothing half-done becomes visible.** Bytes land in a temporary object (`tmp/<random>`)
//!   that is copied create-only to `blobs/<hex>` after every check passed. A failed upload
//!   leaves nothing behind; [`BlobStore::sweep_temp`] collects what a crash leaves in `tmp/`.
//! - **Blobs are immutable.** The same bytes twice are stored once; a stored blob is never
//!   overwritten by different bytes.
//! - **Reads can be verified.** [`BlobStore::get_verified`] re-hashes while streaming and ends
//!   with [`StoreError::Corrupt`] instead of the last chunk if the stored bytes were altered.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), arca_store::StoreError> {
//! use arca_store::{BlobStore, Expected};
//! use futures::TryStreamExt;
//!
//! let home = tempfile::tempdir().unwrap();
//! let store = BlobStore::open("", &home.path().join("blobs"), &[])?;
//!
//! let claimed = Expected { size: Some(5), ..Expected::default() };
//! let digests = store.put_bytes("hello".into(), 1 << 20, &claimed).await?;
//! assert_eq!(digests.blake3.0, *blake3::hash(b"hello").as_bytes());
//!
//! let body: Vec<_> = store.get_verified(&digests.blake3, digests.size).await?.try_collect().await?;
//! assert_eq!(body.concat(), b"hello");
//! # Ok(())
//! # }
//! ```

mod blob;
mod digest;
mod error;
mod hashing;
mod open;
mod sink;
mod temp;
mod verify;

pub use blob::{BlobStore, BlobStream, Staged};
pub use digest::{Blake3Digest, Digests, Expected, Sha256Digest};
pub use error::StoreError;
pub use hashing::ParallelHasher;
pub use sink::{COALESCE, FLUSH_EVERY, FileSink, coalesce};
