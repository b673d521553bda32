//! The store's one error type.

/// Everything that can go wrong in the blob store.
///
/// Client mistakes (`TooLarge`, `DigestMismatch`, `NotFound`, `InvalidDigest`, `InvalidRange`,
/// `Body`) carry what failed so the HTTP edge can name it; `Corrupt` and `Backend` are internal
/// faults that the edge should log and answer with an opaque 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The upload grew past the caller's limit; it was aborted at once and nothing was stored.
    #[error("blob exceeds the size limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// A digest or size the client claimed differs from what the server computed.
    /// `field` is `"size"`, `"blake3"` or `"sha256"`.
    #[error("{field} mismatch: client claimed {expected}, content is {actual}")]
    DigestMismatch {
        field: &'static str,
        expected: String,
        actual: String,
    },
    /// No blob with this BLAKE3 digest is stored.
    #[error("blob {digest} not found")]
    NotFound { digest: String },
    /// The stored bytes no longer hash to their name (disk corruption or tampering).
    #[error("blob {digest} is corrupt: stored bytes do not match the digest")]
    Corrupt { digest: String },
    /// A digest string that is not exactly 64 lowercase hex characters.
    #[error("invalid digest {0:?}: expected 64 lowercase hex characters")]
    InvalidDigest(String),
    /// A byte range outside the blob, or with `start > end`.
    #[error("invalid byte range {start}..{end} for a blob of {size} bytes")]
    InvalidRange { start: u64, end: u64, size: u64 },
    /// The store URL or one of its options was not understood.
    #[error("invalid store url {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The upload body stream itself failed (client disconnected, bad chunking, ...).
    #[error("upload body failed: {0}")]
    Body(String),
    /// The backend (disk, S3, GCS, Azure) failed.
    #[error("object store: {0}")]
    Backend(#[from] object_store::Error),
}
