//! Publishing a channel's TUF repository: building and signing new metadata versions from the
//! database's state, inside the caller's transaction (so state and metadata change together).

use crate::tuf::metadata::TufRole;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::db::Sql;
use arca_keys::{PublicKey, SigningKey, format_time};
use chrono::{DateTime, Utc};

use super::metadata::{
    Envelope, MetaFile, MetaKey, RoleKeys, Root, SPEC_VERSION, Snapshot, TargetFile, Timestamp,
    sha256_hex,
};
use crate::config::TufConfig;
use crate::db::{self, DbError};
use crate::model::api::{RolloutEntry, TargetCustom};

/// The four top-level roles.
pub const ROLES: [TufRole; 4] = TufRole::ALL;

fn expiry(now: DateTime<Utc>, life: Duration) -> String {
    format_time(now + chrono::Duration::from_std(life).unwrap_or(chrono::Duration::days(365)))
}

/// Checks the clock before anything is signed (`tuf::clock`): refused when the wall clock
/// jumped against the monotonic clock or stands behind the last signing on record.
pub fn check_clock(c: &dyn Sql, cfg: &TufConfig, now: DateTime<Utc>) -> Result<(), DbError> {
    let last = db::tuf::last_signed_at(c)?
        .as_deref()
        .and_then(super::metadata::parse_time);
    super::clock::check(now, last, cfg.max_clock_step)?;
    Ok(())
}

/// A root whose root role is `root_keys`/`threshold` and whose online roles are `online`
/// (or the root keys themselves, for the shared root every channel starts from).
pub fn build_root(
    version: u64,
    root_keys: &[PublicKey],
    threshold: u32,
    online: Option<&PublicKey>,
    channel: Option<&str>,
    expires: String,
) -> Root {
    let mut keys = BTreeMap::new();
    let root_ids: Vec<String> = root_keys
        .iter()
        .map(|k| {
            keys.insert(k.key_id().to_string(), MetaKey::from_public(k));
            k.key_id().to_string()
        })
        .collect();
    let (online_ids, online_threshold) = match online {
        Some(k) => {
            keys.insert(k.key_id().to_string(), MetaKey::from_public(k));
            (vec![k.key_id().to_string()], 1)
        }
        None => (root_ids.clone(), threshold),
    };
    let mut roles = BTreeMap::new();
    roles.insert(
        TufRole::Root.into(),
        RoleKeys {
            keyids: root_ids,
            threshold,
        },
    );
    for role in [TufRole::Targets, TufRole::Snapshot, TufRole::Timestamp] {
        roles.insert(
            role.into(),
            RoleKeys {
                keyids: online_ids.clone(),
                threshold: online_threshold,
            },
        );
    }
    Root {
        kind: TufRole::Root.into(),
        spec_version: SPEC_VERSION.into(),
        version,
        expires,
        consistent_snapshot: true,
        keys,
        roles,
        channel: channel.map(str::to_owned),
    }
}

/// Stores a signed root for `channel`.
pub fn store_root(
    c: &dyn Sql,
    channel: &str,
    root: &Root,
    signers: &[&SigningKey],
) -> Result<Vec<u8>, DbError> {
    let body = Envelope::sign(root, signers).to_bytes();
    db::tuf::insert(
        c,
        channel,
        TufRole::Root,
        root.version,
        &body,
        &root.expires,
    )?;
    Ok(body)
}

/// The root expiry for a new root version.
pub fn root_expiry(now: DateTime<Utc>, cfg: &TufConfig) -> String {
    expiry(now, cfg.root_expiry)
}

/// The path segment that marks the entry of a rollout's previous release: `NAME/-/previous/FILE`.
/// No artifact name has a segment `-`, so the path cannot clash with a release's.
pub const PREVIOUS_SEGMENT: &str = "-/previous";

/// The TUF target entry of a release: its path and canonical JSON.
fn target_entry(
    a: &db::artifacts::ArtifactRow,
    statements: Vec<String>,
    trust_version: u64,
    rollout: Option<RolloutEntry>,
    previous: bool,
) -> Result<(String, Vec<u8>), DbError> {
    let custom = TargetCustom {
        name: parse(&a.name)?,
        version: parse(&a.version)?,
        blake3: a.blake3.clone(),
        statements,
        trust_version,
        rollout,
        previous,
    };
    let entry = TargetFile {
        length: a.size,
        hashes: [("sha256".to_owned(), a.sha256.clone())].into(),
        custom: Some(serde_json::to_value(custom).expect("custom encodes")),
    };
    let bytes = arca_keys::canonical::to_canonical_json(&entry)
        .map_err(|e| DbError::Corrupt(e.to_string()))?;
    let path = if previous {
        format!("{}/{PREVIOUS_SEGMENT}/{}", a.name, a.file_name)
    } else {
        format!("{}/{}", a.name, a.file_name)
    };
    Ok((path, bytes))
}

/// The target entries of `name`'s current release in `channel`: one, or, while a rollout is
/// active, the new release carrying the rollout plus the previous release agents keep.
fn entries_of(
    c: &dyn Sql,
    channel: &str,
    a: &db::artifacts::ArtifactRow,
    statements: Vec<String>,
    trust_version: u64,
) -> Result<Vec<(String, Vec<u8>)>, DbError> {
    let rollout = db::rollouts::latest(c, channel, &a.name)?
        .filter(|r| r.artifact_id == a.id && r.decides_entry());
    entries_with(c, a, statements, trust_version, rollout)
}

/// [`entries_of`] with the rollout that decides `a`'s entries, if any, read by the caller.
fn entries_with(
    c: &dyn Sql,
    a: &db::artifacts::ArtifactRow,
    statements: Vec<String>,
    trust_version: u64,
    rollout: Option<db::rollouts::RolloutRow>,
) -> Result<Vec<(String, Vec<u8>)>, DbError> {
    let Some(r) = rollout else {
        return Ok(vec![target_entry(
            a,
            statements,
            trust_version,
            None,
            false,
        )?]);
    };
    let mut out = Vec::with_capacity(2);
    let mut previous_path = None;
    if let Some(prev) = r
        .previous_id
        .map(|id| db::artifacts::by_id(c, id))
        .transpose()?
        .flatten()
    {
        let prev_statements = db::artifacts::statement_digests(c, prev.id)?;
        let entry = target_entry(&prev, prev_statements, trust_version, None, true)?;
        previous_path = Some(entry.0.clone());
        out.push(entry);
    }
    let info = RolloutEntry {
        id: r.id as u64,
        steps: r.plan.steps.clone(),
        step: r.step as u32,
        percent: if r.state.is_active() { r.percent() } else { 0 },
        state: r.state.as_str().to_owned(),
        step_interval_secs: r.plan.step_interval.as_secs(),
        max_failure_bp: (r.plan.max_failure_rate * 10_000.0).round() as u32,
        min_reports: r.plan.min_reports,
        previous: previous_path,
    };
    out.push(target_entry(
        a,
        statements,
        trust_version,
        Some(info),
        false,
    )?);
    Ok(out)
}

/// Rebuilds every stored target entry of `channel` from its current releases, then publishes
/// targets N+1, a snapshot and a timestamp. Returns the new targets version.
pub fn publish_targets(
    c: &dyn Sql,
    channel: &str,
    key: &dyn OnlineKey,
    cfg: &TufConfig,
    now: DateTime<Utc>,
) -> Result<u64, DbError> {
    db::tuf::clear_entries(c, channel)?;
    rebuild_entries(c, channel)?;
    sign_targets(c, channel, key, cfg, now)
}

/// Stores the target entries of every release current in `channel` (which has none stored).
fn rebuild_entries(c: &dyn Sql, channel: &str) -> Result<(), DbError> {
    let trust_version = db::trust::latest_version(c)?.unwrap_or(0);
    let mut statements_of = db::artifacts::statement_digests_in_channel(c, channel)?;
    for a in db::channels::current_releases(c, channel)? {
        let statements = statements_of.remove(&a.id).unwrap_or_default();
        let entries = entries_of(c, channel, &a, statements, trust_version)?;
        db::tuf::set_entries(c, channel, &a.name, &entries)?;
    }
    Ok(())
}

/// Stores the entries of a channel whose releases have none stored (a database from before
/// entries were stored); `startup::open` calls it, so that publishing needs no check. Returns
/// whether it built any.
pub fn build_missing_entries(c: &dyn Sql, channel: &str) -> Result<bool, DbError> {
    if db::tuf::entry_count(c, channel)? > 0
        || db::channels::current_releases(c, channel)?.is_empty()
    {
        return Ok(false);
    }
    rebuild_entries(c, channel)?;
    Ok(true)
}

/// Publishes the change of one name's release in `channel` (or of its rollout): its stored
/// entries are replaced and the targets re-signed from the stored entries (the other entries
/// are not rebuilt), then a snapshot and a timestamp. Returns the new targets version.
pub fn publish_release(
    c: &dyn Sql,
    channel: &str,
    name: &str,
    key: &dyn OnlineKey,
    cfg: &TufConfig,
    now: DateTime<Utc>,
) -> Result<u64, DbError> {
    match db::channels::current(c, channel, name)? {
        Some((a, _)) => {
            let trust_version = db::trust::latest_version(c)?.unwrap_or(0);
            let statements = db::artifacts::statement_digests(c, a.id)?;
            let entries = entries_of(c, channel, &a, statements, trust_version)?;
            db::tuf::set_entries(c, channel, name, &entries)?;
            sign_targets(c, channel, key, cfg, now)
        }
        None => {
            db::tuf::set_entry(c, channel, name, None)?;
            sign_targets(c, channel, key, cfg, now)
        }
    }
}

/// [`publish_release`] of `a`, just made current in `channel` by a promotion that has read the
/// digests of its statements and the trust version it decided under, and began `rollout` (the
/// id `service::rollout::begin_after` returned). Without one, no rollout decides `a`'s entry:
/// `begin_after` superseded every rollout of the name that did, so there is nothing to read.
#[allow(clippy::too_many_arguments)]
pub fn publish_promoted(
    c: &dyn Sql,
    channel: &str,
    a: &db::artifacts::ArtifactRow,
    statements: Vec<String>,
    trust_version: u64,
    rollout: Option<i64>,
    key: &dyn OnlineKey,
    cfg: &TufConfig,
    now: DateTime<Utc>,
) -> Result<u64, DbError> {
    let entries = match rollout {
        Some(_) => entries_of(c, channel, a, statements, trust_version)?,
        None => entries_with(c, a, statements, trust_version, None)?,
    };
    db::tuf::set_entries(c, channel, &a.name, &entries)?;
    sign_targets(c, channel, key, cfg, now)
}

/// Signs targets N+1 from the stored entries, then a snapshot and a timestamp. The canonical
/// JSON is assembled from the entries' stored canonical bytes: the members of `signed` in
/// sorted order, and the entries in path order (paths are validated to an alphabet in which
/// byte order and canonical-JSON key order agree).
pub(crate) fn sign_targets(
    c: &dyn Sql,
    channel: &str,
    key: &dyn OnlineKey,
    cfg: &TufConfig,
    now: DateTime<Utc>,
) -> Result<u64, DbError> {
    sign_targets_at(c, channel, key, cfg, now, 0)
}

/// What signs a channel's online metadata: a key, checked in the signing transaction against
/// the key the database names for the channel (its `online/CHANNEL` row, read with the heads
/// in the same statement). Every server of a database signs with the key named there at that
/// moment, so that after a rotation through one server no other signs with the old key.
pub trait OnlineKey {
    /// The key held now (the one that signs when the database names it).
    fn key(&self) -> &SigningKey;
    /// The database names `key_id` (none: no row) for `channel`, not [`OnlineKey::key`]'s id:
    /// the key to sign with instead, read inside `c`'s transaction, or `None` to sign with
    /// [`OnlineKey::key`] after all, or an error that refuses to sign.
    fn named(
        &self,
        c: &dyn Sql,
        channel: &str,
        key_id: Option<&str>,
    ) -> Result<Option<std::sync::Arc<SigningKey>>, DbError>;
}

/// A key given as it is (`arca init`, restore, tests): it signs only where the database names
/// it or names no key at all (a database without sealed keys).
impl OnlineKey for SigningKey {
    fn key(&self) -> &SigningKey {
        self
    }

    fn named(
        &self,
        _: &dyn Sql,
        channel: &str,
        key_id: Option<&str>,
    ) -> Result<Option<std::sync::Arc<SigningKey>>, DbError> {
        match key_id {
            None => Ok(None),
            Some(want) => Err(DbError::SealedKey(format!(
                "channel {channel}'s online key is {want} in the database, not {}: not signing",
                self.key_id()
            ))),
        }
    }
}

/// The key a [`Chain`] signs with.
enum KeyRef<'a> {
    Held(&'a SigningKey),
    Loaded(std::sync::Arc<SigningKey>),
}

impl KeyRef<'_> {
    fn get(&self) -> &SigningKey {
        match self {
            KeyRef::Held(k) => k,
            KeyRef::Loaded(k) => k,
        }
    }
}

/// New versions of some of a channel's online roles, signed in one chain: each role's head
/// (number and expiry) and the last signing time are read in one statement, the clock is
/// checked once, and the new files are written in one statement.
struct Chain<'a> {
    c: &'a dyn Sql,
    channel: &'a str,
    key: KeyRef<'a>,
    cfg: &'a TufConfig,
    now: DateTime<Utc>,
    /// Every new version is at least this (after a restore, past what may have been served).
    floor: u64,
    heads: db::tuf::Heads,
    /// The stored target entries, for a chain that signs targets (read with the heads).
    entries: Vec<db::sql::Row>,
    signed: Vec<db::tuf::NewFile>,
}

impl<'a> Chain<'a> {
    fn start(
        c: &'a dyn Sql,
        channel: &'a str,
        key: &'a dyn OnlineKey,
        cfg: &'a TufConfig,
        now: DateTime<Utc>,
        floor: u64,
        targets: bool,
    ) -> Result<Chain<'a>, DbError> {
        // A targets chain reads the entries it signs in the same round trip (after the heads:
        // the version before the entries, see docs/architecture.md, "Concurrency").
        let mut rows = if targets {
            c.query_all(&[
                (db::tuf::HEADS, crate::params![channel]),
                (db::tuf::ENTRIES, crate::params![channel]),
            ])?
        } else {
            vec![c.query(db::tuf::HEADS, crate::params![channel])?]
        };
        let entries = if targets {
            rows.pop().unwrap_or_default()
        } else {
            Vec::new()
        };
        let heads = db::tuf::heads_from(&rows[0])?;
        let held = key.key();
        let key = if heads.online_key_id.as_deref() == Some(held.key_id().as_str()) {
            KeyRef::Held(held)
        } else {
            match key.named(c, channel, heads.online_key_id.as_deref())? {
                Some(loaded) => KeyRef::Loaded(loaded),
                None => KeyRef::Held(held),
            }
        };
        let last = heads
            .last_signed_at
            .as_deref()
            .and_then(super::metadata::parse_time);
        super::clock::check(now, last, cfg.max_clock_step)?;
        Ok(Chain {
            c,
            channel,
            key,
            cfg,
            now,
            floor,
            heads,
            entries,
            signed: Vec::with_capacity(3),
        })
    }

    /// The number and expiry of a new version of `role`: the version after the newest, at
    /// least `floor`; `now` + the role's lifetime, never earlier than the current version's.
    /// The two agree unless a lifetime was shortened: the new version then keeps the current
    /// expiry, which extends nothing (the current version is valid until then anyway).
    fn next(&self, role: TufRole) -> (u64, String) {
        let life = match role {
            TufRole::Targets => self.cfg.targets_expiry,
            TufRole::Snapshot => self.cfg.snapshot_expiry,
            _ => self.cfg.timestamp_expiry,
        };
        let new = expiry(self.now, life);
        let head = self.heads.of(role);
        let version = head.map_or(1, |(v, _)| v + 1).max(self.floor);
        let expires = match head.and_then(|(_, e)| super::metadata::parse_time(e).map(|t| (t, e))) {
            Some((t, text)) if super::metadata::parse_time(&new).is_some_and(|n| n < t) => {
                text.clone()
            }
            _ => new,
        };
        (version, expires)
    }

    fn push(&mut self, role: TufRole, version: u64, body: Vec<u8>, expires: String) {
        self.signed.push(db::tuf::NewFile {
            role,
            version,
            body,
            expires,
        });
    }

    /// Targets from the stored entries, then a snapshot and a timestamp over it.
    fn targets(mut self) -> Result<u64, DbError> {
        let (version, expires) = self.next(TufRole::Targets);
        let mut msg = Vec::with_capacity(64 * 1024);
        msg.extend_from_slice(b"{\"_type\":\"targets\",\"expires\":");
        msg.extend_from_slice(serde_json::to_string(&expires).expect("string").as_bytes());
        msg.extend_from_slice(b",\"spec_version\":");
        msg.extend_from_slice(
            serde_json::to_string(SPEC_VERSION)
                .expect("string")
                .as_bytes(),
        );
        msg.extend_from_slice(b",\"targets\":{");
        let mut first = true;
        db::tuf::for_each_entry_in(&self.entries, self.channel, |path, entry| {
            if !first {
                msg.push(b',');
            }
            first = false;
            msg.extend_from_slice(serde_json::to_string(path).expect("string").as_bytes());
            msg.push(b':');
            msg.extend_from_slice(entry);
        })?;
        msg.extend_from_slice(format!("}},\"version\":{version}}}").as_bytes());
        let body = Envelope::signed_bytes(&msg, &[self.key.get()]);
        let snapshot = meta_file(version, &body);
        self.push(TufRole::Targets, version, body, expires);
        self.snapshot(snapshot)?;
        Ok(version)
    }

    /// Snapshot N+1 naming targets as `meta` describes it, then a timestamp.
    fn snapshot(mut self, meta: MetaFile) -> Result<u64, DbError> {
        let (version, expires) = self.next(TufRole::Snapshot);
        let s = Snapshot {
            kind: TufRole::Snapshot.into(),
            spec_version: SPEC_VERSION.into(),
            version,
            expires,
            meta: [("targets.json".to_owned(), meta)].into(),
        };
        let body = Envelope::sign_to_bytes(&s, &[self.key.get()]);
        let timestamp = meta_file(version, &body);
        self.push(TufRole::Snapshot, version, body, s.expires);
        self.timestamp(timestamp)?;
        Ok(version)
    }

    /// Timestamp N+1 naming the snapshot as `meta` describes it; writes the chain.
    fn timestamp(mut self, meta: MetaFile) -> Result<u64, DbError> {
        let (version, expires) = self.next(TufRole::Timestamp);
        let t = Timestamp {
            kind: TufRole::Timestamp.into(),
            spec_version: SPEC_VERSION.into(),
            version,
            expires,
            meta: [("snapshot.json".to_owned(), meta)].into(),
        };
        let body = Envelope::sign_to_bytes(&t, &[self.key.get()]);
        self.push(TufRole::Timestamp, version, body, t.expires);
        db::tuf::insert_all(self.c, self.channel, &self.signed)?;
        Ok(version)
    }
}

/// [`sign_targets`] with every new version (targets, snapshot, timestamp) at least `floor`.
fn sign_targets_at(
    c: &dyn Sql,
    channel: &str,
    key: &dyn OnlineKey,
    cfg: &TufConfig,
    now: DateTime<Utc>,
    floor: u64,
) -> Result<u64, DbError> {
    Chain::start(c, channel, key, cfg, now, floor, true)?.targets()
}

fn parse<T: std::str::FromStr>(s: &str) -> Result<T, DbError>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e: T::Err| DbError::Corrupt(e.to_string()))
}

/// Publishes snapshot N+1 naming the latest targets, then a new timestamp.
pub fn publish_snapshot(
    c: &dyn Sql,
    channel: &str,
    key: &dyn OnlineKey,
    cfg: &TufConfig,
    now: DateTime<Utc>,
) -> Result<u64, DbError> {
    let targets = db::tuf::latest(c, channel, TufRole::Targets)?
        .ok_or_else(|| DbError::Corrupt(format!("channel {channel} has no targets metadata")))?;
    Chain::start(c, channel, key, cfg, now, 0, false)?
        .snapshot(meta_file(targets.version, &targets.body))
}

/// Publishes timestamp N+1 naming the latest snapshot.
pub fn publish_timestamp(
    c: &dyn Sql,
    channel: &str,
    key: &dyn OnlineKey,
    cfg: &TufConfig,
    now: DateTime<Utc>,
) -> Result<u64, DbError> {
    let snapshot = db::tuf::latest(c, channel, TufRole::Snapshot)?
        .ok_or_else(|| DbError::Corrupt(format!("channel {channel} has no snapshot metadata")))?;
    Chain::start(c, channel, key, cfg, now, 0, false)?
        .timestamp(meta_file(snapshot.version, &snapshot.body))
}

/// How the role above names a file: its version, length and SHA-256.
fn meta_file(version: u64, body: &[u8]) -> MetaFile {
    MetaFile {
        version,
        length: Some(body.len() as u64),
        hashes: Some([("sha256".to_owned(), sha256_hex(body))].into()),
    }
}

/// Re-signs targets, snapshot and timestamp of `channel` from its stored entries (rebuilt
/// first if there are none) with every new version at least `floor`: after a restore, the
/// versions that pass whatever the server signed after the backup (docs/security.md,
/// "Rollback protection"). Returns the new (targets, snapshot, timestamp) versions.
pub fn publish_all_from(
    c: &dyn Sql,
    channel: &str,
    key: &dyn OnlineKey,
    cfg: &TufConfig,
    now: DateTime<Utc>,
    floor: u64,
) -> Result<(u64, u64, u64), DbError> {
    if db::tuf::entry_count(c, channel)? == 0 {
        rebuild_entries(c, channel)?;
    }
    let targets = sign_targets_at(c, channel, key, cfg, now, floor)?;
    let latest = |role| db::tuf::latest_version(c, channel, role).map(Option::unwrap_or_default);
    Ok((
        targets,
        latest(TufRole::Snapshot)?,
        latest(TufRole::Timestamp)?,
    ))
}

/// Re-signs each online role that has less than half of its lifetime left (targets, then
/// snapshot, then timestamp; each new version cascades down). Returns which roles it re-signed.
pub fn refresh_expiring(
    c: &dyn Sql,
    channel: &str,
    key: &dyn OnlineKey,
    cfg: &TufConfig,
    now: DateTime<Utc>,
) -> Result<Vec<TufRole>, DbError> {
    let due = |role: TufRole, life: Duration| -> Result<bool, DbError> {
        let Some(m) = db::tuf::latest(c, channel, role)? else {
            return Ok(true);
        };
        let expires = super::metadata::parse_time(&m.expires)
            .ok_or_else(|| DbError::Corrupt(format!("{channel} {role} expiry {:?}", m.expires)))?;
        let half = chrono::Duration::from_std(life / 2).unwrap_or(chrono::Duration::zero());
        Ok(expires - now < half)
    };
    if due(TufRole::Targets, cfg.targets_expiry)? {
        if db::tuf::entry_count(c, channel)? == 0 {
            publish_targets(c, channel, key, cfg, now)?;
        } else {
            sign_targets(c, channel, key, cfg, now)?;
        }
        return Ok(vec![
            TufRole::Targets,
            TufRole::Snapshot,
            TufRole::Timestamp,
        ]);
    }
    if due(TufRole::Snapshot, cfg.snapshot_expiry)? {
        publish_snapshot(c, channel, key, cfg, now)?;
        return Ok(vec![TufRole::Snapshot, TufRole::Timestamp]);
    }
    if due(TufRole::Timestamp, cfg.timestamp_expiry)? {
        publish_timestamp(c, channel, key, cfg, now)?;
        return Ok(vec![TufRole::Timestamp]);
    }
    Ok(Vec::new())
}

/// Checks a channel's next root for a root-key rotation: exactly the next version of the same
/// channel, signed by the threshold of the current root keys and of its own, whose root role is
/// the trust document's new root role and whose online roles are unchanged.
pub fn verify_rotated_root(
    current: &Root,
    next_env: &Envelope,
    trust: &arca_keys::TrustDocument,
    now: DateTime<Utc>,
) -> Result<Root, String> {
    use super::metadata::Signed as _;
    let next: Root = next_env.decode().map_err(|e| e.to_string())?;
    if next.version != current.version + 1 {
        return Err(format!(
            "root version {} cannot follow {}",
            next.version, current.version
        ));
    }
    if next.channel != current.channel {
        return Err(format!(
            "root is for channel {:?}, not {:?}",
            next.channel, current.channel
        ));
    }
    next_env
        .verify_role(current, TufRole::Root)
        .map_err(|e| format!("current root keys: {e}"))?;
    next_env
        .verify_role(&next, TufRole::Root)
        .map_err(|e| format!("new root keys: {e}"))?;
    let role = next
        .roles
        .get(TufRole::Root.as_str())
        .ok_or("no root role")?;
    let mut ids: Vec<String> = role.keyids.clone();
    ids.sort();
    let want: Vec<String> = trust.root.keyids.iter().map(ToString::to_string).collect();
    if ids != want || role.threshold != trust.root.threshold {
        return Err("its root role is not the trust document's new root role".into());
    }
    for r in [TufRole::Targets, TufRole::Snapshot, TufRole::Timestamp] {
        if next.roles.get(r.as_str()) != current.roles.get(r.as_str()) {
            return Err(format!(
                "the {r} role changed; a root rotation keeps the online keys"
            ));
        }
        for id in &next.roles[r.as_str()].keyids {
            if next.keys.get(id) != current.keys.get(id) {
                return Err(format!("online key {id} changed"));
            }
        }
    }
    next.check_not_expired(now).map_err(|e| e.to_string())?;
    Ok(next)
}

/// The next root of a channel with new root keys: same online roles, version + 1.
pub fn rotated_root(
    current: &Root,
    root_keys: &[PublicKey],
    threshold: u32,
    expires: String,
) -> Root {
    let mut next = current.clone();
    next.version += 1;
    next.expires = expires;
    let online: std::collections::BTreeSet<&String> =
        [TufRole::Targets, TufRole::Snapshot, TufRole::Timestamp]
            .iter()
            .filter_map(|r| current.roles.get(r.as_str()))
            .flat_map(|r| r.keyids.iter())
            .collect();
    next.keys.retain(|id, _| online.contains(id));
    let mut ids = Vec::new();
    for k in root_keys {
        next.keys
            .insert(k.key_id().to_string(), MetaKey::from_public(k));
        ids.push(k.key_id().to_string());
    }
    ids.sort();
    next.roles.insert(
        TufRole::Root.into(),
        RoleKeys {
            keyids: ids,
            threshold,
        },
    );
    next
}

/// The next root of a channel with a new online key for targets, snapshot and timestamp.
pub fn rotated_online(current: &Root, online: &PublicKey, expires: String) -> Root {
    let mut next = current.clone();
    next.version += 1;
    next.expires = expires;
    let root_ids: std::collections::BTreeSet<String> = next
        .roles
        .get(TufRole::Root.as_str())
        .map(|r| r.keyids.iter().cloned().collect())
        .unwrap_or_default();
    next.keys.retain(|id, _| root_ids.contains(id));
    let id = online.key_id().to_string();
    next.keys.insert(id.clone(), MetaKey::from_public(online));
    for role in [TufRole::Targets, TufRole::Snapshot, TufRole::Timestamp] {
        next.roles.insert(
            role.into(),
            RoleKeys {
                keyids: vec![id.clone()],
                threshold: 1,
            },
        );
    }
    next
}

/// Reads the newest root of a channel.
pub fn latest_root(c: &dyn Sql, channel: &str) -> Result<Root, DbError> {
    let m = db::tuf::latest(c, channel, TufRole::Root)?
        .ok_or_else(|| DbError::Corrupt(format!("channel {channel} has no root")))?;
    Envelope::from_slice(TufRole::Root, &m.body)
        .and_then(|e| e.decode::<Root>())
        .map_err(|e| DbError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tuf::metadata::Targets;

    /// The assembled targets must be exactly the canonical JSON that a generic encoder makes,
    /// or clients (python-tuf included) would reject the signature.
    #[test]
    fn assembled_targets_are_canonical_and_signed() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&dir.path().join("t.db")).unwrap();
        let key = SigningKey::generate().unwrap();
        db.call_sync(|c| {
            db::channels::insert_channel(c, "dev", 0)?;
            for (name, path) in [("b", "b/x.bin"), ("a/b", "a/b/y-1.0.tgz"), ("a", "a/z"), ("a-b", "a-b/q")] {
                let entry = serde_json::json!({"length": 3, "hashes": {"sha256": "ab"}, "custom": {"name": name, "statements": []}});
                let bytes = arca_keys::canonical::to_canonical_json(&entry).unwrap();
                db::tuf::set_entry(c, "dev", name, Some((path, &bytes)))?;
            }
            let v = sign_targets(c, "dev", &key, &TufConfig::default(), Utc::now())?;
            let body = db::tuf::get(c, "dev", TufRole::Targets, v)?.unwrap();
            let env = Envelope::from_slice(TufRole::Targets, &body).unwrap();
            assert_eq!(env.to_bytes(), body, "not canonical");
            let t: Targets = env.decode().unwrap();
            assert_eq!(t.targets.len(), 4);
            let root = build_root(2, &[key.public()], 1, Some(&key.public()), Some("dev"), "2030-01-01T00:00:00Z".into());
            env.verify_role(&root, TufRole::Targets).unwrap();
            Ok(())
        })
        .unwrap();
    }
}
