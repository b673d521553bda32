//! The blob store: streaming upload with verification, dedup, download, sweep.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetResult, ObjectStore, ObjectStoreExt, WriteMultipart};

use crate::hashing::ParallelHasher;
use crate::sink::FileSink;
use crate::temp::{self, TempObject};
use crate::verify::VerifyingStream;
use crate::{Blake3Digest, Digests, Expected, StoreError};

/// A blob's bytes as they come out of the store.
pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes, StoreError>> + Send>>;

/// Multipart part size: S3's minimum for every part but the last.
const PART_SIZE: usize = 5 * 1024 * 1024;
/// Parts uploading at once per upload; with `PART_SIZE` this caps an upload's buffers near 15 MiB
/// whatever the blob's size.
const MAX_PARTS_IN_FLIGHT: usize = 2;
/// Where verified blobs live, named by the hex of their BLAKE3 digest.
const BLOBS_DIR: &str = "blobs";

/// Content-addressed blobs over any `object_store` backend. Cheap to clone.
#[derive(Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    /// Set for the local disk backend, whose multipart staging files only a directory scan sees.
    local_root: Option<Arc<PathBuf>>,
    /// Temporary objects owned by uploads in flight or staged, which the sweep skips.
    live: temp::Live,
}

impl fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobStore")
            .field("backend", &format_args!("{}", self.store))
            .finish()
    }
}

impl BlobStore {
    /// Opens the store named by `url`.
    ///
    /// `""` or `"file"` is the local directory `local_root` (created if missing);
    /// `file:///abs/path` another local directory; `s3://bucket/prefix`, `gs://bucket/prefix`
    /// and `az://container/prefix` a cloud bucket, configured from the environment and then
    /// from `options` (object_store's config keys, e.g. `aws_endpoint`), with the URL's path
    /// as a prefix for every object.
    pub fn open(
        url: &str,
        local_root: &std::path::Path,
        options: &[(String, String)],
    ) -> Result<Self, StoreError> {
        let backend = crate::open::open_backend(url, local_root, options)?;
        Ok(Self {
            store: backend.store,
            local_root: backend.local_root.map(Arc::new),
            live: temp::Live::default(),
        })
    }

    /// Wraps an already built backend (tests, or a deployment that configures its own client).
    pub fn with_object_store(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            local_root: None,
            live: temp::Live::default(),
        }
    }

    /// The object path of a blob (`"blobs/<hex>"`), for tests and diagnostics.
    pub fn blob_path(blake3: &Blake3Digest) -> String {
        format!("{BLOBS_DIR}/{}", blake3.hex())
    }

    /// Streams `body` into the store and returns its digests.
    ///
    /// The bytes are hashed and counted as they arrive, and written to a temporary object
    /// with a multipart upload, so memory stays flat for any size. The upload stops as soon
    /// as it exceeds `max_size` ([`StoreError::TooLarge`]). Once the body ends, every claim in
    /// `expected` is checked ([`StoreError::DigestMismatch`]), and only then does the blob
    /// appear under its BLAKE3 name. Storing bytes that are already there is a no-op.
    ///
    /// On any error, nothing new is visible and the temporary object is removed (best effort;
    /// [`BlobStore::sweep_temp`] collects what a crash leaves behind).
    pub async fn put_stream<S, E>(
        &self,
        body: S,
        max_size: u64,
        expected: &Expected,
    ) -> Result<Digests, StoreError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: fmt::Display,
    {
        let staged = self.stage(body, max_size).await?;
        self.commit(staged, expected).await
    }

    /// The first half of [`BlobStore::put_stream`]: streams `body` into a temporary object,
    /// hashing and size-capping it, and returns it with its digests — visible nowhere yet.
    /// Follow with [`BlobStore::commit`] or [`BlobStore::discard`]; a crash in between leaves
    /// only a temporary object for [`BlobStore::sweep_temp`]. This lets a caller learn the
    /// digests before it decides (arca checks the signed statement that names them).
    pub async fn stage<S, E>(&self, body: S, max_size: u64) -> Result<Staged, StoreError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: fmt::Display,
    {
        if let Some(root) = &self.local_root {
            return self.stage_local(root, body, max_size).await;
        }
        let tmp = temp::new_path()?;
        let live = self.live.hold(&tmp);
        let upload = self.store.put_multipart(&tmp).await?;
        let writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut temp = TempObject::new(Arc::clone(&self.store), tmp, writer);
        match self.upload(body, max_size, &mut temp).await {
            Ok(digests) => Ok(Staged {
                path: temp.keep(),
                digests,
                store: Arc::clone(&self.store),
                settled: false,
                _live: live,
            }),
            Err(e) => {
                temp.remove().await;
                Err(e)
            }
        }
    }

    /// [`BlobStore::stage`] on the local disk: the bytes go straight to `tmp/<id>` through a
    /// [`FileSink`] (its own writer thread, disk flushes spread over the upload) instead of
    /// object_store's multipart buffers, which copy every byte once more and leave the whole
    /// file to one fsync at the end. The file is the same object `tmp/<id>` to object_store, so
    /// commit, discard and the sweep work unchanged.
    async fn stage_local<S, E>(
        &self,
        root: &std::path::Path,
        body: S,
        max_size: u64,
    ) -> Result<Staged, StoreError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: fmt::Display,
    {
        let tmp = temp::new_path()?;
        let live = self.live.hold(&tmp);
        let fs_path = root.join(tmp.as_ref());
        let io = StoreError::from_io;
        if let Some(dir) = fs_path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io)?;
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&fs_path)
            .map_err(io)?;
        let guard = temp::LocalTemp::new(fs_path);
        let started = std::time::Instant::now();
        let mut sink = FileSink::new(file).map_err(io)?;
        let mut hasher = ParallelHasher::new();
        let mut body = pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| StoreError::Body(e.to_string()))?;
            if hasher.size().saturating_add(chunk.len() as u64) > max_size {
                return Err(StoreError::TooLarge { limit: max_size });
            }
            hasher.update(chunk.clone()).await;
            if sink.write(chunk).await.is_err() {
                break; // the writer failed; finish() says how
            }
        }
        let received_ms = started.elapsed().as_millis() as u64;
        sink.finish().await.map_err(io)?;
        let written_ms = started.elapsed().as_millis() as u64;
        let digests = hasher.finish().await?;
        tracing::debug!(
            blake3 = %digests.blake3,
            size = digests.size,
            received_ms,
            written_ms,
            hashed_ms = started.elapsed().as_millis() as u64,
            "staged upload"
        );
        guard.keep();
        Ok(Staged {
            path: tmp,
            digests,
            store: Arc::clone(&self.store),
            settled: false,
            _live: live,
        })
    }

    /// Checks `expected` against a staged upload and, if it holds, makes the blob visible under
    /// its BLAKE3 name (create-only: a stored blob is never replaced). The temporary object is
    /// removed either way.
    pub async fn commit(&self, staged: Staged, expected: &Expected) -> Result<Digests, StoreError> {
        let result = match expected.check(&staged.digests) {
            Ok(()) => self
                .publish(&staged.path, &blob_object(&staged.digests.blake3))
                .await
                .map_err(StoreError::from),
            Err(e) => Err(e),
        };
        let digests = staged.digests;
        staged.remove().await;
        result.map(|()| digests)
    }

    /// Drops a staged upload without publishing it.
    pub async fn discard(&self, staged: Staged) {
        staged.remove().await;
    }

    /// A staged upload again, from what [`Staged::detach`] returned (possibly in another
    /// process sharing the store): the temporary object at `path`, with the digests computed
    /// when its bytes streamed in. Refused ([`StoreError::NotTemporary`]) unless `path` is a
    /// temporary path of this store's making (`tmp/<32 hex>`), so that whoever hands in the
    /// path cannot make [`BlobStore::commit`] publish, or [`BlobStore::discard`] delete, any
    /// other object; [`StoreError::StagedMissing`] if the object is not there.
    ///
    /// The bytes are not hashed again: `digests` are trusted as the caller's own record of
    /// what the store computed. A caller that keeps them where others can write (arca keeps
    /// them in its database) trusts that place as it trusts the store itself.
    pub async fn staged_at(&self, path: &str, digests: Digests) -> Result<Staged, StoreError> {
        let path = temp::parse_path(path)?;
        let live = self.live.hold(&path);
        match self.store.head(&path).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StoreError::StagedMissing {
                    path: path.to_string(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Staged {
            path,
            digests,
            store: Arc::clone(&self.store),
            settled: false,
            _live: live,
        })
    }

    /// Deletes the temporary object of a detached staged upload (one that expired). Refused
    /// like [`BlobStore::staged_at`] unless `path` is a temporary path; a missing object is no
    /// error.
    pub async fn remove_temp(&self, path: &str) -> Result<(), StoreError> {
        let path = temp::parse_path(path)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn upload<S, E>(
        &self,
        body: S,
        max_size: u64,
        temp: &mut TempObject,
    ) -> Result<Digests, StoreError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: fmt::Display,
    {
        let mut body = pin!(body);
        let started = std::time::Instant::now();
        let mut hasher = ParallelHasher::new();
        loop {
            let chunk = match body.next().await {
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => return Err(StoreError::Body(e.to_string())),
                None => break,
            };
            if hasher.size().saturating_add(chunk.len() as u64) > max_size {
                return Err(StoreError::TooLarge { limit: max_size });
            }
            hasher.update(chunk.clone()).await;
            let writer = temp.writer()?;
            writer.wait_for_capacity(MAX_PARTS_IN_FLIGHT).await?;
            writer.put(chunk);
        }
        let received_ms = started.elapsed().as_millis() as u64;
        temp.finish_upload().await?;
        let digests = hasher.finish().await?;
        tracing::debug!(
            blake3 = %digests.blake3,
            size = digests.size,
            received_ms,
            written_ms = started.elapsed().as_millis() as u64,
            "staged upload"
        );
        Ok(digests)
    }

    /// Makes the verified temporary object visible under its digest, never replacing a blob.
    async fn publish(&self, tmp: &Path, dest: &Path) -> Result<(), object_store::Error> {
        use object_store::Error as E;
        match self.store.copy_if_not_exists(tmp, dest).await {
            Ok(()) => Ok(()),
            // Same name = same BLAKE3 = same bytes: the upload is a duplicate, nothing to do.
            Err(E::AlreadyExists { .. }) => Ok(()),
            // Plain S3 has no create-only copy. An ordinary copy is still safe here: `dest` is
            // named by the digest of the content, and we only get here after that digest was
            // computed from these very bytes, so the only object a racing upload could overwrite
            // holds identical bytes. The head() merely saves a copy in the common duplicate case.
            Err(E::NotSupported { .. } | E::NotImplemented { .. }) => {
                match self.store.head(dest).await {
                    Ok(_) => Ok(()),
                    Err(E::NotFound { .. }) => self.store.copy(tmp, dest).await,
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes a blob (a push that lost a race uses it for the copy it published; the caller
    /// makes sure that nothing references the blob). Deleting a missing blob is no error.
    pub async fn delete(&self, blake3: &Blake3Digest) -> Result<(), StoreError> {
        match self.store.delete(&blob_object(blake3)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Checks that the backend answers (readiness): the local directory exists, or a cloud
    /// bucket can be listed. Cheap: it lists `tmp/` (only uploads in flight live there) and
    /// reads one entry at most.
    pub async fn check(&self) -> Result<(), StoreError> {
        if let Some(root) = &self.local_root {
            let root = PathBuf::clone(root);
            let meta = tokio::fs::metadata(&root).await.map_err(|e| {
                StoreError::Backend(object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: format!("{}: {e}", root.display()).into(),
                })
            })?;
            if !meta.is_dir() {
                return Err(StoreError::Backend(object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: format!("{} is not a directory", root.display()).into(),
                }));
            }
            return Ok(());
        }
        let prefix = Path::from(temp::TEMP_DIR);
        match self.store.list(Some(&prefix)).next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(e.into()),
        }
    }

    /// Whether a blob with this digest is stored.
    pub async fn exists(&self, blake3: &Blake3Digest) -> Result<bool, StoreError> {
        match self.store.head(&blob_object(blake3)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The stored size of a blob; [`StoreError::NotFound`] if absent.
    pub async fn size(&self, blake3: &Blake3Digest) -> Result<u64, StoreError> {
        let meta = self.store.head(&blob_object(blake3)).await;
        Ok(meta.map_err(|e| not_found(e, blake3))?.size)
    }

    /// Streams a blob, or the byte range `[start, end)` of it, as stored (unverified: see
    /// [`BlobStore::get_verified`]).
    pub async fn get(
        &self,
        blake3: &Blake3Digest,
        range: Option<Range<u64>>,
    ) -> Result<BlobStream, StoreError> {
        let options = match range {
            None => GetOptions::new(),
            Some(Range { start, end }) => {
                let size = self.size(blake3).await?;
                if start > end || end > size {
                    return Err(StoreError::InvalidRange { start, end, size });
                }
                if start == end {
                    // Backends disagree about empty ranges; the answer is known anyway.
                    return Ok(Box::pin(futures::stream::empty()));
                }
                GetOptions::new().with_range(Some(start..end))
            }
        };
        let result = self.get_object(blake3, options).await?;
        Ok(into_stream(result))
    }

    /// Streams a whole blob while re-hashing it. The last chunk is held back until the digest
    /// is checked: if the bytes do not hash to `blake3`, or their length is not
    /// `expected_size`, the stream ends with [`StoreError::Corrupt`] instead, so a consumer
    /// never receives a complete, wrong body without an error.
    pub async fn get_verified(
        &self,
        blake3: &Blake3Digest,
        expected_size: u64,
    ) -> Result<BlobStream, StoreError> {
        let result = self.get_object(blake3, GetOptions::new()).await?;
        if result.meta.size != expected_size {
            return Err(StoreError::Corrupt {
                digest: blake3.hex(),
            });
        }
        let inner = into_stream(result);
        Ok(Box::pin(VerifyingStream::new(
            inner,
            *blake3,
            expected_size,
        )))
    }

    async fn get_object(
        &self,
        blake3: &Blake3Digest,
        options: GetOptions,
    ) -> Result<GetResult, StoreError> {
        let path = blob_object(blake3);
        let result = self.store.get_opts(&path, options).await;
        result.map_err(|e| not_found(e, blake3))
    }

    /// Deletes temporary objects older than `older_than` that no upload of this store owns
    /// (in progress or staged) and that are not in `keep` (paths as [`Staged::detach`] gives
    /// them: staged uploads detached from their process): uploads abandoned by a crash, or by
    /// a process that shares the store. Safe to run while uploads run; returns how many were
    /// removed. Pick an age well above the longest upload of any *other* process sharing the
    /// store.
    pub async fn sweep_temp(
        &self,
        older_than: Duration,
        keep: &HashSet<String>,
    ) -> Result<usize, StoreError> {
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut removed = temp::sweep_listed(self.store.as_ref(), cutoff, &self.live, keep).await?;
        if let Some(root) = &self.local_root {
            removed += temp::sweep_local_staging(root, cutoff, &self.live, keep).await?;
        }
        if removed > 0 {
            tracing::info!(removed, "swept abandoned temporary uploads");
        }
        Ok(removed)
    }

    /// Every blob last written more than `older_than` ago, by digest. Objects under `blobs/`
    /// whose name is not a digest are skipped. Lists the whole store: for a sweep at start,
    /// not for every request.
    pub async fn blobs_older_than(
        &self,
        older_than: Duration,
    ) -> Result<Vec<Blake3Digest>, StoreError> {
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let prefix = Path::from(BLOBS_DIR);
        let found: Vec<Blake3Digest> = self
            .store
            .list(Some(&prefix))
            .try_filter_map(|meta| async move {
                let old = SystemTime::from(meta.last_modified) <= cutoff;
                let digest = meta
                    .location
                    .filename()
                    .and_then(|n| n.parse::<Blake3Digest>().ok());
                Ok(digest.filter(|_| old))
            })
            .try_collect()
            .await?;
        Ok(found)
    }

    /// Convenience for bodies already in memory; see [`BlobStore::put_stream`].
    pub async fn put_bytes(
        &self,
        bytes: Bytes,
        max_size: u64,
        expected: &Expected,
    ) -> Result<Digests, StoreError> {
        let body = futures::stream::iter([Ok::<_, std::convert::Infallible>(bytes)]);
        self.put_stream(body, max_size, expected).await
    }
}

fn blob_object(blake3: &Blake3Digest) -> Path {
    Path::from_iter([BLOBS_DIR, &blake3.hex()])
}

fn not_found(e: object_store::Error, blake3: &Blake3Digest) -> StoreError {
    match e {
        object_store::Error::NotFound { .. } => StoreError::NotFound {
            digest: blake3.hex(),
        },
        e => StoreError::Backend(e),
    }
}

/// An upload that is stored and hashed but not visible: see [`BlobStore::stage`].
#[derive(Debug)]
#[must_use = "a staged upload must be committed or discarded"]
pub struct Staged {
    path: Path,
    /// What the server computed from the bytes it received.
    pub digests: Digests,
    store: Arc<dyn ObjectStore>,
    settled: bool,
    /// Keeps the sweep away from the temporary object while it is staged.
    _live: temp::LiveGuard,
}

impl Staged {
    /// The temporary object's path (`tmp/<32 hex>`), e.g. to record it before detaching.
    pub fn path(&self) -> &str {
        self.path.as_ref()
    }

    /// Lets go of the staged upload without deleting it: its path and digests, from which
    /// [`BlobStore::staged_at`] makes it a `Staged` again (in this process or another). From
    /// here on nothing deletes the object on drop and this process's sweep no longer skips
    /// it: whoever keeps the path must keep it from [`BlobStore::sweep_temp`] (its `keep`)
    /// and remove it when it is no longer wanted ([`BlobStore::remove_temp`]).
    pub fn detach(mut self) -> (String, Digests) {
        self.settled = true;
        (self.path.to_string(), self.digests)
    }

    async fn remove(mut self) {
        self.settled = true;
        temp::delete_quietly(self.store.as_ref(), &self.path).await;
    }
}

impl Drop for Staged {
    /// A staged upload dropped without a decision (its owner's future was cancelled, or it
    /// expired) is deleted by a spawned task.
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (store, path) = (Arc::clone(&self.store), self.path.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { temp::delete_quietly(store.as_ref(), &path).await });
        }
    }
}

/// Size of the chunks read from a local file: about a socket buffer. A download whose client
/// stopped reading holds one chunk in the server's write buffer and nothing else (the next is
/// read only when the socket takes more), so thousands of stalled readers stay cheap.
const FILE_CHUNK: usize = 64 * 1024;

/// The body of a get: local files are read in [`FILE_CHUNK`] blocks on the blocking pool
/// (positional reads, no buffer kept between chunks), other backends' streams pass through.
fn into_stream(result: GetResult) -> BlobStream {
    match result.payload {
        object_store::GetResultPayload::File(file, _) => {
            let range = result.range;
            let io = StoreError::from_io;
            let file = Arc::new(file);
            let stream = futures::stream::try_unfold(range.start, move |pos| {
                let file = Arc::clone(&file);
                let end = range.end;
                async move {
                    if pos >= end {
                        return Ok(None);
                    }
                    let want = (end - pos).min(FILE_CHUNK as u64) as usize;
                    let chunk =
                        tokio::task::spawn_blocking(move || read_exact_at(&file, pos, want))
                            .await
                            .map_err(std::io::Error::other)
                            .and_then(|r| r)
                            .map_err(io)?;
                    Ok(Some((chunk, pos + want as u64)))
                }
            });
            Box::pin(stream)
        }
        object_store::GetResultPayload::Stream(s) => Box::pin(s.map_err(StoreError::from)),
    }
}

/// `len` bytes of `file` from `pos` (a file that ends early is an error: the blob shrank).
fn read_exact_at(file: &std::fs::File, pos: u64, len: usize) -> std::io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, pos)?;
    Ok(Bytes::from(buf))
}
