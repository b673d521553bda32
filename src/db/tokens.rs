//! API tokens. Only the SHA-256 of a token is stored, with its role, label, scope (agents,
//! channels, name globs) and expiry; when it was last used is kept beside it (`token_used`).

use super::Sql;
use crate::params;
use std::collections::BTreeMap;

use super::{DbError, now_str};
use crate::auth::{Scope, TokenRole};

/// One stored token (without its hash).
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: String,
    pub role: TokenRole,
    pub label: Option<String>,
    pub scope: Scope,
    pub created_at: String,
    /// When it was revoked (a revoked token authenticates nothing).
    pub revoked_at: Option<String>,
    /// When it expires (an expired token authenticates nothing); none: never.
    pub expires_at: Option<String>,
    /// When it last authenticated a request (recorded at most once a minute).
    pub last_used_at: Option<String>,
}

pub fn insert(
    c: &dyn Sql,
    id: &str,
    hash: &[u8],
    role: TokenRole,
    label: Option<&str>,
    scope: &Scope,
    expires_at: Option<&str>,
) -> Result<(), DbError> {
    let json =
        |v: &Vec<String>| serde_json::to_string(v).map_err(|e| DbError::Corrupt(e.to_string()));
    c.execute(
        "INSERT INTO tokens (id, hash, role, created_at, label, agents, channels, names, \
         expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            id,
            hash,
            role.as_str(),
            now_str(),
            label,
            json(&scope.agents)?,
            json(&scope.channels)?,
            json(&scope.names)?,
            expires_at,
        ],
    )?;
    Ok(())
}

const COLUMNS: &str = "tokens.id, role, label, agents, channels, created_at, revoked_at, names, \
                       expires_at, token_used.at";
const FROM: &str = "tokens LEFT JOIN token_used ON token_used.id = tokens.id";

fn token_row(r: &super::sql::Row) -> Result<TokenRow, DbError> {
    token_row_at(r, 0)
}

/// A token row whose columns start at `base`.
fn token_row_at(r: &super::sql::Row, base: usize) -> Result<TokenRow, DbError> {
    let list = |i: usize| -> Result<Vec<String>, DbError> {
        let s: String = r.get(base + i)?;
        serde_json::from_str(&s)
            .map_err(|e| DbError::Corrupt(format!("token column {}: {e}", base + i)))
    };
    Ok(TokenRow {
        id: r.get(base)?,
        role: {
            let role: String = r.get(base + 1)?;
            role.parse()
                .map_err(|()| DbError::Corrupt(format!("token role {role:?}")))?
        },
        label: r.get(base + 2)?,
        scope: Scope {
            agents: list(3)?,
            channels: list(4)?,
            names: list(7)?,
        },
        created_at: r.get(base + 5)?,
        revoked_at: r.get(base + 6)?,
        expires_at: r.get(base + 8)?,
        last_used_at: r.get(base + 9)?,
    })
}

/// The stored hash and the row of token `id`, unless it was revoked.
pub fn lookup(c: &dyn Sql, id: &str) -> Result<Option<(Vec<u8>, TokenRow)>, DbError> {
    c.query_opt(
        &format!("SELECT hash, {COLUMNS} FROM {FROM} WHERE tokens.id = ?1 AND revoked_at IS NULL"),
        params![id],
    )?
    .as_ref()
    .map(|r| Ok::<_, DbError>((r.get(0)?, token_row_at(r, 1)?)))
    .transpose()
}

/// Labels read so far, by token id. A token's label is set when it is made and never changes,
/// and ids are random and never reused, so the audit entry of each action of a token need not
/// read it again.
static LABELS: std::sync::Mutex<BTreeMap<String, Option<String>>> =
    std::sync::Mutex::new(BTreeMap::new());

/// Labels kept at most.
const KEPT: usize = 4096;

/// The label of token `id`, if it has one.
pub fn label(c: &dyn Sql, id: &str) -> Result<Option<String>, DbError> {
    let labels = || LABELS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(label) = labels().get(id) {
        return Ok(label.clone());
    }
    let Some(row) = c.query_opt("SELECT label FROM tokens WHERE id = ?1", params![id])? else {
        return Ok(None);
    };
    let label: Option<String> = row.get(0)?;
    let mut kept = labels();
    if kept.len() >= KEPT {
        kept.clear();
    }
    kept.insert(id.to_owned(), label.clone());
    Ok(label)
}

/// Every token, revoked ones too, oldest first.
pub fn list(c: &dyn Sql) -> Result<Vec<TokenRow>, DbError> {
    c.query(
        &format!("SELECT {COLUMNS} FROM {FROM} ORDER BY created_at, tokens.id"),
        params![],
    )?
    .iter()
    .map(token_row)
    .collect()
}

/// Revokes token `id` (it authenticates nothing from now on; the row stays for the listing
/// and the audit log's labels); returns its role if it was valid.
pub fn revoke(c: &dyn Sql, id: &str) -> Result<Option<String>, DbError> {
    let role = lookup(c, id)?.map(|(_, r)| r.role.to_string());
    c.execute(
        "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, now_str()],
    )?;
    Ok(role)
}

/// Records that token `id` authenticated a request now.
pub fn touch(c: &dyn Sql, id: &str) -> Result<(), DbError> {
    c.execute(
        "INSERT INTO token_used (id, at) VALUES (?1, ?2) \
         ON CONFLICT(id) DO UPDATE SET at = excluded.at",
        params![id, now_str()],
    )?;
    Ok(())
}
