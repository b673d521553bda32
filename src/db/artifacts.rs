//! Blobs, artifacts and the statements about them.

use super::Sql;
use crate::params;

use super::{DbError, now_str};
use crate::model::api::ArtifactInfo;

/// One artifact row joined with its blob.
#[derive(Debug, Clone)]
pub struct ArtifactRow {
    pub id: i64,
    pub name: String,
    pub version: String,
    pub file_name: String,
    pub blake3: String,
    pub sha256: String,
    pub size: u64,
    pub media_type: String,
    pub uploaded_by: String,
    pub created_at: String,
}

/// A new artifact to register.
pub struct NewArtifact<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub file_name: &'a str,
    pub blake3: &'a str,
    pub sha256: &'a str,
    pub size: u64,
    pub media_type: &'a str,
    pub uploaded_by: &'a str,
}

macro_rules! columns {
    () => {
        "SELECT a.id, a.name, a.version, a.file_name, a.blake3, b.sha256, b.size, \
         a.media_type, a.uploaded_by, a.created_at"
    };
}
const COLUMNS: &str = columns!();
const SELECT: &str = concat!(
    columns!(),
    " FROM artifacts a JOIN blobs b ON b.blake3 = a.blake3"
);

pub(crate) fn row(r: &super::sql::Row) -> Result<ArtifactRow, DbError> {
    Ok(ArtifactRow {
        id: r.get(0)?,
        name: r.get(1)?,
        version: r.get(2)?,
        file_name: r.get(3)?,
        blake3: r.get(4)?,
        sha256: r.get(5)?,
        size: r.get(6)?,
        media_type: r.get(7)?,
        uploaded_by: r.get(8)?,
        created_at: r.get(9)?,
    })
}

pub(crate) fn select_sql() -> &'static str {
    SELECT
}

/// The artifact columns alone, for queries that join from elsewhere.
pub(crate) fn select_columns() -> &'static str {
    COLUMNS
}

/// Every statement envelope about an artifact: (sha256, envelope bytes), oldest first.
pub fn statements_of(c: &dyn Sql, artifact_id: i64) -> Result<Vec<(String, Vec<u8>)>, DbError> {
    statements_from(&c.query(STATEMENTS_OF, params![artifact_id])?)
}

/// [`statements_of`] as a query: `?1` the artifact id.
pub const STATEMENTS_OF: &str =
    "SELECT sha256, envelope FROM statements WHERE artifact_id = ?1 ORDER BY created_at, sha256";

/// [`statements_of`] from the rows of [`STATEMENTS_OF`].
pub fn statements_from(rows: &[super::sql::Row]) -> Result<Vec<(String, Vec<u8>)>, DbError> {
    rows.iter()
        .map(|r| Ok::<_, DbError>((r.get(0)?, r.get(1)?)))
        .collect()
}

/// An artifact by its row id.
pub fn by_id(c: &dyn Sql, id: i64) -> Result<Option<ArtifactRow>, DbError> {
    c.query_opt(&format!("{SELECT} WHERE a.id = ?1"), params![id])?
        .as_ref()
        .map(row)
        .transpose()
}

pub fn find(c: &dyn Sql, name: &str, version: &str) -> Result<Option<ArtifactRow>, DbError> {
    found(&c.query(&find_sql(), params![name, version])?)
}

/// [`find`] as a query: `?1` the name, `?2` the version.
pub fn find_sql() -> String {
    format!("{SELECT} WHERE a.name = ?1 AND a.version = ?2")
}

/// [`find`] from the rows of [`find_sql`].
pub fn found(rows: &[super::sql::Row]) -> Result<Option<ArtifactRow>, DbError> {
    rows.first().map(row).transpose()
}

/// Registers the blob (if new) and the artifact; returns the artifact id.
pub fn insert(c: &dyn Sql, a: &NewArtifact<'_>) -> Result<i64, DbError> {
    let now = now_str();
    c.execute(
        "INSERT INTO blobs (blake3, sha256, size, created_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT DO NOTHING",
        params![a.blake3, a.sha256, a.size, now],
    )?;
    c.query_one(
        "INSERT INTO artifacts (name, version, file_name, blake3, media_type, uploaded_by, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
        params![a.name, a.version, a.file_name, a.blake3, a.media_type, a.uploaded_by, now],
    )?
    .get(0)
}

/// Stores a statement envelope under its SHA-256 (idempotent).
pub fn insert_statement(
    c: &dyn Sql,
    sha256: &str,
    artifact_id: i64,
    predicate_type: &str,
    signers: &[String],
    envelope: &[u8],
) -> Result<(), DbError> {
    c.execute(
        "INSERT INTO statements (sha256, artifact_id, predicate_type, signers, envelope, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
        params![
            sha256,
            artifact_id,
            predicate_type,
            serde_json::to_string(signers).expect("strings encode"),
            envelope,
            now_str()
        ],
    )?;
    Ok(())
}

/// The envelope bytes of a statement.
pub fn statement(c: &dyn Sql, sha256: &str) -> Result<Option<Vec<u8>>, DbError> {
    c.query_opt(
        "SELECT envelope FROM statements WHERE sha256 = ?1",
        params![sha256],
    )?
    .map(|r| r.get(0))
    .transpose()
}

/// SHA-256 of each statement about an artifact, oldest first.
pub fn statement_digests(c: &dyn Sql, artifact_id: i64) -> Result<Vec<String>, DbError> {
    c.query(
        "SELECT sha256 FROM statements WHERE artifact_id = ?1 ORDER BY created_at, sha256",
        params![artifact_id],
    )?
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// The statement digests of every release current in `channel`, by artifact id (one query
/// instead of one per release when a channel's targets are rebuilt).
pub fn statement_digests_in_channel(
    c: &dyn Sql,
    channel: &str,
) -> Result<std::collections::HashMap<i64, Vec<String>>, DbError> {
    let rows = c.query(
        "SELECT s.artifact_id, s.sha256 FROM statements s WHERE s.artifact_id IN ( \
           SELECT r.artifact_id FROM releases r \
           JOIN (SELECT name, MAX(id) AS id FROM releases WHERE channel = ?1 GROUP BY name) m ON m.id = r.id) \
         ORDER BY s.artifact_id, s.created_at, s.sha256",
        params![channel],
    )?;
    let mut out: std::collections::HashMap<i64, Vec<String>> = std::collections::HashMap::new();
    for r in rows {
        out.entry(r.get(0)?).or_default().push(r.get(1)?);
    }
    Ok(out)
}

/// The blob behind a TUF target of a channel: the artifact `name` with this SHA-256 and file
/// name that the channel holds or held. Returns (blake3, size).
pub fn channel_blob(
    c: &dyn Sql,
    channel: &str,
    name: &str,
    sha256: &str,
    file_name: &str,
) -> Result<Option<(String, u64)>, DbError> {
    c.query_opt(
        "SELECT b.blake3, b.size FROM artifacts a JOIN blobs b ON b.blake3 = a.blake3 \
         WHERE a.name = ?2 AND b.sha256 = ?3 AND a.file_name = ?4 \
         AND EXISTS (SELECT 1 FROM releases r WHERE r.channel = ?1 AND r.artifact_id = a.id) LIMIT 1",
        params![channel, name, sha256, file_name],
    )?
    .map(|r| Ok::<_, DbError>((r.get(0)?, r.get(1)?)))
    .transpose()
}

impl ArtifactRow {
    pub fn info(&self, statements: Vec<String>) -> Result<ArtifactInfo, DbError> {
        let bad = |e: crate::model::NameError| DbError::Corrupt(e.to_string());
        Ok(ArtifactInfo {
            name: self.name.parse().map_err(bad)?,
            version: self.version.parse().map_err(bad)?,
            file_name: self.file_name.parse().map_err(bad)?,
            size: self.size,
            sha256: self.sha256.clone(),
            blake3: self.blake3.clone(),
            media_type: self.media_type.clone(),
            uploaded_by: self.uploaded_by.clone(),
            created_at: self.created_at.clone(),
            statements,
        })
    }
}

/// What a stored statement says without opening it.
pub struct StatementRow {
    pub sha256: String,
    pub predicate_type: String,
    /// The key ids whose signatures were verified when it arrived.
    pub signers: Vec<String>,
    pub created_at: String,
}

/// The statements about an artifact, oldest first.
pub fn statement_summaries(c: &dyn Sql, artifact_id: i64) -> Result<Vec<StatementRow>, DbError> {
    let rows = c.query(
        "SELECT sha256, predicate_type, signers, created_at FROM statements WHERE artifact_id = ?1 \
         ORDER BY created_at, sha256",
        params![artifact_id],
    )?;
    rows.iter()
        .map(|r| {
            let (sha, ptype, signers, at): (String, String, String, String) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            let signers: Vec<String> = serde_json::from_str(&signers)
                .map_err(|e| DbError::Corrupt(format!("statement {sha}: signers: {e}")))?;
            Ok(StatementRow {
                sha256: sha,
                predicate_type: ptype,
                signers,
                created_at: at,
            })
        })
        .collect()
}

/// Whether any artifact names the blob `blake3`.
pub fn blob_referenced(c: &dyn Sql, blake3: &str) -> Result<bool, DbError> {
    c.query_one(
        "SELECT EXISTS(SELECT 1 FROM artifacts WHERE blake3 = ?1)",
        params![blake3],
    )?
    .get(0)
}
