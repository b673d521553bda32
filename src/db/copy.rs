//! `arca db copy`: a SQLite home's database copied into an empty PostgreSQL database, and the
//! copy verified, so that the home moves to PostgreSQL with its keys, root.json and blobs.
//!
//! The source is read inside one SQLite transaction (a consistent snapshot: SQLite's WAL lets
//! it be read while nothing else is, and the transaction keeps writers out until the copy is
//! done); the target is written in one PostgreSQL transaction, explicit ids included, and its
//! identity sequences are moved past the copied ids so that new rows do not collide. Both
//! sides go through the engine-neutral [`Sql`] interface: rows are read as [`Value`]s and
//! bound back as parameters.
//!
//! After the commit the target is read back: per-table row counts, the audit chain (verified
//! with `crate::audit::verify` against the audit keys of the copied trust document) and every
//! `tuf_metadata` body (SHA-256 per channel, role and version) must match the source.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use super::sql::Value;
use super::{Db, DbError, Sql, redact};
use crate::params;

/// Every table of the schema, in an order in which each table's references point to tables
/// before it (the copy inserts in this order; PostgreSQL checks foreign keys per statement).
/// `copy` refuses a schema with a table missing here, so a new migration's table is added.
pub const TABLES: &[&str] = &[
    "blobs",
    "artifacts",
    "statements",
    "trust",
    "policies",
    "channels",
    "releases",
    "tuf_metadata",
    "tuf_entries",
    "tokens",
    "token_used",
    "rollouts",
    "reports",
    "agents",
    "audit",
    "audit_checkpoints",
    "locks",
    "uploads",
    "server_keys",
];

/// Tables the migrations themselves fill (`locks`' rows): their rows already on the target
/// are the same rows, and are not copied twice.
const SEEDED: &[&str] = &["locks"];

/// Rows read and inserted at once (well below PostgreSQL's 65535 parameters per statement).
const BATCH: usize = 200;

/// Why a copy was refused or did not verify.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Db(#[from] DbError),
    /// Nothing was copied: the target or the source is not what a copy needs.
    #[error("{0}")]
    Refused(String),
    /// The copy was committed but reads back differently from the source.
    #[error("the copy does not verify: {0}")]
    Verify(String),
}

/// One table's rows, as copied and as counted on the target afterwards.
#[derive(Debug, Clone, Serialize)]
pub struct TableCopy {
    pub table: String,
    pub rows: i64,
}

/// What a successful copy did and checked.
#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    /// The target, its password redacted.
    pub target: String,
    pub tables: Vec<TableCopy>,
    /// Rows copied, over all tables.
    pub rows: i64,
    /// `tuf_metadata` bodies found byte-identical on the target.
    pub metadata_checked: usize,
    /// The audit chain as verified on the target.
    pub audit_entries: i64,
    pub audit_head: String,
    pub audit_checkpoints: usize,
    /// Identity columns moved past the copied ids, as `table.column`, with the next value.
    pub sequences: BTreeMap<String, i64>,
}

/// What the source snapshot held, to compare the target with.
struct Snapshot {
    counts: BTreeMap<String, i64>,
    metadata: BTreeMap<(String, String, i64), String>,
    audit_head: (i64, String),
}

/// Copies the SQLite database at `source` into the PostgreSQL database at `url`, which must
/// hold no arca home (an empty database, or one with the schema and no data), and verifies
/// the copy. The caller records the URL in the home's arca.toml.
pub fn copy(source: &Path, url: &str) -> Result<CopyReport, CopyError> {
    if let Some(version) = Db::postgres_holds_a_home(url)? {
        return Err(CopyError::Refused(format!(
            "the PostgreSQL database {} already holds an arca home (schema {version}): copy into an empty database",
            redact(url)
        )));
    }
    // Another application's tables: refused before the migration writes arca's beside them.
    let foreign: Vec<String> = catalogue_tables(&super::pg_connect(&super::pg_config(url)?)?)?
        .into_iter()
        .filter(|t| !TABLES.contains(&t.as_str()))
        .collect();
    if !foreign.is_empty() {
        return Err(CopyError::Refused(format!(
            "the PostgreSQL database {} holds tables that are not arca's ({}): copy into an empty database",
            redact(url),
            foreign.join(", ")
        )));
    }
    // Opening the source brings its schema to this binary's, as every start does, so that both
    // sides have the same tables and columns.
    let src = Db::open(source)?;
    Db::migrate_postgres(url)?;
    let dst = Db::connect(url, 1)?;

    dst.call_sync(|c| Ok(check_target(c, url)))??;
    let (snapshot, sequences) = src.call_sync(|s| Ok(copy_snapshot(s, &dst)))??;
    drop(src);

    let (entries, head, checkpoints) = dst.call_sync(|d| Ok(verify(d, &snapshot)))??;
    Ok(CopyReport {
        target: redact(url),
        rows: snapshot.counts.values().sum(),
        tables: snapshot
            .counts
            .iter()
            .map(|(t, n)| TableCopy {
                table: t.clone(),
                rows: *n,
            })
            .collect(),
        metadata_checked: snapshot.metadata.len(),
        audit_entries: entries,
        audit_head: head,
        audit_checkpoints: checkpoints,
        sequences,
    })
}

/// Refuses a target whose schema is not this copy's or that holds rows.
fn check_target(c: &mut super::Conn, url: &str) -> Result<(), CopyError> {
    let c: &dyn Sql = c;
    check_tables("the PostgreSQL schema", &catalogue_tables(c)?)?;
    for t in TABLES.iter().filter(|t| !SEEDED.contains(t)) {
        let n: i64 = c.value(&format!("SELECT COUNT(*) FROM {t}"), params![])?;
        if n > 0 {
            return Err(CopyError::Refused(format!(
                "the PostgreSQL database {} is not empty (table {t} has {n} rows): copy into an empty database",
                redact(url)
            )));
        }
    }
    Ok(())
}

/// Copies every table inside one read transaction of the source (`s`) and one transaction
/// of the target; what the source held, and the identity sequences reset.
fn copy_snapshot(
    s: &mut super::Conn,
    dst: &Db,
) -> Result<(Snapshot, BTreeMap<String, i64>), CopyError> {
    // One transaction of the source: the snapshot every table is copied from.
    let stx = s.transaction()?;
    check_tables("the SQLite schema", &catalogue_tables(&stx)?)?;
    let (counts, sequences) = dst.call_sync(|d| Ok(copy_tables(&stx, d)))??;
    let snapshot = Snapshot {
        counts,
        metadata: metadata_digests(&stx)?,
        audit_head: super::audit::head(&stx)?,
    };
    Ok((snapshot, sequences))
}

type Counts = BTreeMap<String, i64>;

fn copy_tables(stx: &dyn Sql, d: &mut super::Conn) -> Result<(Counts, Counts), CopyError> {
    let dtx = d.transaction()?;
    let mut counts = BTreeMap::new();
    for t in TABLES {
        let cols = sqlite_columns(stx, t)?;
        let target_cols = postgres_columns(&dtx, t)?;
        if cols.iter().collect::<BTreeSet<_>>() != target_cols.iter().collect() {
            return Err(CopyError::Refused(format!(
                "table {t} has columns {cols:?} in SQLite and {target_cols:?} in PostgreSQL"
            )));
        }
        let n = copy_table(stx, &dtx, t, &cols)?;
        counts.insert((*t).to_owned(), n);
    }
    let sequences = reset_sequences(&dtx)?;
    dtx.commit()?;
    Ok((counts, sequences))
}

/// The tables the engine's catalogue lists (without its own: `sqlite_*`, `arca_schema`).
fn catalogue_tables(c: &dyn Sql) -> Result<BTreeSet<String>, DbError> {
    let sql = match c.engine() {
        super::Engine::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        }
        super::Engine::Postgres => {
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
             AND table_name <> 'arca_schema'"
        }
    };
    c.query(sql, params![])?.iter().map(|r| r.get(0)).collect()
}

/// Refuses a schema whose tables are not exactly [`TABLES`].
fn check_tables(what: &str, found: &BTreeSet<String>) -> Result<(), CopyError> {
    let known: BTreeSet<String> = TABLES.iter().map(|t| (*t).to_owned()).collect();
    let missing: Vec<_> = known.difference(found).collect();
    let unknown: Vec<_> = found.difference(&known).collect();
    if missing.is_empty() && unknown.is_empty() {
        return Ok(());
    }
    Err(CopyError::Refused(format!(
        "{what} does not have the tables this copy knows: missing {missing:?}, not copied {unknown:?}"
    )))
}

fn sqlite_columns(c: &dyn Sql, table: &str) -> Result<Vec<String>, DbError> {
    c.query(
        "SELECT name FROM pragma_table_info(?1) ORDER BY cid",
        params![table],
    )?
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn postgres_columns(c: &dyn Sql, table: &str) -> Result<Vec<String>, DbError> {
    c.query(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = ?1 ORDER BY ordinal_position",
        params![table],
    )?
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Copies every row of `table` (in rowid order, `BATCH` rows a statement); the rows copied.
fn copy_table(src: &dyn Sql, dst: &dyn Sql, table: &str, cols: &[String]) -> Result<i64, DbError> {
    let list = cols.join(", ");
    let read =
        format!("SELECT rowid, {list} FROM {table} WHERE rowid > ?1 ORDER BY rowid LIMIT ?2");
    let on_conflict = if SEEDED.contains(&table) {
        " ON CONFLICT DO NOTHING"
    } else {
        ""
    };
    let mut after = i64::MIN;
    let mut copied = 0i64;
    loop {
        let rows = src.query(&read, params![after, BATCH])?;
        let Some(last) = rows.last() else { break };
        after = last.get(0)?;
        let mut placeholders = Vec::with_capacity(rows.len());
        let mut values: Vec<&Value> = Vec::with_capacity(rows.len() * cols.len());
        for r in &rows {
            let row = &r.values()[1..];
            let first = values.len();
            placeholders.push(format!(
                "({})",
                (1..=row.len())
                    .map(|i| format!("?{}", first + i))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            values.extend(row);
        }
        let insert = format!(
            "INSERT INTO {table} ({list}) VALUES {}{on_conflict}",
            placeholders.join(", ")
        );
        let params: Vec<&dyn super::sql::ToParam> = values
            .iter()
            .map(|v| *v as &dyn super::sql::ToParam)
            .collect();
        dst.execute(&insert, &params)?;
        copied += rows.len() as i64;
        if rows.len() < BATCH {
            break;
        }
    }
    Ok(copied)
}

/// Moves every identity column's sequence past the column's largest value (an empty table's
/// is left as it is); `table.column` and the next value each will give.
fn reset_sequences(dst: &dyn Sql) -> Result<BTreeMap<String, i64>, DbError> {
    let mut out = BTreeMap::new();
    let identities = dst.query(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND is_identity = 'YES' ORDER BY 1, 2",
        params![],
    )?;
    for r in &identities {
        let (table, column): (String, String) = (r.get(0)?, r.get(1)?);
        let set: Option<i64> = dst
            .query_one(
                &format!(
                    "SELECT setval(pg_get_serial_sequence(?1, ?2), MAX(\"{column}\")) FROM \"{table}\""
                ),
                params![table, column],
            )?
            .get(0)?;
        if let Some(max) = set {
            out.insert(format!("{table}.{column}"), max + 1);
        }
    }
    Ok(out)
}

/// SHA-256 of every `tuf_metadata` body, by (channel, role, version).
fn metadata_digests(c: &dyn Sql) -> Result<BTreeMap<(String, String, i64), String>, DbError> {
    c.query(
        "SELECT channel, role, version, body FROM tuf_metadata",
        params![],
    )?
    .iter()
    .map(|r| {
        let body: Vec<u8> = r.get(3)?;
        Ok((
            (r.get(0)?, r.get(1)?, r.get(2)?),
            crate::tuf::metadata::sha256_hex(&body),
        ))
    })
    .collect()
}

/// Reads the committed copy back and compares it with the source snapshot: row counts,
/// metadata bodies, the audit chain. The chain's entries, head and checkpoints.
fn verify(c: &mut super::Conn, want: &Snapshot) -> Result<(i64, String, usize), CopyError> {
    let tx = c.transaction()?;
    for (table, n) in &want.counts {
        let found: i64 =
            (&tx as &dyn Sql).value(&format!("SELECT COUNT(*) FROM {table}"), params![])?;
        if found != *n {
            return Err(CopyError::Verify(format!(
                "table {table} has {found} rows on PostgreSQL, {n} in SQLite"
            )));
        }
    }
    let metadata = metadata_digests(&tx)?;
    for (key, sha) in &want.metadata {
        if metadata.get(key) != Some(sha) {
            let (channel, role, version) = key;
            return Err(CopyError::Verify(format!(
                "tuf_metadata {channel} {role} v{version} differs on PostgreSQL (sha256 {:?}, SQLite {sha})",
                metadata.get(key)
            )));
        }
    }
    if metadata.len() != want.metadata.len() {
        return Err(CopyError::Verify(format!(
            "PostgreSQL has {} tuf_metadata files, SQLite {}",
            metadata.len(),
            want.metadata.len()
        )));
    }

    let (_, trust) = super::trust::latest(&tx)?
        .ok_or_else(|| CopyError::Verify("no trust document on PostgreSQL".into()))?;
    let trust: arca_keys::TrustDocument = arca_keys::SignedEnvelope::from_slice(&trust)
        .and_then(|e| e.decode("trust document"))
        .map_err(|e| CopyError::Verify(format!("the copied trust document: {e}")))?;
    let keys: BTreeMap<_, _> = trust
        .keys
        .iter()
        .filter(|(_, e)| {
            e.roles.contains(&arca_keys::Role::Audit) && e.status != arca_keys::KeyStatus::Revoked
        })
        .filter_map(|(id, e)| Some((id.clone(), arca_keys::PublicKey::from_tuf(&e.public).ok()?)))
        .collect();
    let entries = super::audit::entries(&tx, 0, i64::MAX)?;
    let checkpoints = super::audit::checkpoints(&tx)?;
    let report = crate::audit::verify(&entries, &checkpoints, &keys)
        .map_err(|e| CopyError::Verify(format!("the audit log on PostgreSQL: {e}")))?;
    if (report.entries, &report.head) != (want.audit_head.0, &want.audit_head.1) {
        return Err(CopyError::Verify(format!(
            "the audit log on PostgreSQL ends at entry {} ({}), in SQLite at {} ({})",
            report.entries, report.head, want.audit_head.0, want.audit_head.1
        )));
    }
    Ok((report.entries, report.head, report.checkpoints))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list the copy walks is the schema's: every table the migrations create.
    #[test]
    fn the_table_list_is_the_schemas() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("arca.db")).unwrap();
        let tables = db.call_sync(|c| catalogue_tables(c)).unwrap();
        check_tables("the SQLite schema", &tables).unwrap();
        assert_eq!(tables.len(), TABLES.len());
    }
}
