//! API tokens. Only the SHA-256 of a token is stored, with its role, label and, for reporter
//! tokens, the agents and channels it may speak for.

use rusqlite::{Connection, OptionalExtension, params};

use super::{DbError, now_str};
use crate::auth::Scope;

/// One stored token (without its hash).
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: String,
    pub role: String,
    pub label: Option<String>,
    pub scope: Scope,
    pub created_at: String,
    /// When it was revoked (a revoked token authenticates nothing).
    pub revoked_at: Option<String>,
}

pub fn insert(
    c: &Connection,
    id: &str,
    hash: &[u8],
    role: &str,
    label: Option<&str>,
    scope: &Scope,
) -> Result<(), DbError> {
    c.execute(
        "INSERT INTO tokens (id, hash, role, created_at, label, agents, channels) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            id,
            hash,
            role,
            now_str(),
            label,
            serde_json::to_string(&scope.agents).map_err(|e| DbError::Corrupt(e.to_string()))?,
            serde_json::to_string(&scope.channels).map_err(|e| DbError::Corrupt(e.to_string()))?,
        ],
    )?;
    Ok(())
}

const COLUMNS: &str = "id, role, label, agents, channels, created_at, revoked_at";

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
    token_row_at(r, 0)
}

/// A token row whose columns start at `base`.
fn token_row_at(r: &rusqlite::Row<'_>, base: usize) -> rusqlite::Result<TokenRow> {
    let list = |i: usize| -> rusqlite::Result<Vec<String>> {
        let s: String = r.get(base + i)?;
        serde_json::from_str(&s).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(
                base + i,
                rusqlite::types::Type::Text,
                e.into(),
            )
        })
    };
    Ok(TokenRow {
        id: r.get(base)?,
        role: r.get(base + 1)?,
        label: r.get(base + 2)?,
        scope: Scope {
            agents: list(3)?,
            channels: list(4)?,
        },
        created_at: r.get(base + 5)?,
        revoked_at: r.get(base + 6)?,
    })
}

/// The stored hash and the row of token `id`, unless it was revoked.
pub fn lookup(c: &Connection, id: &str) -> Result<Option<(Vec<u8>, TokenRow)>, DbError> {
    Ok(c.query_row(
        &format!("SELECT hash, {COLUMNS} FROM tokens WHERE id = ?1 AND revoked_at IS NULL"),
        [id],
        |r| Ok((r.get(0)?, token_row_at(r, 1)?)),
    )
    .optional()?)
}

/// The label of token `id`, if it has one.
pub fn label(c: &Connection, id: &str) -> Result<Option<String>, DbError> {
    Ok(
        c.query_row("SELECT label FROM tokens WHERE id = ?1", [id], |r| {
            r.get::<_, Option<String>>(0)
        })
        .optional()?
        .flatten(),
    )
}

/// Every token, revoked ones too, oldest first.
pub fn list(c: &Connection) -> Result<Vec<TokenRow>, DbError> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM tokens ORDER BY created_at, id"
    ))?;
    let rows = st.query_map([], token_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Revokes token `id` (it authenticates nothing from now on; the row stays for the listing
/// and the audit log's labels); returns its role if it was valid.
pub fn revoke(c: &Connection, id: &str) -> Result<Option<String>, DbError> {
    let role = lookup(c, id)?.map(|(_, r)| r.role);
    c.execute(
        "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, now_str()],
    )?;
    Ok(role)
}
