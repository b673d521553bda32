//! The metadata database: SQLite in WAL mode, one writer connection behind a mutex, every call
//! run off the async executor. Each use case runs in one transaction, so a crash leaves either
//! all of its rows or none.

mod schema;

pub mod artifacts;
pub mod audit;
pub mod channels;
pub mod policies;
pub mod rollouts;
pub mod tokens;
pub mod trust;
pub mod tuf;

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

/// Database errors.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the database task failed: {0}")]
    Join(String),
    #[error("database is from a newer arca (schema {found}, this binary knows {known})")]
    TooNew { found: i64, known: i64 },
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Metadata was not signed: the clock cannot be trusted now (`tuf::clock`).
    #[error(transparent)]
    Clock(#[from] crate::tuf::clock::ClockFault),
    #[error("database file: {0}")]
    Io(String),
}

impl DbError {
    /// SQLite's answer when the disk (or quota) is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::DiskFull)
    }

    /// Another process held the database lock for longer than the busy timeout.
    pub fn is_busy(&self) -> bool {
        matches!(self, DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
            if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
    }
}

/// Database calls handed to the blocking pool at once. The one connection serves one call at a
/// time, so more would only park threads on its mutex: without this cap, a burst of requests
/// (500 uploads checking their token) started a blocking thread each.
const CALLS_IN_FLIGHT: usize = 4;

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    calls: Arc<tokio::sync::Semaphore>,
}

impl Db {
    /// Opens (creating if needed) and migrates the database at `path`.
    ///
    /// The file is made owner-only (0600) before SQLite opens it: it holds token hashes and
    /// the audit log. SQLite gives the `-wal` and `-shm` files it creates the main file's
    /// mode; ones left by an older version are tightened here too.
    ///
    /// Every transaction begins `IMMEDIATE`: it takes the write lock when it starts, waiting
    /// out the busy timeout if another process holds it, instead of starting as a reader and
    /// failing at once with `SQLITE_BUSY` when it first writes.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        restrict_mode(path)?;
        let mut conn = Connection::open(path)?;
        conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        schema::migrate(&mut conn)?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
            calls: Arc::new(tokio::sync::Semaphore::new(CALLS_IN_FLIGHT)),
        })
    }

    /// Runs `f` with the connection on the blocking thread pool.
    pub async fn call<F, R>(&self, f: F) -> Result<R, DbError>
    where
        F: FnOnce(&mut Connection) -> Result<R, DbError> + Send + 'static,
        R: Send + 'static,
    {
        let conn = self.conn.clone();
        let _slot = self
            .calls
            .acquire()
            .await
            .map_err(|e| DbError::Join(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| DbError::Join(e.to_string()))?
    }

    /// Runs `f` synchronously (for `init` and tests, outside any runtime).
    pub fn call_sync<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, DbError>,
    ) -> Result<R, DbError> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

/// Creates `path` (empty, 0600) if it is missing and sets 0600 on it and on the `-wal` and
/// `-shm` files beside it if they exist.
fn restrict_mode(path: &Path) -> Result<(), DbError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |e: std::io::Error| DbError::Io(format!("{}: {e}", path.display()));
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
    }
    Ok(())
}

/// The current time as arca stores it.
pub fn now_str() -> String {
    arca_keys::format_time(chrono::Utc::now())
}
