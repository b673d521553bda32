//! The TUF client workflow (specification §5.3-5.7): root chain, timestamp, snapshot, targets,
//! then a target download that is length-capped and hash-checked while it streams. Trusted
//! metadata persists in a directory, so versions never go back between runs.

use crate::tuf::metadata::TufRole;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::metadata::{
    Envelope, MetaFile, Root, Signed, Snapshot, TargetFile, Targets, Timestamp, TufError,
};

/// Most targets roles visited in one search for a target (python-tuf's `max_delegations`).
pub const MAX_DELEGATIONS: usize = 32;
/// Most root versions followed in one refresh (TUF's bound against an endless chain).
pub const MAX_ROOT_ROTATIONS: u64 = 256;
/// Size limits of metadata whose length is not signed anywhere (TUF's endless-data defence),
/// python-tuf's `UpdaterConfig` defaults.
pub const MAX_ROOT_BYTES: u64 = 512_000;
pub const MAX_TIMESTAMP_BYTES: u64 = 16_384;
/// Defaults when snapshot or timestamp do not sign a length (arca's own always do).
pub const MAX_SNAPSHOT_BYTES: u64 = 2_000_000;
pub const MAX_TARGETS_BYTES: u64 = 5_000_000;

/// Default minimum average transfer rate of every file, in bytes per second. Far below any
/// working link (a 1 GiB artifact at this rate takes 18 hours), far above a mirror that drips
/// a byte now and then to hold clients forever (TUF's slow-retrieval attack), which a read
/// timeout alone never catches.
pub const DEFAULT_MIN_RATE: u64 = 16 * 1024;

/// Every file may take the time to bring this many bytes at the minimum rate before it must
/// keep up (connection set-up, the server's first byte): 16 s at the default rate.
pub const HEAD_START_BYTES: u64 = 256 * 1024;

/// Fetches metadata and targets over HTTP with hard length limits and a minimum rate.
#[derive(Clone)]
pub struct Fetcher {
    http: reqwest::Client,
    /// Minimum average bytes per second of each file (after the head start).
    min_rate: u64,
}

/// The deadline of one transfer: by `started + (HEAD_START_BYTES + received) / rate`, it must
/// have brought more than `received` bytes.
struct Pace {
    started: tokio::time::Instant,
    rate: u64,
}

impl Pace {
    fn new(rate: u64) -> Self {
        Pace {
            started: tokio::time::Instant::now(),
            rate: rate.max(1),
        }
    }

    fn deadline(&self, received: u64) -> tokio::time::Instant {
        let secs = (HEAD_START_BYTES.saturating_add(received)) as f64 / self.rate as f64;
        // Capped at a year: a rate of 1 byte/s means "no limit" in practice.
        self.started + std::time::Duration::from_secs_f64(secs.min(365.0 * 86_400.0))
    }

    /// Waits for `fut` until the deadline for `received` bytes so far.
    async fn within<T>(
        &self,
        what: &str,
        received: u64,
        fut: impl std::future::Future<Output = T>,
    ) -> Result<T, TufError> {
        tokio::time::timeout_at(self.deadline(received), fut)
            .await
            .map_err(|_| TufError::TooSlow {
                what: what.into(),
                received,
                secs: self.started.elapsed().as_secs_f64(),
                rate: self.rate,
            })
    }
}

impl Fetcher {
    pub fn new(http: reqwest::Client) -> Self {
        Self::with_min_rate(http, DEFAULT_MIN_RATE)
    }

    /// A fetcher whose files must each average at least `min_rate` bytes per second.
    pub fn with_min_rate(http: reqwest::Client, min_rate: u64) -> Self {
        Fetcher { http, min_rate }
    }

    /// Fetches `url`, refusing more than `limit` bytes, or a transfer slower than the minimum
    /// rate. `Ok(None)` on 404 (or 403, which some static hosts answer for missing files).
    pub async fn fetch(&self, url: &str, limit: u64) -> Result<Option<Vec<u8>>, TufError> {
        let pace = Pace::new(self.min_rate);
        let resp = pace
            .within(url, 0, self.http.get(url).send())
            .await?
            .map_err(|e| TufError::Other(format!("GET {url}: {e}")))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::FORBIDDEN {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(TufError::Other(format!("GET {url}: HTTP {status}")));
        }
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(TufError::TooLong {
                what: url.into(),
                limit,
            });
        }
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = pace.within(url, body.len() as u64, stream.next()).await? {
            let chunk = chunk.map_err(|e| TufError::Other(format!("GET {url}: {e}")))?;
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(TufError::TooLong {
                    what: url.into(),
                    limit,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }
}

/// The verified top-level metadata after a refresh.
#[derive(Debug, Clone)]
pub struct Trusted {
    pub root: Root,
    pub timestamp: Timestamp,
    pub snapshot: Snapshot,
    pub targets: Targets,
}

/// One TUF repository, as a client sees it.
pub struct Updater {
    metadata_url: String,
    dir: PathBuf,
    fetcher: Fetcher,
    now: DateTime<Utc>,
}

fn load_local(dir: &Path, name: &str) -> Option<Envelope> {
    let bytes = std::fs::read(dir.join(name)).ok()?;
    Envelope::from_slice(name, &bytes).ok()
}

/// Writes `bytes` to `dir/name` atomically (temp file + rename).
pub fn persist(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), TufError> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let io =
        |e: std::io::Error| TufError::Other(format!("writing {}: {e}", dir.join(name).display()));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, dir.join(name)).map_err(io)
}

/// Checks `bytes` against the length and hashes a snapshot or timestamp signed for them.
fn check_meta_file(what: &str, bytes: &[u8], meta: &MetaFile) -> Result<(), TufError> {
    if meta.length.is_some_and(|n| n != bytes.len() as u64) {
        return Err(TufError::HashMismatch { what: what.into() });
    }
    if let Some(hashes) = &meta.hashes {
        check_hashes(what, hashes, &mut HashSet::new(hashes), bytes)?;
    }
    Ok(())
}

/// A role's name as it appears in file names and URLs: every byte but `A-Z a-z 0-9 _ . - ~`
/// percent-encoded (what python-tuf does, so that `a/b`, `..` or `?` stay one file name).
pub fn role_file_name(role: &str) -> String {
    role.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Incremental hashes of every algorithm a target lists that this client knows.
pub struct HashSet {
    sha256: Option<ring::digest::Context>,
    sha512: Option<ring::digest::Context>,
}

impl HashSet {
    pub fn new(hashes: &BTreeMap<String, String>) -> Self {
        HashSet {
            sha256: hashes
                .contains_key("sha256")
                .then(|| ring::digest::Context::new(&ring::digest::SHA256)),
            sha512: hashes
                .contains_key("sha512")
                .then(|| ring::digest::Context::new(&ring::digest::SHA512)),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        if let Some(c) = &mut self.sha256 {
            c.update(data);
        }
        if let Some(c) = &mut self.sha512 {
            c.update(data);
        }
    }

    pub fn finish(self) -> BTreeMap<&'static str, String> {
        let mut out = BTreeMap::new();
        if let Some(c) = self.sha256 {
            out.insert("sha256", hex::encode(c.finish()));
        }
        if let Some(c) = self.sha512 {
            out.insert("sha512", hex::encode(c.finish()));
        }
        out
    }
}

/// Whether the file at `path` is `target` already: its length and every hash the target
/// lists match (a download that would change nothing is not made).
pub fn is_already(path: &Path, target: &TargetFile) -> bool {
    use std::io::Read as _;
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    if file.metadata().map(|m| m.len()).ok() != Some(target.length) {
        return false;
    }
    let mut set = HashSet::new(&target.hashes);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => set.update(&buf[..n]),
            Err(_) => return false,
        }
    }
    check_hashes("target", &target.hashes, &mut set, &[]).is_ok()
}

/// Verifies `expected` against hashes computed by `set` (after feeding `tail`). Every listed
/// algorithm must be known and match.
fn check_hashes(
    what: &str,
    expected: &BTreeMap<String, String>,
    set: &mut HashSet,
    tail: &[u8],
) -> Result<(), TufError> {
    set.update(tail);
    let got = std::mem::replace(set, HashSet::new(&BTreeMap::new())).finish();
    if expected.is_empty() {
        return Err(TufError::HashMismatch {
            what: format!("{what} (no hashes listed)"),
        });
    }
    for (alg, want) in expected {
        match got.get(alg.as_str()) {
            Some(h) if h == want => {}
            Some(_) => return Err(TufError::HashMismatch { what: what.into() }),
            None => {
                return Err(TufError::HashMismatch {
                    what: format!("{what} (unsupported hash {alg})"),
                });
            }
        }
    }
    Ok(())
}

impl Updater {
    /// A client of the repository at `metadata_url` keeping its state in `dir`.
    pub fn new(metadata_url: &str, dir: &Path, fetcher: Fetcher) -> Self {
        let mut url = metadata_url.to_owned();
        if !url.ends_with('/') {
            url.push('/');
        }
        Updater {
            metadata_url: url,
            dir: dir.to_path_buf(),
            fetcher,
            now: Utc::now(),
        }
    }

    /// Installs `root_bytes` as the trusted root of a new client state (it must be signed by
    /// the threshold of its own root keys).
    pub fn init(dir: &Path, root_bytes: &[u8]) -> Result<Root, TufError> {
        let env = Envelope::from_slice(TufRole::Root, root_bytes)?;
        let root: Root = env.decode()?;
        env.verify_role(&root, TufRole::Root)?;
        std::fs::create_dir_all(dir)
            .map_err(|e| TufError::Other(format!("creating {}: {e}", dir.display())))?;
        persist(dir, "root.json", root_bytes)?;
        Ok(root)
    }

    /// Starts from the stored root if there is one, else installs `bootstrap`.
    pub fn init_if_needed(dir: &Path, bootstrap: &[u8]) -> Result<(), TufError> {
        if dir.join("root.json").exists() {
            return Ok(());
        }
        Self::init(dir, bootstrap).map(|_| ())
    }

    /// Runs the whole refresh: root chain, timestamp, snapshot, targets.
    pub async fn refresh(&self) -> Result<Trusted, TufError> {
        let root = self.update_root().await?;
        let timestamp = self.update_timestamp(&root).await?;
        let snapshot = self.update_snapshot(&root, &timestamp).await?;
        let targets = self.update_targets(&root, &snapshot).await?;
        Ok(Trusted {
            root,
            timestamp,
            snapshot,
            targets,
        })
    }

    async fn update_root(&self) -> Result<Root, TufError> {
        let env = load_local(&self.dir, "root.json")
            .ok_or_else(|| TufError::Other(format!("no trusted root in {}", self.dir.display())))?;
        let mut root: Root = env.decode()?;
        env.verify_role(&root, TufRole::Root)?;
        for _ in 0..MAX_ROOT_ROTATIONS {
            let next_version = root.version + 1;
            let url = format!("{}{next_version}.root.json", self.metadata_url);
            let Some(bytes) = self.fetcher.fetch(&url, MAX_ROOT_BYTES).await? else {
                break;
            };
            let env = Envelope::from_slice(TufRole::Root, &bytes)?;
            let next: Root = env.decode()?;
            env.verify_role(&root, TufRole::Root)?;
            env.verify_role(&next, TufRole::Root)?;
            if next.version != next_version {
                return Err(TufError::BadVersion {
                    role: TufRole::Root.into(),
                    expected: next_version.to_string(),
                    got: next.version,
                });
            }
            persist(&self.dir, "root.json", &bytes)?;
            root = next;
        }
        root.check_not_expired(self.now)?;
        Ok(root)
    }

    /// Local metadata of `role` that still verifies under `root` (expired or not).
    fn trusted_local<T: Signed>(&self, root: &Root, file: &str) -> Option<T> {
        let env = load_local(&self.dir, file)?;
        env.verify_role(root, T::ROLE).ok()?;
        env.decode().ok()
    }

    async fn update_timestamp(&self, root: &Root) -> Result<Timestamp, TufError> {
        let url = format!("{}timestamp.json", self.metadata_url);
        let bytes = self
            .fetcher
            .fetch(&url, MAX_TIMESTAMP_BYTES)
            .await?
            .ok_or_else(|| TufError::Other(format!("{url}: not found")))?;
        let env = Envelope::from_slice(TufRole::Timestamp, &bytes)?;
        env.verify_role(root, TufRole::Timestamp)?;
        let new: Timestamp = env.decode()?;
        let snap = |t: &Timestamp| t.meta.get("snapshot.json").map(|m| m.version);
        if snap(&new).is_none() {
            return Err(TufError::Malformed {
                role: TufRole::Timestamp.into(),
                reason: "no snapshot.json entry".into(),
            });
        }
        if let Some(old) = self.trusted_local::<Timestamp>(root, "timestamp.json") {
            if new.version < old.version {
                return Err(TufError::Rollback {
                    role: TufRole::Timestamp.into(),
                    trusted: old.version,
                    got: new.version,
                });
            }
            // The same version again: the trusted one is kept, whatever the new one says
            // (TUF 5.4.3.2; python-tuf discards the new file).
            if new.version == old.version {
                old.check_not_expired(self.now)?;
                return Ok(old);
            }
            if snap(&new) < snap(&old) {
                return Err(TufError::Rollback {
                    role: TufRole::Snapshot.into(),
                    trusted: snap(&old).unwrap_or(0),
                    got: snap(&new).unwrap_or(0),
                });
            }
        }
        new.check_not_expired(self.now)?;
        persist(&self.dir, "timestamp.json", &bytes)?;
        Ok(new)
    }

    fn versioned_url(&self, root: &Root, role: TufRole, version: u64) -> String {
        if root.consistent_snapshot {
            format!("{}{version}.{role}.json", self.metadata_url)
        } else {
            format!("{}{role}.json", self.metadata_url)
        }
    }

    async fn update_snapshot(&self, root: &Root, ts: &Timestamp) -> Result<Snapshot, TufError> {
        let meta = &ts.meta["snapshot.json"];
        // The trusted snapshot is the version the timestamp names, and still valid: kept, not
        // fetched again (as python-tuf does).
        if let Some(local) = self.trusted_local::<Snapshot>(root, "snapshot.json")
            && local.version == meta.version
            && local.check_not_expired(self.now).is_ok()
        {
            return Ok(local);
        }
        let url = self.versioned_url(root, TufRole::Snapshot, meta.version);
        let bytes = self
            .fetcher
            .fetch(&url, meta.length.unwrap_or(MAX_SNAPSHOT_BYTES))
            .await?
            .ok_or_else(|| TufError::Other(format!("{url}: not found")))?;
        check_meta_file(TufRole::Snapshot.as_str(), &bytes, meta)?;
        let env = Envelope::from_slice(TufRole::Snapshot, &bytes)?;
        env.verify_role(root, TufRole::Snapshot)?;
        let new: Snapshot = env.decode()?;
        if new.version != meta.version {
            return Err(TufError::BadVersion {
                role: TufRole::Snapshot.into(),
                expected: meta.version.to_string(),
                got: new.version,
            });
        }
        if let Some(old) = self.trusted_local::<Snapshot>(root, "snapshot.json") {
            for (file, old_meta) in &old.meta {
                match new.meta.get(file) {
                    Some(m) if m.version >= old_meta.version => {}
                    Some(m) => {
                        return Err(TufError::Rollback {
                            role: file.clone(),
                            trusted: old_meta.version,
                            got: m.version,
                        });
                    }
                    None => {
                        return Err(TufError::Rollback {
                            role: file.clone(),
                            trusted: old_meta.version,
                            got: 0,
                        });
                    }
                }
            }
        }
        new.check_not_expired(self.now)?;
        persist(&self.dir, "snapshot.json", &bytes)?;
        Ok(new)
    }

    async fn update_targets(&self, root: &Root, snapshot: &Snapshot) -> Result<Targets, TufError> {
        let meta = snapshot
            .meta
            .get("targets.json")
            .ok_or_else(|| TufError::Malformed {
                role: TufRole::Snapshot.into(),
                reason: "no targets.json entry".into(),
            })?;
        if let Some(local) = self.trusted_local::<Targets>(root, "targets.json")
            && local.version == meta.version
            && local.check_not_expired(self.now).is_ok()
        {
            return Ok(local);
        }
        let url = self.versioned_url(root, TufRole::Targets, meta.version);
        let bytes = self
            .fetcher
            .fetch(&url, meta.length.unwrap_or(MAX_TARGETS_BYTES))
            .await?
            .ok_or_else(|| TufError::Other(format!("{url}: not found")))?;
        check_meta_file(TufRole::Targets.as_str(), &bytes, meta)?;
        let env = Envelope::from_slice(TufRole::Targets, &bytes)?;
        env.verify_role(root, TufRole::Targets)?;
        let new: Targets = env.decode()?;
        if new.version != meta.version {
            return Err(TufError::BadVersion {
                role: TufRole::Targets.into(),
                expected: meta.version.to_string(),
                got: new.version,
            });
        }
        new.check_not_expired(self.now)?;
        persist(&self.dir, "targets.json", &bytes)?;
        Ok(new)
    }

    /// The target at `path`, as the repository's delegations assign it: a pre-order
    /// depth-first search from the top-level targets (TUF 5.6.7), each role trusted for the
    /// path in the order its delegator lists it, a terminating role ending the search, at
    /// most `MAX_DELEGATIONS` roles, each visited once (so a cycle ends). Every delegated role
    /// is verified against the delegator that led here, also when it was kept from before.
    pub async fn find_target(
        &self,
        trusted: &Trusted,
        path: &str,
    ) -> Result<Option<TargetFile>, TufError> {
        let mut loaded: BTreeMap<String, Targets> = BTreeMap::new();
        loaded.insert(TufRole::Targets.as_str().into(), trusted.targets.clone());
        let mut to_visit = vec![(TufRole::Targets.as_str().to_owned(), String::new())];
        let mut visited = std::collections::BTreeSet::new();
        while visited.len() < MAX_DELEGATIONS {
            let Some((role, parent)) = to_visit.pop() else {
                break;
            };
            if visited.contains(&role) {
                continue;
            }
            let targets = match loaded.get(&role) {
                Some(t) => t.clone(),
                None => {
                    let delegations = loaded[&parent]
                        .delegations
                        .clone()
                        .expect("a role is visited only from a delegator");
                    let t = self.load_delegated(trusted, &role, &delegations).await?;
                    loaded.insert(role.clone(), t.clone());
                    t
                }
            };
            if let Some(t) = targets.targets.get(path) {
                return Ok(Some(t.clone()));
            }
            visited.insert(role.clone());
            if let Some(d) = &targets.delegations {
                let mut children = Vec::new();
                for (child, terminating) in d.roles_for(path) {
                    children.push((child, role.clone()));
                    if terminating {
                        to_visit.clear();
                        break;
                    }
                }
                to_visit.extend(children.into_iter().rev());
            }
        }
        Ok(None)
    }

    /// Delegated targets role `role`, verified with `delegations` (its delegator's) and against
    /// the snapshot: the trusted copy if it is still the version the snapshot names and valid,
    /// else fetched and kept.
    async fn load_delegated(
        &self,
        trusted: &Trusted,
        role: &str,
        delegations: &crate::tuf::metadata::Delegations,
    ) -> Result<Targets, TufError> {
        let keys = delegations
            .keys_of(role)
            .ok_or_else(|| TufError::Malformed {
                role: role.into(),
                reason: "not delegated by its delegator".into(),
            })?;
        let meta = trusted
            .snapshot
            .meta
            .get(&format!("{role}.json"))
            .ok_or_else(|| TufError::Malformed {
                role: TufRole::Snapshot.into(),
                reason: format!("no {role}.json entry"),
            })?;
        let file = format!("{}.json", role_file_name(role));
        let verified = |env: &Envelope| -> Result<Targets, TufError> {
            env.verify_keys(&delegations.keys, &keys, role)?;
            let t: Targets = env.decode()?;
            if t.version != meta.version {
                return Err(TufError::BadVersion {
                    role: role.into(),
                    expected: meta.version.to_string(),
                    got: t.version,
                });
            }
            t.check_not_expired(self.now)?;
            Ok(t)
        };
        if let Some(t) = load_local(&self.dir, &file).and_then(|env| verified(&env).ok()) {
            return Ok(t);
        }
        let url = if trusted.root.consistent_snapshot {
            format!("{}{}.{file}", self.metadata_url, meta.version)
        } else {
            format!("{}{file}", self.metadata_url)
        };
        let bytes = self
            .fetcher
            .fetch(&url, meta.length.unwrap_or(MAX_TARGETS_BYTES))
            .await?
            .ok_or_else(|| TufError::Other(format!("{url}: not found")))?;
        check_meta_file(role, &bytes, meta)?;
        let t = verified(&Envelope::from_slice(role, &bytes)?)?;
        persist(&self.dir, &file, &bytes)?;
        Ok(t)
    }
}

/// What a verified download produced.
#[derive(Debug, Clone)]
pub struct Downloaded {
    pub length: u64,
    pub sha256: String,
    pub blake3: String,
}

/// The URL of a target under `base` (consistent snapshot: `{dir}/{hash}.{file}`).
pub fn target_url(base: &str, root: &Root, path: &str, target: &TargetFile) -> String {
    let base = base.trim_end_matches('/');
    let hash = target
        .hashes
        .get("sha256")
        .or_else(|| target.hashes.values().next());
    match (root.consistent_snapshot, hash) {
        (true, Some(h)) => match path.rsplit_once('/') {
            Some((dir, file)) => format!("{base}/{dir}/{h}.{file}"),
            None => format!("{base}/{h}.{path}"),
        },
        _ => format!("{base}/{path}"),
    }
}

/// Downloads `url` into `out`, refusing more bytes than the target's signed length and checking
/// every listed hash at the end; BLAKE3 is computed too. Hashing and writing run on a separate
/// thread, so the network and the CPU work overlap.
pub async fn download_target(
    fetcher: &Fetcher,
    url: &str,
    target: &TargetFile,
    out: std::fs::File,
    progress: Option<indicatif::ProgressBar>,
) -> Result<Downloaded, TufError> {
    let pace = Pace::new(fetcher.min_rate);
    let resp = pace
        .within(url, 0, fetcher.http.get(url).send())
        .await?
        .map_err(|e| TufError::Other(format!("GET {url}: {e}")))?;
    if !resp.status().is_success() {
        return Err(TufError::Other(format!(
            "GET {url}: HTTP {}",
            resp.status()
        )));
    }
    // SHA-256 and BLAKE3 run on threads of their own, the file is written by another (with
    // its disk flushes spread over the download), so receiving, hashing and writing overlap.
    // Any other algorithm the target lists is computed here.
    let others: BTreeMap<String, String> = target
        .hashes
        .iter()
        .filter(|(alg, _)| alg.as_str() != "sha256")
        .map(|(a, h)| (a.clone(), h.clone()))
        .collect();
    let mut set = HashSet::new(&others);
    let mut sink = arca_store::FileSink::new(out)
        .map_err(|e| TufError::Other(format!("writing the download: {e}")))?;
    let mut hasher = arca_store::ParallelHasher::new();
    let mut length = 0u64;
    let mut stream = std::pin::pin!(arca_store::coalesce(resp.bytes_stream()));
    let mut failure = None;
    loop {
        let chunk = match pace.within(url, length, stream.next()).await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(slow) => {
                failure = Some(slow);
                break;
            }
        };
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                failure = Some(TufError::Other(format!(
                    "GET {url}: transfer broke off after {length} of {} signed bytes: {e}",
                    target.length
                )));
                break;
            }
        };
        length += chunk.len() as u64;
        if length > target.length {
            failure = Some(TufError::TooLong {
                what: url.into(),
                limit: target.length,
            });
            break;
        }
        if let Some(p) = &progress {
            p.inc(chunk.len() as u64);
        }
        set.update(&chunk);
        hasher.update(chunk.clone()).await;
        if sink.write(chunk).await.is_err() {
            break; // the writer failed; finish() says how
        }
    }
    let written = sink.finish().await;
    let digests = hasher
        .finish()
        .await
        .map_err(|e| TufError::Other(e.to_string()))?;
    if let Some(f) = failure {
        return Err(f);
    }
    written.map_err(|e| TufError::Other(format!("writing the download: {e}")))?;
    if length != target.length {
        return Err(TufError::HashMismatch {
            what: format!("{url} (length {length}, signed {})", target.length),
        });
    }
    if target.hashes.is_empty() {
        return Err(TufError::HashMismatch {
            what: format!("{url} (no hashes listed)"),
        });
    }
    let mut got = set.finish();
    let sha256 = digests.sha256.hex();
    got.insert("sha256", sha256.clone());
    for (alg, want) in &target.hashes {
        match got.get(alg.as_str()) {
            Some(h) if h == want => {}
            _ => return Err(TufError::HashMismatch { what: url.into() }),
        }
    }
    Ok(Downloaded {
        length,
        sha256,
        blake3: digests.blake3.hex(),
    })
}
