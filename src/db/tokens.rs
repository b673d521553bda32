//! API tokens. Only the SHA-256 of a token is stored.

use rusqlite::{Connection, OptionalExtension, params};

use super::{DbError, now_str};

pub fn insert(c: &Connection, id: &str, hash: &[u8], role: &str) -> Result<(), DbError> {
    c.execute(
        "INSERT INTO tokens (id, hash, role, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![id, hash, role, now_str()],
    )?;
    Ok(())
}

/// The stored hash and role of token `id`.
pub fn lookup(c: &Connection, id: &str) -> Result<Option<(Vec<u8>, String)>, DbError> {
    Ok(
        c.query_row("SELECT hash, role FROM tokens WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?,
    )
}

/// Removes token `id`; returns its role if it existed.
pub fn delete(c: &Connection, id: &str) -> Result<Option<String>, DbError> {
    let role = lookup(c, id)?.map(|(_, r)| r);
    c.execute("DELETE FROM tokens WHERE id = ?1", [id])?;
    Ok(role)
}
