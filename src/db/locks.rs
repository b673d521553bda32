//! The row locks of the concurrency contract (docs/architecture.md, "Concurrency"): a use case
//! takes the locks of what it decides on before the reads those decisions rest on, always in
//! one order: the trust row, then channel rows in pipeline order, then the audit head last.
//!
//! On PostgreSQL (READ COMMITTED) each is a `SELECT ... FOR NO KEY UPDATE` of one row, held to
//! the end of the transaction; every statement after it sees what the transaction that held
//! the lock before committed. The locks go to the server with the statement after them, in
//! its round trip (`Sql::lock`). `NO KEY` so that the foreign keys of rows inserted elsewhere
//! (`releases.channel`) do not queue behind it. On SQLite they are no-ops: every transaction
//! begins `IMMEDIATE`, holding the database's one write lock from its first statement.

use super::{DbError, Engine, Sql};
use crate::params;

/// The trust head: taken by every use case that reads the current trust document to decide
/// (promotions, pushes, trust changes), so that one signed under a revoked key never commits
/// after the revocation did.
pub fn trust(c: &dyn Sql) -> Result<(), DbError> {
    head(c, "trust")
}

/// A channel's row: taken before reading the channel's releases and entries to re-sign its
/// targets, so that two promotions into one channel never sign versions that drop each
/// other's release. (A channel that does not exist has nothing to lock; the use case then
/// refuses the request.)
pub fn channel(c: &dyn Sql, channel: &str) -> Result<(), DbError> {
    c.lock(
        "SELECT name FROM channels WHERE name = ?1 FOR NO KEY UPDATE",
        params![channel],
        None,
    )
}

/// Every channel's row, in pipeline order (a trust change re-signs them all).
pub fn all_channels(c: &dyn Sql) -> Result<(), DbError> {
    c.lock(
        "SELECT name FROM channels ORDER BY position FOR NO KEY UPDATE",
        params![],
        None,
    )
}

/// The audit head, last: appends are serialised in the chain's order.
pub fn audit_head(c: &dyn Sql) -> Result<(), DbError> {
    head(c, "audit")
}

fn head(c: &dyn Sql, name: &str) -> Result<(), DbError> {
    c.lock(
        "SELECT name FROM locks WHERE name = ?1 FOR NO KEY UPDATE",
        params![name],
        Some(&format!("no lock row {name}")),
    )
}

/// The current time for rows a use case writes after its locks: the database's clock on
/// PostgreSQL (so that audit times follow the chain's order across servers whose clocks
/// differ), this machine's on SQLite (the database's machine).
pub fn now(c: &dyn Sql) -> Result<String, DbError> {
    match c.engine() {
        Engine::Sqlite => Ok(super::now_str()),
        Engine::Postgres => c.value(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
            params![],
        ),
    }
}
