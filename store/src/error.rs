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
    /// A path given as a staged upload's temporary object is not one (`tmp/<32 hex>`): the
    /// store refuses to commit or delete it, whatever it names.
    #[error("{path:?} is not a temporary upload path")]
    NotTemporary { path: String },
    /// The temporary object of a staged upload is not in the store (removed, or never written).
    #[error("the staged upload {path} is not in the store")]
    StagedMissing { path: String },
    /// The upload body stream itself failed (client disconnected, bad chunking, ...).
    #[error("upload body failed: {0}")]
    Body(String),
    /// The backend (disk, S3, GCS, Azure) failed.
    #[error("object store: {0}")]
    Backend(#[from] object_store::Error),
}

impl StoreError {
    /// A local disk error as the store reports it (the I/O error stays the source, so
    /// [`StoreError::is_storage_full`] sees a full disk).
    pub fn from_io(e: std::io::Error) -> Self {
        StoreError::Backend(object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(e),
        })
    }

    /// Whether the backend failed because its disk (or the quota) is full: an I/O error of
    /// kind `StorageFull` or `QuotaExceeded` somewhere in the error's sources.
    pub fn is_storage_full(&self) -> bool {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = cur {
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && matches!(
                    io.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                )
            {
                return true;
            }
            cur = e.source();
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::StoreError;
    use crate::FileSink;

    /// `/dev/full` answers every write with ENOSPC, as a full disk does.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_disk_is_recognised() {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let mut sink = FileSink::new(f).unwrap();
        let _ = sink.write(bytes::Bytes::from(vec![1u8; 4 << 20])).await;
        let e = StoreError::from_io(sink.finish().await.unwrap_err());
        assert!(e.is_storage_full(), "{e:?}");
        let other = StoreError::from_io(std::io::Error::other("disk on fire"));
        assert!(!other.is_storage_full());
    }
}
