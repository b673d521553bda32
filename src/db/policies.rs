//! Policy files by SHA-256; the trust document says which digest each channel uses.

use super::Sql;
use crate::params;

use super::{DbError, now_str};

pub fn insert(c: &dyn Sql, sha256: &str, body: &str) -> Result<(), DbError> {
    c.execute("INSERT INTO policies (sha256, body, created_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING", params![sha256, body, now_str()])?;
    Ok(())
}

pub fn get(c: &dyn Sql, sha256: &str) -> Result<Option<String>, DbError> {
    c.query_opt(
        "SELECT body FROM policies WHERE sha256 = ?1",
        params![sha256],
    )?
    .as_ref()
    .map(|r| r.get(0))
    .transpose()
}
