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
}

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
}

impl Db {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        schema::migrate(&mut conn)?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the blocking thread pool.
    pub async fn call<F, R>(&self, f: F) -> Result<R, DbError>
    where
        F: FnOnce(&mut Connection) -> Result<R, DbError> + Send + 'static,
        R: Send + 'static,
    {
        let conn = self.conn.clone();
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

/// The current time as arca stores it.
pub fn now_str() -> String {
    arca_keys::format_time(chrono::Utc::now())
}
