//! Installing releases into an agent's directory, switching between them, and checking their
//! health.
//!
//! An agent owns one directory `DIR`, laid out as
//!
//! ```text
//! DIR/
//!   current -> releases/1.4.2      relative symlink, absent until the first switch
//!   releases/1.4.1/...
//!   releases/1.4.2/...
//! ```
//!
//! Guarantees, kept even when the agent is killed at any instant:
//!
//! - `releases/VERSION` exists only once it is complete: a release is unpacked into
//!   `releases/.tmp-VERSION-<random>`, fsynced, and renamed into place.
//! - `current` is absent or points at a complete release: it is replaced by renaming a new symlink
//!   over it, never rewritten in place.
//! - Leftovers of an interrupted install, prune or switch are removed by [`ReleaseDir::open`].
//!
//! Archives are untrusted input even though they are signed: [`ReleaseDir::install`] unpacks them
//! entry by entry and refuses anything that could write outside the release (see
//! [`UnpackError`]). One agent process per `DIR`: `open` removes every temporary entry it finds,
//! including those of a concurrent install.
//!
//! The methods of [`ReleaseDir`] block on the filesystem; call them from `spawn_blocking`.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use arca::agent::install::ReleaseDir;
//! use std::path::Path;
//!
//! let dir = ReleaseDir::open(Path::new("/srv/app"))?;
//! dir.install("1.4.2", Path::new("/var/cache/arca/app.tar.gz"), "app.tar.gz")?;
//! dir.switch("1.4.2")?;
//! dir.prune(3, &["1.4.2", "1.4.1"])?;
//! # Ok(())
//! # }
//! ```

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow, bail};
use tokio::io::AsyncReadExt;

/// The most bytes one archive may unpack to. Far above any release we expect to ship, and there
/// so that a decompression bomb stops with an error instead of filling the disk.
pub const MAX_UNPACKED_BYTES: u64 = 64 << 30;

/// The most entries one archive may hold: bounds the inodes and the time a hostile archive of
/// empty files can cost.
pub const MAX_ENTRIES: u64 = 1_000_000;

/// The longest symlink target accepted from a zip entry (where the target is the entry's data):
/// Linux's `PATH_MAX`.
const MAX_LINK_TARGET: u64 = 4096;

/// How much of a failed health command's stderr goes into the error: enough for the last lines.
const HEALTH_STDERR_TAIL: usize = 500;

/// How long to wait for the rest of a health command's stderr after it exited: a background
/// process it started may hold the pipe open forever.
const HEALTH_STDERR_GRACE: Duration = Duration::from_millis(200);

const RELEASES: &str = "releases";
const CURRENT: &str = "current";
/// Prefix of directories under `releases/` that are not (or no longer) complete releases.
const TMP_PREFIX: &str = ".tmp-";
/// Prefix of the symlink that is renamed over `current`.
const CURRENT_TMP_PREFIX: &str = ".current.tmp";

/// Why an archive was refused. Carried inside the `anyhow::Error` that [`ReleaseDir::install`]
/// returns, so the agent can tell a bad artifact (retrying will not help) from an I/O failure by
/// downcasting.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// An entry that could write outside the release, or a kind of file a release may not hold.
    #[error("archive entry `{entry}` refused: {reason}")]
    Refused { entry: String, reason: String },
    /// The archive unpacks to more than the limit.
    #[error("archive unpacks to more than {limit} bytes; refused as a decompression bomb")]
    TooLarge { limit: u64 },
    /// The archive has more entries than the limit.
    #[error("archive has more than {limit} entries; refused as a decompression bomb")]
    TooManyEntries { limit: u64 },
}

fn refused(entry: &str, reason: impl Into<String>) -> anyhow::Error {
    UnpackError::Refused {
        entry: entry.to_owned(),
        reason: reason.into(),
    }
    .into()
}

/// An agent's directory of releases. See the module documentation for its layout and guarantees.
#[derive(Debug, Clone)]
pub struct ReleaseDir {
    root: PathBuf,
}

impl ReleaseDir {
    /// Opens `dir` (creating `dir` and `dir/releases` if missing) and removes leftovers of
    /// interrupted installs, prunes and switches (`releases/.tmp-*`, `.current.tmp*`).
    pub fn open(dir: &Path) -> anyhow::Result<ReleaseDir> {
        let root = std::path::absolute(dir)
            .with_context(|| format!("resolving release directory {}", dir.display()))?;
        let dir = ReleaseDir { root };
        let releases = dir.releases();
        fs::create_dir_all(&releases)
            .with_context(|| format!("creating {}", releases.display()))?;
        remove_leftovers(&releases, TMP_PREFIX)?;
        remove_leftovers(&dir.root, CURRENT_TMP_PREFIX)?;
        Ok(dir)
    }

    /// The absolute path of the directory, as [`run_health`] wants it.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The version `current` points at, `None` before the first [`switch`](Self::switch).
    pub fn current(&self) -> anyhow::Result<Option<String>> {
        let link = self.root.join(CURRENT);
        let target = match fs::read_link(&link) {
            Ok(target) => target,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", link.display())),
        };
        let mut components = target.components();
        match (components.next(), components.next(), components.next()) {
            (Some(Component::Normal(dir)), Some(Component::Normal(version)), None)
                if dir == RELEASES =>
            {
                let version = version.to_str().filter(|v| check_version(v).is_ok());
                match version {
                    Some(version) => Ok(Some(version.to_owned())),
                    None => bail!("{} points at an invalid version", link.display()),
                }
            }
            _ => bail!(
                "{} points at {}, not at releases/VERSION",
                link.display(),
                target.display()
            ),
        }
    }

    /// Whether `releases/VERSION` exists, which means it is complete.
    pub fn has(&self, version: &str) -> bool {
        check_version(version).is_ok()
            && fs::symlink_metadata(self.release(version)).is_ok_and(|m| m.is_dir())
    }

    /// Unpacks the verified file `file`, published as `file_name`, into `releases/VERSION` and
    /// returns that path.
    ///
    /// The format comes from `file_name`: `.tar`, `.tar.gz` or `.tgz`, `.zip` (case-insensitive);
    /// anything else is placed as is under `file_name`, with mode 0644. Archive entries keep
    /// their permission bits (so the executable bit) without setuid, setgid and sticky;
    /// directories always keep owner `rwx` so that the agent can remove them again.
    ///
    /// Refused (see [`UnpackError`]): absolute paths, `..` components, empty paths (an entry
    /// naming the root directory itself, like tar's `./`, is skipped), device files, FIFOs,
    /// hard links (all of them, whatever their target), symlinks whose target is absolute or
    /// leaves the release, or uses `..` after a name (`a/../b` could leave it through another
    /// symlink), entries that would be written through a symlink, and archives beyond
    /// [`MAX_UNPACKED_BYTES`] or [`MAX_ENTRIES`]. On any error nothing is left behind.
    ///
    /// If `releases/VERSION` already exists it is left as is and `Ok` is returned: a version is
    /// immutable once installed.
    pub fn install(&self, version: &str, file: &Path, file_name: &str) -> anyhow::Result<PathBuf> {
        self.install_with(version, file, file_name, Limits::DEFAULT)
    }

    fn install_with(
        &self,
        version: &str,
        file: &Path,
        file_name: &str,
        limits: Limits,
    ) -> anyhow::Result<PathBuf> {
        check_version(version)?;
        let dest = self.release(version);
        if self.has(version) {
            return Ok(dest);
        }
        let tmp = self
            .releases()
            .join(format!("{TMP_PREFIX}{version}-{}", random_suffix()?));
        fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let guard = RemoveOnDrop(Some(tmp.clone()));

        unpack(file, file_name, &tmp, limits)
            .with_context(|| format!("installing {} as version {version}", file.display()))?;
        // Prune orders releases by this time; make it the install time, whatever the archive held.
        File::open(&tmp)
            .and_then(|dir| dir.set_modified(SystemTime::now()))
            .with_context(|| format!("touching {}", tmp.display()))?;
        sync_dir(&tmp)?;

        if let Err(e) = fs::rename(&tmp, &dest) {
            if self.has(version) {
                // Installed meanwhile by someone else; ours is removed by the guard.
                return Ok(dest);
            }
            return Err(e).with_context(|| format!("renaming to {}", dest.display()));
        }
        guard.disarm();
        sync_dir(&self.releases())?;
        Ok(dest)
    }

    /// Points `current` at `releases/VERSION` atomically: a new relative symlink
    /// `.current.tmp-<random>` is renamed over `current`, then the directory is fsynced. Errors if
    /// the version is not installed.
    pub fn switch(&self, version: &str) -> anyhow::Result<()> {
        check_version(version)?;
        if !self.has(version) {
            bail!("cannot switch to version {version}: it is not installed");
        }
        let tmp = self
            .root
            .join(format!("{CURRENT_TMP_PREFIX}-{}", random_suffix()?));
        symlink(Path::new(RELEASES).join(version), &tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        let current = self.root.join(CURRENT);
        if let Err(e) = fs::rename(&tmp, &current) {
            let _ = fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("replacing {}", current.display()));
        }
        sync_dir(&self.root)
    }

    /// Removes the releases beyond the newest `keep` (by modification time, which is the install
    /// time) and returns their versions. Versions in `protect`, and the one `current` points at,
    /// are never removed. Each is first renamed to a temporary name, so that a release is never
    /// seen half removed.
    pub fn prune(&self, keep: usize, protect: &[&str]) -> anyhow::Result<Vec<String>> {
        let current = self.current()?;
        let mut releases = Vec::new();
        for version in self.versions()? {
            let path = self.release(&version);
            let modified = fs::symlink_metadata(&path)
                .and_then(|m| m.modified())
                .with_context(|| format!("reading {}", path.display()))?;
            releases.push((modified, version));
        }
        releases.sort_by(|a, b| b.cmp(a));

        let mut removed = Vec::new();
        for (_, version) in releases.into_iter().skip(keep) {
            if protect.contains(&version.as_str()) || current.as_deref() == Some(&version) {
                continue;
            }
            let doomed = self
                .releases()
                .join(format!("{TMP_PREFIX}{version}-{}", random_suffix()?));
            let path = self.release(&version);
            fs::rename(&path, &doomed).with_context(|| format!("removing {}", path.display()))?;
            fs::remove_dir_all(&doomed)
                .with_context(|| format!("removing {}", doomed.display()))?;
            removed.push(version);
        }
        if !removed.is_empty() {
            sync_dir(&self.releases())?;
        }
        Ok(removed)
    }

    /// The installed versions, sorted by name (temporary directories are not versions).
    pub fn versions(&self) -> anyhow::Result<Vec<String>> {
        let releases = self.releases();
        let mut versions = Vec::new();
        let entries =
            fs::read_dir(&releases).with_context(|| format!("reading {}", releases.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", releases.display()))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && check_version(&name).is_ok() {
                versions.push(name);
            }
        }
        versions.sort();
        Ok(versions)
    }

    fn releases(&self) -> PathBuf {
        self.root.join(RELEASES)
    }

    fn release(&self, version: &str) -> PathBuf {
        self.releases().join(version)
    }
}

/// Runs the health command `cmd` through `sh -c` in `agent_dir/current`, with `ARCA_DIR` (the
/// absolute `agent_dir`), `ARCA_RELEASE_DIR` (the absolute `agent_dir/releases/VERSION`) and
/// `ARCA_VERSION` in its environment.
///
/// `Ok` on exit status 0. Otherwise, and when it runs past `timeout`, the error names the exit
/// status or the timeout, followed by the last few hundred bytes of its stderr. On timeout the
/// command's whole process group is killed; a command that exits in time may leave background
/// processes running.
pub async fn run_health(
    cmd: &str,
    agent_dir: &Path,
    version: &str,
    timeout: Duration,
) -> Result<(), String> {
    let root = std::path::absolute(agent_dir)
        .map_err(|e| format!("resolving {}: {e}", agent_dir.display()))?;
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(root.join(CURRENT))
        .env("ARCA_DIR", &root)
        .env("ARCA_RELEASE_DIR", root.join(RELEASES).join(version))
        .env("ARCA_VERSION", version)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start health command `{cmd}`: {e}"))?;

    let tail = Arc::new(Mutex::new(Vec::new()));
    let mut reader = tokio::spawn(read_tail(child.stderr.take(), Arc::clone(&tail)));
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => {
            if tokio::time::timeout(HEALTH_STDERR_GRACE, &mut reader)
                .await
                .is_err()
            {
                reader.abort();
            }
            if status.success() {
                Ok(())
            } else {
                Err(format!(
                    "health command `{cmd}` failed ({status}){}",
                    stderr_suffix(&tail)
                ))
            }
        }
        Ok(Err(e)) => {
            reader.abort();
            Err(format!("waiting for health command `{cmd}`: {e}"))
        }
        Err(_) => {
            // Not reaped yet, so the process group id cannot have been reused.
            if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
                let group = nix::unistd::Pid::from_raw(pid);
                let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            }
            let _ = child.kill().await;
            reader.abort();
            Err(format!(
                "health command `{cmd}` timed out after {}{}",
                humantime::format_duration(timeout),
                stderr_suffix(&tail)
            ))
        }
    }
}

/// Reads `stderr` to its end, keeping the last [`HEALTH_STDERR_TAIL`] bytes in `tail`.
async fn read_tail(stderr: Option<tokio::process::ChildStderr>, tail: Arc<Mutex<Vec<u8>>>) {
    let Some(mut stderr) = stderr else { return };
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = stderr.read(&mut buf).await {
        let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
        tail.extend_from_slice(&buf[..n]);
        let excess = tail.len().saturating_sub(HEALTH_STDERR_TAIL);
        tail.drain(..excess);
    }
}

fn stderr_suffix(tail: &Mutex<Vec<u8>>) -> String {
    let tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
    let text = String::from_utf8_lossy(&tail);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!("; stderr: {text}")
    }
}

/// Refuses versions that are not a single plain path component, or that would be taken for a
/// temporary entry. The real validation happens where versions enter the system; this is the
/// last line of defence before they become paths.
fn check_version(version: &str) -> anyhow::Result<()> {
    if version.is_empty()
        || version.starts_with('.')
        || version.contains('/')
        || version.contains('\0')
    {
        bail!("invalid version {version:?} for a release directory");
    }
    Ok(())
}

fn remove_leftovers(dir: &Path, prefix: &str) -> anyhow::Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        if !entry.file_name().as_bytes().starts_with(prefix.as_bytes()) {
            continue;
        }
        let path = entry.path();
        let removed = match entry.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
        removed.with_context(|| format!("removing leftover {}", path.display()))?;
    }
    Ok(())
}

fn random_suffix() -> anyhow::Result<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow!("the system random number generator failed"))?;
    Ok(hex::encode(bytes))
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// Removes a temporary directory unless disarmed, also when unwinding from a panic.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_dir_all(path);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    bytes: u64,
    entries: u64,
}

impl Limits {
    const DEFAULT: Limits = Limits {
        bytes: MAX_UNPACKED_BYTES,
        entries: MAX_ENTRIES,
    };
}

/// Unpacks (or places) `file` into the empty directory `dest`.
fn unpack(file: &Path, file_name: &str, dest: &Path, limits: Limits) -> anyhow::Result<()> {
    let lower = file_name.to_ascii_lowercase();
    let open = || File::open(file).with_context(|| format!("opening {}", file.display()));
    let mut unpacker = Unpacker::new(dest, limits);
    if lower.ends_with(".tar") {
        unpack_tar(BufReader::new(open()?), &mut unpacker)?;
    } else if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") {
        let gz = flate2::read::MultiGzDecoder::new(BufReader::new(open()?));
        unpack_tar(gz, &mut unpacker)?;
    } else if lower.ends_with(".zip") {
        unpack_zip(open()?, &mut unpacker)?;
    } else {
        return place_plain(&mut open()?, file_name, dest);
    }
    unpacker.sync()
}

/// Copies a file that is not an archive into `dest` under its published name.
fn place_plain(file: &mut File, file_name: &str, dest: &Path) -> anyhow::Result<()> {
    let plain_name = normalize(file_name.as_bytes(), file_name)?
        .filter(|rel| rel.components().count() == 1)
        .ok_or_else(|| anyhow!("invalid file name {file_name:?}"))?;
    let path = dest.join(plain_name);
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    io::copy(file, &mut out).with_context(|| format!("writing {}", path.display()))?;
    out.set_permissions(Permissions::from_mode(0o644))
        .and_then(|()| out.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn unpack_tar(reader: impl Read, unpacker: &mut Unpacker) -> anyhow::Result<()> {
    use tar::EntryType;
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().context("reading tar archive")? {
        let mut entry = entry.context("reading tar archive")?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            // Archive-wide pax metadata (`git archive` writes one), not a file.
            continue;
        }
        unpacker.count_entry()?;
        let is_dir = kind == EntryType::Directory
            || (matches!(kind, EntryType::Regular | EntryType::Continuous) && raw.ends_with(b"/"));
        let Some(rel) = normalize(&raw, &name)? else {
            if is_dir {
                continue;
            }
            return Err(refused(&name, "empty path"));
        };
        let mode = || {
            entry
                .header()
                .mode()
                .with_context(|| format!("reading the mode of tar entry `{name}`"))
        };
        match kind {
            _ if is_dir => unpacker.dir(&rel, mode()?, &name)?,
            EntryType::Regular | EntryType::Continuous => {
                let (mode, size) = (mode()?, entry.size());
                unpacker.file(&rel, mode, size, &mut entry, &name)?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refused(&name, "symlink without a target"))?;
                unpacker.symlink(&rel, &target, &name)?;
            }
            EntryType::Link => return Err(refused(&name, "hard links are not allowed")),
            EntryType::Char | EntryType::Block => {
                return Err(refused(&name, "device files are not allowed"));
            }
            EntryType::Fifo => return Err(refused(&name, "FIFOs are not allowed")),
            other => {
                return Err(refused(
                    &name,
                    format!("unsupported tar entry type {other:?}"),
                ));
            }
        }
    }
    Ok(())
}

fn unpack_zip(file: File, unpacker: &mut Unpacker) -> anyhow::Result<()> {
    const S_IFMT: u32 = 0o170_000;
    const S_IFREG: u32 = 0o100_000;
    const S_IFDIR: u32 = 0o040_000;
    const S_IFLNK: u32 = 0o120_000;

    let mut archive = zip::ZipArchive::new(BufReader::new(file)).context("reading zip archive")?;
    if archive.len() as u64 > unpacker.limits.entries {
        return Err(UnpackError::TooManyEntries {
            limit: unpacker.limits.entries,
        }
        .into());
    }
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .with_context(|| format!("reading zip entry {index}"))?;
        let name = entry
            .name()
            .with_context(|| format!("reading the name of zip entry {index}"))?
            .into_owned();
        unpacker.count_entry()?;
        let mode = entry.unix_mode();
        let file_type = mode.map(|mode| mode & S_IFMT);
        let is_dir =
            file_type == Some(S_IFDIR) || (file_type != Some(S_IFLNK) && name.ends_with('/'));
        let Some(rel) = normalize(name.as_bytes(), &name)? else {
            if is_dir {
                continue;
            }
            return Err(refused(&name, "empty path"));
        };
        match file_type {
            _ if is_dir => unpacker.dir(&rel, mode.unwrap_or(0o755), &name)?,
            None | Some(0) | Some(S_IFREG) => {
                let size = entry.size();
                unpacker.file(&rel, mode.unwrap_or(0o644), size, &mut entry, &name)?;
            }
            Some(S_IFLNK) => {
                let mut target = Vec::new();
                (&mut entry)
                    .take(MAX_LINK_TARGET + 1)
                    .read_to_end(&mut target)
                    .with_context(|| format!("reading zip entry `{name}`"))?;
                if target.len() as u64 > MAX_LINK_TARGET {
                    return Err(refused(&name, "symlink target too long"));
                }
                unpacker.symlink(&rel, &target, &name)?;
            }
            Some(_) => {
                return Err(refused(
                    &name,
                    "device files, FIFOs and sockets are not allowed",
                ));
            }
        }
    }
    Ok(())
}

/// Turns an entry's path into a relative path of plain components: `.` components are dropped,
/// absolute paths and `..` are refused. `None` for a path that names the root itself.
fn normalize(raw: &[u8], name: &str) -> anyhow::Result<Option<PathBuf>> {
    if raw.contains(&0) {
        return Err(refused(name, "NUL byte in path"));
    }
    let mut rel = PathBuf::new();
    for component in Path::new(OsStr::from_bytes(raw)).components() {
        match component {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(refused(name, "path contains `..`")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(refused(name, "absolute path"));
            }
        }
    }
    Ok((!rel.as_os_str().is_empty()).then_some(rel))
}

/// Checks that a symlink at `link` (relative to the release root) pointing at `target` stays
/// inside the release. Lexical resolution is only sound if no component it walks through is itself
/// a symlink, so `..` is allowed only before the first name: it then climbs the link's own
/// directories, which are real directories (see [`Unpacker::parents`]), and the names after it
/// only descend or follow symlinks that were checked the same way.
fn check_link_target(link: &Path, target: &[u8]) -> Result<(), String> {
    if target.is_empty() || target.contains(&0) {
        return Err("symlink with an empty target or a NUL byte in it".to_owned());
    }
    let shown = String::from_utf8_lossy(target);
    let mut depth = link.components().count().saturating_sub(1);
    let mut seen_name = false;
    for component in Path::new(OsStr::from_bytes(target)).components() {
        match component {
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("symlink to the absolute path `{shown}`"));
            }
            Component::CurDir => {}
            Component::ParentDir if seen_name => {
                return Err(format!("symlink target `{shown}` has `..` after a name"));
            }
            Component::ParentDir if depth == 0 => {
                return Err(format!("symlink target `{shown}` leaves the release"));
            }
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => seen_name = true,
        }
    }
    Ok(())
}

/// Creates the entries of an archive under `root`, enforcing the limits and never writing through
/// a symlink.
struct Unpacker<'a> {
    root: &'a Path,
    limits: Limits,
    /// Paths, relative to `root`, known to be real directories (created or checked by us). A
    /// directory is never replaced by anything else, so this stays true.
    dirs: HashSet<PathBuf>,
    bytes: u64,
    entries: u64,
}

impl<'a> Unpacker<'a> {
    fn new(root: &'a Path, limits: Limits) -> Self {
        Unpacker {
            root,
            limits,
            dirs: HashSet::new(),
            bytes: 0,
            entries: 0,
        }
    }

    fn count_entry(&mut self) -> anyhow::Result<()> {
        self.entries += 1;
        if self.entries > self.limits.entries {
            return Err(UnpackError::TooManyEntries {
                limit: self.limits.entries,
            }
            .into());
        }
        Ok(())
    }

    fn too_large(&self) -> anyhow::Error {
        UnpackError::TooLarge {
            limit: self.limits.bytes,
        }
        .into()
    }

    fn dir(&mut self, rel: &Path, mode: u32, name: &str) -> anyhow::Result<()> {
        self.parents(rel, name)?;
        let path = self.root.join(rel);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(refused(name, "a directory would replace a file or symlink")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        fs::set_permissions(&path, Permissions::from_mode(mode & 0o777 | 0o700))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
        self.dirs.insert(rel.to_path_buf());
        Ok(())
    }

    fn file(
        &mut self,
        rel: &Path,
        mode: u32,
        declared_size: u64,
        data: &mut dyn Read,
        name: &str,
    ) -> anyhow::Result<()> {
        let room = self.limits.bytes - self.bytes;
        if declared_size > room {
            return Err(self.too_large());
        }
        self.parents(rel, name)?;
        self.clear(rel, name)?;
        let path = self.root.join(rel);
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        // The declared size is not trusted: count what the decoder actually produces.
        let written = io::copy(&mut data.take(room.saturating_add(1)), &mut out)
            .with_context(|| format!("unpacking `{name}`"))?;
        if written > room {
            return Err(self.too_large());
        }
        self.bytes += written;
        out.set_permissions(Permissions::from_mode(mode & 0o777))
            .and_then(|()| out.sync_all())
            .with_context(|| format!("writing {}", path.display()))
    }

    fn symlink(&mut self, rel: &Path, target: &[u8], name: &str) -> anyhow::Result<()> {
        check_link_target(rel, target).map_err(|reason| refused(name, reason))?;
        self.parents(rel, name)?;
        self.clear(rel, name)?;
        let path = self.root.join(rel);
        symlink(OsStr::from_bytes(target), &path)
            .with_context(|| format!("creating symlink {}", path.display()))
    }

    /// Makes every parent of `rel` a real directory, refusing a parent that is a symlink (which
    /// only an earlier entry can have created) or a file.
    fn parents(&mut self, rel: &Path, name: &str) -> anyhow::Result<()> {
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        let mut prefix = PathBuf::new();
        for component in parent.components() {
            prefix.push(component);
            if self.dirs.contains(&prefix) {
                continue;
            }
            let path = self.root.join(&prefix);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(refused(
                        name,
                        format!(
                            "`{}` is a symlink; writing through it is not allowed",
                            prefix.display()
                        ),
                    ));
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(refused(
                        name,
                        format!("`{}` is not a directory", prefix.display()),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&path)
                        .with_context(|| format!("creating {}", path.display()))?;
                }
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            }
            self.dirs.insert(prefix.clone());
        }
        Ok(())
    }

    /// Frees `rel` for a file or symlink: an earlier entry of the same name is replaced (the last
    /// one wins, as with tar), a directory is not.
    fn clear(&self, rel: &Path, name: &str) -> anyhow::Result<()> {
        let path = self.root.join(rel);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => Err(refused(name, "would replace a directory")),
            Ok(_) => fs::remove_file(&path).with_context(|| format!("removing {}", path.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Fsyncs every directory created below the root (the caller syncs the root), so that the
    /// rename that publishes the release comes after its contents are durable.
    fn sync(self) -> anyhow::Result<()> {
        for dir in &self.dirs {
            sync_dir(&self.root.join(dir))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write};
    use std::os::unix::fs::MetadataExt;
    use std::time::Instant;

    use tempfile::TempDir;
    use zip::write::SimpleFileOptions;

    /// A temporary world: the agent's directory is `T/agent`, and `T/outside` is where an escaping
    /// entry would land (from `T/agent/releases/.tmp-V-x`, `../../../outside` is `T/outside`).
    struct World {
        tmp: TempDir,
        dir: ReleaseDir,
    }

    impl World {
        fn new() -> World {
            let tmp = tempfile::tempdir().unwrap();
            fs::create_dir(tmp.path().join("outside")).unwrap();
            fs::create_dir(tmp.path().join("artifacts")).unwrap();
            let dir = ReleaseDir::open(&tmp.path().join("agent")).unwrap();
            World { tmp, dir }
        }

        fn outside(&self) -> PathBuf {
            self.tmp.path().join("outside")
        }

        fn install(&self, version: &str, file_name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
            self.install_with(version, file_name, bytes, Limits::DEFAULT)
        }

        fn install_with(
            &self,
            version: &str,
            file_name: &str,
            bytes: &[u8],
            limits: Limits,
        ) -> anyhow::Result<PathBuf> {
            let path = self.tmp.path().join("artifacts/artifact");
            fs::write(&path, bytes).unwrap();
            self.dir.install_with(version, &path, file_name, limits)
        }

        fn tmp_entries(&self) -> Vec<String> {
            let mut names = Vec::new();
            for dir in [self.dir.root().to_path_buf(), self.dir.releases()] {
                for entry in fs::read_dir(dir).unwrap() {
                    let name = entry.unwrap().file_name().to_string_lossy().into_owned();
                    if name.starts_with('.') {
                        names.push(name);
                    }
                }
            }
            names
        }

        /// A refused install leaves no release, no temporary directory, nothing outside.
        fn assert_nothing_left(&self, version: &str) {
            assert!(!self.dir.release(version).exists());
            assert!(!self.dir.has(version));
            assert_eq!(self.tmp_entries(), Vec::<String>::new());
            let outside: Vec<_> = fs::read_dir(self.outside()).unwrap().collect();
            assert!(outside.is_empty(), "written outside: {outside:?}");
            assert!(!self.dir.releases().join("evil").exists());
        }
    }

    fn mode_of(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    enum Entry<'a> {
        Regular(&'a str, &'a [u8], u32),
        Dir(&'a str),
        Symlink(&'a str, &'a str),
        Hardlink(&'a str, &'a str),
        Fifo(&'a str),
    }
    use Entry::*;

    /// Writes tar headers by hand: the tar crate's own setters refuse the hostile paths.
    fn tar_bytes(entries: &[Entry]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for entry in entries {
            let (name, kind, data, mode, link): (_, _, &[u8], _, _) = match *entry {
                Regular(name, data, mode) => (name, tar::EntryType::Regular, data, mode, ""),
                Dir(name) => (name, tar::EntryType::Directory, b"", 0o755, ""),
                Symlink(name, to) => (name, tar::EntryType::Symlink, b"", 0o777, to),
                Hardlink(name, to) => (name, tar::EntryType::Link, b"", 0o644, to),
                Fifo(name) => (name, tar::EntryType::Fifo, b"", 0o644, ""),
            };
            let mut header = tar::Header::new_gnu();
            let old = header.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder.append(&header, data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    fn zip_bytes(entries: &[Entry]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for entry in entries {
            match *entry {
                Regular(name, data, mode) => {
                    zip.start_file(name, options.unix_permissions(mode))
                        .unwrap();
                    zip.write_all(data).unwrap();
                }
                Dir(name) => zip.add_directory(name, options).unwrap(),
                Symlink(name, to) => zip.add_symlink(name, to, options).unwrap(),
                Fifo(name) => {
                    let fifo = (0o010_644u32) << 16;
                    zip.start_file(name, options.external_attributes(fifo))
                        .unwrap();
                }
                Hardlink(..) => unreachable!("zip has no hard links"),
            }
        }
        zip.finish().unwrap().into_inner()
    }

    const TOOL: &[u8] = b"#!/bin/sh\necho tool\n";
    const CONFIG: &[u8] = b"port = 8080\n";

    fn release_tree() -> Vec<Entry<'static>> {
        vec![
            Dir("app/"),
            Dir("app/bin/"),
            Regular("app/bin/tool", TOOL, 0o755),
            Regular("app/etc/config.toml", CONFIG, 0o644),
            Symlink("app/bin/alias", "tool"),
            Symlink("app/config", "etc/config.toml"),
            Symlink("app/etc/tool", "../bin/tool"),
        ]
    }

    fn assert_release_tree(release: &Path) {
        let app = release.join("app");
        assert_eq!(fs::read(app.join("bin/tool")).unwrap(), TOOL);
        assert_eq!(fs::read(app.join("etc/config.toml")).unwrap(), CONFIG);
        assert_eq!(mode_of(&app.join("bin/tool")), 0o755);
        assert_eq!(mode_of(&app.join("etc/config.toml")), 0o644);
        assert_eq!(fs::read(app.join("bin/alias")).unwrap(), TOOL);
        assert_eq!(fs::read(app.join("etc/tool")).unwrap(), TOOL);
        assert_eq!(
            fs::read_link(app.join("config")).unwrap(),
            Path::new("etc/config.toml")
        );
    }

    #[test]
    fn tar_unpacks_tree_keeping_the_executable_bit() {
        let world = World::new();
        let release = world
            .install("1.0", "app.tar", &tar_bytes(&release_tree()))
            .unwrap();
        assert_eq!(release, world.dir.root().join("releases/1.0"));
        assert_release_tree(&release);
        assert!(world.dir.has("1.0"));
        assert_eq!(world.dir.versions().unwrap(), ["1.0"]);
        assert_eq!(world.tmp_entries(), Vec::<String>::new());
    }

    #[test]
    fn tgz_unpacks_tree_keeping_the_executable_bit() {
        for name in ["app.tar.gz", "app.tgz", "APP.TGZ"] {
            let world = World::new();
            let tgz = gzip(&tar_bytes(&release_tree()));
            let release = world.install("1.0", name, &tgz).unwrap();
            assert_release_tree(&release);
        }
    }

    #[test]
    fn zip_unpacks_tree_keeping_the_executable_bit() {
        let world = World::new();
        let release = world
            .install("1.0", "app.zip", &zip_bytes(&release_tree()))
            .unwrap();
        assert_release_tree(&release);
        assert_eq!(world.tmp_entries(), Vec::<String>::new());
    }

    #[test]
    fn setuid_setgid_and_sticky_bits_are_dropped() {
        let world = World::new();
        let tar = tar_bytes(&[
            Regular("suid", b"x", 0o6755),
            Regular("sticky", b"x", 0o1644),
        ]);
        let release = world.install("1.0", "app.tar", &tar).unwrap();
        assert_eq!(mode_of(&release.join("suid")), 0o755);
        assert_eq!(mode_of(&release.join("sticky")), 0o644);
    }

    #[test]
    fn root_directory_entry_is_skipped_and_later_duplicates_win() {
        let world = World::new();
        let tar = tar_bytes(&[
            Dir("./"),
            Regular("./a", b"first", 0o644),
            Regular("a", b"second", 0o755),
        ]);
        let release = world.install("1.0", "app.tar", &tar).unwrap();
        assert_eq!(fs::read(release.join("a")).unwrap(), b"second");
        assert_eq!(mode_of(&release.join("a")), 0o755);
    }

    #[test]
    fn plain_file_is_placed_as_is() {
        let world = World::new();
        let bytes = b"\x7fELF not really";
        let release = world.install("1.0", "app.bin", bytes).unwrap();
        assert_eq!(fs::read(release.join("app.bin")).unwrap(), bytes);
        assert_eq!(mode_of(&release.join("app.bin")), 0o644);
        assert_eq!(fs::read_dir(&release).unwrap().count(), 1);
    }

    #[test]
    fn plain_file_name_must_be_one_component() {
        let world = World::new();
        for name in ["..", ".", "", "a/b", "/abs"] {
            assert!(world.install("1.0", name, b"x").is_err(), "{name}");
            world.assert_nothing_left("1.0");
        }
    }

    /// Entries that must be refused, each after a harmless entry so that cleanup is exercised.
    /// `abs` is an absolute path into the world's `outside` directory.
    fn hostile_cases(abs: &str, tar: bool) -> Vec<(&'static str, Vec<Entry<'_>>)> {
        let mut cases = vec![
            (
                "parent dir",
                vec![Regular("../../../outside/evil", b"x", 0o644)],
            ),
            (
                "nested parent dir",
                vec![Regular("a/../../../../outside/evil", b"x", 0o644)],
            ),
            ("absolute path", vec![Regular(abs, b"x", 0o644)]),
            (
                "escaping symlink",
                vec![Symlink("link", "../../../outside")],
            ),
            ("symlink to an absolute path", vec![Symlink("a", abs)]),
            (
                "write through symlink to .",
                vec![Symlink("a", "."), Regular("a/x", b"x", 0o644)],
            ),
            (
                "write through symlink into a directory",
                vec![Dir("d/"), Symlink("a", "d"), Regular("a/x", b"x", 0o644)],
            ),
            (
                "dot-dot after a symlinked name",
                vec![Symlink("s", "."), Symlink("l", "s/s/s/../../../outside")],
            ),
            ("fifo", vec![Fifo("f")]),
            (
                "directory replaced by a symlink",
                vec![Dir("d/"), Symlink("d", ".")],
            ),
        ];
        if tar {
            cases.push(("hardlink", vec![Hardlink("h", "ok.txt")]));
            cases.push((
                "escaping hardlink",
                vec![Hardlink("h", "../../../outside/evil")],
            ));
        }
        cases
    }

    fn assert_refused(world: &World, case: &str, result: anyhow::Result<PathBuf>) {
        let err = result.expect_err(case);
        assert!(
            matches!(
                err.downcast_ref::<UnpackError>(),
                Some(UnpackError::Refused { .. })
            ),
            "{case}: {err:#}"
        );
        world.assert_nothing_left("1.0");
    }

    #[test]
    fn tar_hostile_entries_are_refused_and_leave_nothing() {
        let world = World::new();
        let abs = world.outside().join("evil");
        for (case, mut entries) in hostile_cases(abs.to_str().unwrap(), true) {
            entries.insert(0, Regular("ok.txt", b"ok", 0o644));
            let tar = tar_bytes(&entries);
            assert_refused(&world, case, world.install("1.0", "app.tar", &tar));
            let tgz = gzip(&tar);
            assert_refused(&world, case, world.install("1.0", "app.tgz", &tgz));
        }
    }

    #[test]
    fn zip_hostile_entries_are_refused_and_leave_nothing() {
        let world = World::new();
        let abs = world.outside().join("evil");
        for (case, mut entries) in hostile_cases(abs.to_str().unwrap(), false) {
            entries.insert(0, Regular("ok.txt", b"ok", 0o644));
            let zip = zip_bytes(&entries);
            assert_refused(&world, case, world.install("1.0", "app.zip", &zip));
        }
    }

    #[test]
    fn refusal_names_the_entry() {
        let world = World::new();
        let tar = tar_bytes(&[Symlink("a", "."), Regular("a/x", b"x", 0o644)]);
        let err = world.install("1.0", "app.tar", &tar).unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("`a/x`"), "{message}");
        assert!(message.contains("symlink"), "{message}");
    }

    #[test]
    fn decompression_bomb_is_refused() {
        let world = World::new();
        let small = Limits {
            bytes: 1 << 20,
            entries: 10,
        };
        let zeros = vec![0u8; 2 << 20];
        let cases = [
            (
                "app.tgz",
                gzip(&tar_bytes(&[Regular("big", &zeros, 0o644)])),
            ),
            ("app.zip", zip_bytes(&[Regular("big", &zeros, 0o644)])),
            (
                "app.tar",
                tar_bytes(&[
                    Regular("a", &zeros[..600 << 10], 0o644),
                    Regular("b", &zeros[..600 << 10], 0o644),
                ]),
            ),
        ];
        for (name, bytes) in cases {
            let err = world.install_with("1.0", name, &bytes, small).unwrap_err();
            assert!(
                matches!(
                    err.downcast_ref::<UnpackError>(),
                    Some(UnpackError::TooLarge { .. })
                ),
                "{name}: {err:#}"
            );
            world.assert_nothing_left("1.0");
        }

        let names: Vec<String> = (0..11).map(|i| format!("f{i}")).collect();
        let many: Vec<_> = names.iter().map(|n| Regular(n, b"", 0o644)).collect();
        for (name, bytes) in [("app.tar", tar_bytes(&many)), ("app.zip", zip_bytes(&many))] {
            let err = world.install_with("1.0", name, &bytes, small).unwrap_err();
            assert!(
                matches!(
                    err.downcast_ref::<UnpackError>(),
                    Some(UnpackError::TooManyEntries { .. })
                ),
                "{name}: {err:#}"
            );
            world.assert_nothing_left("1.0");
        }
    }

    #[test]
    fn installing_an_existing_version_leaves_it_as_is() {
        let world = World::new();
        world.install("1.0", "app.bin", b"first").unwrap();
        let release = world.install("1.0", "app.bin", b"second").unwrap();
        assert_eq!(fs::read(release.join("app.bin")).unwrap(), b"first");
        assert_eq!(world.tmp_entries(), Vec::<String>::new());
    }

    #[test]
    fn invalid_versions_are_refused() {
        let world = World::new();
        for version in ["", ".", "..", "../x", "a/b", ".tmp-1"] {
            assert!(
                world.install(version, "app.bin", b"x").is_err(),
                "{version}"
            );
            assert!(world.dir.switch(version).is_err(), "{version}");
            assert!(!world.dir.has(version), "{version}");
        }
        assert_eq!(world.dir.versions().unwrap(), Vec::<String>::new());
        assert_eq!(world.tmp_entries(), Vec::<String>::new());
    }

    #[test]
    fn switch_points_current_at_the_new_version() {
        let world = World::new();
        assert_eq!(world.dir.current().unwrap(), None);
        world.install("1.0", "app.bin", b"1").unwrap();
        world.install("2.0", "app.bin", b"2").unwrap();

        world.dir.switch("1.0").unwrap();
        assert_eq!(world.dir.current().unwrap().as_deref(), Some("1.0"));
        world.dir.switch("2.0").unwrap();
        assert_eq!(world.dir.current().unwrap().as_deref(), Some("2.0"));

        let current = world.dir.root().join("current");
        assert_eq!(fs::read_link(&current).unwrap(), Path::new("releases/2.0"));
        assert_eq!(fs::read(current.join("app.bin")).unwrap(), b"2");
        assert!(world.dir.switch("3.0").is_err());
        assert_eq!(world.dir.current().unwrap().as_deref(), Some("2.0"));
        assert_eq!(world.tmp_entries(), Vec::<String>::new());
    }

    #[test]
    fn open_removes_leftovers_of_interrupted_work() {
        let world = World::new();
        world.install("1.0", "app.bin", b"1").unwrap();
        world.dir.switch("1.0").unwrap();
        let root = world.dir.root();
        symlink("releases/1.0", root.join(".current.tmp-x")).unwrap();
        fs::create_dir_all(root.join("releases/.tmp-x/deep")).unwrap();
        fs::write(root.join("releases/.tmp-x/deep/file"), b"half").unwrap();
        fs::create_dir(root.join("releases/.tmp-2.0-0123")).unwrap();
        assert_eq!(world.tmp_entries().len(), 3);

        let reopened = ReleaseDir::open(root).unwrap();
        assert_eq!(world.tmp_entries(), Vec::<String>::new());
        assert_eq!(reopened.versions().unwrap(), ["1.0"]);
        assert_eq!(reopened.current().unwrap().as_deref(), Some("1.0"));
    }

    #[test]
    fn prune_keeps_the_newest_and_the_protected() {
        let world = World::new();
        let base = SystemTime::now() - Duration::from_secs(3600);
        for (i, version) in ["v1", "v2", "v3", "v4", "v5"].into_iter().enumerate() {
            let release = world.install(version, "app.bin", b"x").unwrap();
            File::open(&release)
                .unwrap()
                .set_modified(base + Duration::from_secs(60 * i as u64))
                .unwrap();
        }
        world.dir.switch("v2").unwrap();

        let removed = world.dir.prune(2, &["v1"]).unwrap();
        assert_eq!(removed, ["v3"]);
        assert_eq!(world.dir.versions().unwrap(), ["v1", "v2", "v4", "v5"]);
        assert_eq!(world.tmp_entries(), Vec::<String>::new());

        let removed = world.dir.prune(0, &[]).unwrap();
        assert_eq!(removed.len(), 3);
        assert_eq!(world.dir.versions().unwrap(), ["v2"]);
    }

    fn world_with_current() -> World {
        let world = World::new();
        world
            .install("1.0", "app.tar", &tar_bytes(&release_tree()))
            .unwrap();
        world.dir.switch("1.0").unwrap();
        world
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn health_exit_zero_is_ok() {
        let world = world_with_current();
        run_health("exit 0", world.dir.root(), "1.0", 10 * SECOND)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn health_runs_in_current_with_its_environment() {
        let world = world_with_current();
        let root = world.dir.root().to_str().unwrap();
        let cmd = format!(
            r#"test "$ARCA_VERSION" = 1.0 && test "$ARCA_DIR" = "{root}" && test "$ARCA_RELEASE_DIR" = "{root}/releases/1.0" && test -x app/bin/tool"#
        );
        run_health(&cmd, world.dir.root(), "1.0", 10 * SECOND)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn health_failure_names_the_exit_status_and_stderr() {
        let world = world_with_current();
        let err = run_health("exit 3", world.dir.root(), "1.0", 10 * SECOND)
            .await
            .unwrap_err();
        assert!(err.contains('3'), "{err}");

        let err = run_health(
            "echo boom >&2; exit 1",
            world.dir.root(),
            "1.0",
            10 * SECOND,
        )
        .await
        .unwrap_err();
        assert!(err.contains("boom"), "{err}");
    }

    #[tokio::test]
    async fn health_stderr_is_cut_to_its_tail() {
        let world = world_with_current();
        let cmd = "i=0; while [ $i -lt 300 ]; do echo line$i >&2; i=$((i+1)); done; exit 1";
        let err = run_health(cmd, world.dir.root(), "1.0", 10 * SECOND)
            .await
            .unwrap_err();
        assert!(err.contains("line299"), "{err}");
        assert!(!err.contains("line0\n"), "{err}");
        assert!(err.len() < HEALTH_STDERR_TAIL + 200, "{err}");
    }

    #[tokio::test]
    async fn health_timeout_kills_the_command() {
        let world = world_with_current();
        let start = Instant::now();
        let err = run_health(
            "sleep 10",
            world.dir.root(),
            "1.0",
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(err.contains("timed out"), "{err}");
        assert!(start.elapsed() < 3 * SECOND, "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn health_does_not_wait_for_background_processes() {
        let world = world_with_current();
        let start = Instant::now();
        run_health("sleep 5 & exit 0", world.dir.root(), "1.0", 10 * SECOND)
            .await
            .unwrap();
        assert!(start.elapsed() < 3 * SECOND, "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn health_without_current_fails() {
        let world = World::new();
        let err = run_health("exit 0", world.dir.root(), "1.0", 10 * SECOND)
            .await
            .unwrap_err();
        assert!(err.contains("cannot start"), "{err}");
    }
}
