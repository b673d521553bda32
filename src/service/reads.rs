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

/// The newest metadata file of `role` in `channel`, from this server's memory while that is
/// still the newest, else from the database (and then kept):
///
/// - On SQLite this server is the only one on its database (the home lock) and every metadata
///   write bumps the generation, so a cached file whose generation has not moved is the newest
///   with no read at all.
/// - On PostgreSQL other servers write too: each call is answered by a read of the newest
///   version of the role by the primary key (channel, role, version) on the database the server
///   writes to (and of the body only when it is not the cached one) that started after the
///   call did, its own or one it shares with the polls queued beside it
///   ([`super::Revalidation`]). So no server answers a file older than one any server had
///   committed when the request came: a client that alternates between servers never sees a
///   version go back (docs/architecture.md, "Concurrency", item 5).
pub async fn latest_cached(
    app: &App,
    channel: String,
    role: crate::tuf::metadata::TufRole,
) -> Result<Option<super::CachedMeta>, Error> {
    let postgres = app.db.engine() == db::Engine::Postgres;
    let cached = app.meta_cache.peek(&channel, role);
    if !postgres
        && let Some(m) = cached
            .as_ref()
            .filter(|m| m.generation == db::tuf::generation())
    {
        return Ok(Some(m.clone()));
    }
    // On PostgreSQL polls of a channel of the pipeline share their reads (an unknown
    // channel's name would grow the map: it is read alone, and found in no row).
    if postgres && app.cfg.pipeline.iter().any(|c| c.as_str() == channel) {
        // Read under the lease this server holds now: nothing newer can have committed.
        if let Some(m) = cached
            .as_ref()
            .filter(|m| m.lease.is_some() && m.lease == app.lease.current())
        {
            return Ok(Some(m.clone()));
        }
        let check = app.meta_cache.revalidation(&channel, role);
        return check
            .fresh(|| {
                // What the cache holds now: the read before this one may have replaced it.
                let cached = app.meta_cache.peek(&channel, role);
                read_newest(app, channel, role, cached)
            })
            .await;
    }
    read_newest(app, channel, role, cached).await
}

/// Reads the newest version of (channel, role), and its body unless it is `cached`'s; keeps
/// it in the cache.
async fn read_newest(
    app: &App,
    channel: String,
    role: crate::tuf::metadata::TufRole,
    cached: Option<super::CachedMeta>,
) -> Result<Option<super::CachedMeta>, Error> {
    let known = cached.as_ref().map(|m| m.version);
    // Taken before the read is sent: if this lease is still held when a poll looks, nothing
    // has committed since the read.
    let lease = app.lease.current();
    let ch = channel.clone();
    let (generation, newest) = app
        .db
        .call(move |c| {
            let g = db::tuf::generation();
            Ok((g, db::tuf::latest_unless(c, &ch, role, known)?))
        })
        .await?;
    Ok(match (newest, cached) {
        (None, _) => None,
        // Still the cached version: kept, under the generation just read.
        (Some((version, None)), Some(m)) if m.version == version => Some(
            app.meta_cache
                .put(&channel, role, generation, lease, version, m.body),
        ),
        (Some((version, Some(body))), _) => {
            Some(
                app.meta_cache
                    .put(&channel, role, generation, lease, version, body.into()),
            )
        }
        (Some((_, None)), _) => return Err(Error::Internal(format!("{channel} {role}: no body"))),
    })
}

/// The newest metadata file of `role` in `channel`, read from the database (what a server with
/// `[tuf] memory_cache = false` serves).
pub async fn latest_metadata(
    app: &App,
    channel: String,
    role: crate::tuf::metadata::TufRole,
) -> Result<Option<Vec<u8>>, Error> {
    Ok(app
        .db
        .call(move |c| Ok(db::tuf::latest(c, &channel, role)?.map(|m| m.body)))
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
