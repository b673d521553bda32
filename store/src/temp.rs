//! Temporary upload objects under `tmp/`: naming, cleanup, and sweeping what a crash left.

use std::future::Future;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::SystemTime;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use ring::rand::{SecureRandom, SystemRandom};

use crate::StoreError;

/// Where uploads are written before their digests are checked.
pub(crate) const TEMP_DIR: &str = "tmp";

/// Hex characters in the name of a temporary object (16 random bytes).
const TEMP_NAME_LEN: usize = 32;

/// A fresh, unguessable temporary object path: `tmp/<32 hex chars>`.
pub(crate) fn new_path() -> Result<Path, StoreError> {
    let mut id = [0u8; 16];
    SystemRandom::new().fill(&mut id).map_err(|_| {
        StoreError::Backend(object_store::Error::Generic {
            store: "arca-store",
            source: "the system random number generator failed".into(),
        })
    })?;
    Ok(Path::from_iter([TEMP_DIR, &hex::encode(id)]))
}

/// `path` as a temporary object path if it is one this store makes: `tmp/` and 32 lowercase
/// hex characters, nothing else (no other directory, no `..`, no staging suffix). A path read
/// back from outside the process (a database row) goes through this before the store commits
/// or deletes what it names, so a row can never make it publish or delete another object.
pub(crate) fn parse_path(path: &str) -> Result<Path, StoreError> {
    let name = path
        .strip_prefix(TEMP_DIR)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|name| {
            name.len() == TEMP_NAME_LEN
                && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
        .ok_or_else(|| StoreError::NotTemporary {
            path: path.to_owned(),
        })?;
    Ok(Path::from_iter([TEMP_DIR, name]))
}

/// Whether the temporary object `path` (or its staging file `path#n`) is in `keep`.
fn kept(keep: &std::collections::HashSet<String>, path: &str) -> bool {
    let base = path.split_once('#').map_or(path, |(b, _)| b);
    keep.contains(base)
}

/// The temporary objects that uploads of this process own (in progress or staged): the
/// sweep leaves them alone whatever their age, so it can run while the server serves.
#[derive(Clone, Default)]
pub(crate) struct Live(Arc<std::sync::Mutex<std::collections::HashSet<String>>>);

impl Live {
    fn set(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `path` until the returned guard is dropped.
    pub(crate) fn hold(&self, path: &Path) -> LiveGuard {
        self.set().insert(path.to_string());
        LiveGuard {
            live: self.clone(),
            path: path.to_string(),
        }
    }

    /// Whether `path` (or the staging file `path#n` of a local multipart upload) is owned.
    pub(crate) fn owns(&self, path: &str) -> bool {
        let base = path.split_once('#').map_or(path, |(b, _)| b);
        self.set().contains(base)
    }
}

/// Keeps a temporary path registered in [`Live`] while it lives.
#[derive(Debug)]
pub(crate) struct LiveGuard {
    live: Live,
    path: String,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live")
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.live.set().remove(&self.path);
    }
}

/// A temporary upload in progress. [`TempObject::remove`] cleans it up; if the owning future
/// is dropped instead (a client hung up mid-upload), `Drop` spawns the same cleanup.
pub(crate) struct TempObject {
    store: Arc<dyn ObjectStore>,
    path: Path,
    writer: Option<WriteMultipart>,
    removed: bool,
}

impl TempObject {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, path: Path, writer: WriteMultipart) -> Self {
        Self {
            store,
            path,
            writer: Some(writer),
            removed: false,
        }
    }

    pub(crate) fn writer(&mut self) -> Result<&mut WriteMultipart, StoreError> {
        self.writer
            .as_mut()
            .ok_or_else(|| upload_closed(&self.path))
    }

    /// Uploads the last part and completes the multipart upload, making the object readable.
    pub(crate) async fn finish_upload(&mut self) -> Result<(), StoreError> {
        let writer = self
            .writer
            .take()
            .ok_or_else(|| upload_closed(&self.path))?;
        writer.finish().await?;
        Ok(())
    }

    /// Keeps the finished temporary object (no cleanup on drop); returns its path.
    pub(crate) fn keep(mut self) -> Path {
        self.removed = true;
        self.path.clone()
    }

    /// Aborts the upload if it is still open and deletes the temporary object (best effort).
    pub(crate) async fn remove(mut self) {
        self.cleanup().await;
    }

    fn cleanup(&mut self) -> impl Future<Output = ()> + Send + 'static {
        self.removed = true;
        let writer = self.writer.take();
        let store = Arc::clone(&self.store);
        let path = self.path.clone();
        async move {
            if let Some(writer) = writer
                && let Err(e) = writer.abort().await
            {
                tracing::warn!(%path, error = %e, "could not abort a multipart upload");
            }
            delete_quietly(store.as_ref(), &path).await;
        }
    }
}

impl Drop for TempObject {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let cleanup = self.cleanup();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(cleanup);
        }
    }
}

/// A temporary file on the local disk that is removed unless kept (a cancelled or failed local
/// upload leaves nothing).
pub(crate) struct LocalTemp {
    path: Option<std::path::PathBuf>,
}

impl LocalTemp {
    pub(crate) fn new(path: std::path::PathBuf) -> Self {
        LocalTemp { path: Some(path) }
    }

    pub(crate) fn keep(mut self) {
        self.path = None;
    }
}

impl Drop for LocalTemp {
    fn drop(&mut self) {
        if let Some(p) = self.path.take()
            && let Err(e) = std::fs::remove_file(&p)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %p.display(), error = %e, "could not remove a temporary file");
        }
    }
}

fn upload_closed(path: &Path) -> StoreError {
    StoreError::Backend(object_store::Error::Generic {
        store: "arca-store",
        source: format!("upload to {path} used after it was closed").into(),
    })
}

/// Deletes an object, treating "already gone" as success and logging anything else.
pub(crate) async fn delete_quietly(store: &dyn ObjectStore, path: &Path) {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => tracing::warn!(%path, error = %e, "could not delete a temporary object"),
    }
}

/// Deletes the listed temporary objects last modified at or before `cutoff` that no upload
/// of this process owns and that are not in `keep`.
pub(crate) async fn sweep_listed(
    store: &dyn ObjectStore,
    cutoff: SystemTime,
    live: &Live,
    keep: &std::collections::HashSet<String>,
) -> Result<usize, StoreError> {
    let prefix = Path::from(TEMP_DIR);
    let stale: Vec<Path> = store
        .list(Some(&prefix))
        .try_filter_map(|meta| async move {
            let modified = SystemTime::from(meta.last_modified);
            let path = meta.location.as_ref();
            let owned = live.owns(path) || kept(keep, path);
            Ok((modified <= cutoff && !owned).then_some(meta.location))
        })
        .try_collect()
        .await?;
    let mut removed = 0;
    for path in stale {
        match store.delete(&path).await {
            Ok(()) => removed += 1,
            // Finished and removed by its upload in the meantime.
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(removed)
}

/// `LocalFileSystem` writes a multipart upload to a staging file `tmp/<id>#<n>` that listings
/// skip; a crash mid-upload leaves one behind, so the local backend also scans the directory.
pub(crate) async fn sweep_local_staging(
    root: &FsPath,
    cutoff: SystemTime,
    live: &Live,
    keep: &std::collections::HashSet<String>,
) -> Result<usize, StoreError> {
    let dir = root.join(TEMP_DIR);
    let (live, keep) = (live.clone(), keep.clone());
    let scan = move || -> std::io::Result<usize> {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let staged = name.contains('#');
            let path = format!("{TEMP_DIR}/{name}");
            let owned = live.owns(&path) || kept(&keep, &path);
            let meta = entry.metadata()?;
            if staged && !owned && meta.is_file() && meta.modified()? <= cutoff {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(removed)
    };
    let scanned = tokio::task::spawn_blocking(scan)
        .await
        .map_err(|source| object_store::Error::JoinError { source })?;
    scanned.map_err(|source| {
        StoreError::Backend(object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(source),
        })
    })
}
