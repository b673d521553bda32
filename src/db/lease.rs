//! Metadata leases on PostgreSQL: what lets a server answer polls from memory while other
//! servers publish on the same database, without ever answering a version older than one
//! another server has served.
//!
//! A server that holds a lease holds [`LEASE_LOCK`] *shared*, as a session-level advisory lock
//! on a connection of its own (`service::lease`), and listens on [`CHANNEL`]. A transaction
//! that writes metadata (`Sql::publishes_metadata`) takes the same lock *exclusively* before
//! it commits ([`Tx::commit`](super::Tx::commit)): when it cannot at once, it sends a
//! notification on `CHANNEL` from another session ([`Notifier`]), and every holder stops
//! answering from memory and then gives its lock back. So while a server holds its lock no
//! new version can commit, and once it has given it back it reads the database again. A
//! server that dies gives the lock back with its session; one cut off stops trusting its lease
//! long before PostgreSQL ends that session (`service::lease`).

use std::sync::Mutex;
use std::time::Duration;

use super::{Conn, Db, DbError, Pool, Sql};

/// The advisory lock's key: the 64-bit FNV-1a hash of "arca metadata lease" (the leader's is
/// `leader::LEADER_LOCK`, the migrations' `schema::MIGRATION_LOCK`).
pub const LEASE_LOCK: i64 = super::leader::fnv1a(b"arca metadata lease") as i64;

/// The notification channel on which publishers ask holders to give their leases back.
pub const CHANNEL: &str = "arca_lease";

/// How long one wait for the holders lasts before the publisher asks again (a holder may
/// have taken its lock back between the question and the wait).
pub const ASK_EVERY: Duration = Duration::from_millis(100);

/// How long a publisher waits, in all, for the holders to give their leases back before it
/// gives up (`503`, nothing written). A holder that died gave its lock back with its session;
/// one cut off from the database keeps it until PostgreSQL ends its session, within
/// `leader::SESSION_TIMEOUT`.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(15);

impl Db {
    /// On PostgreSQL, the configuration of a holder's session (`service::lease`): never a
    /// pooled connection, whose lock would go back to the pool with it. `None` on SQLite,
    /// where one server is alone on its database and needs no lease.
    pub fn lease_session(&self) -> Option<tokio_postgres::Config> {
        match &*self.pool {
            Pool::Postgres { config, .. } => {
                Some(super::leader::dedicated(config, "arca metadata lease"))
            }
            Pool::Sqlite(_) => None,
        }
    }
}

/// A session of its own on which a publisher sends its notification: one sent inside the
/// publishing transaction would be delivered only when it commits, which is what it waits for.
/// Connected on first use; shared by the connections of a pool.
pub struct Notifier {
    config: tokio_postgres::Config,
    conn: Mutex<Option<Conn>>,
}

impl Notifier {
    pub(super) fn new(config: tokio_postgres::Config) -> Notifier {
        Notifier {
            config,
            conn: Mutex::new(None),
        }
    }

    /// Asks every holder to give its lease back (one round trip on the notifier's session).
    /// A session that broke while idle (the database restarted) is found broken only when
    /// used: then the question is asked once more on a new one.
    pub(super) fn ask(&self) -> Result<(), DbError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut tries = 0;
        loop {
            tries += 1;
            if conn.as_ref().is_none_or(Conn::is_broken) {
                *conn = Some(super::pg_connect(&self.config)?);
            }
            let c: &dyn Sql = conn.as_ref().expect("connected above");
            match c.batch(&format!("NOTIFY {CHANNEL}")) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    *conn = None;
                    if tries == 2 || !e.is_unavailable() {
                        return Err(e);
                    }
                }
            }
        }
    }
}

/// The notifier's session closes by blocking on a runtime of its own (see `Pool`'s `Drop`).
impl Drop for Notifier {
    fn drop(&mut self) {
        if let Some(c) = self
            .conn
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            super::close_off_executor(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_lock_is_neither_the_leaders_nor_the_migrations() {
        assert_ne!(LEASE_LOCK, super::super::leader::LEADER_LOCK);
        assert_ne!(LEASE_LOCK, 0x6172_6361);
    }
}
