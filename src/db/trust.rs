//! The chain of trust documents, by version.

use rusqlite::{Connection, OptionalExtension, params};

use super::{DbError, now_str};

pub fn insert(c: &Connection, version: u64, envelope: &[u8]) -> Result<(), DbError> {
    c.execute(
        "INSERT INTO trust (version, envelope, created_at) VALUES (?1, ?2, ?3)",
        params![version as i64, envelope, now_str()],
    )?;
    Ok(())
}

/// The newest version and its envelope bytes.
pub fn latest(c: &Connection) -> Result<Option<(u64, Vec<u8>)>, DbError> {
    Ok(c.query_row(
        "SELECT version, envelope FROM trust ORDER BY version DESC LIMIT 1",
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
    )
    .optional()?)
}

pub fn get(c: &Connection, version: u64) -> Result<Option<Vec<u8>>, DbError> {
    Ok(c.query_row(
        "SELECT envelope FROM trust WHERE version = ?1",
        [version as i64],
        |r| r.get(0),
    )
    .optional()?)
}

/// The newest version number.
pub fn latest_version(c: &Connection) -> Result<Option<u64>, DbError> {
    Ok(c.query_row("SELECT MAX(version) FROM trust", [], |r| {
        r.get::<_, Option<i64>>(0)
    })?
    .map(|v| v as u64))
}
