//! Backends without a create-only copy (plain S3): dedup and cleanup still hold.
//! Also: an upload dropped while publishing removes its temporary object.

mod common;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arca_store::{BlobStore, Expected};
use async_trait::async_trait;
use bytes::Bytes;
use common::*;
use futures::TryStreamExt;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// An in-memory store that, like S3 without configuration, cannot copy create-only.
#[derive(Debug, Default)]
struct NoCreateOnlyCopy {
    inner: InMemory,
    overwriting_copies: AtomicUsize,
    /// Makes every copy hang, to drop an upload while it is being published.
    stall_copies: bool,
}

impl fmt::Display for NoCreateOnlyCopy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoCreateOnlyCopy({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for NoCreateOnlyCopy {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        if self.stall_copies {
            return futures::future::pending().await;
        }
        match options.mode {
            CopyMode::Create => Err(object_store::Error::NotSupported {
                source: "no create-only copy".into(),
            }),
            CopyMode::Overwrite => {
                self.overwriting_copies.fetch_add(1, Ordering::SeqCst);
                self.inner.copy_opts(from, to, options).await
            }
        }
    }
}

async fn paths(store: &dyn ObjectStore) -> Vec<String> {
    let mut all: Vec<String> = store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    all.sort();
    all
}

#[tokio::test]
async fn without_create_only_copy_duplicates_are_stored_once() {
    let backend = Arc::new(NoCreateOnlyCopy::default());
    let store = BlobStore::with_object_store(backend.clone());
    let data = body(6 * MIB, 20);
    let first = store
        .put_bytes(Bytes::from(data.clone()), u64::MAX, &Expected::default())
        .await
        .unwrap();
    let second = store
        .put_stream(
            ok_stream(chunks(&data, &[MIB])),
            u64::MAX,
            &Expected::default(),
        )
        .await
        .unwrap();
    assert_eq!(first, second);
    assert_eq!(first.blake3, blake3_of(&data));
    assert_eq!(
        paths(backend.as_ref()).await,
        vec![BlobStore::blob_path(&first.blake3)]
    );
    // The second upload saw the blob with head() and did not copy over it.
    assert_eq!(backend.overwriting_copies.load(Ordering::SeqCst), 1);
    assert!(read_all(store.get_verified(&first.blake3, first.size).await.unwrap()).await == data);
}

#[tokio::test]
async fn without_create_only_copy_a_refused_upload_leaves_nothing() {
    let backend = Arc::new(NoCreateOnlyCopy::default());
    let store = BlobStore::with_object_store(backend.clone());
    let claim = Expected {
        size: Some(1),
        ..Expected::default()
    };
    assert!(
        store
            .put_bytes(Bytes::from_static(b"two"), 10, &claim)
            .await
            .is_err()
    );
    assert!(
        store
            .put_bytes(Bytes::from_static(b"too long"), 3, &Expected::default())
            .await
            .is_err()
    );
    assert_eq!(paths(backend.as_ref()).await, Vec::<String>::new());
}

#[tokio::test]
async fn upload_dropped_while_publishing_leaves_no_temp_object() {
    let backend = Arc::new(NoCreateOnlyCopy {
        stall_copies: true,
        ..NoCreateOnlyCopy::default()
    });
    let store = BlobStore::with_object_store(backend.clone());
    let nothing = Expected::default();
    let upload = store.put_bytes(Bytes::from_static(b"abandoned"), 100, &nothing);
    let timed_out = tokio::time::timeout(Duration::from_millis(200), upload).await;
    assert!(
        timed_out.is_err(),
        "the stalled copy should hang the upload"
    );
    // The completed temporary object is removed by a task spawned on drop.
    for _ in 0..100 {
        if paths(backend.as_ref()).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(paths(backend.as_ref()).await, Vec::<String>::new());
}
