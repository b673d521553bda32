//! This server's metadata lease on PostgreSQL (the protocol is in `db::lease`): while it holds
//! one, polls are answered from memory with no read of the database, because no other server
//! can commit a new version until this one has given the lease back.
//!
//! The lease is held on a session of its own, and trusted only while that session answers:
//! a ping every [`PING_EVERY`], and the lease is trusted for [`TRUST_FOR`] after the last
//! ping that was answered *was sent*. PostgreSQL ends a silent session, and so frees the
//! lock for a publisher, only after `db::leader::SESSION_TIMEOUT` (10 s) of silence, so a
//! server cut off stops answering from memory at least 8 s before any publisher can commit.
//! A killed server frees its lock with its socket at once. A holder asked to give its lease
//! back stops trusting it *before* it unlocks, and takes a new one only after a quiet
//! [`QUIET_FOR`] with no request to give it back: under a steady stream of promotions a server
//! simply reads per poll (`service::Revalidation`), as it does without a lease.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::db::lease::{CHANNEL, LEASE_LOCK};

/// How often the holder's session is pinged.
pub const PING_EVERY: Duration = Duration::from_millis(500);

/// How long after the last answered ping was sent the lease is trusted.
pub const TRUST_FOR: Duration = Duration::from_secs(2);

/// How long without a request to give the lease back before a new one is taken.
pub const QUIET_FOR: Duration = Duration::from_millis(100);

/// How long after a session failed before connecting again.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Whether this server holds a lease now, and which: cached metadata is answered from memory
/// only when it was read under the lease held now ([`MetaLease::current`]).
pub struct MetaLease {
    /// The number of the lease held now; 0: none.
    held: AtomicU64,
    /// Until when (milliseconds after `base`) the lease held is trusted.
    until: AtomicU64,
    base: Instant,
    /// How many leases were given back on request (`arca_meta_lease_revocations_total`).
    pub revoked: AtomicU64,
}

impl Default for MetaLease {
    fn default() -> Self {
        MetaLease {
            held: AtomicU64::new(0),
            until: AtomicU64::new(0),
            base: Instant::now(),
            revoked: AtomicU64::new(0),
        }
    }
}

impl MetaLease {
    /// The number of the lease this server holds and still trusts, if any.
    pub fn current(&self) -> Option<u64> {
        let n = self.held.load(SeqCst);
        (n != 0 && self.millis(Instant::now()) < self.until.load(SeqCst)).then_some(n)
    }

    fn millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_millis() as u64
    }

    /// Lease `n` is held, its session alive when a request sent at `alive` was answered.
    fn grant(&self, n: u64, alive: Instant) {
        self.trust(alive);
        self.held.store(n, SeqCst);
    }

    /// The session answered a request sent at `alive`.
    fn trust(&self, alive: Instant) {
        self.until.store(self.millis(alive + TRUST_FOR), SeqCst);
    }

    /// Stops trusting the lease (before its lock is given back).
    fn end(&self) {
        self.held.store(0, SeqCst);
    }
}

/// Holds a lease whenever it can, forever (on PostgreSQL, with the memory cache on).
pub async fn run(lease: Arc<MetaLease>, config: tokio_postgres::Config) {
    let mut numbers = 0u64;
    // Warned once per outage, not at every try.
    let mut warned = false;
    loop {
        let before = numbers;
        let ended = session(&lease, &config, &mut numbers).await;
        lease.end();
        if let Err(e) = ended {
            if numbers > before {
                warned = false;
            }
            if warned {
                tracing::debug!(error = %e, "the metadata lease's session failed again");
            } else {
                tracing::warn!(error = %e, "the metadata lease's session ended; polls read the database until it is back");
                warned = true;
            }
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

/// One session: takes a lease after each quiet spell, gives it back when asked. Returns when
/// the session fails.
async fn session(
    lease: &MetaLease,
    config: &tokio_postgres::Config,
    numbers: &mut u64,
) -> Result<(), String> {
    let (client, mut connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    // The connection's messages: notifications are sent on, anything else ends it.
    let (asked_tx, mut asked) = tokio::sync::mpsc::unbounded_channel::<()>();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                    if asked_tx.send(()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    let _stop = AbortOnDrop(driver);
    let closed = || "the session closed".to_owned();
    let sql = |e: tokio_postgres::Error| e.to_string();
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(sql)?;
    let take = format!("SELECT pg_advisory_lock_shared({LEASE_LOCK})");
    let give = format!("SELECT pg_advisory_unlock_shared({LEASE_LOCK})");
    loop {
        // A quiet spell first: no publisher asked for QUIET_FOR.
        loop {
            match tokio::time::timeout(QUIET_FOR, asked.recv()).await {
                Err(_) => break,
                Ok(Some(())) => {}
                Ok(None) => return Err(closed()),
            }
        }
        let sent = Instant::now();
        // Waits while a publisher holds the lock or waits for it.
        client.batch_execute(&take).await.map_err(sql)?;
        // A publisher that asked while this waited is waiting for the lock: it goes first.
        let mut pending = false;
        while let Ok(()) = asked.try_recv() {
            pending = true;
        }
        if pending {
            client.batch_execute(&give).await.map_err(sql)?;
            continue;
        }
        *numbers += 1;
        lease.grant(*numbers, sent);
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                note = asked.recv() => {
                    // Not trusted from here on: only then is the lock given back.
                    lease.end();
                    note.ok_or_else(closed)?;
                    lease.revoked.fetch_add(1, SeqCst);
                    client.batch_execute(&give).await.map_err(sql)?;
                    break;
                }
                _ = ping.tick() => {
                    let sent = Instant::now();
                    match tokio::time::timeout(TRUST_FOR, client.batch_execute("SELECT 1")).await {
                        Ok(Ok(())) => lease.trust(sent),
                        Ok(Err(e)) => return Err(sql(e)),
                        Err(_) => return Err("the session did not answer a ping".into()),
                    }
                }
            }
        }
    }
}

/// Ends the connection's task with the session.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_trusted_only_while_held_and_its_session_answered_lately() {
        let lease = MetaLease::default();
        assert_eq!(lease.current(), None, "no lease yet");
        lease.grant(7, Instant::now());
        assert_eq!(lease.current(), Some(7));
        lease.end();
        assert_eq!(lease.current(), None, "given back");
        // Granted on an answer to a request sent longer ago than TRUST_FOR: not trusted.
        let long_ago = Instant::now()
            .checked_sub(TRUST_FOR + Duration::from_millis(50))
            .expect("the clock is past TRUST_FOR");
        let old = MetaLease {
            base: long_ago - Duration::from_millis(1),
            ..MetaLease::default()
        };
        old.grant(8, long_ago);
        assert_eq!(
            old.current(),
            None,
            "its session has not answered for too long"
        );
        old.trust(Instant::now());
        assert_eq!(old.current(), Some(8), "a ping answered again");
    }
}
