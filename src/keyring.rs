//! Where a server's own keys come from when it starts: the master key file, and the keys
//! sealed with it in the database (`db::keys`): the audit key and each channel's online key.
//! A home from before sealed keys (key files under `HOME/keys`, no rows) is imported here.
//! The root key is not one of them: it stays a file, to be kept offline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use arca_keys::SigningKey;
use arca_keys::sealed::MasterKey;

use crate::config::Config;
use crate::db::{self, Db};
use crate::model::ChannelName;
use crate::tuf::repo;

/// The master key's file in a home, unless `ARCA_MASTER_KEY_FILE` or `[keys] master_key`
/// names another.
pub const MASTER_KEY: &str = "master.key";
/// The environment variable naming the master key file.
pub const MASTER_KEY_ENV: &str = "ARCA_MASTER_KEY_FILE";
/// The key files of a home from before sealed keys.
const AUDIT_KEY_FILE: &str = "keys/audit.key";

/// The master key file of `home`: `ARCA_MASTER_KEY_FILE`, else `[keys] master_key` (relative
/// to the home), else `HOME/master.key`.
pub fn master_key_path(home: &Path, cfg: &Config) -> PathBuf {
    match std::env::var_os(MASTER_KEY_ENV).filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => match &cfg.keys.master_key {
            Some(p) => home.join(p),
            None => home.join(MASTER_KEY),
        },
    }
}

/// Reads the master key file, or says why it cannot be used.
pub fn read_master_key(path: &Path) -> anyhow::Result<MasterKey> {
    if !path.exists() {
        bail!(
            "the master key {} is missing: it opens the server keys sealed in the database; \
             copy the master key of this database's other servers there (or set {MASTER_KEY_ENV})",
            path.display()
        );
    }
    Ok(MasterKey::read_file(path)?)
}

/// The keys a server signs with, as loaded at start.
pub struct Loaded {
    pub master: MasterKey,
    pub online: BTreeMap<ChannelName, Arc<SigningKey>>,
    pub audit: SigningKey,
}

/// The online key id that `channel`'s newest root names.
fn published(c: &dyn db::Sql, channel: &str) -> Result<Option<String>, db::DbError> {
    let root = repo::latest_root(c, channel)?;
    Ok(root
        .roles
        .get(crate::tuf::metadata::TufRole::Timestamp.as_str())
        .and_then(|r| r.keyids.first().cloned()))
}

/// Loads the audit key and every channel's online key from the database, each unsealed with
/// the master key and each online key checked against the key its channel's newest root names.
/// A database without rows is given the home's key files first (`import`). Key files left
/// in the home beside rows (an import interrupted after its commit, or a copy of an old home)
/// are removed: the rows win.
pub fn load(home: &Path, cfg: &Config, db: &Db) -> anyhow::Result<Loaded> {
    let path = master_key_path(home, cfg);
    if db.call_sync(|c| db::keys::count(c))? == 0 {
        import(home, cfg, db, &path)?;
    }
    let master = read_master_key(&path)?;
    let rows: BTreeMap<String, db::keys::SealedRow> = db
        .call_sync(|c| db::keys::all(c))?
        .into_iter()
        .map(|r| (r.name.clone(), r))
        .collect();
    let open = |name: &str| -> anyhow::Result<SigningKey> {
        let row = rows.get(name).with_context(|| {
            format!("the database holds no sealed server key {name}: it is not an arca database of this pipeline")
        })?;
        master
            .unseal(&row.name, &row.key_id, &row.sealed)
            .map_err(|_| {
                anyhow::anyhow!(
                    "the master key {} does not open the server key {name} sealed in the database \
                 (wrong master key, or the row was moved or changed)",
                    path.display()
                )
            })
    };
    let audit = open(db::keys::AUDIT)?;
    let mut online = BTreeMap::new();
    for ch in &cfg.pipeline {
        let key = open(&db::keys::online(ch.as_str()))?;
        let named = db.call_sync(|c| published(c, ch.as_str()))?;
        if named.as_deref() != Some(key.key_id().as_str()) {
            bail!(
                "channel {ch}'s online key in the database ({}) is not the one its newest root names ({})",
                key.key_id(),
                named.as_deref().unwrap_or("none")
            );
        }
        online.insert(ch.clone(), Arc::new(key));
    }
    if let Some(next) = rows.keys().find(|n| n.starts_with("online-next/")) {
        open(next)?;
    }
    remove_key_files(home, cfg);
    Ok(Loaded {
        master,
        online,
        audit,
    })
}

/// The private key files of a home from before sealed keys (with their `.pub` files).
fn key_files(home: &Path, cfg: &Config) -> Vec<PathBuf> {
    let mut out = vec![home.join(AUDIT_KEY_FILE)];
    for ch in &cfg.pipeline {
        out.push(online_key_file(home, ch));
        out.push(next_key_file(home, ch));
    }
    out
}

fn online_key_file(home: &Path, ch: &ChannelName) -> PathBuf {
    home.join("keys").join(format!("{ch}.online.key"))
}

fn next_key_file(home: &Path, ch: &ChannelName) -> PathBuf {
    home.join("keys").join(format!("{ch}.online.next.key"))
}

fn remove_key_files(home: &Path, cfg: &Config) {
    let mut removed = Vec::new();
    for f in key_files(home, cfg) {
        if f.exists() {
            match std::fs::remove_file(&f) {
                Ok(()) => removed.push(f.display().to_string()),
                Err(e) => {
                    tracing::warn!(file = %f.display(), error = %e, "cannot remove a key file the database holds sealed")
                }
            }
            let _ = std::fs::remove_file(arca_keys::pub_path(&f));
        }
    }
    if !removed.is_empty() {
        tracing::info!(
            ?removed,
            "removed key files: the database holds these keys sealed"
        );
    }
}

/// Moves the key files of a home from before sealed keys into the database, sealed, in one
/// transaction: the audit key, each channel's online key (or its pending next key where the
/// channel's newest root names that one: a rotation interrupted before its files were
/// swapped), and a pending key as the channel's `online-next` row. Creates `HOME/master.key`
/// when no master key exists where [`master_key_path`] looks. The files are removed after the
/// commit, by [`load`].
fn import(home: &Path, cfg: &Config, db: &Db, master_path: &Path) -> anyhow::Result<()> {
    let audit_file = home.join(AUDIT_KEY_FILE);
    if !audit_file.exists() {
        bail!(
            "the database holds no server keys, and {} has none to import: \
             is this home initialised on this database?",
            home.join("keys").display()
        );
    }
    let audit = SigningKey::read_file(&audit_file).context("importing the audit key")?;
    let mut rows = vec![(db::keys::AUDIT.to_owned(), audit)];
    for ch in &cfg.pipeline {
        let key = SigningKey::read_file(&online_key_file(home, ch))
            .with_context(|| format!("importing the online key of channel {ch}"))?;
        let pending = SigningKey::read_file(&next_key_file(home, ch)).ok();
        let named = db.call_sync(|c| published(c, ch.as_str()))?;
        let (key, pending) = match pending {
            Some(p) if named.as_deref() == Some(p.key_id().as_str()) => (p, None),
            other => (key, other),
        };
        rows.push((db::keys::online(ch.as_str()), key));
        if let Some(p) = pending {
            rows.push((db::keys::online_next(ch.as_str()), p));
        }
    }
    let created = !master_path.exists();
    if created {
        if master_path != home.join(MASTER_KEY) {
            bail!(
                "the master key {} is missing (named by {MASTER_KEY_ENV} or [keys] master_key)",
                master_path.display()
            );
        }
        MasterKey::generate()?.write_file(master_path)?;
    }
    let master = read_master_key(master_path)?;
    let sealed: Vec<(String, String, Vec<u8>)> = rows
        .iter()
        .map(|(name, key)| {
            Ok((
                name.clone(),
                key.key_id().to_string(),
                master.seal(name, key)?,
            ))
        })
        .collect::<Result<_, arca_keys::KeyError>>()?;
    db.call_sync(|c| {
        let tx = c.transaction()?;
        for (name, id, bytes) in &sealed {
            db::keys::put(&tx, name, id, bytes)?;
        }
        tx.commit()
    })?;
    tracing::info!(
        master_key = %master_path.display(),
        created_master_key = created,
        keys = sealed.len(),
        "imported the server's key files into the database, sealed with the master key"
    );
    Ok(())
}

/// Seals a new home's keys into rows inside `c`'s transaction (`arca init`).
pub fn store_new(
    c: &dyn db::Sql,
    master: &MasterKey,
    audit: &SigningKey,
    online: &BTreeMap<ChannelName, SigningKey>,
) -> Result<(), db::DbError> {
    let seal = |name: &str, key: &SigningKey| {
        master
            .seal(name, key)
            .map_err(|e| db::DbError::SealedKey(e.to_string()))
    };
    db::keys::put(
        c,
        db::keys::AUDIT,
        audit.key_id().as_str(),
        &seal(db::keys::AUDIT, audit)?,
    )?;
    for (ch, key) in online {
        let name = db::keys::online(ch.as_str());
        db::keys::put(c, &name, key.key_id().as_str(), &seal(&name, key)?)?;
    }
    Ok(())
}

/// The master key of a new home: the file where [`master_key_path`] looks if it exists (a
/// master key shared with other servers), else a new one written there.
pub fn master_for_init(home: &Path, cfg: &Config) -> anyhow::Result<(PathBuf, MasterKey)> {
    let path = master_key_path(home, cfg);
    if !path.exists() {
        MasterKey::generate()?.write_file(&path)?;
    }
    let key = read_master_key(&path)?;
    Ok((path, key))
}

/// Whether `master` opens every key sealed in the database (`arca init --join`, restore).
pub fn opens_all(db: &Db, master: &MasterKey) -> anyhow::Result<Option<String>> {
    let rows = db.call_sync(|c| db::keys::all(c))?;
    if rows.is_empty() {
        bail!("the database holds no sealed server keys");
    }
    Ok(rows
        .iter()
        .find(|r| master.unseal(&r.name, &r.key_id, &r.sealed).is_err())
        .map(|r| r.name.clone()))
}
