//! The deploy agent (`arca agent`) under attack: it must install only verified releases, switch
//! to them atomically, go back when they are unhealthy, survive a SIGKILL at any instant, and
//! report every outcome (docs/security.md, guarantees 5 and 8; src/agent/mod.rs).
//!
//! Every test drives the real binary against a real server. The agent's directory is checked
//! from outside, the way a service that runs `DIR/current` would see it: `current` is absent
//! or names a complete release, never a half-unpacked one, and nothing lands outside `DIR`.

use crate::common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Server, forge_targets_with_online_key, latest_meta, set_meta_body};
use serde_json::Value;

const NAME: &str = "app/web";
const AGENT: &str = "web-1";
const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Release archives

/// One entry of a hand-made tar archive. Headers are written by hand because the tar crate's
/// own setters refuse the hostile paths the traversal test needs.
enum Entry<'a> {
    File(&'a str, Vec<u8>, u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    /// Any header type with its data (pax and GNU long-name headers).
    Raw(tar::EntryType, &'a str, Vec<u8>),
}

fn tar_gz(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let (name, kind, data, mode, link): (_, _, &[u8], _, _) = match entry {
            Entry::File(name, data, mode) => (*name, tar::EntryType::Regular, data, *mode, ""),
            Entry::Dir(name) => (*name, tar::EntryType::Directory, &[], 0o755, ""),
            Entry::Symlink(name, to) => (*name, tar::EntryType::Symlink, &[], 0o777, *to),
            Entry::Raw(kind, name, data) => (*name, *kind, data, 0o644, ""),
        };
        let mut header = tar::Header::new_gnu();
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_mtime(1_600_000_000);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

fn seed(version: &str) -> u8 {
    version
        .bytes()
        .fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b))
}

fn run_sh(version: &str) -> Vec<u8> {
    format!("#!/bin/sh\necho \"release {version}\"\n").into_bytes()
}

fn payload(version: &str) -> Vec<u8> {
    common::pseudo_random(8192, seed(version))
}

/// The tree every normal release holds: `VERSION` (naming it), an executable `bin/run.sh` and
/// `data/payload.bin`; `extra` entries are appended.
fn release_entries<'a>(version: &'a str, extra: Vec<Entry<'a>>) -> Vec<Entry<'a>> {
    let mut entries = vec![
        Entry::File("VERSION", version.as_bytes().to_vec(), 0o644),
        Entry::Dir("bin/"),
        Entry::File("bin/run.sh", run_sh(version), 0o755),
        Entry::Dir("data/"),
        Entry::File("data/payload.bin", payload(version), 0o644),
    ];
    entries.extend(extra);
    entries
}

/// Writes `web-VERSION.tar.gz` (a normal release plus `extra`) to the test dir.
fn release_tgz(s: &Server, version: &str, extra: Vec<Entry>) -> PathBuf {
    let p = s.path(&format!("web-{version}.tar.gz"));
    std::fs::write(&p, tar_gz(&release_entries(version, extra))).unwrap();
    p
}

/// Writes `web-VERSION.zip` holding the normal release tree.
fn release_zip(s: &Server, version: &str) -> PathBuf {
    use zip::write::SimpleFileOptions;
    let p = s.path(&format!("web-{version}.zip"));
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data, mode) in [
        ("VERSION", version.as_bytes().to_vec(), 0o644),
        ("bin/run.sh", run_sh(version), 0o755),
        ("data/payload.bin", payload(version), 0o644),
    ] {
        zip.start_file(name, opts.unix_permissions(mode)).unwrap();
        zip.write_all(&data).unwrap();
    }
    zip.finish().unwrap();
    p
}

/// Checks that `release` (a release directory, or `DIR/current` read through the link) holds
/// the complete tree of `version`.
fn check_release(release: &Path, version: &str) -> Result<(), String> {
    let read = |rel: &str| {
        std::fs::read(release.join(rel)).map_err(|e| format!("{}/{rel}: {e}", release.display()))
    };
    let v = read("VERSION")?;
    if v != version.as_bytes() {
        return Err(format!(
            "{}/VERSION says {:?}, not {version}",
            release.display(),
            String::from_utf8_lossy(&v)
        ));
    }
    if read("bin/run.sh")? != run_sh(version) {
        return Err(format!("{}/bin/run.sh differs", release.display()));
    }
    let mode = std::fs::metadata(release.join("bin/run.sh"))
        .map_err(|e| e.to_string())?
        .permissions()
        .mode();
    if mode & 0o777 != 0o755 {
        return Err(format!(
            "{}/bin/run.sh has mode {mode:o}",
            release.display()
        ));
    }
    if read("data/payload.bin")? != payload(version) {
        return Err(format!("{}/data/payload.bin differs", release.display()));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The agent's directory, seen from outside

/// The version `DIR/current` names, `None` when there is no link. Panics on anything else.
fn current(dir: &Path) -> Option<String> {
    match std::fs::read_link(dir.join("current")) {
        Ok(t) => {
            let t = t.to_str().unwrap().to_owned();
            let v = t
                .strip_prefix("releases/")
                .unwrap_or_else(|| panic!("current -> {t}, not releases/VERSION"));
            Some(v.to_owned())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("reading {}/current: {e}", dir.display()),
    }
}

/// Every entry of `DIR/releases`, temporary ones included, sorted.
fn release_dirs(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir.join("releases")) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Names in `dir` (not recursive) starting with `prefix` and ending with `suffix`.
fn leftovers(dir: &Path, prefix: &str, suffix: &str) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
        .collect()
}

/// What must hold at every instant, whatever was killed when: `current` is absent or names a
/// complete release, every non-temporary entry of `releases/` is complete, and the agent's
/// state file is whole.
fn check_invariants(dir: &Path) -> Result<(), String> {
    if let Some(v) = current(dir) {
        check_release(&dir.join("current"), &v).map_err(|e| format!("current: {e}"))?;
    }
    for name in release_dirs(dir) {
        if !name.starts_with(".tmp-") {
            check_release(&dir.join("releases").join(&name), &name)?;
        }
    }
    if let Ok(bytes) = std::fs::read(dir.join("state/agent.json")) {
        serde_json::from_slice::<Value>(&bytes)
            .map_err(|e| format!("state/agent.json is torn: {e}"))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The server's view

/// `arca agents --channel CH --json`.
fn agents(s: &Server, channel: &str) -> Vec<Value> {
    let out = s.ok(&["agents", "--channel", channel, "--json"]);
    serde_json::from_str::<Vec<Value>>(&out).unwrap()
}

/// The row `arca agents` shows for agent `id` in `channel`.
fn agent_row(s: &Server, channel: &str, id: &str) -> Option<Value> {
    agents(s, channel)
        .into_iter()
        .find(|r| r["agent"] == id && r["name"] == NAME)
}

/// Every report agent `id` sent, oldest first: (outcome, version, message).
fn reports(s: &Server, id: &str) -> Vec<(String, Option<String>, String)> {
    let c = s.db();
    c.all(
        "SELECT outcome, version, message FROM reports WHERE agent = ?1 ORDER BY id",
        params![id],
    )
}

/// Asserts that the server shows agent `id` with `outcome`, running `running`, about `version`,
/// with a message containing `msg`.
fn assert_row(
    s: &Server,
    id: &str,
    outcome: &str,
    running: Option<&str>,
    version: Option<&str>,
    msg: &str,
) {
    let row = agent_row(s, "dev", id).unwrap_or_else(|| panic!("no row for {id}"));
    assert_eq!(row["outcome"], outcome, "{row}");
    assert_eq!(row["current"].as_str(), running, "{row}");
    assert_eq!(row["version"].as_str(), version, "{row}");
    assert!(
        row["message"].as_str().unwrap().contains(msg),
        "message should name {msg:?}: {row}"
    );
}

/// One counter of the server's `/metrics` (0 until it has been counted).
fn metric(s: &Server, sample: &str) -> f64 {
    common::prometheus::metrics(s)
        .get(sample)
        .copied()
        .unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------------------
// A server, a builder, a reporter token and one agent directory

struct Rig {
    s: Server,
    key: PathBuf,
    token: String,
    dir: PathBuf,
}

impl Rig {
    fn new() -> Rig {
        Self::with(Server::start())
    }

    /// A server whose database the test edits behind its back.
    fn tamperable() -> Rig {
        Self::with(Server::start_tamperable())
    }

    fn with(s: Server) -> Rig {
        let key = s.builder("builder", "app/*");
        let token = s.reporter_token();
        let dir = s.path("agent");
        Rig { s, key, token, dir }
    }

    /// Builds and pushes a normal `NAME@version` tgz (plus `extra` entries).
    fn push(&self, version: &str, extra: Vec<Entry>) -> PathBuf {
        let f = release_tgz(&self.s, version, extra);
        self.s.push(&f, NAME, version, &self.key);
        f
    }

    fn agent(&self) -> Command {
        self.s.agent_cmd(&self.token, "dev", NAME, &self.dir, AGENT)
    }

    /// `arca agent --once EXTRA`, expecting `code`; returns stdout and stderr.
    fn once(&self, extra: &[&str], code: i32) -> String {
        let out = self.agent().arg("--once").args(extra).output().unwrap();
        expect_exit(&out, code)
    }

    /// `arca agent` in the background (long-running), output to a log file.
    fn spawn(&self, extra: &[&str], log: &str) -> Running {
        let log = std::fs::File::create(self.s.path(log)).unwrap();
        Running(
            self.agent()
                .args(extra)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    }

    fn current(&self) -> Option<String> {
        current(&self.dir)
    }

    /// Asserts that the agent runs `version`, complete, and that nothing else was installed.
    fn assert_running(&self, version: &str, installed: &[&str]) {
        assert_eq!(self.current().as_deref(), Some(version));
        check_release(&self.dir.join("current"), version).unwrap();
        assert_eq!(release_dirs(&self.dir), installed, "releases/");
        check_invariants(&self.dir).unwrap();
    }
}

/// Asserts the exit code; returns stdout and stderr for further checks.
fn expect_exit(out: &Output, code: i32) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(code), "agent output:\n{text}");
    text
}

/// An agent process, SIGKILLed when dropped: a failing test leaves none behind.
struct Running(Child);

impl Running {
    fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.0.try_wait().unwrap()
    }

    /// SIGKILLs the agent and reaps it.
    fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls `f` every few milliseconds until it is true; panics with `what` after `timeout`.
fn wait_for(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

mod download_kill;
mod escapes;
mod install;
mod malicious;
mod polling;
mod random_kills;
mod state_files;
mod trust_anchor;
mod unhealthy;
