//! `arca backup` and `arca restore`: a consistent copy of a home while its server runs, and
//! its restore with every channel's online metadata re-signed past anything the server may
//! have served after the copy (docs/operations.md, "Backups and restore"; docs/security.md,
//! "Rollback protection").
//!
//! ```text
//! DIR/backup.json     the manifest: time, arca and schema version, engine, per-channel newest
//!                     metadata versions, sha256 and mode of every file
//! DIR/arca.db         SQLite only: the online backup API's copy (PostgreSQL: pg_dump)
//! DIR/arca.toml, DIR/root.json, DIR/admin.token, DIR/master.key, DIR/keys/..., DIR/tls/...
//!                     as in the home (master.key: the master key file wherever the home's
//!                     config finds it; it opens the server keys sealed in the database)
//! ```
//! Blobs are not copied: they are content-addressed and immutable; the blob store is backed
//! up on its own (or by the object store's versioning).

use std::collections::BTreeMap;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{CONFIG_FILE, Config};
use crate::db::{self, Db, redact};
use crate::home::{ADMIN_TOKEN, DB_FILE, Home, ROOT_JSON};
use crate::tuf::metadata::TufRole;
use crate::tuf::repo;

/// The manifest's file name inside a backup directory.
pub const MANIFEST: &str = "backup.json";
/// The manifest format this binary writes and reads.
const FORMAT: u32 = 1;

/// `backup.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// When the copy was taken (RFC 3339, UTC).
    pub created: String,
    pub arca_version: String,
    /// `sqlite` or `postgres`.
    pub engine: String,
    pub schema_version: i64,
    /// PostgreSQL: the database (password redacted) that `pg_dump` is to copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Per channel, the newest version of each role when the database was copied.
    pub channels: BTreeMap<String, BTreeMap<String, u64>>,
    pub files: Vec<FileEntry>,
}

/// One copied file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the home (and to the backup directory).
    pub path: String,
    pub sha256: String,
    pub size: u64,
    /// Unix permission bits, restored as they were.
    pub mode: u32,
}

/// Directories copied whole, with their modes.
const DIRS: [&str; 2] = ["keys", "tls"];
/// Single files copied when present.
const FILES: [&str; 3] = [CONFIG_FILE, ROOT_JSON, ADMIN_TOKEN];

fn sha256_file(path: &Path) -> anyhow::Result<(String, u64)> {
    let body = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok((crate::tuf::metadata::sha256_hex(&body), body.len() as u64))
}

fn mode_of(path: &Path) -> anyhow::Result<u32> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode()
        & 0o7777)
}

/// Copies `from` to the new file `to` with `mode` (never wider while it is written).
fn copy_file(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    let body = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600 & mode)
        .open(to)
        .with_context(|| format!("creating {}", to.display()))?;
    f.write_all(&body)?;
    f.sync_all()?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", to.display()))?;
    Ok(())
}

fn make_dir(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// Whether `dir` is missing or an empty directory.
fn is_empty_dir(dir: &Path) -> anyhow::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut rd) => Ok(rd.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}

/// What `backup` made.
pub struct BackupReport {
    pub manifest: Manifest,
}

/// Copies the home `home` into the new (or empty) directory `out`: the key files and
/// directories and the master key first, then the database (SQLite: the online backup API;
/// PostgreSQL: not copied, `pg_dump` does it), then the manifest. The server's own keys are
/// rows of the database, sealed with the master key, so the copy of the database holds the
/// keys its roots name.
pub fn backup(home: &Path, out: &Path) -> anyhow::Result<BackupReport> {
    if !is_empty_dir(out)? {
        bail!(
            "{} exists and is not empty: back up into a new directory",
            out.display()
        );
    }
    let h = Home::new(home);
    if !h.is_initialised() {
        bail!(
            "{} is not an arca home (no {DB_FILE} nor {ROOT_JSON})",
            home.display()
        );
    }
    let cfg = Config::load(home)?;
    make_dir(out, 0o700)?;
    let result = backup_into(home, out, &cfg);
    if result.is_err() {
        // Nothing half-made is left to be mistaken for a backup.
        let _ = std::fs::remove_dir_all(out);
    }
    result
}

fn backup_into(home: &Path, out: &Path, cfg: &Config) -> anyhow::Result<BackupReport> {
    let mut files = Vec::new();
    let record = |rel: &str, files: &mut Vec<FileEntry>| -> anyhow::Result<()> {
        let to = out.join(rel);
        let (sha256, size) = sha256_file(&to)?;
        files.push(FileEntry {
            path: rel.to_owned(),
            sha256,
            size,
            mode: mode_of(&to)?,
        });
        Ok(())
    };
    for dir in DIRS {
        let from = home.join(dir);
        if !from.is_dir() {
            continue;
        }
        make_dir(&out.join(dir), mode_of(&from)?)?;
        let mut names: Vec<_> = std::fs::read_dir(&from)
            .with_context(|| format!("reading {}", from.display()))?
            .collect::<Result<_, _>>()?;
        names.sort_by_key(|e| e.file_name());
        for e in names {
            if !e.file_type()?.is_file() {
                continue;
            }
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            let rel = format!("{dir}/{name}");
            copy_file(&e.path(), &out.join(&rel), mode_of(&e.path())?)?;
            record(&rel, &mut files)?;
        }
    }
    for f in FILES {
        let from = home.join(f);
        if from.is_file() {
            copy_file(&from, &out.join(f), mode_of(&from)?)?;
            record(f, &mut files)?;
        }
    }
    // The master key, wherever it is (restored as HOME/master.key).
    let master = crate::keyring::master_key_path(home, cfg);
    if master.is_file() {
        copy_file(&master, &out.join(crate::keyring::MASTER_KEY), 0o600)?;
        record(crate::keyring::MASTER_KEY, &mut files)?;
    }
    let (engine, database, facts) = match &cfg.database.url {
        Some(url) => {
            let facts = Db::connect(url, 1)?.backup_facts()?;
            ("postgres", Some(redact(url)), facts)
        }
        None => {
            let facts = Db::backup_sqlite(&home.join(DB_FILE), &out.join(DB_FILE))?;
            record(DB_FILE, &mut files)?;
            ("sqlite", None, facts)
        }
    };
    let mut channels: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (ch, role, v) in facts.versions {
        channels.entry(ch).or_default().insert(role, v);
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let manifest = Manifest {
        format: FORMAT,
        created: db::now_str(),
        arca_version: env!("CARGO_PKG_VERSION").to_owned(),
        engine: engine.to_owned(),
        schema_version: facts.schema,
        database,
        channels,
        files,
    };
    let body = serde_json::to_vec_pretty(&manifest).expect("manifest encodes");
    let path = out.join(MANIFEST);
    std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
    Ok(BackupReport { manifest })
}

/// One channel's re-signed versions.
#[derive(Debug, Clone, Serialize)]
pub struct Republished {
    pub channel: String,
    /// The newest versions the restored database held (role → version).
    pub restored: BTreeMap<String, u64>,
    /// The versions signed now.
    pub targets: u64,
    pub snapshot: u64,
    pub timestamp: u64,
}

/// What `restore` did.
pub struct RestoreReport {
    pub manifest: Manifest,
    /// The version floor: the restore time in Unix seconds.
    pub floor: u64,
    pub channels: Vec<Republished>,
}

/// A manifest path that stays inside the directory: relative, no `..`.
fn safe_relative(path: &str) -> bool {
    let p = Path::new(path);
    !path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Reads and checks a backup: the manifest, and every file it lists against its sha256.
pub fn verify(from: &Path) -> anyhow::Result<Manifest> {
    let path = from.join(MANIFEST);
    let body = std::fs::read(&path).with_context(|| {
        format!(
            "reading {}: not a backup made by `arca backup`",
            path.display()
        )
    })?;
    let m: Manifest =
        serde_json::from_slice(&body).with_context(|| format!("reading {}", path.display()))?;
    if m.format != FORMAT {
        bail!(
            "{} has format {}, this binary reads {FORMAT}",
            path.display(),
            m.format
        );
    }
    for f in &m.files {
        if !safe_relative(&f.path) {
            bail!(
                "{} lists a path outside the backup: {:?}",
                path.display(),
                f.path
            );
        }
        let file = from.join(&f.path);
        let (sha, _) = sha256_file(&file)?;
        if sha != f.sha256 {
            bail!(
                "{} does not match the manifest (sha256 {sha}, backup.json says {}): the backup is damaged; nothing was restored",
                file.display(),
                f.sha256
            );
        }
    }
    if !m.files.iter().any(|f| f.path == ROOT_JSON) {
        bail!("{} lists no {ROOT_JSON}", path.display());
    }
    if m.engine == "sqlite" && !m.files.iter().any(|f| f.path == DB_FILE) {
        bail!("{} is a SQLite backup without {DB_FILE}", path.display());
    }
    Ok(m)
}

/// Restores the backup `from` into the empty (or missing) home `home`, then re-signs every
/// channel's targets, snapshot and timestamp at versions past anything served since the
/// backup: `max(restored + 1, T)`, T the restore time in Unix seconds. On PostgreSQL the
/// database named in the backup's arca.toml (or `ARCA_DATABASE_URL`) must already hold the
/// restored `pg_dump`.
pub fn restore(home: &Path, from: &Path, now: DateTime<Utc>) -> anyhow::Result<RestoreReport> {
    if !is_empty_dir(home)? {
        bail!(
            "{} exists and is not empty: restore into a new home",
            home.display()
        );
    }
    let manifest = verify(from)?;
    // The database the home will use, checked before anything is written.
    let backup_cfg = Config::load(from)?;
    match (manifest.engine.as_str(), &backup_cfg.database.url) {
        ("sqlite", None) => {}
        ("postgres", Some(url)) => {
            if Db::postgres_holds_a_home(url)?.is_none() {
                bail!(
                    "the PostgreSQL database {} holds no arca home: restore the pg_dump taken with this backup into it first",
                    redact(url)
                );
            }
        }
        ("sqlite", Some(url)) => bail!(
            "the backup is of a SQLite home but the database is PostgreSQL {} (ARCA_DATABASE_URL?)",
            redact(url)
        ),
        ("postgres", None) => bail!("the backup is of a PostgreSQL home but names no database"),
        (other, _) => bail!("the backup's engine {other:?} is unknown"),
    }
    let existed = home.exists();
    let result = copy_back(&manifest, from, home).and_then(|()| republish(&manifest, home, now));
    if result.is_err() {
        // Leave the home as it was (missing or empty), so that the restore can be retried.
        if existed {
            if let Ok(rd) = std::fs::read_dir(home) {
                for e in rd.flatten() {
                    let p = e.path();
                    let _ = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(home);
        }
    }
    result
}

fn copy_back(m: &Manifest, from: &Path, home: &Path) -> anyhow::Result<()> {
    make_dir(home, 0o700)?;
    for f in &m.files {
        let rel = PathBuf::from(&f.path);
        if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
            let src_mode = mode_of(&from.join(parent)).unwrap_or(0o700);
            if !home.join(parent).exists() {
                make_dir(&home.join(parent), src_mode)?;
            }
        }
        copy_file(&from.join(&f.path), &home.join(&f.path), f.mode)?;
        let (sha, _) = sha256_file(&home.join(&f.path))?;
        if sha != f.sha256 {
            bail!(
                "{} changed while it was restored",
                from.join(&f.path).display()
            );
        }
    }
    Ok(())
}

fn republish(m: &Manifest, home: &Path, now: DateTime<Utc>) -> anyhow::Result<RestoreReport> {
    let cfg = Config::load(home)?;
    let h = Home::new(home);
    let database = h.open_db(&cfg)?;
    let floor = u64::try_from(now.timestamp()).context("the clock is before 1970")?;
    // The master key must open the sealed keys, and each channel's online key must be the
    // one its newest root names (`keyring::load` checks both, as `serve` would; the key files
    // of a backup from before sealed keys are imported first).
    let keys = crate::keyring::load(home, &cfg, &database)
        .context("the backup's master key and database do not belong together")?;
    let mut done = Vec::new();
    for (ch, key) in &keys.online {
        let (ch_s, key, tuf) = (ch.to_string(), key.as_ref(), cfg.tuf.clone());
        let restored = m.channels.get(&ch_s).cloned().unwrap_or_default();
        let created = m.created.clone();
        let r = database.call_sync(move |c| {
            let tx = c.transaction()?;
            db::locks::channel(&tx, &ch_s)?;
            let before: BTreeMap<String, u64> =
                [TufRole::Targets, TufRole::Snapshot, TufRole::Timestamp]
                    .into_iter()
                    .map(|role| {
                        Ok((
                            role.to_string(),
                            db::tuf::latest_version(&tx, &ch_s, role)?.unwrap_or_default(),
                        ))
                    })
                    .collect::<Result<_, db::DbError>>()?;
            let (targets, snapshot, timestamp) =
                repo::publish_all_from(&tx, &ch_s, key, &tuf, now, floor)?;
            db::audit::append(
                &tx,
                &db::audit::Entry {
                    actor: "restore",
                    action: crate::audit::AuditAction::Restore,
                    subject: &ch_s,
                    outcome: "ok",
                    details: serde_json::json!({
                        "backup_created": created,
                        "backup_versions": restored,
                        "restored_versions": before,
                        "floor": floor,
                        "targets": targets,
                        "snapshot": snapshot,
                        "timestamp": timestamp,
                    }),
                },
            )?;
            tx.commit()?;
            Ok(Republished {
                channel: ch_s.clone(),
                restored: before,
                targets,
                snapshot,
                timestamp,
            })
        })?;
        done.push(r);
    }
    Ok(RestoreReport {
        manifest: m.clone(),
        floor,
        channels: done,
    })
}
