//! Schema migrations, tracked in SQLite's `user_version`. Each step runs in one transaction.

use rusqlite::Connection;

use super::DbError;

const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
    CREATE TABLE blobs (
        blake3 TEXT PRIMARY KEY,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX blobs_sha256 ON blobs(sha256);
    CREATE TABLE artifacts (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        file_name TEXT NOT NULL,
        blake3 TEXT NOT NULL REFERENCES blobs(blake3),
        media_type TEXT NOT NULL,
        uploaded_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE(name, version)
    );
    CREATE TABLE statements (
        sha256 TEXT PRIMARY KEY,
        artifact_id INTEGER NOT NULL REFERENCES artifacts(id),
        predicate_type TEXT NOT NULL,
        signers TEXT NOT NULL,
        envelope BLOB NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX statements_artifact ON statements(artifact_id);
    CREATE TABLE trust (
        version INTEGER PRIMARY KEY,
        envelope BLOB NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE channels (
        name TEXT PRIMARY KEY,
        position INTEGER NOT NULL
    );
    CREATE TABLE releases (
        id INTEGER PRIMARY KEY,
        channel TEXT NOT NULL REFERENCES channels(name),
        name TEXT NOT NULL,
        artifact_id INTEGER NOT NULL REFERENCES artifacts(id),
        action TEXT NOT NULL,
        actor TEXT NOT NULL,
        reason TEXT,
        created_at TEXT NOT NULL
    );
    CREATE INDEX releases_by_name ON releases(channel, name, id);
    CREATE TABLE tuf_metadata (
        channel TEXT NOT NULL REFERENCES channels(name),
        role TEXT NOT NULL,
        version INTEGER NOT NULL,
        body BLOB NOT NULL,
        expires TEXT NOT NULL,
        PRIMARY KEY (channel, role, version)
    );
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        hash BLOB NOT NULL,
        role TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        outcome TEXT NOT NULL,
        details TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    "#,
    // 2: promotion policies (by digest, as the trust document pins them) and signed audit
    // checkpoints.
    r#"
    CREATE TABLE policies (
        sha256 TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE audit_checkpoints (
        size INTEGER PRIMARY KEY,
        head TEXT NOT NULL,
        at TEXT NOT NULL,
        keyid TEXT NOT NULL,
        sig TEXT NOT NULL
    );
    "#,
    // 3: each channel's current TUF target entries, canonical JSON, so that a promotion
    // re-signs its channel's targets by concatenating stored entries instead of rebuilding
    // every entry from the database.
    r#"
    CREATE TABLE tuf_entries (
        channel TEXT NOT NULL REFERENCES channels(name),
        path TEXT NOT NULL,
        name TEXT NOT NULL,
        entry BLOB NOT NULL,
        PRIMARY KEY (channel, path)
    );
    CREATE INDEX tuf_entries_by_name ON tuf_entries(channel, name);
    "#,
    // 4: phased rollouts, agents' reports, the last word of each agent, and token roles that
    // mean something (`reporter` tokens may only post reports).
    r#"
    CREATE TABLE rollouts (
        id INTEGER PRIMARY KEY,
        channel TEXT NOT NULL REFERENCES channels(name),
        name TEXT NOT NULL,
        artifact_id INTEGER NOT NULL REFERENCES artifacts(id),
        previous_id INTEGER REFERENCES artifacts(id),
        plan TEXT NOT NULL,
        step INTEGER NOT NULL,
        step_started_at TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX rollouts_by_name ON rollouts(channel, name, id);
    CREATE INDEX rollouts_by_state ON rollouts(state);
    CREATE TABLE reports (
        id INTEGER PRIMARY KEY,
        rollout_id INTEGER REFERENCES rollouts(id),
        step INTEGER,
        channel TEXT NOT NULL,
        name TEXT NOT NULL,
        version TEXT,
        agent TEXT NOT NULL,
        outcome TEXT NOT NULL,
        message TEXT NOT NULL,
        at TEXT NOT NULL,
        received_at TEXT NOT NULL,
        actor TEXT NOT NULL
    );
    CREATE INDEX reports_by_rollout ON reports(rollout_id, agent, id);
    CREATE TABLE agents (
        agent TEXT NOT NULL,
        channel TEXT NOT NULL,
        name TEXT NOT NULL,
        current TEXT,
        version TEXT,
        outcome TEXT NOT NULL,
        message TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        PRIMARY KEY (channel, name, agent)
    );
    "#,
    // 5: when each metadata file was signed (by the server's wall clock), so that a clock
    // that went back behind the last signing is caught even across a restart.
    r#"
    ALTER TABLE tuf_metadata ADD COLUMN signed_at TEXT;
    CREATE INDEX tuf_metadata_by_signed_at ON tuf_metadata(signed_at);
    "#,
    // 6: reporter tokens bound to the agents (and channels) they speak for, token labels, revoked
    // tokens kept (marked) for the listing; the
    // percentage a rollout step publishes (raised so that a step holds a known agent); the
    // token each agent last reported with; reports looked up per agent (they are pruned).
    r#"
    ALTER TABLE tokens ADD COLUMN label TEXT;
    ALTER TABLE tokens ADD COLUMN agents TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE tokens ADD COLUMN channels TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE tokens ADD COLUMN revoked_at TEXT;
    UPDATE tokens SET agents = '["*"]' WHERE role = 'reporter';
    ALTER TABLE rollouts ADD COLUMN percent INTEGER;
    ALTER TABLE agents ADD COLUMN actor TEXT;
    CREATE INDEX reports_by_agent ON reports(channel, name, agent, id);
    "#,
    // 7: token roles publisher, promoter and viewer, scoped to name globs; token expiry; when
    // each token was last used (its own table: recording a use is no change to the token,
    // and is written at most once a minute).
    r#"
    ALTER TABLE tokens ADD COLUMN names TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE tokens ADD COLUMN expires_at TEXT;
    CREATE TABLE token_used (
        id TEXT PRIMARY KEY REFERENCES tokens(id),
        at TEXT NOT NULL
    );
    "#,
];

/// Brings the schema up to date.
pub fn migrate(conn: &mut Connection) -> Result<(), DbError> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(DbError::TooNew {
            found: current,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
