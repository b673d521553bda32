//! The use cases: each one validates, decides with pure domain rules, and writes state, TUF
//! metadata and the audit entry in one transaction.

pub mod audit;
pub mod auto;
pub mod board;
pub mod limit;
pub mod metrics;
pub mod online;
pub mod policy;
pub mod promote;
pub mod push;
pub mod refresh;
pub mod rollout;
pub mod statements;
pub mod tokens;
pub mod trust;
pub mod upload;

use std::collections::BTreeMap;
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
    /// Each channel's online key; replaced when it is rotated.
    pub online: Arc<std::sync::RwLock<BTreeMap<ChannelName, Arc<SigningKey>>>>,
    pub home: PathBuf,
    pub uploads: upload::Uploads,
    /// Signs audit checkpoints.
    pub audit_key: Arc<SigningKey>,
    /// Request, transfer and promotion counters for `/metrics`.
    pub counters: Arc<metrics::Counters>,
    /// The newest metadata file of each (channel, role), as agents poll it.
    pub meta_cache: Arc<MetaCache>,
    /// Reports each token may still post (`agents.reports_per_minute`).
    pub report_limiter: Arc<limit::RateLimiter>,
}

/// The newest body of each (channel, role) with its ETag, valid while the database's metadata
/// generation is unchanged (see `db::tuf::generation`).
#[derive(Default)]
pub struct MetaCache {
    entries: std::sync::RwLock<std::collections::HashMap<(String, &'static str), CachedMeta>>,
}

/// One cached metadata file.
#[derive(Clone)]
pub struct CachedMeta {
    pub generation: u64,
    pub body: bytes::Bytes,
    /// A strong ETag: the quoted SHA-256 of the body.
    pub etag: String,
}

impl MetaCache {
    /// The cached newest body, if nothing was written since it was read.
    pub fn get(&self, channel: &str, role: &'static str) -> Option<CachedMeta> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries
            .get(&(channel.to_owned(), role))
            .filter(|m| m.generation == db::tuf::generation())
            .cloned()
    }

    pub fn put(
        &self,
        channel: &str,
        role: &'static str,
        generation: u64,
        body: Vec<u8>,
    ) -> CachedMeta {
        let etag = format!("\"{}\"", crate::tuf::metadata::sha256_hex(&body));
        let m = CachedMeta {
            generation,
            body: body.into(),
            etag,
        };
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
    Invalid { code: &'static str, message: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("upload exceeds the size limit of {0} bytes")]
    TooLarge(u64),
    /// The server cannot do it now, through no fault of the request (a clock fault): 503.
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
    /// Too many requests from one token: answered 429 with `Retry-After`.
    #[error("{message}")]
    RateLimited { retry_after: u64, message: String },
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Error::Invalid {
            code,
            message: message.into(),
        }
    }
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Error::Forbidden {
            code,
            message: message.into(),
        }
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Error::NotFound {
            code,
            message: message.into(),
        }
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Error::Conflict {
            code,
            message: message.into(),
        }
    }
}

impl From<DbError> for Error {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Clock(f) => Error::Unavailable {
                code: "clock_fault",
                message: f.to_string(),
            },
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<arca_store::StoreError> for Error {
    fn from(e: arca_store::StoreError) -> Self {
        use arca_store::StoreError as S;
        match e {
            S::TooLarge { limit } => Error::TooLarge(limit),
            S::DigestMismatch { .. } => Error::invalid("digest_mismatch", e.to_string()),
            S::NotFound { .. } => Error::not_found("blob_not_found", e.to_string()),
            S::InvalidRange { .. } => Error::invalid("invalid_range", e.to_string()),
            S::Body(_) => Error::invalid("upload_failed", e.to_string()),
            other => Error::Internal(other.to_string()),
        }
    }
}

impl App {
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

    /// The online key of a channel, or 404.
    pub fn channel_key(&self, channel: &str) -> Result<(ChannelName, Arc<SigningKey>), Error> {
        self.online
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(c, _)| c.as_str() == channel)
            .map(|(c, k)| (c.clone(), k.clone()))
            .ok_or_else(|| {
                Error::not_found("unknown_channel", format!("no channel named {channel:?}"))
            })
    }

    /// Appends a refusal to the audit log (in its own transaction; the refused change wrote nothing).
    pub async fn audit_refusal(
        &self,
        actor: &str,
        action: &'static str,
        subject: String,
        err: &Error,
    ) {
        let actor = actor.to_owned();
        let reason = err.to_string();
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
                        details: serde_json::json!({ "reason": reason }),
                    },
                )
            })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "cannot write the audit entry of a refusal");
        }
    }
}
