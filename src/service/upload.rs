//! Staged uploads: the first half of a two-step push. The bytes stream in, are hashed and
//! stored as a temporary object, and wait (at most `store.upload_ttl`) for the push that names
//! them with a build statement. This lets the client hash the file while it uploads instead of
//! before. A staged upload is visible nowhere.
//!
//! Each staged upload is a row in the database (`db::uploads`: who may use it for which
//! name@version, the temporary object's path, the digests this server computed), not a value
//! in this process: any server sharing the database and the store can commit it, a restart
//! keeps it, and the sweep of every server leaves its object alone. A push claims the row
//! once ([`claim`]), then commits the bytes.
//!
//! The digests are not computed again when another server (or this one after a restart)
//! commits the bytes: they were computed by a server from the bytes it received, and the
//! database is trusted as the store is (docs/security.md, "Staged uploads"). What is checked
//! is the path: only a temporary object (`tmp/<32 hex>`) is committed or deleted, so a row
//! cannot make a server publish or remove any other object.

use crate::model::api::ErrorCode;

use arca_store::{Blake3Digest, Digests, Sha256Digest, Staged, StoreError};
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

/// Why a push could not claim a staged upload.
enum Unclaimed {
    /// No unclaimed row: never staged, expired, or used (claimed) by another push.
    Missing,
    /// Staged by another token or for another name@version (the row is left as it was).
    Mismatch,
}

/// Claims the staged upload `id` for a push by `actor` of `name@version`, and gives back its
/// bytes as a [`Staged`] to commit or discard. Once claimed, no other push (through this
/// server or another) can use it: they get `404 no_upload`. The caller ends the row with
/// [`forget`] (or `db::uploads::remove` in its transaction) however its push ends.
pub async fn claim(
    app: &App,
    id: &str,
    actor: &str,
    name: &ArtifactName,
    version: &Version,
) -> Result<Staged, Error> {
    let (key, actor_s, name_s, version_s) = (
        id.to_owned(),
        actor.to_owned(),
        name.to_string(),
        version.to_string(),
    );
    let claimed = app
        .db
        .call(move |c| {
            let Some(row) = db::uploads::find_unclaimed(c, &key)? else {
                return Ok(Err(Unclaimed::Missing));
            };
            if row.actor != actor_s || row.name != name_s || row.version != version_s {
                return Ok(Err(Unclaimed::Mismatch));
            }
            // A row is never changed but by its claim, so what was checked above still holds
            // if this claims it; if another push claimed it in between, this one did not.
            if !db::uploads::claim(c, &key, &db::now_str())? {
                return Ok(Err(Unclaimed::Missing));
            }
            Ok(Ok(row))
        })
        .await?;
    let row = match claimed {
        Ok(row) => row,
        Err(Unclaimed::Mismatch) => {
            return Err(Error::forbidden(
                ErrorCode::UploadMismatch,
                format!("upload {id} was staged by another token or for another name@version"),
            ));
        }
        Err(Unclaimed::Missing) => return Err(no_upload(id)),
    };
    let reattached = match digests_of(&row) {
        Ok(digests) => app.store.staged_at(&row.temp_path, digests).await,
        Err(e) => Err(e),
    };
    match reattached {
        Ok(staged) => Ok(staged),
        Err(e) => {
            forget(app, id).await;
            Err(match e {
                StoreError::StagedMissing { path } => {
                    tracing::warn!(upload = id, %path, "a staged upload's object is not in the store");
                    Error::not_found(
                        ErrorCode::NoUpload,
                        format!(
                            "staged upload {id} has lost its bytes (removed from the store); upload again"
                        ),
                    )
                }
                StoreError::NotTemporary { path } => {
                    tracing::error!(
                        upload = id,
                        %path,
                        "refusing a staged upload whose row names an object that is not a temporary upload"
                    );
                    Error::Internal(format!(
                        "staged upload {id} names {path:?}, not a temporary object"
                    ))
                }
                StoreError::InvalidDigest(d) => {
                    Error::Internal(format!("staged upload {id} has an invalid digest {d:?}"))
                }
                e => e.into(),
            })
        }
    }
}

fn no_upload(id: &str) -> Error {
    Error::not_found(
        ErrorCode::NoUpload,
        format!("no staged upload {id} (expired or already used)"),
    )
}

fn digests_of(row: &db::uploads::UploadRow) -> Result<Digests, StoreError> {
    Ok(Digests {
        blake3: row.blake3.parse::<Blake3Digest>()?,
        sha256: row.sha256.parse::<Sha256Digest>()?,
        size: row.size,
    })
}

/// Deletes the row of a claimed upload whose push ended without deleting it in its
/// transaction (best effort: a row left behind is expired with the others).
pub async fn forget(app: &App, id: &str) {
    let key = id.to_owned();
    if let Err(e) = app.db.call(move |c| db::uploads::remove(c, &key)).await {
        tracing::warn!(upload = id, error = %e, "cannot delete the row of a used staged upload");
    }
}

/// Removes the staged uploads older than `store.upload_ttl` that no push claimed (rows, then
/// their temporary objects); returns how many.
pub async fn expire(app: &App) -> Result<usize, Error> {
    let ttl = chrono::Duration::from_std(app.cfg.store.upload_ttl)
        .map_err(|_| Error::Internal("store.upload_ttl is out of range".into()))?;
    let cutoff = Utc::now()
        .checked_sub_signed(ttl)
        .map(arca_keys::format_time)
        .unwrap_or_default();
    let expired = app
        .db
        .call(move |c| db::uploads::expire(c, &cutoff))
        .await?;
    for row in &expired {
        // A row deleted above names nothing any more: its object is removed here, or by the
        // sweep if this fails. A path that is not a temporary object is refused, not deleted.
        match app.store.remove_temp(&row.temp_path).await {
            Ok(()) => {}
            Err(StoreError::NotTemporary { path }) => tracing::error!(
                upload = %row.id,
                %path,
                "an expired staged upload names an object that is not a temporary upload: not deleted"
            ),
            Err(e) => tracing::warn!(
                upload = %row.id,
                error = %e,
                "cannot remove the bytes of an expired staged upload (the sweep will)"
            ),
        }
    }
    Ok(expired.len())
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
    let row = db::uploads::UploadRow {
        id: id.clone(),
        actor: actor.to_owned(),
        name: q.name.to_string(),
        version: q.version.to_string(),
        temp_path: staged.path().to_owned(),
        blake3: d.blake3.hex(),
        sha256: d.sha256.hex(),
        size: d.size,
        created_at: db::now_str(),
    };
    // The object is written; until its row is, this process's sweep keeps off it (the
    // `Staged` holds it), and another server's sees a fresh object, younger than its
    // `store.temp_max_age`. If the row cannot be written, the bytes go.
    match app.db.call(move |c| db::uploads::insert(c, &row)).await {
        Ok(()) => {
            let _ = staged.detach();
        }
        Err(e) => {
            app.store.discard(staged).await;
            return Err(e.into());
        }
    }
    Ok(UploadResponse {
        upload: id,
        blake3: d.blake3.hex(),
        sha256: d.sha256.hex(),
        size: d.size,
    })
}
