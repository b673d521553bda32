//! Policy files by SHA-256; the trust document says which digest each channel uses.

use super::Sql;
use crate::params;
use std::collections::BTreeMap;

use super::{DbError, now_str};

pub fn insert(c: &dyn Sql, sha256: &str, body: &str) -> Result<(), DbError> {
    c.execute("INSERT INTO policies (sha256, body, created_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING", params![sha256, body, now_str()])?;
    Ok(())
}

/// Policy bodies read so far, by digest. A body is the content its digest names, so one read
/// and checked against its digest is that digest's body for good: a promotion reads the
/// policy of its channel, and the auto-promotion check every auto channel's, without a round
/// trip each.
static BODIES: std::sync::Mutex<BTreeMap<String, String>> = std::sync::Mutex::new(BTreeMap::new());

/// Bodies kept at most (a trust document pins one policy per channel; older ones age out).
const KEPT: usize = 256;

pub fn get(c: &dyn Sql, sha256: &str) -> Result<Option<String>, DbError> {
    let bodies = || BODIES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(body) = bodies().get(sha256) {
        return Ok(Some(body.clone()));
    }
    let body: Option<String> = c
        .query_opt(
            "SELECT body FROM policies WHERE sha256 = ?1",
            params![sha256],
        )?
        .as_ref()
        .map(|r| r.get(0))
        .transpose()?;
    if let Some(b) = &body
        && crate::tuf::metadata::sha256_hex(b.as_bytes()) == sha256
    {
        let mut kept = bodies();
        if kept.len() >= KEPT {
            kept.clear();
        }
        kept.insert(sha256.to_owned(), b.clone());
    }
    Ok(body)
}
