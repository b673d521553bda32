//! The server keys as the use cases use them: the master key that opens the rows of
//! `db::keys`, and each channel's online key as this server last read it. A signer
//! ([`ChannelSigner`]) signs with the cached key while the database names it, and reads and
//! unseals the row the moment the database names another (a rotation through another server),
//! inside the signing transaction; it never signs with a key the channel's newest root does
//! not name.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use arca_keys::SigningKey;
use arca_keys::sealed::MasterKey;

use crate::db::{self, DbError, Sql};
use crate::model::ChannelName;
use crate::tuf::metadata::TufRole;
use crate::tuf::repo::{self, OnlineKey};

/// The master key and the online keys this server holds.
pub struct ServerKeys {
    master: MasterKey,
    online: RwLock<BTreeMap<ChannelName, Arc<SigningKey>>>,
}

impl ServerKeys {
    pub fn new(master: MasterKey, online: BTreeMap<ChannelName, Arc<SigningKey>>) -> Self {
        ServerKeys {
            master,
            online: RwLock::new(online),
        }
    }

    /// The signer of `channel`, if it is one of the pipeline's.
    pub fn signer(self: &Arc<Self>, channel: &str) -> Option<(ChannelName, ChannelSigner)> {
        let map = self.online.read().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .find(|(c, _)| c.as_str() == channel)
            .map(|(c, k)| (c.clone(), self.signer_of(c, k)))
    }

    /// The signer of every channel (by name).
    pub fn signers(self: &Arc<Self>) -> Vec<(ChannelName, ChannelSigner)> {
        let map = self.online.read().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .map(|(c, k)| (c.clone(), self.signer_of(c, k)))
            .collect()
    }

    fn signer_of(self: &Arc<Self>, channel: &ChannelName, key: &Arc<SigningKey>) -> ChannelSigner {
        ChannelSigner {
            keys: self.clone(),
            channel: channel.clone(),
            key: key.clone(),
        }
    }

    /// The key this server holds for `channel` now.
    pub fn cached(&self, channel: &ChannelName) -> Option<Arc<SigningKey>> {
        self.online
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(channel)
            .cloned()
    }

    /// Makes `key` the one this server signs `channel` with (after the database named it).
    pub fn cache(&self, channel: &ChannelName, key: Arc<SigningKey>) {
        self.online
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(channel.clone(), key);
    }

    /// `key` sealed for the row `name`.
    pub fn seal(&self, name: &str, key: &SigningKey) -> Result<Vec<u8>, DbError> {
        self.master
            .seal(name, key)
            .map_err(|e| DbError::SealedKey(e.to_string()))
    }

    /// The key of a sealed row (its id checked against the row's).
    pub fn unseal(&self, row: &db::keys::SealedRow) -> Result<SigningKey, DbError> {
        self.master
            .unseal(&row.name, &row.key_id, &row.sealed)
            .map_err(|e| DbError::SealedKey(e.to_string()))
    }

    /// Seals `key` into the row `name` (stored or replaced inside `c`'s transaction).
    pub fn store(&self, c: &dyn Sql, name: &str, key: &SigningKey) -> Result<(), DbError> {
        db::keys::put(c, name, key.key_id().as_str(), &self.seal(name, key)?)
    }
}

/// Whether `root` names `key_id` as the key of every online role.
pub fn root_names(root: &crate::tuf::metadata::Root, key_id: &str) -> bool {
    [TufRole::Targets, TufRole::Snapshot, TufRole::Timestamp]
        .iter()
        .all(|r| {
            root.roles
                .get(r.as_str())
                .is_some_and(|role| role.keyids.iter().any(|k| k == key_id))
        })
}

/// One channel's online key, as [`repo`] signs with it: the cached key while the database
/// names it.
pub struct ChannelSigner {
    keys: Arc<ServerKeys>,
    channel: ChannelName,
    key: Arc<SigningKey>,
}

impl OnlineKey for ChannelSigner {
    fn key(&self) -> &SigningKey {
        &self.key
    }

    fn named(
        &self,
        c: &dyn Sql,
        channel: &str,
        key_id: Option<&str>,
    ) -> Result<Option<Arc<SigningKey>>, DbError> {
        let missing = || {
            DbError::SealedKey(format!(
                "the database holds no online key for channel {channel}: not signing"
            ))
        };
        let want = key_id.ok_or_else(missing)?;
        let row = db::keys::get(c, &db::keys::online(channel))?.ok_or_else(missing)?;
        let key = self.keys.unseal(&row)?;
        if key.key_id().as_str() != want {
            return Err(DbError::SealedKey(format!(
                "channel {channel}'s online key changed while it was read: not signing"
            )));
        }
        let root = repo::latest_root(c, channel)?;
        if !root_names(&root, want) {
            return Err(DbError::SealedKey(format!(
                "channel {channel}'s newest root (v{}) does not name its online key {want}: not signing",
                root.version
            )));
        }
        let key = Arc::new(key);
        self.keys.cache(&self.channel, key.clone());
        tracing::info!(%channel, key = want, "signing with the online key the database names (rotated by another server)");
        Ok(Some(key))
    }
}
