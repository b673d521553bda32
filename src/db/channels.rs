//! Channels and their release history. The current release of a name in a channel is its
//! newest history row; history is append-only.

use rusqlite::{Connection, params};

use super::artifacts::{ArtifactRow, row, select_sql};
use super::{DbError, now_str};

pub fn insert_channel(c: &Connection, name: &str, position: usize) -> Result<(), DbError> {
    c.execute(
        "INSERT OR IGNORE INTO channels (name, position) VALUES (?1, ?2)",
        params![name, position as i64],
    )?;
    Ok(())
}

pub fn list(c: &Connection) -> Result<Vec<String>, DbError> {
    let mut st = c.prepare_cached("SELECT name FROM channels ORDER BY position")?;
    let rows = st.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Appends a history row: `artifact_id` is now the current release of `name` in `channel`.
pub fn record_release(
    c: &Connection,
    channel: &str,
    name: &str,
    artifact_id: i64,
    action: &str,
    actor: &str,
    reason: Option<&str>,
) -> Result<(), DbError> {
    c.execute(
        "INSERT INTO releases (channel, name, artifact_id, action, actor, reason, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![channel, name, artifact_id, action, actor, reason, now_str()],
    )?;
    Ok(())
}

/// The current release of every name in `channel`, by name.
pub fn current_releases(c: &Connection, channel: &str) -> Result<Vec<ArtifactRow>, DbError> {
    let sql = format!(
        "{} JOIN (SELECT r.artifact_id FROM releases r \
           JOIN (SELECT name, MAX(id) AS id FROM releases WHERE channel = ?1 GROUP BY name) m ON m.id = r.id) cur \
         ON cur.artifact_id = a.id ORDER BY a.name",
        select_sql()
    );
    let mut st = c.prepare_cached(&sql)?;
    let rows = st.query_map([channel], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}
