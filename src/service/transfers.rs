//! Caps on the transfers in flight, and the guard that lets a push remove the blob it left
//! behind without racing a concurrent push of the same bytes.

use crate::model::api::ErrorCode;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, OwnedSemaphorePermit, RwLock};

use super::Error;
use crate::config::LimitsConfig;

/// Slots for uploads and downloads; a request that finds none is answered 503 at once.
pub struct Transfers {
    uploads: Arc<tokio::sync::Semaphore>,
    downloads: Arc<tokio::sync::Semaphore>,
    max_uploads: usize,
    max_downloads: usize,
}

impl Transfers {
    pub fn new(limits: &LimitsConfig) -> Self {
        Transfers {
            uploads: Arc::new(tokio::sync::Semaphore::new(limits.max_uploads)),
            downloads: Arc::new(tokio::sync::Semaphore::new(limits.max_downloads)),
            max_uploads: limits.max_uploads,
            max_downloads: limits.max_downloads,
        }
    }

    /// The uploads and downloads holding a slot now.
    pub fn in_flight(&self) -> (usize, usize) {
        (
            self.max_uploads - self.uploads.available_permits(),
            self.max_downloads - self.downloads.available_permits(),
        )
    }

    /// The in-flight gauges and their caps in Prometheus text format.
    pub fn render(&self) -> String {
        let (up, down) = self.in_flight();
        format!(
            "# HELP arca_transfers_in_flight Uploads and downloads holding a slot now.\n\
             # TYPE arca_transfers_in_flight gauge\n\
             arca_transfers_in_flight{{kind=\"upload\"}} {up}\n\
             arca_transfers_in_flight{{kind=\"download\"}} {down}\n\
             # HELP arca_transfers_max Slots for uploads and downloads (limits.max_uploads, limits.max_downloads).\n\
             # TYPE arca_transfers_max gauge\n\
             arca_transfers_max{{kind=\"upload\"}} {}\n\
             arca_transfers_max{{kind=\"download\"}} {}\n",
            self.max_uploads, self.max_downloads
        )
    }

    /// A slot for one upload, held until its body is stored or refused.
    pub fn upload(&self) -> Result<OwnedSemaphorePermit, Error> {
        Arc::clone(&self.uploads).try_acquire_owned().map_err(|_| {
            Error::unavailable(
                ErrorCode::TooManyUploads,
                "the server is receiving as many uploads as it accepts at once; retry later",
            )
        })
    }

    /// A slot for one download, held until its body is sent or the connection drops.
    pub fn download(&self) -> Result<OwnedSemaphorePermit, Error> {
        Arc::clone(&self.downloads)
            .try_acquire_owned()
            .map_err(|_| {
                Error::unavailable(
                    ErrorCode::TooManyDownloads,
                    "the server is sending as many downloads as it serves at once; retry later",
                )
            })
    }
}

/// Which blobs a push is about to reference. A push holds a shared pin on its blob from
/// before it publishes the blob until its transaction ends; a push that ended without an
/// artifact row for its blob may delete the blob only under an exclusive pin, which it gets
/// only when no other push holds one, and a push that wants to publish while a deletion runs
/// waits for it (and then publishes its own copy again).
#[derive(Default)]
pub struct BlobPins {
    locks: Mutex<HashMap<String, Arc<RwLock<()>>>>,
}

/// A shared pin: this push may reference the blob.
pub struct Pin {
    _guard: OwnedRwLockReadGuard<()>,
}

/// The exclusive pin under which an unreferenced blob may be deleted.
pub struct Sole {
    _guard: OwnedRwLockWriteGuard<()>,
}

impl BlobPins {
    fn lock_of(&self, blake3: &str) -> Arc<RwLock<()>> {
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Forget the locks nobody holds, so the map stays as small as the pushes in flight.
        map.retain(|_, l| Arc::strong_count(l) > 1);
        Arc::clone(map.entry(blake3.to_owned()).or_default())
    }

    /// Pins `blake3` for a push (waits while an unreferenced copy is being deleted).
    pub async fn pin(&self, blake3: &str) -> Pin {
        Pin {
            _guard: self.lock_of(blake3).read_owned().await,
        }
    }

    /// The exclusive pin, if no other push holds `blake3` now. Drop your own [`Pin`] first.
    pub fn sole(&self, blake3: &str) -> Option<Sole> {
        self.lock_of(blake3)
            .try_write_owned()
            .ok()
            .map(|g| Sole { _guard: g })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pinned_blob_is_never_sole() {
        let pins = BlobPins::default();
        let a = pins.pin("b").await;
        let other = pins.pin("b").await;
        drop(a);
        assert!(pins.sole("b").is_none(), "another push holds it");
        drop(other);
        let sole = pins.sole("b").expect("nobody holds it");
        // A push that wants the blob now waits until the deletion is over.
        let waiting = pins.pin("b");
        let mut waiting = std::pin::pin!(waiting);
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        drop(sole);
        let _p = waiting.await;
        assert!(pins.sole("b").is_none());
    }
}
