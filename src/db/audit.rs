//! The audit log table: append-only, each entry chained to the previous by hash (the rules
//! are in `crate::audit`), and the signed checkpoints.

use super::Sql;
use crate::params;

use super::DbError;
use crate::audit::{AuditAction, Checkpoint, Entry as Stored, GENESIS_HASH, entry_hash};

/// An audit entry to append.
pub struct Entry<'a> {
    pub actor: &'a str,
    pub action: AuditAction,
    pub subject: &'a str,
    pub outcome: &'a str,
    pub details: serde_json::Value,
}

/// The number of entries and the newest hash.
pub fn head(c: &dyn Sql) -> Result<(i64, String), DbError> {
    Ok(c.query_opt(
        "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
        params![],
    )?
    .as_ref()
    .map(|r| Ok::<_, DbError>((r.get(0)?, r.get(1)?)))
    .transpose()?
    .unwrap_or((0, GENESIS_HASH.to_owned())))
}

/// Appends `e` to the chain; returns its sequence number.
pub fn append(c: &dyn Sql, e: &Entry<'_>) -> Result<i64, DbError> {
    // The head last (db::locks), and the time after it: times follow the chain's order.
    super::locks::audit_head(c)?;
    let (prev_seq, prev_hash, at) = match c.engine() {
        // The head and the database's clock in one statement, sent with the lock (ahead of
        // it, so read after it).
        super::Engine::Postgres => {
            let r = c.query_one(
                "SELECT (SELECT seq FROM audit ORDER BY seq DESC LIMIT 1), \
                 (SELECT hash FROM audit ORDER BY seq DESC LIMIT 1), \
                 to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
                params![],
            )?;
            (
                r.get::<Option<i64>>(0)?.unwrap_or(0),
                r.get::<Option<String>>(1)?
                    .unwrap_or_else(|| GENESIS_HASH.to_owned()),
                r.get(2)?,
            )
        }
        super::Engine::Sqlite => {
            let (seq, hash) = head(c)?;
            (seq, hash, super::locks::now(c)?)
        }
    };
    let seq = prev_seq + 1;
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
    let action = e.action.as_str();
    let hash = entry_hash(
        seq, &at, e.actor, action, e.subject, e.outcome, &details, &prev_hash,
    );
    // Nobody reads its answer: on PostgreSQL it goes with the commit.
    c.defer(
        "INSERT INTO audit (seq, at, actor, action, subject, outcome, details, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            seq, at, e.actor, action, e.subject, e.outcome, details, prev_hash, hash
        ],
    )?;
    Ok(seq)
}

/// Up to `limit` entries after sequence number `after`, in order.
pub fn entries(c: &dyn Sql, after: i64, limit: i64) -> Result<Vec<Stored>, DbError> {
    c.query(
        "SELECT seq, at, actor, action, subject, outcome, details, prev_hash, hash FROM audit \
         WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        params![after, limit],
    )?
    .iter()
    .map(|r| {
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
    })
    .collect()
}

pub fn insert_checkpoint(c: &dyn Sql, cp: &Checkpoint) -> Result<(), DbError> {
    c.execute("INSERT INTO audit_checkpoints (size, head, at, keyid, sig) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING", params![cp.size, cp.head, cp.at, cp.keyid, cp.sig])?;
    Ok(())
}

pub fn checkpoints(c: &dyn Sql) -> Result<Vec<Checkpoint>, DbError> {
    c.query(
        "SELECT size, head, at, keyid, sig FROM audit_checkpoints ORDER BY size",
        params![],
    )?
    .iter()
    .map(|r| {
        Ok(Checkpoint {
            size: r.get(0)?,
            head: r.get(1)?,
            at: r.get(2)?,
            keyid: r.get(3)?,
            sig: r.get(4)?,
        })
    })
    .collect()
}

/// The newest checkpoint's size (0 if none).
pub fn last_checkpoint_size(c: &dyn Sql) -> Result<i64, DbError> {
    c.query_one(
        "SELECT COALESCE(MAX(size), 0) FROM audit_checkpoints",
        params![],
    )?
    .get(0)
}
