//! The newest metadata files are served from memory (`service::MetaCache`) while they are the
//! newest (`service::reads::latest_cached`): on SQLite while the metadata generation has not
//! moved, on PostgreSQL after one read of the newest version from the database.
//!
//! - A reader on one pooled connection can read while a writer on another has inserted a new
//!   file but not committed it: what it caches then must not outlive the commit.
//! - Another server (here: another connection, not this process) writes a new file: this
//!   process's generation does not move, and the next poll must still serve the new file.
//!
//! On SQLite (one connection, one server per home) only the plain case exists: a committed
//! write makes the cached body stale.

use crate::common;

use arca::db::Sql;
use arca::tuf::metadata::TufRole;
use std::sync::mpsc;

const CHANNEL: &str = "dev";

/// The newest timestamp as the HTTP handler reads it: (version, body).
fn poll(rt: &tokio::runtime::Runtime, app: &arca::service::App) -> (u64, Vec<u8>) {
    let m = rt
        .block_on(arca::service::reads::latest_cached(
            app,
            CHANNEL.into(),
            TufRole::Timestamp,
        ))
        .unwrap()
        .expect("dev has a timestamp");
    (m.version, m.body.to_vec())
}

struct Fixture {
    _dir: tempfile::TempDir,
    pg: Option<common::PgDatabase>,
    app: arca::service::App,
    rt: tokio::runtime::Runtime,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let pg = common::pg_admin_url().map(|admin| common::PgDatabase::create(&admin));
    arca::home::init(&home, pg.as_ref().map(|p| p.url())).unwrap();
    let cfg = arca::config::Config::load(&home).unwrap();
    let app = arca::startup::open(&home, cfg).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    Fixture {
        _dir: dir,
        pg,
        app,
        rt,
    }
}

/// The newest timestamp's expiry (new files keep it; only the version and body matter here).
fn expiry(app: &arca::service::App) -> String {
    app.db
        .call_sync(|c| {
            Ok::<_, arca::db::DbError>(
                arca::db::tuf::latest(c, CHANNEL, TufRole::Timestamp)?
                    .unwrap()
                    .expires,
            )
        })
        .unwrap()
}

#[test]
fn a_body_read_before_a_commit_is_stale_after_it() {
    let Fixture { pg, app, rt, .. } = fixture();
    let (version, old) = poll(&rt, &app);
    let expires = expiry(&app);
    let new = b"{\"the next timestamp\":true}".to_vec();

    let (written, wait_for_write) = mpsc::channel();
    let (go_on, commit) = mpsc::channel::<()>();
    let (app_ref, new_ref, expires) = (&app, &new, &expires);
    let mut during = None;
    std::thread::scope(|s| {
        let writer = s.spawn(move || {
            app_ref
                .db
                .call_sync(|c| {
                    let tx = c.transaction()?;
                    arca::db::tuf::insert(
                        &tx,
                        CHANNEL,
                        TufRole::Timestamp,
                        version + 1,
                        new_ref,
                        expires,
                    )?;
                    written.send(()).unwrap();
                    // On SQLite the reader needs the one connection: commit first there.
                    if tx.engine() == arca::db::Engine::Sqlite {
                        return tx.commit();
                    }
                    commit.recv().unwrap();
                    tx.commit()
                })
                .unwrap()
        });
        wait_for_write.recv().unwrap();
        if pg.is_some() {
            // The insert is not committed: this reader (another connection) reads the
            // previous file and keeps it, as a poll at that moment does.
            during = Some(poll(&rt, &app));
            // The writer goes on before anything here may fail (the scope waits for it).
            go_on.send(()).unwrap();
        }
        writer.join().unwrap();
    });
    if let Some((v, body)) = during {
        assert_eq!(
            (v, body),
            (version, old),
            "the uncommitted timestamp is not visible yet"
        );
    }
    assert_eq!(
        poll(&rt, &app),
        (version + 1, new),
        "after the commit the next poll must serve the committed timestamp, not the cached one"
    );
}

#[test]
fn a_file_another_server_wrote_is_served_at_the_next_poll() {
    let Fixture { pg, app, rt, .. } = fixture();
    let Some(pg) = pg else {
        // On SQLite one server owns the home's database (the home lock): nothing else writes.
        eprintln!("ARCA_TEST_PG unset: only one server can write a SQLite home");
        return;
    };
    let (version, _) = poll(&rt, &app);
    let expires = expiry(&app);
    // Another server's write: through a connection of its own, so this process's generation
    // does not move.
    let other = common::db::TestDb::postgres(pg.url());
    let body = b"{\"written by another server\":true}".to_vec();
    other.execute(
        "INSERT INTO tuf_metadata (channel, role, version, body, expires, signed_at) \
         VALUES (?1, 'timestamp', ?2, ?3, ?4, ?4)",
        crate::params![CHANNEL, version as i64 + 1, body, expires],
    );
    assert_eq!(
        poll(&rt, &app),
        (version + 1, body),
        "a server must not serve its cached timestamp after another server committed a newer one"
    );
}
