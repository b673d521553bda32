//! Published TUF metadata files, by channel, role and version. Files are immutable once written.

use super::Sql;
use crate::params;

use super::DbError;
use crate::tuf::metadata::TufRole;

/// One stored metadata file.
#[derive(Debug, Clone)]
pub struct MetaRow {
    pub version: u64,
    pub body: Vec<u8>,
    pub expires: String,
}

/// Bumped by every metadata write. Every database call holds the one connection, so a reader
/// that reads this counter and a role's newest body in one call gets a matching pair: a cache
/// entry whose generation is still current is still the newest body.
static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The metadata write generation. Every database call holds the one connection, so a reader
/// that reads it and a role's newest body in one call gets a matching pair.
pub fn generation() -> u64 {
    GENERATION.load(std::sync::atomic::Ordering::Acquire)
}

/// On PostgreSQL several connections run at once: a reader may read the bumped generation and
/// then, before the writer commits, the previous body, and cache that pair. A bump after every
/// commit makes such an entry stale at once.
pub(super) fn bump_generation() {
    GENERATION.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
}

/// Stores a metadata file, stamped with the time it is signed at (this process's wall clock).
pub fn insert(
    c: &dyn Sql,
    channel: &str,
    role: TufRole,
    version: u64,
    body: &[u8],
    expires: &str,
) -> Result<(), DbError> {
    let signed_at = arca_keys::format_time(chrono::Utc::now());
    c.execute(
        "INSERT INTO tuf_metadata (channel, role, version, body, expires, signed_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            channel,
            role.as_str(),
            version as i64,
            body,
            expires,
            signed_at
        ],
    )?;
    GENERATION.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    Ok(())
}

/// The newest signing time on record (any channel, any role).
pub fn last_signed_at(c: &dyn Sql) -> Result<Option<String>, DbError> {
    c.query_one("SELECT MAX(signed_at) FROM tuf_metadata", params![])?
        .get(0)
}

/// The newest version of a role and its expiry, without its body.
pub fn latest_head(
    c: &dyn Sql,
    channel: &str,
    role: TufRole,
) -> Result<Option<(u64, String)>, DbError> {
    c.query_opt(
        "SELECT version, expires FROM tuf_metadata WHERE channel = ?1 AND role = ?2 \
         ORDER BY version DESC LIMIT 1",
        params![channel, role.as_str()],
    )?
    .map(|r| Ok((r.get(0)?, r.get(1)?)))
    .transpose()
}

pub fn latest(c: &dyn Sql, channel: &str, role: TufRole) -> Result<Option<MetaRow>, DbError> {
    c.query_opt(
        "SELECT version, body, expires FROM tuf_metadata WHERE channel = ?1 AND role = ?2 \
             ORDER BY version DESC LIMIT 1",
        params![channel, role.as_str()],
    )?
    .as_ref()
    .map(|r| {
        Ok::<_, DbError>(MetaRow {
            version: r.get::<i64>(0)? as u64,
            body: r.get(1)?,
            expires: r.get(2)?,
        })
    })
    .transpose()
}

pub fn get(
    c: &dyn Sql,
    channel: &str,
    role: TufRole,
    version: u64,
) -> Result<Option<Vec<u8>>, DbError> {
    c.query_opt(
        "SELECT body FROM tuf_metadata WHERE channel = ?1 AND role = ?2 AND version = ?3",
        params![channel, role.as_str(), version as i64],
    )?
    .as_ref()
    .map(|r| r.get(0))
    .transpose()
}

/// The newest version of a role (without reading its body).
pub fn latest_version(c: &dyn Sql, channel: &str, role: TufRole) -> Result<Option<u64>, DbError> {
    c.query_one(
        "SELECT MAX(version) FROM tuf_metadata WHERE channel = ?1 AND role = ?2",
        params![channel, role.as_str()],
    )?
    .get(0)
}

/// Replaces the stored target entries of `name` in `channel` (none removes them). A name has
/// one entry, or two while a rollout keeps its previous release listed.
pub fn set_entries(
    c: &dyn Sql,
    channel: &str,
    name: &str,
    entries: &[(String, Vec<u8>)],
) -> Result<(), DbError> {
    c.execute(
        "DELETE FROM tuf_entries WHERE channel = ?1 AND name = ?2",
        params![channel, name],
    )?;
    for (path, body) in entries {
        c.execute(
            "INSERT INTO tuf_entries (channel, path, name, entry) VALUES (?1, ?2, ?3, ?4)",
            params![channel, path, name, body],
        )?;
    }
    Ok(())
}

/// Replaces the stored target entry of `name` in `channel` (or removes it with `None`).
pub fn set_entry(
    c: &dyn Sql,
    channel: &str,
    name: &str,
    entry: Option<(&str, &[u8])>,
) -> Result<(), DbError> {
    let entries: Vec<(String, Vec<u8>)> = entry
        .map(|(p, b)| (p.to_owned(), b.to_vec()))
        .into_iter()
        .collect();
    set_entries(c, channel, name, &entries)
}

/// Removes every stored entry of `channel`.
pub fn clear_entries(c: &dyn Sql, channel: &str) -> Result<(), DbError> {
    c.execute(
        "DELETE FROM tuf_entries WHERE channel = ?1",
        params![channel],
    )?;
    Ok(())
}

/// Calls `f(path, entry)` for every stored entry of `channel`, in path order.
pub fn for_each_entry(
    c: &dyn Sql,
    channel: &str,
    mut f: impl FnMut(&str, &[u8]),
) -> Result<usize, DbError> {
    let rows = c.query(
        "SELECT path, entry FROM tuf_entries WHERE channel = ?1 ORDER BY path",
        params![channel],
    )?;
    for r in &rows {
        match r.values() {
            [
                super::sql::Value::Text(path),
                super::sql::Value::Blob(entry),
            ] => f(path, entry),
            _ => return Err(DbError::Corrupt(format!("a target entry of {channel}"))),
        }
    }
    Ok(rows.len())
}

pub fn entry_count(c: &dyn Sql, channel: &str) -> Result<i64, DbError> {
    c.query_one(
        "SELECT COUNT(*) FROM tuf_entries WHERE channel = ?1",
        params![channel],
    )?
    .get(0)
}
