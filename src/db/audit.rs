//! The audit log: an append-only hash chain. Each entry's hash covers its fields and the
//! previous entry's hash, so editing, removing or reordering an entry breaks the chain.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{DbError, now_str};

/// The hash of the (absent) entry before the first.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What an entry's hash covers.
#[derive(Serialize)]
struct Hashed<'a> {
    seq: i64,
    at: &'a str,
    actor: &'a str,
    action: &'a str,
    subject: &'a str,
    outcome: &'a str,
    details: &'a str,
    prev_hash: &'a str,
}

/// An audit entry to append.
pub struct Entry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub subject: &'a str,
    pub outcome: &'a str,
    pub details: serde_json::Value,
}

/// Appends `e` to the chain; returns its sequence number.
pub fn append(c: &Connection, e: &Entry<'_>) -> Result<i64, DbError> {
    let (prev_seq, prev_hash): (i64, String) = c
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .unwrap_or((0, GENESIS_HASH.to_owned()));
    let seq = prev_seq + 1;
    let at = now_str();
    let details = arca_keys::canonical::to_canonical_json(&e.details)
        .map_err(|err| DbError::Corrupt(err.to_string()))?;
    let details = String::from_utf8(details).expect("JSON is UTF-8");
    let hash = entry_hash(&Hashed {
        seq,
        at: &at,
        actor: e.actor,
        action: e.action,
        subject: e.subject,
        outcome: e.outcome,
        details: &details,
        prev_hash: &prev_hash,
    });
    c.execute(
        "INSERT INTO audit (seq, at, actor, action, subject, outcome, details, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            seq, at, e.actor, e.action, e.subject, e.outcome, details, prev_hash, hash
        ],
    )?;
    Ok(seq)
}

fn entry_hash(h: &Hashed<'_>) -> String {
    let bytes = arca_keys::canonical::to_canonical_json(h).expect("strings encode");
    hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes))
}
