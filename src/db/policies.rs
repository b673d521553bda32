//! Policy files by SHA-256; the trust document says which digest each channel uses.

use rusqlite::{Connection, OptionalExtension, params};

use super::{DbError, now_str};

pub fn insert(c: &Connection, sha256: &str, body: &str) -> Result<(), DbError> {
    c.execute(
        "INSERT OR IGNORE INTO policies (sha256, body, created_at) VALUES (?1, ?2, ?3)",
        params![sha256, body, now_str()],
    )?;
    Ok(())
}

pub fn get(c: &Connection, sha256: &str) -> Result<Option<String>, DbError> {
    Ok(c.query_row(
        "SELECT body FROM policies WHERE sha256 = ?1",
        [sha256],
        |r| r.get(0),
    )
    .optional()?)
}
