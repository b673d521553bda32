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

/// Bumped by every metadata write, and again after every PostgreSQL commit. The metadata cache
/// (`service::reads`) reads it, then a role's newest body, and keeps the pair: the cached body
/// is the newest for as long as the generation has not moved.
///
/// On SQLite every database call holds the one connection, so the pair read in one call always
/// matches. On PostgreSQL several connections run at once: a reader may read the generation
/// already bumped by a writer's insert and then, before that writer commits, the previous
/// body. The bump after the commit makes such a pair stale at once.
static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The metadata write generation (see `GENERATION` in this module).
pub fn generation() -> u64 {
    GENERATION.load(std::sync::atomic::Ordering::Acquire)
}

/// After a PostgreSQL commit (see `GENERATION` in this module).
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
    c.publishes_metadata()?;
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

/// What signing new versions of a channel's online roles starts from: the number and expiry
/// of each role's newest version (not its body), the newest signing time on record, and the
/// id of the online key the database names for the channel now.
#[derive(Debug, Default)]
pub struct Heads {
    pub targets: Option<(u64, String)>,
    pub snapshot: Option<(u64, String)>,
    pub timestamp: Option<(u64, String)>,
    pub last_signed_at: Option<String>,
    /// The key id of the channel's `online/CHANNEL` row (`db::keys`): none in a database
    /// without sealed keys.
    pub online_key_id: Option<String>,
}

impl Heads {
    pub fn of(&self, role: TufRole) -> Option<&(u64, String)> {
        match role {
            TufRole::Targets => self.targets.as_ref(),
            TufRole::Snapshot => self.snapshot.as_ref(),
            TufRole::Timestamp => self.timestamp.as_ref(),
            TufRole::Root => None,
        }
    }
}

/// [`Heads`] of a channel (`?1`), in one statement: each head by the primary key, newest first
/// (one row read each), the newest signing time by its index, so that the cost does not grow
/// with the channel's history, and the id of the channel's online key by its row's name (so
/// that a server learns in the same round trip whether another one rotated the key).
pub const HEADS: &str = "SELECT 'targets', version, expires FROM (SELECT version, expires \
       FROM tuf_metadata WHERE channel = ?1 AND role = 'targets' ORDER BY version DESC LIMIT 1) t \
     UNION ALL SELECT 'snapshot', version, expires FROM (SELECT version, expires \
       FROM tuf_metadata WHERE channel = ?1 AND role = 'snapshot' ORDER BY version DESC LIMIT 1) s \
     UNION ALL SELECT 'timestamp', version, expires FROM (SELECT version, expires \
       FROM tuf_metadata WHERE channel = ?1 AND role = 'timestamp' ORDER BY version DESC LIMIT 1) m \
     UNION ALL SELECT NULL, NULL, MAX(signed_at) FROM tuf_metadata \
     UNION ALL SELECT 'key', NULL, key_id FROM server_keys WHERE name = 'online/' || ?1";

/// [`Heads`] of `channel`.
pub fn heads(c: &dyn Sql, channel: &str) -> Result<Heads, DbError> {
    heads_from(&c.query(HEADS, params![channel])?)
}

/// [`Heads`] from the rows of [`HEADS`].
pub fn heads_from(rows: &[super::sql::Row]) -> Result<Heads, DbError> {
    let mut heads = Heads::default();
    for r in rows {
        let head =
            || -> Result<Option<(u64, String)>, DbError> { Ok(Some((r.get(1)?, r.get(2)?))) };
        match r.get::<Option<String>>(0)?.as_deref() {
            None => heads.last_signed_at = r.get(2)?,
            Some("key") => heads.online_key_id = r.get(2)?,
            Some("targets") => heads.targets = head()?,
            Some("snapshot") => heads.snapshot = head()?,
            Some("timestamp") => heads.timestamp = head()?,
            Some(other) => return Err(DbError::Corrupt(format!("metadata role {other}"))),
        }
    }
    Ok(heads)
}

/// A metadata file to store.
pub struct NewFile {
    pub role: TufRole,
    pub version: u64,
    pub body: Vec<u8>,
    pub expires: String,
}

/// Stores several metadata files of `channel` in one statement, stamped as [`insert`] does.
pub fn insert_all(c: &dyn Sql, channel: &str, files: &[NewFile]) -> Result<(), DbError> {
    if files.is_empty() {
        return Ok(());
    }
    c.publishes_metadata()?;
    let signed_at = arca_keys::format_time(chrono::Utc::now());
    let mut sql = String::from(
        "INSERT INTO tuf_metadata (channel, role, version, body, expires, signed_at) VALUES ",
    );
    let versions: Vec<i64> = files.iter().map(|f| f.version as i64).collect();
    let roles: Vec<&str> = files.iter().map(|f| f.role.as_str()).collect();
    let mut params: Vec<&dyn super::sql::ToParam> = vec![&channel, &signed_at];
    for (i, f) in files.iter().enumerate() {
        let n = 3 + 4 * i;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(?1, ?{n}, ?{}, ?{}, ?{}, ?2)",
            n + 1,
            n + 2,
            n + 3
        ));
        params.extend([
            &roles[i] as &dyn super::sql::ToParam,
            &versions[i],
            &f.body,
            &f.expires,
        ]);
    }
    // Nobody reads its answer: on PostgreSQL it goes with the next statement.
    c.defer(&sql, &params)?;
    GENERATION.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    Ok(())
}

/// The newest version of a role, and its body unless that is the version the caller knows.
pub type Newest = (u64, Option<Vec<u8>>);

/// The newest version of `role` in `channel` and its body, unless the version is `known` (then
/// `None` instead of the body): one primary-key read, and the body only when it changed.
pub fn latest_unless(
    c: &dyn Sql,
    channel: &str,
    role: TufRole,
    known: Option<u64>,
) -> Result<Option<Newest>, DbError> {
    let known = known.map_or(-1, |v| v as i64);
    c.query_opt(
        "SELECT version, CASE WHEN version = ?3 THEN NULL ELSE body END FROM tuf_metadata \
         WHERE channel = ?1 AND role = ?2 ORDER BY version DESC LIMIT 1",
        params![channel, role.as_str(), known],
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
    c.defer(
        "DELETE FROM tuf_entries WHERE channel = ?1 AND name = ?2",
        params![channel, name],
    )?;
    for (path, body) in entries {
        c.defer(
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

/// The stored entries of a channel (`?1`), in path order.
pub const ENTRIES: &str = "SELECT path, entry FROM tuf_entries WHERE channel = ?1 ORDER BY path";

/// Calls `f(path, entry)` for every stored entry of `channel`, in path order.
pub fn for_each_entry(
    c: &dyn Sql,
    channel: &str,
    f: impl FnMut(&str, &[u8]),
) -> Result<usize, DbError> {
    for_each_entry_in(&c.query(ENTRIES, params![channel])?, channel, f)
}

/// [`for_each_entry`] over the rows of [`ENTRIES`].
pub fn for_each_entry_in(
    rows: &[super::sql::Row],
    channel: &str,
    mut f: impl FnMut(&str, &[u8]),
) -> Result<usize, DbError> {
    for r in rows {
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
