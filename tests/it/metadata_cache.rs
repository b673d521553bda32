//! The newest metadata files are served from memory (`service::MetaCache`): a cached body is
//! used while the metadata generation (`db::tuf::GENERATION`) has not moved since it was read.
//!
//! On PostgreSQL a reader on one pooled connection can read the generation a writer's insert
//! has already bumped and then, the writer not having committed yet, the previous body. This
//! test forces exactly that interleaving with two connections of one app and checks that the
//! pair read then is stale once the writer commits: without the bump after every commit
//! (`Tx::commit`), the cache would go on serving the previous timestamp until the next write.
//! On SQLite (one connection) the interleaving cannot happen; the test checks the plain case
//! there: a committed write makes the cached body stale.

use crate::common;

use arca::db::Sql;
use arca::tuf::metadata::TufRole;
use std::sync::mpsc;

const CHANNEL: &str = "dev";

/// The newest timestamp as the HTTP handler reads it for the cache: (generation, body).
fn read_latest(rt: &tokio::runtime::Runtime, app: &arca::service::App) -> (u64, Vec<u8>) {
    let (g, body) = rt
        .block_on(arca::service::reads::latest_metadata(
            app,
            CHANNEL.into(),
            TufRole::Timestamp,
        ))
        .unwrap();
    (g, body.expect("dev has a timestamp"))
}

#[test]
fn a_body_read_before_a_commit_is_stale_after_it() {
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

    let (g0, old) = read_latest(&rt, &app);
    if pg.is_none() {
        // SQLite: the pair cached before the write.
        app.meta_cache
            .put(CHANNEL, TufRole::Timestamp, g0, old.clone());
    }
    let (version, expires) = app
        .db
        .call_sync(|c| {
            let m = arca::db::tuf::latest(c, CHANNEL, TufRole::Timestamp)?.unwrap();
            Ok::<_, arca::db::DbError>((m.version, m.expires))
        })
        .unwrap();
    let new = b"{\"the next timestamp\":true}".to_vec();

    let (written, wait_for_write) = mpsc::channel();
    let (go_on, commit) = mpsc::channel::<()>();
    let (app_ref, new_ref) = (&app, &new);
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
                        &expires,
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
            // The insert bumped the generation, but is not committed: this reader (another
            // connection) reads the new generation with the previous body, as a poll can.
            let (g, body) = read_latest(&rt, &app);
            app.meta_cache
                .put(CHANNEL, TufRole::Timestamp, g, body.clone());
            let cached = app.meta_cache.get(CHANNEL, TufRole::Timestamp).is_some();
            // The writer goes on before anything here may fail (the scope waits for it).
            go_on.send(()).unwrap();
            assert_eq!(body, old, "the uncommitted timestamp is not visible yet");
            assert!(cached, "cached until the next write");
        }
        writer.join().unwrap();
    });
    assert!(
        app.meta_cache.get(CHANNEL, TufRole::Timestamp).is_none(),
        "after the commit the cached previous timestamp must be stale"
    );
    let (_, body) = read_latest(&rt, &app);
    assert_eq!(body, new, "the committed timestamp is served");
}
