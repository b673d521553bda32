//! The election of the one server that runs the background work (re-signing, rollout ticks,
//! sweeps) when several serve one PostgreSQL database: a session-level advisory lock held on a
//! connection of its own, outside the pool. The lock lives exactly as long as that session: a
//! server that dies (however: SIGKILL closes its socket) loses it at once, and another takes
//! it at its next try. On SQLite there is one server per home (`home::HomeLock`), so it is
//! always the leader.

use std::time::Duration;

use super::{Conn, Db, DbError, Pool, Sql};
use crate::params;

/// The advisory lock's key: the 64-bit FNV-1a hash of "arca leader" (the migrations' lock is
/// another key, `schema::MIGRATION_LOCK`).
pub const LEADER_LOCK: i64 = fnv1a(b"arca leader") as i64;

pub(super) const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    h
}

/// How long the leader's session may go unanswered before either side calls it dead
/// (`TCP_USER_TIMEOUT` and keepalives here, keepalives on PostgreSQL's side): a leader cut off
/// from the database stops leading, and PostgreSQL frees the lock for another, within about
/// this, rather than at the operating systems' defaults of minutes to hours.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// One server's candidacy. Blocking (run it on the blocking pool); engine-neutral.
pub struct Elector {
    kind: Kind,
}

enum Kind {
    /// SQLite, or `[leader] always` (tests): this server leads.
    Always,
    Postgres {
        config: Box<tokio_postgres::Config>,
        /// The dedicated session, while it is connected.
        conn: Option<Conn>,
        /// That session holds the lock.
        held: bool,
    },
}

impl Db {
    /// An elector for this database: on PostgreSQL it will open a session of its own (never a
    /// pooled connection: the lock must not go back to the pool with it). `always`: lead
    /// whatever the others do (a single server, or tests of two leaders at once).
    pub fn elector(&self, always: bool) -> Elector {
        let kind = match &*self.pool {
            Pool::Postgres { config, .. } if !always => {
                let config = dedicated(config, "arca leader");
                Kind::Postgres {
                    config: Box::new(config),
                    conn: None,
                    held: false,
                }
            }
            _ => Kind::Always,
        };
        Elector { kind }
    }
}

/// The configuration of a session that holds a lock for this server (the leader's, a metadata
/// lease): keepalives on both sides and `TCP_USER_TIMEOUT`, so that a server cut off (not
/// killed) loses the session, and PostgreSQL frees its locks, within about
/// [`SESSION_TIMEOUT`], rather than at the operating systems' defaults of minutes to hours.
pub(super) fn dedicated(config: &tokio_postgres::Config, name: &str) -> tokio_postgres::Config {
    let mut config = config.clone();
    let secs = SESSION_TIMEOUT.as_secs();
    let server_side = format!(
        "-c tcp_keepalives_idle={} -c tcp_keepalives_interval=1 -c tcp_keepalives_count={}",
        secs / 2,
        secs / 2
    );
    let options = match config.get_options() {
        Some(o) if !o.is_empty() => format!("{o} {server_side}"),
        _ => server_side,
    };
    config
        .options(options)
        .keepalives(true)
        .keepalives_idle(SESSION_TIMEOUT / 2)
        .keepalives_interval(Duration::from_secs(1))
        .tcp_user_timeout(SESSION_TIMEOUT)
        .application_name(name);
    config
}

impl Elector {
    /// Whether this server leads now: a leader checks that its session still holds the lock
    /// (one round trip); a follower tries to take it. An error means this server does not
    /// lead (the session broke, or the database cannot be reached); the broken session is
    /// dropped, and the next call connects again.
    pub fn try_lead(&mut self) -> Result<bool, DbError> {
        let Kind::Postgres { config, conn, held } = &mut self.kind else {
            return Ok(true);
        };
        if conn.as_ref().is_some_and(Conn::is_broken) {
            // The lock went with the session: no longer leading; the next call reconnects.
            *conn = None;
            if std::mem::take(held) {
                return Err(DbError::Unavailable(
                    "the leader's database session broke".into(),
                ));
            }
        }
        let result = (|| {
            if conn.is_none() {
                *held = false;
                *conn = Some(super::pg_connect(config)?);
            }
            let c: &dyn Sql = conn.as_ref().expect("connected above");
            if *held {
                // Session-level locks are in pg_locks as (high 32 bits, low 32 bits, 1).
                let n: i64 = c.value(
                    "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' \
                     AND pid = pg_backend_pid() AND granted AND objsubid = 1 \
                     AND CAST(classid AS BIGINT) = ?1 AND CAST(objid AS BIGINT) = ?2",
                    params![(LEADER_LOCK >> 32) & 0xffff_ffff, LEADER_LOCK & 0xffff_ffff],
                )?;
                Ok(n == 1)
            } else {
                c.value("SELECT pg_try_advisory_lock(?1)", params![LEADER_LOCK])
            }
        })();
        match result {
            Ok(leads) => {
                *held = leads;
                Ok(leads)
            }
            Err(e) => {
                *held = false;
                *conn = None;
                Err(e)
            }
        }
    }
}

/// PostgreSQL's client blocks on a runtime of its own when it closes; the elector may be
/// dropped on an executor thread (at shutdown), so its session is closed on a thread of its own.
impl Drop for Elector {
    fn drop(&mut self) {
        if let Kind::Postgres { conn, .. } = &mut self.kind
            && let Some(c) = conn.take()
        {
            super::close_off_executor(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_lock_is_fixed_and_not_the_migrations() {
        assert_eq!(LEADER_LOCK, fnv1a(b"arca leader") as i64);
        assert_ne!(LEADER_LOCK, 0x6172_6361);
        assert_ne!(fnv1a(b"arca leader"), fnv1a(b"arca leadex"));
    }
}
