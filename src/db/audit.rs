//! The audit log table: append-only, each entry chained to the previous by hash (the rules
//! are in `crate::audit`), and the signed checkpoints.

use rusqlite::{Connection, OptionalExtension, params};

use super::{DbError, now_str};
use crate::audit::{Checkpoint, Entry as Stored, GENESIS_HASH, entry_hash};

/// An audit entry to append.
pub struct Entry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub subject: &'a str,
    pub outcome: &'a str,
    pub details: serde_json::Value,
}

/// The number of entries and the newest hash.
pub fn head(c: &Connection) -> Result<(i64, String), DbError> {
    Ok(c.query_row(
        "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?
    .unwrap_or((0, GENESIS_HASH.to_owned())))
}

/// Appends `e` to the chain; returns its sequence number.
pub fn append(c: &Connection, e: &Entry<'_>) -> Result<i64, DbError> {
    let (prev_seq, prev_hash) = head(c)?;
    let seq = prev_seq + 1;
    let at = now_str();
    // A token's label travels in the details, so the log says whose token acted; the actor
    // stays the token id, which never changes.
    let mut details = e.details.clone();
    if let Some(id) = e.actor.strip_prefix("token:")
        && let Some(obj) = details.as_object_mut()
        && !obj.contains_key("token_label")
        && let Some(label) = super::tokens::label(c, id)?
    {
        obj.insert("token_label".into(), serde_json::Value::String(label));
    }
    let details = arca_keys::canonical::to_canonical_json(&details)
        .map_err(|err| DbError::Corrupt(err.to_string()))?;
    let details = String::from_utf8(details).expect("JSON is UTF-8");
    let hash = entry_hash(
        seq, &at, e.actor, e.action, e.subject, e.outcome, &details, &prev_hash,
    );
    c.execute(
        "INSERT INTO audit (seq, at, actor, action, subject, outcome, details, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            seq, at, e.actor, e.action, e.subject, e.outcome, details, prev_hash, hash
        ],
    )?;
    Ok(seq)
}

/// Up to `limit` entries after sequence number `after`, in order.
pub fn entries(c: &Connection, after: i64, limit: i64) -> Result<Vec<Stored>, DbError> {
    let mut st = c.prepare_cached(
        "SELECT seq, at, actor, action, subject, outcome, details, prev_hash, hash FROM audit \
         WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = st.query_map(params![after, limit], |r| {
        Ok(Stored {
            seq: r.get(0)?,
            at: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            subject: r.get(4)?,
            outcome: r.get(5)?,
            details: r.get(6)?,
            prev_hash: r.get(7)?,
            hash: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn insert_checkpoint(c: &Connection, cp: &Checkpoint) -> Result<(), DbError> {
    c.execute(
        "INSERT OR IGNORE INTO audit_checkpoints (size, head, at, keyid, sig) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![cp.size, cp.head, cp.at, cp.keyid, cp.sig],
    )?;
    Ok(())
}

pub fn checkpoints(c: &Connection) -> Result<Vec<Checkpoint>, DbError> {
    let mut st =
        c.prepare_cached("SELECT size, head, at, keyid, sig FROM audit_checkpoints ORDER BY size")?;
    let rows = st.query_map([], |r| {
        Ok(Checkpoint {
            size: r.get(0)?,
            head: r.get(1)?,
            at: r.get(2)?,
            keyid: r.get(3)?,
            sig: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The newest checkpoint's size (0 if none).
pub fn last_checkpoint_size(c: &Connection) -> Result<i64, DbError> {
    Ok(c.query_row(
        "SELECT COALESCE(MAX(size), 0) FROM audit_checkpoints",
        [],
        |r| r.get(0),
    )?)
}
