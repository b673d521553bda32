//! The composition root: opens a home (database, blob store, keys) into the [`App`] the use
//! cases share, starts the background tasks, and hands the app to `http` to serve.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::config::Config;
use crate::home::{self, Home};
use crate::service::App;

/// Opens an initialised home: database, blob store, keys, the state of the use cases. (Also
/// what benchmarks use to drive the use cases without HTTP.)
pub fn open(dir: &Path, cfg: Config) -> anyhow::Result<App> {
    let home = Home::new(dir);
    let db = home.open_db(&cfg)?;
    for ch in &cfg.pipeline {
        let built = db.call_sync(|c| {
            let tx = c.transaction()?;
            crate::db::locks::channel(&tx, ch.as_str())?;
            let built = crate::tuf::repo::build_missing_entries(&tx, ch.as_str())?;
            tx.commit()?;
            Ok::<_, crate::db::DbError>(built)
        })?;
        if built {
            tracing::info!(channel = %ch, "stored the target entries of the channel's releases");
        }
    }
    let options: Vec<(String, String)> = cfg.store.options.clone().into_iter().collect();
    let store = arca_store::BlobStore::open(&cfg.store.url, &dir.join("blobs"), &options)
        .context("opening the blob store")?;
    let keys = crate::keyring::load(dir, &cfg, &db)?;
    let transfers = Arc::new(crate::service::transfers::Transfers::new(&cfg.limits));
    Ok(App {
        db,
        store,
        cfg: Arc::new(cfg),
        keys: Arc::new(crate::service::sealed::ServerKeys::new(
            keys.master,
            keys.online,
        )),
        home: dir.to_path_buf(),
        counters: Default::default(),
        meta_cache: Default::default(),
        report_limiter: Default::default(),
        transfers,
        pins: Default::default(),
        auto: Default::default(),
        leader: Default::default(),
        lease: Default::default(),
        audit_key: Arc::new(keys.audit),
    })
}

/// What `arca serve` overrides of arca.toml.
#[derive(Debug, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--tls-cert` and `--tls-key` (absolute, or relative to the home like arca.toml's): they
    /// replace `[tls] cert` and `key`, and turn TLS on if arca.toml has no `[tls]`.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// Initialises `dir` if it is empty, opens it, cleans up what a previous run left, starts the
/// background tasks, then serves until stopped.
pub async fn serve(dir: &Path, overrides: Overrides) -> anyhow::Result<()> {
    let home = Home::new(dir);
    if !home.is_initialised() {
        if let Some(url) = Config::load(dir)?.database.url {
            anyhow::bail!(
                "{} is not initialised and its database is PostgreSQL ({}): serve initialises only SQLite homes; \
                 run `arca init --home {} --database URL` once",
                dir.display(),
                crate::db::redact(&url),
                dir.display()
            );
        }
        let report = home::init(dir, None)?;
        tracing::info!(home = %dir.display(), root_key = %report.root_key_id, "initialised a new home");
    }
    let mut cfg = Config::load(dir)?;
    if let Some(l) = overrides.listen {
        cfg.listen = l;
    }
    if let Some((cert, key)) = overrides.tls {
        let client_ca = cfg.tls.take().and_then(|t| t.client_ca);
        cfg.tls = Some(crate::config::TlsConfig {
            cert,
            key,
            client_ca,
        });
    }
    // Off the executor: PostgreSQL's client blocks (it runs a runtime of its own).
    let owned = dir.to_path_buf();
    let app = tokio::task::spawn_blocking(move || open(&owned, cfg))
        .await
        .context("opening the home")??;
    tracing::info!(home = %dir.display(), database = app.db.engine().as_str(), "home opened");

    // Every server sweeps at its own start, leader or not: the leftovers these remove are a
    // crash's, and the server that crashed is the one that starts again (a follower's would
    // wait for the leader's next restart otherwise). Several servers sharing the store are
    // safe: both sweeps remove only what is older than `store.temp_max_age` (the staged-upload
    // lifetime), so never the blob or the staged upload another server's push is working on.
    crate::service::leader::start(&app).await;
    // On PostgreSQL polls are answered from memory while this server holds a metadata lease.
    if app.cfg.tuf.memory_cache
        && let Some(session) = app.db.lease_session()
    {
        tokio::spawn(crate::service::lease::run(app.lease.clone(), session));
    }
    crate::service::sweep::once(&app).await;
    crate::service::sweep::orphans(&app).await;
    // The background work runs on the leader only (service::leader).
    actix_web::rt::spawn(crate::service::sweep::run(app.clone()));
    actix_web::rt::spawn(crate::service::refresh::run(app.clone()));
    actix_web::rt::spawn(crate::service::rollout::run(app.clone()));

    crate::http::serve(app).await
}
