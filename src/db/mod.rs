//! The metadata database: SQLite in WAL mode, one writer connection behind a mutex, every call
//! run off the async executor. Each use case runs in one transaction, so a crash leaves either
//! all of its rows or none.

pub mod backup;
mod schema;
pub mod sql;

pub mod artifacts;
pub mod audit;
pub mod channels;
pub mod copy;
pub mod keys;
pub mod leader;
pub mod lease;
pub mod locks;
pub mod policies;
pub mod rollouts;
pub mod tokens;
pub mod trust;
pub mod tuf;
pub mod uploads;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use sql::{Conn, Engine, Sql, ToParam, Tx};

/// Database errors.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(String),
    /// The database cannot be reached now (PostgreSQL stopped, the network cut): `503`.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A use case lost a race with a concurrent one more times than it retries: `503`.
    #[error("the database kept reporting conflicts with concurrent changes: {0}")]
    Conflict(String),
    #[error("the database task failed: {0}")]
    Join(String),
    #[error("database is from a newer arca (schema {found}, this binary knows {known})")]
    TooNew { found: i64, known: i64 },
    /// A PostgreSQL database without (the current) arca schema: `serve` does not create one.
    #[error("{0}")]
    NotInitialised(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Metadata was not signed: the clock cannot be trusted now (`tuf::clock`).
    #[error(transparent)]
    Clock(#[from] crate::tuf::clock::ClockFault),
    #[error("database file: {0}")]
    Io(String),
    #[error("disk full: {0}")]
    DiskFull(String),
    /// A server key sealed in the database cannot be used (`db::keys`): refused to sign.
    #[error("{0}")]
    SealedKey(String),
}

impl DbError {
    /// The engine's answer when the disk (or quota) is full.
    pub fn is_disk_full(&self) -> bool {
        match self {
            DbError::DiskFull(_) => true,
            DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::DiskFull
            }
            _ => false,
        }
    }

    /// Another process held the database lock for longer than the busy timeout.
    pub fn is_busy(&self) -> bool {
        matches!(self, DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
            if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
    }

    /// The database cannot be reached or kept conflicting: worth retrying later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DbError::Unavailable(_) | DbError::Conflict(_))
    }
}

/// What went wrong on PostgreSQL, classified: unreachable, disk full, or anything else.
impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        let text = match e.as_db_error() {
            Some(d) => format!("{} ({})", d.message(), d.code().code()),
            None => e.to_string(),
        };
        match e.code().map(|c| c.code()) {
            Some(code) if code.starts_with("08") || code.starts_with("57P") => {
                DbError::Unavailable(text)
            }
            Some("53100") => DbError::DiskFull(text),
            Some(_) => DbError::Postgres(text),
            None if e.is_closed() || e.as_db_error().is_none() => DbError::Unavailable(text),
            None => DbError::Postgres(text),
        }
    }
}

/// Database calls handed to the blocking pool at once on SQLite. The one connection serves
/// one call at a time, so more would only park threads on its mutex: without this cap, a
/// burst of requests (500 uploads checking their token) started a blocking thread each.
const SQLITE_CALLS_IN_FLIGHT: usize = 4;

/// How often a use case that lost a race on PostgreSQL (a serialisation failure, a deadlock,
/// a unique key another transaction took meanwhile) is run again before `503`.
const RETRIES: u32 = 5;

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: Arc<Pool>,
    calls: Arc<tokio::sync::Semaphore>,
}

enum Pool {
    /// One connection: SQLite has one writer, and WAL readers gain nothing behind a mutex.
    Sqlite(Mutex<Conn>),
    /// Connections made on demand up to the pool size and kept while they work.
    Postgres {
        config: tokio_postgres::Config,
        idle: Mutex<Vec<Conn>>,
        /// Where its connections' publishing transactions ask for leases back.
        notifier: Arc<lease::Notifier>,
    },
}

impl Db {
    /// Opens (creating if needed) and migrates the SQLite database at `path`.
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
        let mut conn = rusqlite::Connection::open(path)?;
        conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let mut conn = Conn::sqlite(conn);
        schema::migrate(&mut conn)?;
        Ok(Db {
            pool: Arc::new(Pool::Sqlite(Mutex::new(conn))),
            calls: Arc::new(tokio::sync::Semaphore::new(SQLITE_CALLS_IN_FLIGHT)),
        })
    }

    /// Migrates the SQLite database at `path`; the versions before and after.
    pub fn migrate_sqlite(path: &Path) -> Result<(i64, i64), DbError> {
        restrict_mode(path)?;
        let mut conn = Conn::sqlite(rusqlite::Connection::open(path)?);
        schema::migrate(&mut conn)
    }

    /// Connects to the PostgreSQL database at `url`, which must hold the current arca schema
    /// (`arca init --database` or `arca db migrate` made it so; serving never does).
    pub fn connect(url: &str, pool: usize) -> Result<Self, DbError> {
        let config = pg_config(url)?;
        let notifier = Arc::new(lease::Notifier::new(config.clone()));
        let mut conn = pg_connect_with(&config, Some(notifier.clone()))?;
        let (found, known) = schema::version(&mut conn)?;
        // A newer schema that still admits this binary: a rolling upgrade is under way.
        let admitted =
            found > known && schema::compatible_from(&mut conn)?.is_some_and(|from| from <= known);
        if admitted {
            tracing::warn!(
                found,
                known,
                "the database has a newer arca schema that this binary may still serve (a rolling upgrade); upgrade this server"
            );
        }
        if found != known && !admitted {
            return Err(DbError::NotInitialised(if found == 0 {
                format!(
                    "the PostgreSQL database {} has no arca schema: run `arca init --home DIR --database URL` to initialise it",
                    redact(url)
                )
            } else if found < known {
                format!(
                    "the PostgreSQL database {} has arca schema {found}, this binary needs {known}: run `arca db migrate --home DIR`",
                    redact(url)
                )
            } else {
                return Err(DbError::TooNew { found, known });
            }));
        }
        Ok(Db {
            pool: Arc::new(Pool::Postgres {
                notifier,
                config,
                idle: Mutex::new(vec![conn]),
            }),
            calls: Arc::new(tokio::sync::Semaphore::new(pool)),
        })
    }

    /// Whether the PostgreSQL database at `url` already holds a home's data (a trust
    /// document): its schema version if so. A schema without data (migrated, or an `init`
    /// that failed before its first commit) holds none.
    pub fn postgres_holds_a_home(url: &str) -> Result<Option<i64>, DbError> {
        let mut conn = pg_connect(&pg_config(url)?)?;
        let (found, _) = schema::version(&mut conn)?;
        if found == 0 {
            return Ok(None);
        }
        let c: &dyn Sql = &conn;
        let trust: i64 = c.value("SELECT COUNT(*) FROM trust", crate::params![])?;
        Ok((trust > 0).then_some(found))
    }

    /// Brings the PostgreSQL database at `url` to the current schema, under an advisory lock
    /// (so that servers started together migrate once); the versions before and after.
    pub fn migrate_postgres(url: &str) -> Result<(i64, i64), DbError> {
        let mut conn = pg_connect(&pg_config(url)?)?;
        schema::migrate(&mut conn)
    }

    /// Which engine this database runs on.
    pub fn engine(&self) -> Engine {
        match &*self.pool {
            Pool::Sqlite(_) => Engine::Sqlite,
            Pool::Postgres { .. } => Engine::Postgres,
        }
    }

    /// Runs `f` with a connection on the blocking thread pool. On PostgreSQL, a run that
    /// lost a race with a concurrent transaction (`db::sql` notes the error) is rolled back
    /// and run again, up to `RETRIES` times, so `f` must be repeatable: it may only change
    /// the database.
    pub async fn call<F, R>(&self, f: F) -> Result<R, DbError>
    where
        F: FnMut(&mut Conn) -> Result<R, DbError> + Send + 'static,
        R: Send + 'static,
    {
        let pool = self.pool.clone();
        let _slot = self
            .calls
            .acquire()
            .await
            .map_err(|e| DbError::Join(e.to_string()))?;
        tokio::task::spawn_blocking(move || pool.run(f))
            .await
            .map_err(|e| DbError::Join(e.to_string()))?
    }

    /// Runs `f` synchronously (for `init`, commands and tests, outside any runtime).
    pub fn call_sync<R>(
        &self,
        f: impl FnMut(&mut Conn) -> Result<R, DbError>,
    ) -> Result<R, DbError> {
        self.pool.run(f)
    }
}

/// PostgreSQL's client ends its session by blocking on a runtime of its own, which panics on an
/// executor thread: the last `Db` may be dropped on one (a task that held the app, at
/// shutdown), so the pool's connections are closed on a thread of their own.
impl Drop for Pool {
    fn drop(&mut self) {
        if let Pool::Postgres { idle, .. } = self {
            let conns = std::mem::take(idle.get_mut().unwrap_or_else(|p| p.into_inner()));
            if !conns.is_empty() {
                close_off_executor(conns);
            }
        }
    }
}

/// Drops `sessions` (PostgreSQL connections, or what holds them) on a thread of their own:
/// closing one blocks on its own runtime, which panics on an executor thread.
fn close_off_executor<T: Send>(sessions: T) {
    std::thread::scope(|s| {
        s.spawn(move || drop(sessions));
    });
}

impl Pool {
    fn run<R>(&self, mut f: impl FnMut(&mut Conn) -> Result<R, DbError>) -> Result<R, DbError> {
        match self {
            Pool::Sqlite(conn) => {
                let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
                f(&mut guard)
            }
            Pool::Postgres {
                config,
                idle,
                notifier,
            } => {
                let taken = idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let mut conn = match taken {
                    Some(c) if !c.is_broken() => c,
                    _ => pg_connect_with(config, Some(notifier.clone()))?,
                };
                let mut attempt = 0;
                let result = loop {
                    conn.take_lost_race();
                    let result = f(&mut conn);
                    match conn.take_lost_race() {
                        Some(why) if attempt < RETRIES => {
                            attempt += 1;
                            tracing::debug!(attempt, %why, "retrying after a conflict with a concurrent transaction");
                            // Spread the retries of transactions that collided.
                            std::thread::sleep(Duration::from_millis(
                                u64::from(attempt) * (1 + u64::from(random_u8() % 8)),
                            ));
                        }
                        Some(why) => break Err(DbError::Conflict(why)),
                        None => break result,
                    }
                };
                if !conn.is_broken() {
                    idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
                }
                result
            }
        }
    }
}

fn random_u8() -> u8 {
    let mut b = [0u8; 1];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    b[0]
}

fn pg_config(url: &str) -> Result<tokio_postgres::Config, DbError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| DbError::Unavailable(format!("invalid database URL {}: {e}", redact(url))))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    if config.get_application_name().is_none() {
        config.application_name("arca");
    }
    Ok(config)
}

fn pg_connect(config: &tokio_postgres::Config) -> Result<Conn, DbError> {
    pg_connect_with(config, None)
}

/// A connection whose publishing transactions ask for leases back through `notifier` (one of
/// their own, connected when first needed, if `None`).
fn pg_connect_with(
    config: &tokio_postgres::Config,
    notifier: Option<Arc<lease::Notifier>>,
) -> Result<Conn, DbError> {
    Conn::postgres(config, notifier).map_err(|e| {
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .collect();
        match DbError::from(e) {
            DbError::Postgres(m) | DbError::Unavailable(m) => DbError::Unavailable(format!(
                "cannot connect to PostgreSQL at {} port {:?}: {m}",
                hosts.join(","),
                config.get_ports()
            )),
            other => other,
        }
    })
}

/// A database URL with its password (if any) replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_are_classified() {
        let full = DbError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        ));
        assert!(full.is_disk_full() && !full.is_busy());
        let busy = DbError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        ));
        assert!(busy.is_busy() && !busy.is_disk_full());
        assert!(DbError::Unavailable("x".into()).is_unavailable());
        assert!(!DbError::Corrupt("x".into()).is_unavailable());
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact("postgres://arca:s3cret@db:5432/arca"),
            "postgres://arca:***@db:5432/arca"
        );
        assert_eq!(redact("postgres://arca@db/arca"), "postgres://arca@db/arca");
    }
}
