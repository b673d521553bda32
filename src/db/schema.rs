//! Schema migrations: one history for both engines, written in SQLite's DDL and translated
//! for PostgreSQL (`INTEGER` is `BIGINT`, `BLOB` is `BYTEA`, an `INTEGER PRIMARY KEY` an
//! identity column). The version is SQLite's `user_version`, or the one row of `arca_schema` on
//! PostgreSQL, where migrations run under an advisory lock. Each step runs in one transaction.

use super::{Conn, DbError, Engine, Sql};
use crate::params;

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
    // 8: the rows that serialise use cases on PostgreSQL (`db::locks`): the trust head and
    // the audit head. (Channel rows are locked themselves.)
    r#"
    CREATE TABLE locks (
        name TEXT PRIMARY KEY
    );
    INSERT INTO locks (name) VALUES ('trust'), ('audit');
    "#,
    // 9: nothing on SQLite; on PostgreSQL, metadata bodies compressed with lz4 (see
    // POSTGRES_ONLY).
    "",
    // 10: staged uploads (the first request of a two-step push), so that any server sharing
    // the database and the store can commit one, and a restart keeps them: the temporary
    // object's path in the store, the digests the staging server computed, who may use it
    // for which name@version, and when a push claimed it (a claimed row is used up).
    r#"
    CREATE TABLE uploads (
        id TEXT PRIMARY KEY,
        actor TEXT NOT NULL,
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        temp_path TEXT NOT NULL,
        blake3 TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        claimed_at TEXT
    );
    CREATE INDEX uploads_by_created ON uploads(created_at);
    "#,
    // 11: the server's own keys (each channel's online key, a rotation's pending key, the
    // audit key), sealed with the master key that every server of the database holds
    // (`db::keys`, `arca_keys::sealed`), so that all of them sign with the same keys and a
    // rotation through one is seen by all.
    r#"
    CREATE TABLE server_keys (
        name TEXT PRIMARY KEY,
        key_id TEXT NOT NULL,
        sealed BLOB NOT NULL,
        created TEXT NOT NULL
    );
    "#,
];

/// What a migration does on PostgreSQL only, after its shared DDL.
const POSTGRES_ONLY: &[(usize, &str)] = &[(
    9,
    // A targets file lists every release of its channel (~0.4 KB each) and a new version is
    // stored per promotion: PostgreSQL's default compression (pglz) spent ~3.7 ms of CPU on
    // a 188 KB body, lz4 0.4 ms for the same size on disk. Servers built without lz4 (or older
    // than 14) keep pglz.
    r#"
    DO $$ BEGIN
        ALTER TABLE tuf_metadata ALTER COLUMN body SET COMPRESSION lz4;
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'lz4 is not available: metadata bodies keep the default compression';
    END $$;
    "#,
)];

/// Expand and contract: the oldest schema version whose binaries may keep serving a PostgreSQL
/// database this binary has migrated. A migration that only adds (a table, a nullable column,
/// an index) leaves it alone, so that during a rolling upgrade the servers still on the
/// previous binary keep running, and restart, beside the upgraded ones. A migration that
/// removes or changes something an older binary reads or writes (a contract step, shipped a
/// release after the code stopped using it) raises it to its own version. The migrating
/// binary records it in `arca_schema.compatible_from` (never lowering it), and a binary that
/// finds a newer schema serves only if its own version is at least that. 11: binaries from
/// before staged uploads and server keys lived in the database (10 and 11) cannot serve beside
/// them: they would keep uploads and keys to themselves.
pub const COMPATIBLE_FROM: i64 = 11;

/// The key of the advisory lock PostgreSQL migrations hold ("arca" in ASCII).
const MIGRATION_LOCK: i64 = 0x6172_6361;

/// The schema version the database has, and the one this binary knows.
pub fn version(conn: &mut Conn) -> Result<(i64, i64), DbError> {
    let known = MIGRATIONS.len() as i64;
    let found = match conn.engine() {
        Engine::Sqlite => {
            let c: &dyn Sql = conn;
            c.value("PRAGMA user_version", params![])?
        }
        Engine::Postgres => {
            let c: &dyn Sql = conn;
            let exists: i64 = c.value(
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = 'arca_schema'",
                params![],
            )?;
            if exists == 0 {
                0
            } else {
                c.value("SELECT version FROM arca_schema", params![])?
            }
        }
    };
    Ok((found, known))
}

/// On PostgreSQL, the oldest schema version whose binaries may serve this database (see
/// [`COMPATIBLE_FROM`]); `None` where it is not recorded (SQLite, or a schema no binary that
/// knows expand and contract has migrated).
pub fn compatible_from(conn: &mut Conn) -> Result<Option<i64>, DbError> {
    if conn.engine() != Engine::Postgres {
        return Ok(None);
    }
    let c: &dyn Sql = conn;
    let has: i64 = c.value(
        "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = current_schema() \
         AND table_name = 'arca_schema' AND column_name = 'compatible_from'",
        params![],
    )?;
    if has == 0 {
        return Ok(None);
    }
    Ok(Some(c.value(
        "SELECT compatible_from FROM arca_schema",
        params![],
    )?))
}

/// Brings the schema up to date; the versions before and after.
pub fn migrate(conn: &mut Conn) -> Result<(i64, i64), DbError> {
    if conn.engine() == Engine::Postgres {
        let c: &dyn Sql = conn;
        c.execute("SELECT pg_advisory_lock(?1)", params![MIGRATION_LOCK])?;
        c.batch("CREATE TABLE IF NOT EXISTS arca_schema (version BIGINT NOT NULL); \
                 INSERT INTO arca_schema (version) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM arca_schema); \
                 ALTER TABLE arca_schema ADD COLUMN IF NOT EXISTS compatible_from BIGINT NOT NULL DEFAULT 0")?;
        let result = migrate_locked(conn);
        let c: &dyn Sql = conn;
        let unlocked = c.execute("SELECT pg_advisory_unlock(?1)", params![MIGRATION_LOCK]);
        let versions = result?;
        unlocked?;
        return Ok(versions);
    }
    migrate_locked(conn)
}

fn migrate_locked(conn: &mut Conn) -> Result<(i64, i64), DbError> {
    let (current, known) = version(conn)?;
    if current > known {
        return Err(DbError::TooNew {
            found: current,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let engine = conn.engine();
        let tx = conn.transaction()?;
        let next = (i + 1) as i64;
        match engine {
            Engine::Sqlite => {
                tx.batch(sql)?;
                tx.batch(&format!("PRAGMA user_version = {next}"))?;
            }
            Engine::Postgres => {
                tx.batch(&postgres_ddl(sql))?;
                for (_, extra) in POSTGRES_ONLY.iter().filter(|(n, _)| *n as i64 == next) {
                    tx.batch(extra)?;
                }
                tx.execute("UPDATE arca_schema SET version = ?1", params![next])?;
            }
        }
        tx.commit()?;
    }
    if conn.engine() == Engine::Postgres {
        let c: &dyn Sql = conn;
        c.execute(
            "UPDATE arca_schema SET compatible_from = GREATEST(compatible_from, ?1)",
            params![COMPATIBLE_FROM],
        )?;
    }
    Ok((current, known))
}

/// SQLite's DDL as PostgreSQL's: 64-bit integers, bytes, identity keys. Types are whole
/// upper-case words; names are lower case, so no name is changed.
fn postgres_ddl(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 64);
    let mut rest = sql;
    while let Some(start) = rest.find(|c: char| c.is_ascii_uppercase()) {
        out.push_str(&rest[..start]);
        let word_len = rest[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len() - start);
        let word = &rest[start..start + word_len];
        let after = &rest[start + word_len..];
        let glued =
            start > 0 && rest[..start].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        match word {
            _ if glued => out.push_str(word),
            "INTEGER" if after.starts_with(" PRIMARY KEY") => {
                out.push_str("BIGINT GENERATED BY DEFAULT AS IDENTITY");
            }
            "INTEGER" => out.push_str("BIGINT"),
            "BLOB" => out.push_str("BYTEA"),
            _ => out.push_str(word),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_ddl_keeps_the_names_and_changes_the_types() {
        assert_eq!(
            postgres_ddl("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, b BLOB)"),
            "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT NOT NULL, b BYTEA)"
        );
        assert_eq!(
            postgres_ddl("CREATE TABLE blobs (BLOBS INTEGERS, x_INTEGER BLOB)"),
            "CREATE TABLE blobs (BLOBS INTEGERS, x_INTEGER BYTEA)"
        );
    }
}
