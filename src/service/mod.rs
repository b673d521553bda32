//! The use cases: each one validates, decides with pure domain rules, and writes state, TUF
//! metadata and the audit entry in one transaction.

pub mod audit;
pub mod auto;
pub mod board;
pub mod facts;
pub mod leader;
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
}

/// One cached metadata file.
#[derive(Clone)]
pub struct CachedMeta {
    pub generation: u64,
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
            version,
            body,
            etag,
        }
    }
}

impl MetaCache {
    /// The cached body, whether or not it is still the newest.
    pub fn peek(&self, channel: &str, role: crate::tuf::metadata::TufRole) -> Option<CachedMeta> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries.get(&(channel.to_owned(), role)).cloned()
    }

    /// The cached body, if nothing was written by this process since it was read (all that
    /// can write on SQLite; on PostgreSQL see `reads::latest_cached`).
    pub fn get(&self, channel: &str, role: crate::tuf::metadata::TufRole) -> Option<CachedMeta> {
        self.peek(channel, role)
            .filter(|m| m.generation == db::tuf::generation())
    }

    pub fn put(
        &self,
        channel: &str,
        role: crate::tuf::metadata::TufRole,
        generation: u64,
        version: u64,
        body: bytes::Bytes,
    ) -> CachedMeta {
        let m = CachedMeta::new(generation, version, body);
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
}
