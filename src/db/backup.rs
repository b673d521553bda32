//! A consistent copy of a live SQLite database (SQLite's online backup API), and the facts a
//! backup manifest records about a database on either engine.

use std::path::Path;
use std::time::Duration;

use super::sql::Sql;
use super::{Conn, Db, DbError, schema};
use crate::params;

/// What a backup records about the database: its schema version and, for every channel, the
/// newest version of each TUF role.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub schema: i64,
    /// (channel, role, newest version), by channel then role.
    pub versions: Vec<(String, String, u64)>,
}

fn facts_of(conn: &mut Conn) -> Result<Facts, DbError> {
    let (schema, _) = schema::version(conn)?;
    let c: &dyn Sql = conn;
    let rows = c.query(
        "SELECT channel, role, MAX(version) FROM tuf_metadata GROUP BY channel, role \
         ORDER BY channel, role",
        params![],
    )?;
    let versions = rows
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?, r.get::<i64>(2)? as u64)))
        .collect::<Result<_, DbError>>()?;
    Ok(Facts { schema, versions })
}

impl Db {
    /// Copies the SQLite database at `src` (which a running server may be writing) into the
    /// new file `dest` (0600) with SQLite's online backup API, in one step: one read
    /// transaction, so the copy is the database as of one commit, and in WAL mode the server's
    /// writes go on meanwhile. The copy is left in rollback-journal mode, one self-contained
    /// file (`Db::open` turns WAL on again when it is served). Returns the copy's facts.
    pub fn backup_sqlite(src: &Path, dest: &Path) -> Result<Facts, DbError> {
        use std::os::unix::fs::OpenOptionsExt;
        if !src.exists() {
            return Err(DbError::Io(format!("{}: no such database", src.display())));
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dest)
            .map_err(|e| DbError::Io(format!("{}: {e}", dest.display())))?;
        let from = rusqlite::Connection::open_with_flags(
            src,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        from.busy_timeout(Duration::from_secs(10))?;
        let mut to = rusqlite::Connection::open(dest)?;
        {
            let backup = rusqlite::backup::Backup::new(&from, &mut to)?;
            backup.run_to_completion(i32::MAX, Duration::from_millis(50), None)?;
        }
        drop(from);
        let mode: String = to.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(DbError::Io(format!(
                "{}: journal mode stayed {mode}",
                dest.display()
            )));
        }
        let mut conn = Conn::sqlite(to);
        facts_of(&mut conn)
    }

    /// The facts a backup manifest records about this database (on PostgreSQL, where the
    /// database itself is copied with `pg_dump`).
    pub fn backup_facts(&self) -> Result<Facts, DbError> {
        self.call_sync(facts_of)
    }
}
