//! Staged uploads: the bytes of the first request of a two-step push, waiting in the store's
//! `tmp/` for the push that names them. A row is what lets any server sharing the database and
//! the store commit the upload, and keeps the store's sweep away from its temporary object.
//!
//! A row is used once: a push *claims* it (`claimed_at` set, only if it was not) before it
//! commits the bytes to the store, and deletes it in its transaction (or, failing, after).
//! A claimed row still names its object, so no sweep removes the bytes while they are being
//! committed; what a crash between claim and delete leaves is expired like an unclaimed row.

use super::Sql;
use crate::params;

use super::DbError;

/// One staged upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRow {
    pub id: String,
    /// The token that staged it (`token:<id>`); only it may push it.
    pub actor: String,
    pub name: String,
    pub version: String,
    /// The temporary object in the store (`tmp/<32 hex>`, as `arca_store::Staged::detach`
    /// gives it).
    pub temp_path: String,
    /// What the staging server computed from the bytes.
    pub blake3: String,
    pub sha256: String,
    pub size: u64,
    pub created_at: String,
}

const COLUMNS: &str = "id, actor, name, version, temp_path, blake3, sha256, size, created_at";

fn row(r: &super::sql::Row) -> Result<UploadRow, DbError> {
    Ok(UploadRow {
        id: r.get(0)?,
        actor: r.get(1)?,
        name: r.get(2)?,
        version: r.get(3)?,
        temp_path: r.get(4)?,
        blake3: r.get(5)?,
        sha256: r.get(6)?,
        size: r.get(7)?,
        created_at: r.get(8)?,
    })
}

/// Records a staged upload (its object is already in the store).
pub fn insert(c: &dyn Sql, u: &UploadRow) -> Result<(), DbError> {
    c.execute(
        &format!("INSERT INTO uploads ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
        params![
            u.id,
            u.actor,
            u.name,
            u.version,
            u.temp_path,
            u.blake3,
            u.sha256,
            u.size,
            u.created_at,
        ],
    )?;
    Ok(())
}

/// The upload `id` if no push has claimed it yet.
pub fn find_unclaimed(c: &dyn Sql, id: &str) -> Result<Option<UploadRow>, DbError> {
    c.query_opt(
        &format!("SELECT {COLUMNS} FROM uploads WHERE id = ?1 AND claimed_at IS NULL"),
        params![id],
    )?
    .as_ref()
    .map(row)
    .transpose()
}

/// Claims upload `id` for one push: true if this call claimed it, false if it is gone or
/// another push claimed it first. On PostgreSQL a concurrent claim of the same row waits for
/// this one's commit and then finds `claimed_at` set (the `UPDATE` re-checks its condition on
/// the newest row), so of two claims exactly one changes the row.
pub fn claim(c: &dyn Sql, id: &str, now: &str) -> Result<bool, DbError> {
    let changed = c.execute(
        "UPDATE uploads SET claimed_at = ?2 WHERE id = ?1 AND claimed_at IS NULL",
        params![id, now],
    )?;
    Ok(changed == 1)
}

/// Deletes the row of upload `id` (its push ended). Deferred: on PostgreSQL in the push's
/// transaction it goes with the next statement.
pub fn remove(c: &dyn Sql, id: &str) -> Result<(), DbError> {
    c.defer("DELETE FROM uploads WHERE id = ?1", params![id])
}

/// The temporary object of every row, claimed or not: what the sweep must keep.
pub fn temp_paths(c: &dyn Sql) -> Result<Vec<String>, DbError> {
    c.query("SELECT temp_path FROM uploads", params![])?
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Deletes the uploads staged before `cutoff` that no push claimed since `cutoff` (a claim
/// left by a crash ages like a row), and returns them: the caller removes their objects.
pub fn expire(c: &dyn Sql, cutoff: &str) -> Result<Vec<UploadRow>, DbError> {
    c.query(
        &format!(
            "DELETE FROM uploads WHERE created_at < ?1 \
             AND (claimed_at IS NULL OR claimed_at < ?1) RETURNING {COLUMNS}"
        ),
        params![cutoff],
    )?
    .iter()
    .map(row)
    .collect()
}
