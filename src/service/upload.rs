//! Staged uploads: the first half of a two-step push. The bytes stream in, are hashed and
//! stored as a temporary object, and wait (in memory, at most [`UPLOAD_TTL`]) for the push that
//! names them with a build statement. This lets the client hash the file while it uploads
//! instead of before. A staged upload is visible nowhere; dropping it deletes its bytes.

use crate::model::api::ErrorCode;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arca_store::Staged;
use bytes::Bytes;
use chrono::Utc;
use futures::Stream;
use ring::rand::SecureRandom;

use super::{App, Error};
use crate::audit::AuditAction;
use crate::db;
use crate::model::api::{UploadQuery, UploadResponse, subject_name};
use crate::model::{ArtifactName, Version};
use crate::policy::signers as statements;

/// How long a staged upload waits for its push. Far above the gap between the two requests of
/// one `arca push`, short enough that abandoned uploads do not pile up.
pub const UPLOAD_TTL: Duration = Duration::from_secs(3600);

/// A staged upload and who may use it.
pub struct Pending {
    pub staged: Staged,
    pub actor: String,
    pub name: ArtifactName,
    pub version: Version,
    pub created: Instant,
}

/// Staged uploads by id.
#[derive(Clone, Default)]
pub struct Uploads(Arc<Mutex<HashMap<String, Pending>>>);

impl Uploads {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the upload `id` if `actor` staged it for `name@version`.
    pub fn take(
        &self,
        id: &str,
        actor: &str,
        name: &ArtifactName,
        version: &Version,
    ) -> Result<Pending, Error> {
        let mut map = self.lock();
        match map.get(id) {
            Some(p) if p.actor == actor && &p.name == name && &p.version == version => {
                Ok(map.remove(id).expect("present"))
            }
            Some(_) => Err(Error::forbidden(
                ErrorCode::UploadMismatch,
                format!("upload {id} was staged by another token or for another name@version"),
            )),
            None => Err(Error::not_found(
                ErrorCode::NoUpload,
                format!("no staged upload {id} (expired or already used)"),
            )),
        }
    }

    /// Drops uploads older than [`UPLOAD_TTL`] (their bytes are deleted); returns how many.
    pub fn expire(&self) -> usize {
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, p| p.created.elapsed() < UPLOAD_TTL);
        before - map.len()
    }
}

/// Stages the bytes of `name@version`, after checking that the named signer may push it.
pub async fn stage<S, E>(
    app: &App,
    actor: &str,
    q: UploadQuery,
    body: S,
) -> Result<UploadResponse, Error>
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: std::fmt::Display,
{
    let subject = subject_name(&q.name, &q.version);
    let result = stage_inner(app, actor, q, body).await;
    if let Err(e) = &result
        && e.is_refusal()
    {
        app.audit_refusal(actor, AuditAction::Push, subject, e)
            .await;
    }
    result
}

async fn stage_inner<S, E>(
    app: &App,
    actor: &str,
    q: UploadQuery,
    body: S,
) -> Result<UploadResponse, Error>
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: std::fmt::Display,
{
    let trust = app.trust().await?;
    statements::builder_may_sign(&trust, &q.signer, &q.name, Utc::now())?;
    let (name, version) = (q.name.to_string(), q.version.to_string());
    if let Some(a) = app
        .db
        .call(move |c| db::artifacts::find(c, &name, &version))
        .await?
    {
        return Err(Error::conflict(
            ErrorCode::VersionExists,
            format!(
                "{}@{} already exists with blake3 {}; versions are immutable",
                a.name, a.version, a.blake3
            ),
        ));
    }
    let staged = app.store.stage(body, app.cfg.store.max_blob_size).await?;
    super::metrics::Counters::add(&app.counters.upload_bytes, staged.digests.size);
    let mut id = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut id)
        .map_err(|_| Error::Internal("random generator failed".into()))?;
    let id = hex::encode(id);
    let d = staged.digests;
    app.uploads.lock().insert(
        id.clone(),
        Pending {
            staged,
            actor: actor.to_owned(),
            name: q.name,
            version: q.version,
            created: Instant::now(),
        },
    );
    Ok(UploadResponse {
        upload: id,
        blake3: d.blake3.hex(),
        sha256: d.sha256.hex(),
        size: d.size,
    })
}
