//! The reads behind the plain GET endpoints: an artifact, a statement, a channel's history, a
//! policy, a trust document, the releases a key built, and the TUF repository's metadata files
//! and targets. One database call each; nothing here writes.

use super::{App, Error};
use crate::db;
use crate::model::api::{ArtifactInfo, HistoryEntry, ReliantRelease};

/// The artifact `name@version` with the digests of its statements, if it exists.
pub async fn artifact(
    app: &App,
    name: String,
    version: String,
) -> Result<Option<ArtifactInfo>, Error> {
    Ok(app
        .db
        .call(move |c| {
            let Some(a) = db::artifacts::find(c, &name, &version)? else {
                return Ok(None);
            };
            let st = db::artifacts::statement_digests(c, a.id)?;
            Ok(Some(a.info(st)?))
        })
        .await?)
}

/// A statement envelope by its SHA-256.
pub async fn statement(app: &App, sha256: String) -> Result<Option<Vec<u8>>, Error> {
    Ok(app
        .db
        .call(move |c| db::artifacts::statement(c, &sha256))
        .await?)
}

/// Up to `limit` changes of `name` in `channel` after sequence number `after`, oldest first.
pub async fn history_page(
    app: &App,
    channel: String,
    name: String,
    after: i64,
    limit: i64,
) -> Result<Vec<HistoryEntry>, Error> {
    Ok(app
        .db
        .call(move |c| db::channels::history_page(c, &channel, &name, after, limit))
        .await?)
}

/// A policy file by its SHA-256.
pub async fn policy(app: &App, sha256: String) -> Result<Option<String>, Error> {
    Ok(app.db.call(move |c| db::policies::get(c, &sha256)).await?)
}

/// The current trust document: its version and signed bytes.
pub async fn trust_document(app: &App) -> Result<Option<(u64, Vec<u8>)>, Error> {
    Ok(app.db.call(|c| db::trust::latest(c)).await?)
}

/// Trust document version `version`, as signed.
pub async fn trust_version(app: &App, version: u64) -> Result<Option<Vec<u8>>, Error> {
    Ok(app.db.call(move |c| db::trust::get(c, version)).await?)
}

/// The releases current in some channel whose build statement `keyid` signed.
pub async fn built_by(app: &App, keyid: String) -> Result<Vec<ReliantRelease>, Error> {
    let rows = app
        .db
        .call(move |c| db::channels::current_built_by(c, &keyid))
        .await?;
    Ok(rows
        .into_iter()
        .map(|(channel, name, version)| ReliantRelease {
            channel,
            name,
            version,
        })
        .collect())
}

/// The newest metadata file of `role` in `channel`, with the metadata generation read in the
/// same database call (so that the pair can be cached: see `MetaCache`).
pub async fn latest_metadata(
    app: &App,
    channel: String,
    role: crate::tuf::metadata::TufRole,
) -> Result<(u64, Option<Vec<u8>>), Error> {
    Ok(app
        .db
        .call(move |c| {
            let g = db::tuf::generation();
            Ok((g, db::tuf::latest(c, &channel, role)?.map(|m| m.body)))
        })
        .await?)
}

/// Version `version` of the metadata file of `role` in `channel`.
pub async fn metadata_version(
    app: &App,
    channel: String,
    role: crate::tuf::metadata::TufRole,
    version: u64,
) -> Result<Option<Vec<u8>>, Error> {
    Ok(app
        .db
        .call(move |c| db::tuf::get(c, &channel, role, version))
        .await?)
}

/// The blob behind a TUF target of `channel` (the artifact `name` with this SHA-256 and file
/// name that the channel holds or held): (blake3, size).
pub async fn target_blob(
    app: &App,
    channel: String,
    name: String,
    sha256: String,
    file_name: String,
) -> Result<Option<(String, u64)>, Error> {
    Ok(app
        .db
        .call(move |c| db::artifacts::channel_blob(c, &channel, &name, &sha256, &file_name))
        .await?)
}
