//! The server's own keys, sealed with the master key (`arca_keys::sealed`): one row per key,
//! named `audit`, `online/CHANNEL` (the key the channel's newest root names) or
//! `online-next/CHANNEL` (a rotation's pending key).

use super::{DbError, Sql, now_str};
use crate::params;

/// The row of the audit key.
pub const AUDIT: &str = "audit";

/// The row of `channel`'s online key.
pub fn online(channel: &str) -> String {
    format!("online/{channel}")
}

/// The row of `channel`'s pending next online key.
pub fn online_next(channel: &str) -> String {
    format!("online-next/{channel}")
}

/// One sealed key as stored.
#[derive(Debug, Clone)]
pub struct SealedRow {
    pub name: String,
    pub key_id: String,
    /// nonce || ciphertext || tag.
    pub sealed: Vec<u8>,
}

fn row(r: &super::sql::Row) -> Result<SealedRow, DbError> {
    Ok(SealedRow {
        name: r.get(0)?,
        key_id: r.get(1)?,
        sealed: r.get(2)?,
    })
}

/// Every sealed key, by name.
pub fn all(c: &dyn Sql) -> Result<Vec<SealedRow>, DbError> {
    c.query(
        "SELECT name, key_id, sealed FROM server_keys ORDER BY name",
        params![],
    )?
    .iter()
    .map(row)
    .collect()
}

/// The sealed key of the row `name`.
pub fn get(c: &dyn Sql, name: &str) -> Result<Option<SealedRow>, DbError> {
    c.query_opt(
        "SELECT name, key_id, sealed FROM server_keys WHERE name = ?1",
        params![name],
    )?
    .as_ref()
    .map(row)
    .transpose()
}

/// Stores (or replaces) the row `name`.
pub fn put(c: &dyn Sql, name: &str, key_id: &str, sealed: &[u8]) -> Result<(), DbError> {
    c.execute(
        "INSERT INTO server_keys (name, key_id, sealed, created) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (name) DO UPDATE SET key_id = excluded.key_id, sealed = excluded.sealed, \
         created = excluded.created",
        params![name, key_id, sealed, now_str()],
    )?;
    Ok(())
}

/// Removes the row `name` (if any).
pub fn delete(c: &dyn Sql, name: &str) -> Result<(), DbError> {
    c.execute("DELETE FROM server_keys WHERE name = ?1", params![name])?;
    Ok(())
}

/// How many sealed keys the database holds.
pub fn count(c: &dyn Sql) -> Result<i64, DbError> {
    c.value("SELECT COUNT(*) FROM server_keys", params![])
}
