//! The chain of trust documents, by version.

use super::Sql;
use crate::params;

use super::{DbError, now_str};

pub fn insert(c: &dyn Sql, version: u64, envelope: &[u8]) -> Result<(), DbError> {
    c.execute(
        "INSERT INTO trust (version, envelope, created_at) VALUES (?1, ?2, ?3)",
        params![version as i64, envelope, now_str()],
    )?;
    Ok(())
}

/// The newest version and its envelope bytes.
pub fn latest(c: &dyn Sql) -> Result<Option<(u64, Vec<u8>)>, DbError> {
    latest_from(&c.query(LATEST, params![])?)
}

/// [`latest`] as a query.
pub const LATEST: &str = "SELECT version, envelope FROM trust ORDER BY version DESC LIMIT 1";

/// [`latest`] from the rows of [`LATEST`].
pub fn latest_from(rows: &[super::sql::Row]) -> Result<Option<(u64, Vec<u8>)>, DbError> {
    rows.first()
        .map(|r| Ok::<_, DbError>((r.get::<i64>(0)? as u64, r.get(1)?)))
        .transpose()
}

pub fn get(c: &dyn Sql, version: u64) -> Result<Option<Vec<u8>>, DbError> {
    c.query_opt(
        "SELECT envelope FROM trust WHERE version = ?1",
        params![version as i64],
    )?
    .as_ref()
    .map(|r| r.get(0))
    .transpose()
}

/// The newest version number.
pub fn latest_version(c: &dyn Sql) -> Result<Option<u64>, DbError> {
    c.query_one("SELECT MAX(version) FROM trust", params![])?
        .get(0)
}
