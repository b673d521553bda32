//! Channels and their release history. The current release of a name in a channel is its
//! newest history row; history is append-only.

use super::Sql;
use crate::params;

use super::artifacts::{ArtifactRow, row, select_columns, select_sql};
use super::{DbError, now_str};
use crate::model::api::HistoryEntry;

pub fn insert_channel(c: &dyn Sql, name: &str, position: usize) -> Result<(), DbError> {
    c.execute(
        "INSERT INTO channels (name, position) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        params![name, position as i64],
    )?;
    Ok(())
}

pub fn list(c: &dyn Sql) -> Result<Vec<String>, DbError> {
    c.query("SELECT name FROM channels ORDER BY position", params![])?
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Appends a history row: `artifact_id` is now the current release of `name` in `channel`.
pub fn record_release(
    c: &dyn Sql,
    channel: &str,
    name: &str,
    artifact_id: i64,
    action: &str,
    actor: &str,
    reason: Option<&str>,
) -> Result<(), DbError> {
    c.defer(
        "INSERT INTO releases (channel, name, artifact_id, action, actor, reason, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![channel, name, artifact_id, action, actor, reason, now_str()],
    )?;
    Ok(())
}

/// The current release of every name in `channel`, by name.
pub fn current_releases(c: &dyn Sql, channel: &str) -> Result<Vec<ArtifactRow>, DbError> {
    let sql = format!(
        "{} JOIN (SELECT r.artifact_id FROM releases r \
           JOIN (SELECT name, MAX(id) AS id FROM releases WHERE channel = ?1 GROUP BY name) m ON m.id = r.id) cur \
         ON cur.artifact_id = a.id ORDER BY a.name",
        select_sql()
    );
    c.query(&sql, params![channel])?.iter().map(row).collect()
}

/// The current release of `name` in `channel`, with the time it became current.
pub fn current(
    c: &dyn Sql,
    channel: &str,
    name: &str,
) -> Result<Option<(ArtifactRow, String)>, DbError> {
    let sql = format!(
        "{}, r.created_at FROM releases r JOIN artifacts a ON a.id = r.artifact_id JOIN blobs b ON b.blake3 = a.blake3 \
         WHERE r.channel = ?1 AND r.name = ?2 ORDER BY r.id DESC LIMIT 1",
        select_columns()
    );
    c.query_opt(&sql, params![channel, name])?
        .as_ref()
        .map(|r| Ok::<_, DbError>((row(r)?, r.get(10)?)))
        .transpose()
}

/// The current release of `name` (and since when) in each of `channels` where it has one, in
/// one statement.
pub fn current_in(
    c: &dyn Sql,
    channels: &[&str],
    name: &str,
) -> Result<std::collections::HashMap<String, (ArtifactRow, String)>, DbError> {
    let mut params: Vec<&dyn super::sql::ToParam> = vec![&name];
    params.extend(channels.iter().map(|ch| ch as &dyn super::sql::ToParam));
    current_in_from(&c.query(&current_in_sql(channels.len()), &params)?)
}

/// [`current_in`] as one query of `n` channels: `?1` the name, `?2`.. the channels.
pub fn current_in_sql(n: usize) -> String {
    // One index lookup of the newest release per channel, so the plan cannot become a scan.
    let newest: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "SELECT (SELECT MAX(id) FROM releases WHERE channel = ?{} AND name = ?1)",
                i + 2
            )
        })
        .collect();
    format!(
        "{}, r.created_at, r.channel FROM releases r JOIN artifacts a ON a.id = r.artifact_id \
         JOIN blobs b ON b.blake3 = a.blake3 WHERE r.id IN ({})",
        select_columns(),
        newest.join(" UNION ALL ")
    )
}

/// [`current_in`] from the rows of [`current_in_sql`].
pub fn current_in_from(
    rows: &[super::sql::Row],
) -> Result<std::collections::HashMap<String, (ArtifactRow, String)>, DbError> {
    rows.iter()
        .map(|r| Ok((r.get(11)?, (row(r)?, r.get(10)?))))
        .collect()
}

/// Every change of `name` in `channel`, oldest first.
pub fn history(c: &dyn Sql, channel: &str, name: &str) -> Result<Vec<HistoryEntry>, DbError> {
    history_page(c, channel, name, 0, i64::MAX)
}

/// Up to `limit` changes of `name` in `channel` after sequence number `after`, oldest first.
pub fn history_page(
    c: &dyn Sql,
    channel: &str,
    name: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<HistoryEntry>, DbError> {
    c.query("SELECT r.id, a.version, r.action, r.actor, r.reason, r.created_at, t.label FROM releases r \
         JOIN artifacts a ON a.id = r.artifact_id \
         LEFT JOIN tokens t ON r.actor = 'token:' || t.id \
         WHERE r.channel = ?1 AND r.name = ?2 AND r.id > ?3 ORDER BY r.id LIMIT ?4", params![channel, name, after, limit])?.iter().map(|r| {
        Ok(HistoryEntry {
            seq: r.get(0)?,
            version: r.get(1)?,
            action: r.get(2)?,
            actor: r.get(3)?,
            reason: r.get(4)?,
            at: r.get(5)?,
            actor_label: r.get(6)?,
        })
    }).collect()
}

/// (channel, name, version) of every current release with a build statement signed by `keyid`.
pub fn current_built_by(
    c: &dyn Sql,
    keyid: &str,
) -> Result<Vec<(String, String, String)>, DbError> {
    // The signers are a JSON array of key ids: each engine has its own way to open one.
    let signed_by = match c.engine() {
        super::Engine::Sqlite => "EXISTS (SELECT 1 FROM json_each(s.signers) j WHERE j.value = ?1)",
        super::Engine::Postgres => "s.signers::jsonb ? ?1",
    };
    let sql = format!(
        "SELECT r.channel, a.name, a.version FROM releases r \
         JOIN (SELECT channel, name, MAX(id) AS id FROM releases GROUP BY channel, name) m ON m.id = r.id \
         JOIN artifacts a ON a.id = r.artifact_id \
         WHERE EXISTS (SELECT 1 FROM statements s \
                       WHERE s.artifact_id = a.id AND {signed_by} \
                       AND s.predicate_type IN ('https://arca.dev/build/v1', 'https://slsa.dev/provenance/v1')) \
         ORDER BY r.channel, a.name"
    );
    c.query(&sql, params![keyid])?
        .iter()
        .map(|r| Ok::<_, DbError>((r.get(0)?, r.get(1)?, r.get(2)?)))
        .collect()
}

/// The current release of each name in `channel`, with when and how it became current.
pub fn board(c: &dyn Sql, channel: &str) -> Result<Vec<(HistoryEntry, String)>, DbError> {
    c.query("SELECT r.id, a.version, r.action, r.actor, r.reason, r.created_at, r.name, t.label FROM releases r \
         JOIN (SELECT name, MAX(id) AS id FROM releases WHERE channel = ?1 GROUP BY name) m ON m.id = r.id \
         JOIN artifacts a ON a.id = r.artifact_id \
         LEFT JOIN tokens t ON r.actor = 'token:' || t.id ORDER BY r.name", params![channel])?.iter().map(|r| {
        Ok((
            HistoryEntry {
                seq: r.get(0)?,
                version: r.get(1)?,
                action: r.get(2)?,
                actor: r.get(3)?,
                reason: r.get(4)?,
                at: r.get(5)?,
                actor_label: r.get(7)?,
            },
            r.get(6)?,
        ))
    }).collect()
}
