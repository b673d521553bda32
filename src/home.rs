//! The home directory: what `arca init` creates and `arca serve` opens.
//!
//! ```text
//! HOME/arca.toml            config
//! HOME/arca.db              SQLite (WAL)
//! HOME/blobs/               the local blob store (when store.url is empty)
//! HOME/keys/root.key        development root key (move it offline in production)
//! HOME/master.key           the master key that seals the server's own keys in the database
//!                           (each channel's online key, the audit key: `db::keys`)
//! HOME/admin.token          the first admin token (the database keeps only its hash)
//! HOME/root.json            the pinned root clients are given
//! HOME/serve.lock           held by the one `arca serve` of this home; names its process id
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use arca_keys::{SignedEnvelope, SigningKey, TrustDocument};
use chrono::Utc;

use crate::auth;
use crate::config::{CONFIG_FILE, Config};
use crate::db::{self, Db};
use crate::model::ChannelName;
use crate::tuf::repo;

pub const DB_FILE: &str = "arca.db";
pub const ROOT_KEY: &str = "keys/root.key";
pub const ADMIN_TOKEN: &str = "admin.token";
pub const ROOT_JSON: &str = "root.json";
pub const LOCK_FILE: &str = "serve.lock";

/// The exclusive lock one server holds on its home for as long as it runs: two servers on one
/// SQLite home would each sign and cache their own metadata versions, and clients would see
/// one roll the other back. Released by the operating system when the process ends, however
/// it ends.
pub struct HomeLock {
    _file: std::fs::File,
}

impl HomeLock {
    /// Takes the lock of `dir` (created if missing), or fails naming the process that holds it.
    pub fn acquire(dir: &Path) -> anyhow::Result<HomeLock> {
        use std::io::{Read, Seek, Write};
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    "another process".to_owned()
                } else {
                    format!("process {holder}")
                };
                bail!(
                    "home {} is in use by another arca serve ({who}, lock {}): stop it first, \
                     or serve another --home",
                    dir.display(),
                    path.display()
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        Ok(HomeLock { _file: file })
    }
}

/// Paths inside a home.
pub struct Home {
    pub dir: PathBuf,
}

impl Home {
    pub fn new(dir: &Path) -> Self {
        Home {
            dir: dir.to_path_buf(),
        }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.join(DB_FILE)
    }

    /// Whether `init` ran here: the SQLite file exists, or (on PostgreSQL, where the database
    /// is elsewhere) the pinned root that `init` writes last.
    pub fn is_initialised(&self) -> bool {
        self.db().exists() || self.dir.join(ROOT_JSON).exists()
    }

    /// Opens the home's database: PostgreSQL when arca.toml (or `ARCA_DATABASE_URL`) names
    /// one, which must already hold the current schema; else the SQLite file, created and
    /// migrated as needed.
    pub fn open_db(&self, cfg: &Config) -> Result<Db, crate::db::DbError> {
        match &cfg.database.url {
            Some(url) => Db::connect(url, cfg.database.pool),
            None => Db::open(&self.db()),
        }
    }
}

/// What `init` made.
pub struct InitReport {
    pub root_key_id: String,
    pub channels: Vec<ChannelName>,
}

/// Creates a home: config, database, keys, admin token, trust document v1, and each channel's
/// TUF repository (the shared root v1, the channel's root v2, empty targets).
/// `database`: a PostgreSQL URL to initialise (empty, once) and record in arca.toml; none keeps
/// what arca.toml (or `ARCA_DATABASE_URL`) says, by default SQLite in the home.
pub fn init(dir: &Path, database: Option<&str>) -> anyhow::Result<InitReport> {
    let home = Home::new(dir);
    if home.is_initialised() {
        let what = if home.db().exists() {
            DB_FILE
        } else {
            ROOT_JSON
        };
        bail!("{} is already initialised ({what} exists)", dir.display());
    }
    std::fs::create_dir_all(dir.join("keys"))
        .with_context(|| format!("creating {}", dir.display()))?;
    restrict(&dir.join("keys"), 0o700)?;
    let cfg_path = dir.join(CONFIG_FILE);
    if !cfg_path.exists() {
        let mut initial = Config::default();
        initial.database.url = database.map(str::to_owned);
        std::fs::write(&cfg_path, initial.initial_file())
            .with_context(|| format!("writing {}", cfg_path.display()))?;
    } else if let Some(url) = database {
        record_database_url(&cfg_path, url)?;
    }
    let cfg = Config::load(dir)?;
    // A PostgreSQL database is initialised once, and only when it holds no arca schema yet.
    if let Some(url) = &cfg.database.url {
        if let Some(found) = Db::postgres_holds_a_home(url)? {
            bail!(
                "the PostgreSQL database {} already holds an arca schema (version {found}): init creates a new one; \
                 point a home at it with [database] url, or use an empty database",
                crate::db::redact(url)
            );
        }
        Db::migrate_postgres(url)?;
    }

    // The server's own keys (each channel's online key, the audit key) are sealed in the
    // database with the master key (`keyring`): the server signs with them unattended, and
    // every server of the database signs with the same ones. The root key is a development
    // key file, to be encrypted (`arca key encrypt`) and moved offline, or rotated away
    // (docs/key-management.md, "Key files").
    let root = SigningKey::generate()?;
    root.write_files(&dir.join(ROOT_KEY))?;
    let (_, master) = crate::keyring::master_for_init(dir, &cfg)?;
    let online: BTreeMap<ChannelName, SigningKey> = cfg
        .pipeline
        .iter()
        .map(|ch| Ok((ch.clone(), SigningKey::generate()?)))
        .collect::<Result<_, arca_keys::KeyError>>()?;

    let (token, token_id, token_hash) = auth::new_token()?;
    write_private(&dir.join(ADMIN_TOKEN), format!("{token}\n").as_bytes())?;

    let audit = SigningKey::generate()?;

    // Trust v1: the root key, the audit key, and each channel's default policy.
    let now = Utc::now();
    let mut genesis = TrustDocument::genesis(&[root.public()], 1);
    genesis.keys.insert(
        audit.key_id(),
        arca_keys::KeyEntry {
            public: audit.public().to_tuf(),
            roles: [arca_keys::Role::Audit].into(),
            scope: Vec::new(),
            status: arca_keys::KeyStatus::Active,
            not_after: None,
            label: Some("audit checkpoints".into()),
            replaced_by: None,
        },
    );
    let policies: Vec<(String, String)> = (0..cfg.pipeline.len())
        .map(|i| {
            let body = crate::policy::Policy::default_for(&cfg.pipeline, i).to_toml();
            (crate::tuf::metadata::sha256_hex(body.as_bytes()), body)
        })
        .collect();
    for (ch, (sha, _)) in cfg.pipeline.iter().zip(&policies) {
        genesis.policies.insert(ch.to_string(), sha.clone());
    }
    let trust = SignedEnvelope::sign(&genesis, &[&root])?;
    let shared_root = repo::build_root(
        1,
        &[root.public()],
        1,
        None,
        None,
        repo::root_expiry(now, &cfg.tuf),
    );
    let database = home.open_db(&cfg)?;
    let root_json = database.call_sync(|c| {
        let tx = c.transaction()?;
        db::tokens::insert(
            &tx,
            &token_id,
            &token_hash,
            crate::auth::TokenRole::Admin,
            Some("initial admin"),
            &Default::default(),
            None,
        )?;
        db::trust::insert(&tx, 1, &trust.to_bytes())?;
        crate::keyring::store_new(&tx, &master, &audit, &online)?;
        for (sha, body) in &policies {
            db::policies::insert(&tx, sha, body)?;
        }
        let mut root_json = Vec::new();
        for (pos, ch) in cfg.pipeline.iter().enumerate() {
            db::channels::insert_channel(&tx, ch.as_str(), pos)?;
            root_json = repo::store_root(&tx, ch.as_str(), &shared_root, &[&root])?;
            let channel_root = repo::build_root(
                2,
                &[root.public()],
                1,
                Some(&online[ch].public()),
                Some(ch.as_str()),
                repo::root_expiry(now, &cfg.tuf),
            );
            repo::store_root(&tx, ch.as_str(), &channel_root, &[&root])?;
            repo::publish_targets(&tx, ch.as_str(), &online[ch], &cfg.tuf, now)?;
        }
        db::audit::append(
            &tx,
            &db::audit::Entry {
                actor: "init",
                action: crate::audit::AuditAction::Init,
                subject: "home",
                outcome: "ok",
                details: serde_json::json!({
                    "root_key": root.key_id().to_string(),
                    "channels": cfg.pipeline,
                }),
            },
        )?;
        tx.commit()?;
        Ok(root_json)
    })?;
    std::fs::write(dir.join(ROOT_JSON), root_json).context("writing root.json")?;
    Ok(InitReport {
        root_key_id: root.key_id().to_string(),
        channels: cfg.pipeline.clone(),
    })
}

fn write_private(path: &Path, body: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(body)?;
    f.sync_all()?;
    Ok(())
}

fn restrict(path: &Path, mode: u32) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {}", path.display()))?;
    }
    let _ = (path, mode);
    Ok(())
}

/// Records `[database] url` in arca.toml (appended; a different URL already there is an error).
pub(crate) fn record_database_url(cfg_path: &Path, url: &str) -> anyhow::Result<()> {
    if let Some(updated) = with_database_url(cfg_path, url)? {
        std::fs::write(cfg_path, updated)
            .with_context(|| format!("writing {}", cfg_path.display()))?;
    }
    Ok(())
}

/// arca.toml with `[database] url` recorded (None: it already is), or why it cannot be: what
/// `record_database_url` would write, checked before the work it records.
pub(crate) fn with_database_url(cfg_path: &Path, url: &str) -> anyhow::Result<Option<String>> {
    let text = std::fs::read_to_string(cfg_path).unwrap_or_default();
    let parsed: Config =
        toml::from_str(&text).with_context(|| format!("reading {}", cfg_path.display()))?;
    match parsed.database.url.as_deref() {
        Some(u) if u == url => return Ok(None),
        Some(u) => bail!(
            "{} already names the database {}; remove it or pass the same --database",
            cfg_path.display(),
            crate::db::redact(u)
        ),
        None => {}
    }
    let url_toml = toml::Value::String(url.to_owned()).to_string();
    // A `[database]` table without url (the pool size set, as the initial file has it): the
    // url goes first in it.
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    let table = lines.iter().position(|l| l.trim() == "[database]");
    let url_line = format!("url = {url_toml}\n");
    let updated = match table {
        Some(i) => {
            if !lines[i].ends_with('\n') {
                lines[i] = "[database]\n";
            }
            lines.insert(i + 1, &url_line);
            lines.concat()
        }
        None if text.contains("[database]") => bail!(
            "{} has a [database] table without url; add url = \"...\" there instead of --database",
            cfg_path.display()
        ),
        None => {
            let sep = if text.is_empty() || text.ends_with('\n') {
                ""
            } else {
                "\n"
            };
            format!("{text}{sep}\n[database]\n{url_line}")
        }
    };
    let reparsed: Config =
        toml::from_str(&updated).with_context(|| format!("updating {}", cfg_path.display()))?;
    if reparsed.database.url.as_deref() != Some(url) {
        bail!(
            "{}: could not record [database] url; add url = {url_toml} to its [database] table",
            cfg_path.display()
        );
    }
    Ok(Some(updated))
}

/// Records `[store] url` (and `options`) in arca.toml, written from the defaults when absent
/// (`arca init --store`). A different store URL already there is an error.
pub fn record_store(dir: &Path, url: &str, options: &[(String, String)]) -> anyhow::Result<()> {
    let path = dir.join(CONFIG_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default().initial_file(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut table: toml::Table = text
        .parse()
        .with_context(|| format!("reading {}", path.display()))?;
    let store = table
        .entry("store")
        .or_insert_with(|| toml::Value::Table(Default::default()))
        .as_table_mut()
        .with_context(|| format!("{}: store is not a table", path.display()))?;
    match store.get("url").and_then(|u| u.as_str()) {
        Some(u) if !u.is_empty() && u != url => bail!(
            "{} already names the store {u}; remove it or pass the same --store",
            path.display()
        ),
        _ => {}
    }
    store.insert("url".into(), toml::Value::String(url.to_owned()));
    if !options.is_empty() {
        let opts = store
            .entry("options")
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .with_context(|| format!("{}: store.options is not a table", path.display()))?;
        for (k, v) in options {
            opts.insert(k.clone(), toml::Value::String(v.clone()));
        }
    }
    let updated = format!(
        "# arca server configuration (see docs/operations.md for every field).\n{}",
        toml::to_string_pretty(&table).context("encoding arca.toml")?
    );
    toml::from_str::<Config>(&updated).with_context(|| format!("updating {}", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(&path, updated).with_context(|| format!("writing {}", path.display()))
}

/// Whether a store URL is one that several servers can share: an object store, not a
/// directory of one machine.
pub fn is_shared_store(url: &str) -> bool {
    [
        "s3://", "gs://", "az://", "azure://", "abfs://", "abfss://", "adl://",
    ]
    .iter()
    .any(|p| url.starts_with(p))
}

/// What `init --join` made.
pub struct JoinReport {
    pub channels: Vec<ChannelName>,
    pub master_key: PathBuf,
}

/// Creates the home of a further server on the existing PostgreSQL database `database`, whose
/// blobs are in the shared object store `store`: arca.toml naming both (and the database's
/// pipeline, read from its channels), a copy of the master key `master_key` (which must open
/// the keys sealed in the database) as `HOME/master.key`, and the pinned root.json from the
/// database. No key is made, no token, nothing changes in the database.
pub fn join(
    dir: &Path,
    database: &str,
    store: Option<&str>,
    options: &[(String, String)],
    master_key: &Path,
) -> anyhow::Result<JoinReport> {
    let home = Home::new(dir);
    if home.is_initialised() || dir.join(CONFIG_FILE).exists() {
        bail!(
            "{} is already a home ({} exists): --join writes a new one",
            dir.display(),
            if dir.join(CONFIG_FILE).exists() {
                CONFIG_FILE
            } else {
                ROOT_JSON
            }
        );
    }
    let store = store.unwrap_or("");
    if !is_shared_store(store) {
        bail!(
            "blobs must be shared: --store must be an object store URL (s3://, gs://, az://) that every server reaches{}",
            if store.is_empty() {
                String::new()
            } else {
                format!(", not {store}")
            }
        );
    }
    let mut cfg = Config::default();
    cfg.database.url = Some(database.to_owned());
    if Db::postgres_holds_a_home(database)?.is_none() {
        bail!(
            "the PostgreSQL database {} holds no arca home: initialise it once with `arca init --database URL` on the first server",
            crate::db::redact(database)
        );
    }
    let master = crate::keyring::read_master_key(master_key)?;
    let db = Db::connect(database, 1)?;
    if let Some(row) = crate::keyring::opens_all(&db, &master)? {
        bail!(
            "the master key {} does not open the server key {row} sealed in the database {} (wrong master key?)",
            master_key.display(),
            crate::db::redact(database)
        );
    }
    let (channels, root) = db.call_sync(|c| {
        let channels = db::channels::list(c)?;
        let first = channels
            .first()
            .ok_or_else(|| db::DbError::Corrupt("the database has no channels".into()))?;
        let root = db::tuf::get(c, first, crate::tuf::metadata::TufRole::Root, 1)?
            .ok_or_else(|| db::DbError::Corrupt(format!("channel {first} has no root v1")))?;
        Ok((channels, root))
    })?;
    cfg.pipeline = channels
        .iter()
        .map(|c| c.parse().map_err(|e| anyhow::anyhow!("channel {c:?}: {e}")))
        .collect::<anyhow::Result<_>>()?;
    cfg.store.url = store.to_owned();
    cfg.store.options = options.iter().cloned().collect();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    restrict(dir, 0o700)?;
    std::fs::write(dir.join(CONFIG_FILE), cfg.initial_file())
        .with_context(|| format!("writing {}", dir.join(CONFIG_FILE).display()))?;
    let copy = dir.join(crate::keyring::MASTER_KEY);
    master.write_file(&copy)?;
    std::fs::write(dir.join(ROOT_JSON), root).context("writing root.json")?;
    Ok(JoinReport {
        channels: cfg.pipeline.clone(),
        master_key: copy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_url_is_recorded_in_an_existing_database_table_or_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_FILE);
        let url = "postgres://arca@db/arca";
        std::fs::write(
            &path,
            "[database]\npool = 4\n\n[tuf]\nmemory_cache = false\n",
        )
        .unwrap();
        record_database_url(&path, url).unwrap();
        let cfg = Config::load(dir.path()).unwrap();
        assert_eq!(cfg.database.url.as_deref(), Some(url));
        assert_eq!(cfg.database.pool, 4);
        // Recorded again: nothing changes; another URL: refused.
        let text = std::fs::read_to_string(&path).unwrap();
        record_database_url(&path, url).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        assert!(record_database_url(&path, "postgres://other@db/arca").is_err());

        std::fs::write(&path, "[tuf]\nmemory_cache = false").unwrap();
        record_database_url(&path, url).unwrap();
        let cfg = Config::load(dir.path()).unwrap();
        assert_eq!(cfg.database.url.as_deref(), Some(url));
    }

    #[test]
    fn the_store_is_recorded_with_its_options_and_a_different_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let opts = [("aws_region".to_owned(), "eu-west-1".to_owned())];
        record_store(dir.path(), "s3://b/p", &opts).unwrap();
        let cfg = Config::load(dir.path()).unwrap();
        assert_eq!(cfg.store.url, "s3://b/p");
        assert_eq!(cfg.store.options["aws_region"], "eu-west-1");
        assert_eq!(cfg.database.pool, 8);
        record_store(dir.path(), "s3://b/p", &[]).unwrap();
        assert!(record_store(dir.path(), "gs://other", &[]).is_err());
        // The database URL is still recorded into the file afterwards.
        record_database_url(&dir.path().join(CONFIG_FILE), "postgres://a@h/d").unwrap();
        let cfg = Config::load(dir.path()).unwrap();
        assert_eq!(cfg.database.url.as_deref(), Some("postgres://a@h/d"));
        assert_eq!(cfg.store.url, "s3://b/p");
    }

    #[test]
    fn only_object_stores_are_shared() {
        for url in ["s3://b/p", "gs://b", "az://c/p"] {
            assert!(is_shared_store(url), "{url}");
        }
        for url in ["", "file:///srv/blobs", "/srv/blobs", "memory://"] {
            assert!(!is_shared_store(url), "{url}");
        }
    }
}
