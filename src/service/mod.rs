//! The use cases: each one validates, decides with pure domain rules, and writes state, TUF
//! metadata and the audit entry in one transaction.

pub mod audit;
pub mod auto;
pub mod board;
pub mod facts;
pub mod leader;
pub mod lease;
pub mod limit;
pub mod metrics;
pub mod online;
pub mod policy;
pub mod promote;
pub mod push;
pub mod reads;
pub mod refresh;
pub mod rollout;
pub mod sealed;
pub mod statements;
pub mod status;
pub mod sweep;
pub mod tokens;
pub mod transfers;
pub mod trust;
pub mod upload;

use crate::audit::AuditAction;
use crate::model::api::ErrorCode;
use std::path::PathBuf;
use std::sync::Arc;

use arca_keys::SigningKey;
use arca_store::BlobStore;

use crate::config::Config;
use crate::db::{self, Db, DbError};
use crate::model::ChannelName;

/// Everything a use case needs; shared by the HTTP handlers and background tasks.
#[derive(Clone)]
pub struct App {
    pub db: Db,
    pub store: BlobStore,
    pub cfg: Arc<Config>,
    /// The master key and each channel's online key as this server last read it from the
    /// database (`sealed::ServerKeys`).
    pub keys: Arc<sealed::ServerKeys>,
    pub home: PathBuf,
    /// Signs audit checkpoints.
    pub audit_key: Arc<SigningKey>,
    /// Request, transfer and promotion counters for `/metrics`.
    pub counters: Arc<metrics::Counters>,
    /// The newest metadata file of each (channel, role), as agents poll it.
    pub meta_cache: Arc<MetaCache>,
    /// Reports each token may still post (`agents.reports_per_minute`).
    pub report_limiter: Arc<limit::RateLimiter>,
    /// Slots for concurrent uploads and downloads (`[limits]`).
    pub transfers: Arc<transfers::Transfers>,
    /// Blobs that pushes in flight are about to reference (see `transfers::BlobPins`).
    pub pins: Arc<transfers::BlobPins>,
    /// Where changes that may let an `auto = true` channel take a release are sent
    /// (`auto::queue`); the auto-promotion task answers each with the channels it entered.
    pub auto: auto::Queue,
    /// Whether this server runs the background work now (`leader`).
    pub leader: leader::Leadership,
    /// On PostgreSQL, whether this server holds a metadata lease now (`lease`).
    pub lease: Arc<lease::MetaLease>,
}

/// The newest body of each (channel, role) with its version and ETag, as this server last
/// read it. Whether it is still the newest is for `reads::latest_cached` to say: on SQLite
/// while the metadata generation (`db::tuf::generation`) has not moved, on PostgreSQL after
/// one read of the newest version from the database.
#[derive(Default)]
pub struct MetaCache {
    entries: std::sync::RwLock<
        std::collections::HashMap<(String, crate::tuf::metadata::TufRole), CachedMeta>,
    >,
    /// On PostgreSQL, the shared check of each (channel, role) against the database.
    checks: std::sync::Mutex<
        std::collections::HashMap<(String, crate::tuf::metadata::TufRole), Arc<Revalidation>>,
    >,
}

/// The least time between two reads of one file's newest version by one server: about a
/// round trip to the database, so that under load each read answers the polls of a whole
/// round trip (on 2 cores, ~30 polls a read instead of ~6), for at most that much latency.
const READ_GAP: std::time::Duration = std::time::Duration::from_millis(1);

/// Polls of one (channel, role) on PostgreSQL share their reads of the newest version: a poll
/// is answered by the first read of the database that *started after the poll arrived*, its
/// own or another poll's. That read saw everything committed before the poll came, which is
/// all the guarantee needs (no server answers a version older than one any server had
/// committed when the request came), and under load one read answers every poll that queued
/// behind the read before it, instead of one read each.
pub struct Revalidation {
    /// How many reads have started (each takes the next number before it is sent).
    started: std::sync::atomic::AtomicU64,
    /// Held by the poll that reads (one at a time); when the last read was sent.
    reader: tokio::sync::Mutex<Option<std::time::Instant>>,
    /// The number of the last read that succeeded and what it found; every read that ends,
    /// even in an error, wakes the polls waiting here.
    done: tokio::sync::watch::Sender<(u64, Option<CachedMeta>)>,
}

impl Default for Revalidation {
    fn default() -> Self {
        Revalidation {
            started: Default::default(),
            reader: Default::default(),
            done: tokio::sync::watch::Sender::new((0, None)),
        }
    }
}

impl Revalidation {
    /// The newest file, from a read that started after this call did: `read` is run only when
    /// no such read has finished, or is running, when this poll looks.
    pub async fn fresh<F, Fut>(&self, read: F) -> Result<Option<CachedMeta>, Error>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<CachedMeta>, Error>>,
    {
        use std::sync::atomic::Ordering::SeqCst;
        // Any read numbered `need` or later took its number, and so was sent, after this.
        let need = self.started.load(SeqCst) + 1;
        let mut done = self.done.subscribe();
        let mut read = Some(read);
        loop {
            {
                let last = done.borrow_and_update();
                if last.0 >= need {
                    return Ok(last.1.clone());
                }
            }
            let Ok(mut last_sent) = self.reader.try_lock() else {
                // Another poll is reading: its answer, or the next read's, is for this one
                // too. (Subscribed before looking, so its end cannot be missed.)
                if done.changed().await.is_err() {
                    return Err(Error::Internal("metadata check ended".into()));
                }
                continue;
            };
            if self.done.borrow().0 >= need {
                continue;
            }
            // Reads of one file go at most every READ_GAP: the polls that arrive meanwhile
            // wait for the next read instead of each sending one (a lone poll after a quiet
            // spell is read at once).
            if let Some(at) = *last_sent {
                let next = at + READ_GAP;
                if next > std::time::Instant::now() {
                    tokio::time::sleep_until(next.into()).await;
                }
            }
            *last_sent = Some(std::time::Instant::now());
            let number = self.started.fetch_add(1, SeqCst) + 1;
            let read = read.take().expect("read once: the reader returns");
            let found = read().await;
            match &found {
                Ok(f) => self.done.send_replace((number, f.clone())),
                // The waiting polls look again, and one of them reads.
                Err(_) => {
                    self.done.send_modify(|_| {});
                    return found;
                }
            };
            return found;
        }
    }
}

/// One cached metadata file.
#[derive(Clone)]
pub struct CachedMeta {
    pub generation: u64,
    /// On PostgreSQL, the metadata lease under which it was read (`lease::MetaLease`), if any:
    /// while that lease is held, it is the newest.
    pub lease: Option<u64>,
    pub version: u64,
    pub body: bytes::Bytes,
    /// A strong ETag: the quoted SHA-256 of the body.
    pub etag: String,
}

impl CachedMeta {
    pub fn new(generation: u64, version: u64, body: bytes::Bytes) -> CachedMeta {
        let etag = format!("\"{}\"", crate::tuf::metadata::sha256_hex(&body));
        CachedMeta {
            generation,
            lease: None,
            version,
            body,
            etag,
        }
    }
}

impl MetaCache {
    /// The shared check of (channel, role); see [`Revalidation`].
    pub fn revalidation(
        &self,
        channel: &str,
        role: crate::tuf::metadata::TufRole,
    ) -> Arc<Revalidation> {
        let mut checks = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(checks.entry((channel.to_owned(), role)).or_default())
    }

    /// The cached body, whether or not it is still the newest.
    pub fn peek(&self, channel: &str, role: crate::tuf::metadata::TufRole) -> Option<CachedMeta> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries.get(&(channel.to_owned(), role)).cloned()
    }

    /// Keeps a file read under `generation` (SQLite) or while this server held `lease`
    /// (PostgreSQL); returns it.
    pub fn put(
        &self,
        channel: &str,
        role: crate::tuf::metadata::TufRole,
        generation: u64,
        lease: Option<u64>,
        version: u64,
        body: bytes::Bytes,
    ) -> CachedMeta {
        let mut m = CachedMeta::new(generation, version, body);
        m.lease = lease;
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((channel.to_owned(), role), m.clone());
        m
    }
}

/// Why a use case refused or failed. Client mistakes carry a stable code and a message that
/// names the problem; `Internal` is logged and answered with an opaque 500.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{message}")]
    Invalid { code: ErrorCode, message: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{message}")]
    Forbidden { code: ErrorCode, message: String },
    #[error("{message}")]
    NotFound { code: ErrorCode, message: String },
    #[error("{message}")]
    Conflict { code: ErrorCode, message: String },
    #[error("upload exceeds the size limit of {0} bytes")]
    TooLarge(u64),
    /// Too many requests from one token: answered 429 with `Retry-After`.
    #[error("{message}")]
    RateLimited { retry_after: u64, message: String },
    /// A byte range that starts past the end of a target of `size` bytes: 416.
    #[error("the requested range starts past the end of the {size}-byte target")]
    RangeNotSatisfiable { size: u64 },
    /// The client went silent (an upload body sent nothing for the idle timeout): 408.
    #[error("{message}")]
    TimedOut { code: ErrorCode, message: String },
    /// The server cannot take the request now: a backend it needs is down, a limit of
    /// concurrent transfers is reached, or its clock cannot be trusted. 503; retrying later
    /// may work.
    #[error("{message}")]
    Unavailable { code: ErrorCode, message: String },
    /// A disk (the blob store's or the database's) is full: 507 `insufficient_storage`.
    #[error("{0}")]
    InsufficientStorage(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Invalid {
            code,
            message: message.into(),
        }
    }
    pub fn forbidden(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Forbidden {
            code,
            message: message.into(),
        }
    }
    pub fn not_found(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::NotFound {
            code,
            message: message.into(),
        }
    }
    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Conflict {
            code,
            message: message.into(),
        }
    }
    /// A `token_role` or `token_scope` refusal: `App::permit` audited it already.
    pub fn is_token_refusal(&self) -> bool {
        matches!(
            self,
            Error::Forbidden {
                code: ErrorCode::TokenRole | ErrorCode::TokenScope,
                ..
            }
        )
    }

    /// A refusal of the client's request (4xx), which the audit log records; server-side
    /// failures (5xx) are logged instead.
    pub fn is_refusal(&self) -> bool {
        !matches!(
            self,
            Error::Internal(_) | Error::Unavailable { .. } | Error::InsufficientStorage(_)
        )
    }
    pub fn unavailable(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Unavailable {
            code,
            message: message.into(),
        }
    }
}

impl From<crate::model::limits::FieldError> for Error {
    fn from(e: crate::model::limits::FieldError) -> Self {
        Error::invalid(e.code, e.message)
    }
}

impl From<DbError> for Error {
    fn from(e: DbError) -> Self {
        if let DbError::Clock(f) = &e {
            Error::Unavailable {
                code: ErrorCode::ClockFault,
                message: f.to_string(),
            }
        } else if e.is_disk_full() {
            tracing::error!(cause = %e, "the database's disk is full");
            Error::InsufficientStorage("insufficient storage: the database's disk is full".into())
        } else if e.is_unavailable() {
            tracing::error!(cause = %e, "the database is unavailable");
            Error::unavailable(
                ErrorCode::DatabaseUnavailable,
                "the database cannot be reached or kept conflicting; retry later",
            )
        } else if e.is_busy() {
            tracing::error!(cause = %e, "the database stayed locked past the busy timeout");
            Error::unavailable(
                ErrorCode::DatabaseBusy,
                "the database is locked by another process; retry later",
            )
        } else {
            Error::Internal(e.to_string())
        }
    }
}

impl From<crate::policy::signers::SignerError> for Error {
    fn from(e: crate::policy::signers::SignerError) -> Self {
        use crate::policy::signers::SignerError as S;
        match e {
            S::BadStatement(m) => Error::invalid(ErrorCode::BadStatement, m),
            S::UntrustedKey(m) => Error::forbidden(ErrorCode::UntrustedKey, m),
            S::KeyNotAllowed(m) => Error::forbidden(ErrorCode::KeyNotAllowed, m),
            S::Trust(m) => Error::Internal(m),
        }
    }
}

impl From<arca_store::StoreError> for Error {
    fn from(e: arca_store::StoreError) -> Self {
        use arca_store::StoreError as S;
        match e {
            S::TooLarge { limit } => Error::TooLarge(limit),
            S::DigestMismatch { .. } => Error::invalid(ErrorCode::DigestMismatch, e.to_string()),
            S::NotFound { .. } => Error::not_found(ErrorCode::BlobNotFound, e.to_string()),
            S::InvalidRange { .. } => Error::invalid(ErrorCode::InvalidRange, e.to_string()),
            S::Body(_) => Error::invalid(ErrorCode::UploadFailed, e.to_string()),
            S::Backend(_) if e.is_storage_full() => {
                tracing::error!(cause = %e, "the blob store's disk is full");
                Error::InsufficientStorage(
                    "insufficient storage: the blob store's disk is full".into(),
                )
            }
            S::Backend(_) => {
                tracing::error!(cause = %e, "the blob store failed");
                Error::unavailable(
                    ErrorCode::StoreUnavailable,
                    "the blob store cannot be reached or refused the operation; retry later",
                )
            }
            other => Error::Internal(other.to_string()),
        }
    }
}

impl App {
    /// The blob store as operators name it: its URL (which holds no credentials: those are
    /// options), or the local directory.
    pub fn store_label(&self) -> String {
        if self.cfg.store.url.is_empty() {
            format!("{}", self.home.join("blobs").display())
        } else {
            self.cfg.store.url.clone()
        }
    }

    /// The current trust document and its version.
    pub async fn trust(&self) -> Result<arca_keys::TrustDocument, Error> {
        let bytes = self
            .db
            .call(|c| db::trust::latest(c))
            .await?
            .ok_or_else(|| Error::Internal("no trust document".into()))?
            .1;
        arca_keys::SignedEnvelope::from_slice(&bytes)
            .and_then(|e| e.decode("trust document"))
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// The signer of a channel's online metadata, or 404.
    pub fn channel_key(
        &self,
        channel: &str,
    ) -> Result<(ChannelName, sealed::ChannelSigner), Error> {
        self.keys.signer(channel).ok_or_else(|| {
            Error::not_found(
                ErrorCode::UnknownChannel,
                format!("no channel named {channel:?}"),
            )
        })
    }

    /// Appends a refusal to the audit log (in its own transaction; the refused change wrote
    /// nothing). A failure of the server (a 5xx: a backend down, a clock fault, an internal
    /// error) is no refusal of the request: it goes to the log and the metrics, not the audit
    /// chain, so no internal text reaches the exported log.
    pub async fn audit_refusal(
        &self,
        actor: &str,
        action: AuditAction,
        subject: String,
        err: &Error,
    ) {
        if !err.is_refusal() {
            return;
        }
        let details = serde_json::json!({ "reason": err.to_string() });
        self.append_refusal(actor.to_owned(), action, subject, details)
            .await;
    }

    /// Appends one `refused` entry to the audit log in its own transaction; one that cannot be
    /// written is logged, not returned (the refusal itself is the answer).
    pub(crate) async fn append_refusal(
        &self,
        actor: String,
        action: AuditAction,
        subject: String,
        details: serde_json::Value,
    ) {
        let r = self
            .db
            .call(move |c| {
                db::audit::append(
                    c,
                    &db::audit::Entry {
                        actor: &actor,
                        action,
                        subject: &subject,
                        outcome: "refused",
                        details: details.clone(),
                    },
                )
            })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "cannot write the audit entry of a refusal");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full disk under the blob store is 507, not an opaque 500 (the store's own test
    /// checks that a write to a full disk is recognised as such).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_disk_is_insufficient_storage() {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let mut sink = arca_store::FileSink::new(f).unwrap();
        let _ = sink.write(bytes::Bytes::from(vec![1u8; 4 << 20])).await;
        let io = sink.finish().await.unwrap_err();
        let e = Error::from(arca_store::StoreError::from_io(io));
        assert!(matches!(e, Error::InsufficientStorage(_)), "{e:?}");
        let e = Error::from(arca_store::StoreError::from_io(std::io::Error::other("no")));
        assert!(
            matches!(
                e,
                Error::Unavailable {
                    code: ErrorCode::StoreUnavailable,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn a_full_database_disk_is_insufficient_storage() {
        let full = DbError::DiskFull("no space left".into());
        assert!(matches!(Error::from(full), Error::InsufficientStorage(_)));
        for (e, want) in [
            (
                DbError::Unavailable("connection refused".into()),
                ErrorCode::DatabaseUnavailable,
            ),
            (
                DbError::Conflict("deadlock".into()),
                ErrorCode::DatabaseUnavailable,
            ),
        ] {
            assert!(
                matches!(Error::from(e), Error::Unavailable { code, .. } if code == want),
                "{want}"
            );
        }
    }

    fn meta(version: u64) -> Option<CachedMeta> {
        Some(CachedMeta::new(
            0,
            version,
            bytes::Bytes::from(vec![version as u8]),
        ))
    }

    /// A poll that arrives while a read is under way is not answered by that read (it may have
    /// been sent before a commit the poll must see), but by the next one; polls that arrive
    /// together while nothing is read share one read.
    #[tokio::test]
    async fn a_poll_is_answered_only_by_a_read_sent_after_it_arrived() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let check = std::sync::Arc::new(Revalidation::default());
        let reads = std::sync::Arc::new(AtomicUsize::new(0));
        let (release_first, first_may_end) = tokio::sync::oneshot::channel::<()>();
        let (first_sent, first_is_sent) = tokio::sync::oneshot::channel::<()>();
        // The first poll's read is sent (the database has version 1) and held.
        let first = {
            let (check, reads) = (check.clone(), reads.clone());
            tokio::spawn(async move {
                check
                    .fresh(|| async move {
                        reads.fetch_add(1, SeqCst);
                        first_sent.send(()).unwrap();
                        first_may_end.await.unwrap();
                        Ok(meta(1))
                    })
                    .await
            })
        };
        first_is_sent.await.unwrap();
        // Version 2 commits; then a second poll arrives, while the first read is out.
        let second = {
            let (check, reads) = (check.clone(), reads.clone());
            tokio::spawn(async move {
                check
                    .fresh(|| async move {
                        reads.fetch_add(1, SeqCst);
                        Ok(meta(2))
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        release_first.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap().unwrap().version, 1);
        assert_eq!(
            second.await.unwrap().unwrap().unwrap().version,
            2,
            "the second poll got the answer of a read sent before it arrived"
        );
        assert_eq!(reads.load(SeqCst), 2);
        // Ten polls at once after that: one read answers them all, or a few (never one each).
        let polls: Vec<_> = (0..10)
            .map(|_| {
                let (check, reads) = (check.clone(), reads.clone());
                tokio::spawn(async move {
                    check
                        .fresh(|| async move {
                            reads.fetch_add(1, SeqCst);
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            Ok(meta(3))
                        })
                        .await
                })
            })
            .collect();
        for p in polls {
            assert_eq!(p.await.unwrap().unwrap().unwrap().version, 3);
        }
        let shared = reads.load(SeqCst) - 2;
        assert!((1..=2).contains(&shared), "{shared} reads for ten polls");
    }
}
