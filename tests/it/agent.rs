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
    let mut st = c
        .prepare("SELECT outcome, version, message FROM reports WHERE agent = ?1 ORDER BY id")
        .unwrap();
    st.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
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

/// One counter of the server's `/metrics`.
fn metric(s: &Server, sample: &str) -> f64 {
    let out = Command::new("curl")
        .args(["-sf", &format!("{}/metrics", s.url)])
        .output()
        .unwrap();
    assert!(out.status.success(), "GET /metrics failed");
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
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

// =============================================================================================
// 1. Install and upgrade

#[test]
fn installs_upgrades_and_prunes_old_releases() {
    let r = Rig::new();
    r.push("1.0.0", vec![]);
    let out = r.once(&["--keep", "2"], 0);
    assert!(out.contains("installed 1.0.0 (was none)"), "{out}");
    r.assert_running("1.0.0", &["1.0.0"]);
    // The executable bit survived: the release runs.
    let ran = Command::new(r.dir.join("current/bin/run.sh"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "release 1.0.0\n");
    assert_row(&r.s, AGENT, "ok", Some("1.0.0"), Some("1.0.0"), "installed");

    // Nothing new: a second pass changes nothing.
    let out = r.once(&["--keep", "2", "--json"], 0);
    let pass: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(pass["result"], "up_to_date", "{out}");
    assert_eq!(pass["current"], "1.0.0", "{out}");

    r.push("2.0.0", vec![]);
    let out = r.once(&["--keep", "2"], 0);
    assert!(out.contains("installed 2.0.0 (was 1.0.0)"), "{out}");
    r.assert_running("2.0.0", &["1.0.0", "2.0.0"]);
    assert_row(&r.s, AGENT, "ok", Some("2.0.0"), Some("2.0.0"), "installed");

    // A third release: with --keep 2 the oldest goes.
    r.push("3.0.0", vec![]);
    r.once(&["--keep", "2"], 0);
    r.assert_running("3.0.0", &["2.0.0", "3.0.0"]);
    let rows = agents(&r.s, "dev");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["current"], "3.0.0", "{rows:?}");
}

#[test]
fn installs_zip_and_plain_file_releases() {
    let r = Rig::new();
    // A zip release.
    let zip = release_zip(&r.s, "1.0.0");
    r.s.push(&zip, "app/zipped", "1.0.0", &r.key);
    let zdir = r.s.path("zipped");
    let out =
        r.s.agent_cmd(&r.token, "dev", "app/zipped", &zdir, "zip-1")
            .arg("--once")
            .output()
            .unwrap();
    expect_exit(&out, 0);
    assert_eq!(current(&zdir).as_deref(), Some("1.0.0"));
    check_release(&zdir.join("current"), "1.0.0").unwrap();

    // A plain file: placed under its published name, not executable.
    let bin = r.s.file("tool-1.0.0.bin", 300_000, 3);
    r.s.push(&bin, "app/tool", "1.0.0", &r.key);
    let tdir = r.s.path("tool");
    let out =
        r.s.agent_cmd(&r.token, "dev", "app/tool", &tdir, "tool-1")
            .arg("--once")
            .output()
            .unwrap();
    expect_exit(&out, 0);
    assert_eq!(current(&tdir).as_deref(), Some("1.0.0"));
    let placed = tdir.join("current/tool-1.0.0.bin");
    assert_eq!(
        std::fs::read(&placed).unwrap(),
        std::fs::read(&bin).unwrap()
    );
    let mode = std::fs::metadata(&placed).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    assert_eq!(
        common::list_files(&tdir.join("current")),
        ["tool-1.0.0.bin"]
    );
    let ids: Vec<Value> = agents(&r.s, "dev")
        .iter()
        .map(|r| r["agent"].clone())
        .collect();
    assert!(
        ids.contains(&"zip-1".into()) && ids.contains(&"tool-1".into()),
        "{ids:?}"
    );
}

// =============================================================================================
// 2. An unhealthy release is rolled back and not retried

#[test]
fn unhealthy_release_goes_back_and_is_not_retried() {
    let r = Rig::new();
    let log = r.s.path("health.log");
    let health = format!(
        "echo \"$ARCA_VERSION\" >> {}; test -f VERSION_OK",
        log.display()
    );
    r.push(
        "1.0.0",
        vec![Entry::File("VERSION_OK", b"ok".to_vec(), 0o644)],
    );
    r.once(&["--health-cmd", &health], 0);
    assert_eq!(r.current().as_deref(), Some("1.0.0"));

    // 2.0.0 lacks VERSION_OK: its health check fails.
    r.push("2.0.0", vec![]);
    let out = r.once(&["--health-cmd", &health], 6);
    assert!(out.contains("2.0.0 unhealthy"), "{out}");
    assert!(out.contains("back to 1.0.0"), "{out}");
    assert_eq!(r.current().as_deref(), Some("1.0.0"));
    assert_row(
        &r.s,
        AGENT,
        "failed",
        Some("1.0.0"),
        Some("2.0.0"),
        "health check failed: health command `echo",
    );
    let last = reports(&r.s, AGENT).pop().unwrap();
    assert!(last.2.contains("test -f VERSION_OK` failed"), "{last:?}");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "1.0.0\n2.0.0\n");

    // Later passes stay on 1.0.0 without trying 2.0.0 again (its health command does not run),
    // and say that the wanted release does not run here: exit 3.
    let out = r.once(&["--health-cmd", &health, "--json"], 6);
    let pass: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(pass["result"], "skipped", "{out}");
    assert_eq!(pass["version"], "2.0.0", "{out}");
    assert_eq!(pass["current"], "1.0.0", "{out}");
    assert_eq!(r.current().as_deref(), Some("1.0.0"));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "1.0.0\n2.0.0\n");

    // A fixed 3.0.0 is installed.
    r.push(
        "3.0.0",
        vec![Entry::File("VERSION_OK", b"ok".to_vec(), 0o644)],
    );
    r.once(&["--health-cmd", &health], 0);
    assert_eq!(r.current().as_deref(), Some("3.0.0"));
    assert_row(&r.s, AGENT, "ok", Some("3.0.0"), Some("3.0.0"), "healthy");
}

#[test]
fn unhealthy_first_release_leaves_no_current_link() {
    let r = Rig::new();
    r.push("1.0.0", vec![]);
    let out = r.once(&["--health-cmd", "echo broken >&2; exit 3"], 6);
    assert!(out.contains("back to no release"), "{out}");
    assert_eq!(r.current(), None);
    assert_row(&r.s, AGENT, "failed", None, Some("1.0.0"), "stderr: broken");
}

#[test]
fn health_command_past_its_timeout_is_killed_with_its_children() {
    let r = Rig::new();
    r.push("1.0.0", vec![]);
    r.once(&[], 0);
    r.push("2.0.0", vec![]);
    // The command leaves a child behind and hangs: both must go when the timeout strikes.
    let pid_file = r.s.path("child.pid");
    let health = format!("sleep 60 & echo $! > {}; wait", pid_file.display());
    let started = Instant::now();
    let out = r.once(&["--health-cmd", &health, "--health-timeout", "1s"], 6);
    assert!(started.elapsed() < Duration::from_secs(30), "{out}");
    assert!(out.contains("back to 1.0.0"), "{out}");
    r.assert_running("1.0.0", &["1.0.0", "2.0.0"]);
    assert_row(
        &r.s,
        AGENT,
        "failed",
        Some("1.0.0"),
        Some("2.0.0"),
        "timed out after 1s",
    );
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    // Gone, or a zombie waiting for a reaper that this container may not have.
    wait_for(
        Duration::from_secs(10),
        "the health command's child to die",
        || {
            std::fs::read_to_string(&stat)
                .map(|s| {
                    s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z')
                })
                .unwrap_or(true)
        },
    );
}

// =============================================================================================
// 3. SIGKILL during a download

/// Writes `len` pseudo-random bytes in 1 MiB chunks.
fn big_file(path: &Path, len: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..len.div_ceil(MIB) {
        let n = MIB.min(len - i * MIB);
        f.write_all(&common::pseudo_random(n, i as u8)).unwrap();
    }
    f.flush().unwrap();
}

#[test]
fn sigkill_during_download_leaves_the_old_release_running() {
    let r = Rig::new();
    r.push("1.0.0", vec![]);
    r.once(&[], 0);

    let big = r.s.path("web-2.0.0.bin");
    big_file(&big, 96 * MIB);
    r.s.push(&big, NAME, "2.0.0", &r.key);

    let part = r.dir.join("state/2.0.0.part");
    let mut agent = r.spawn(&["--interval", "200ms"], "agent1.log");
    // Kill while the partial download exists and has real bytes in it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let len = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        if len >= MIB as u64 {
            break len;
        }
        if let Some(status) = agent.try_wait() {
            panic!("the agent ended ({status}) before the download could be interrupted");
        }
        assert!(
            r.current().as_deref() != Some("2.0.0"),
            "the download finished before it could be interrupted: use a bigger file"
        );
        assert!(Instant::now() < deadline, "no partial download appeared");
        std::thread::sleep(Duration::from_millis(2));
    };
    agent.kill9();
    let left = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    assert!(
        left < 96 * MIB as u64,
        "killed after the download finished ({seen} bytes seen)"
    );
    r.assert_running("1.0.0", &["1.0.0"]);

    // Restarted, it converges: the partial file is dropped and the release installed whole.
    let mut agent = r.spawn(&["--interval", "200ms"], "agent2.log");
    wait_for(Duration::from_secs(90), "2.0.0 to be installed", || {
        r.current().as_deref() == Some("2.0.0")
    });
    agent.kill9();
    let installed = r.dir.join("releases/2.0.0/web-2.0.0.bin");
    let got = std::fs::read(&installed).unwrap();
    assert_eq!(got.len(), 96 * MIB);
    assert!(
        got == std::fs::read(&big).unwrap(),
        "installed bytes differ"
    );
    assert_eq!(
        leftovers(&r.dir.join("state"), "", ".part"),
        Vec::<String>::new()
    );
    assert_eq!(release_dirs(&r.dir), ["1.0.0", "2.0.0"]);
}

// =============================================================================================
// 4. SIGKILL at random instants, and during a health check

/// Reads `DIR/current` as a service would, as fast as it can, until `stop`: every sample must
/// be absent (only before the first release) or a complete release. Returns (samples, errors).
fn watch(dir: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, Vec<String>)> {
    std::thread::spawn(move || {
        let (mut samples, mut errors, mut seen) = (0u64, Vec::new(), false);
        while !stop.load(Ordering::Relaxed) {
            // Often, but leaving the CPU to the agent and the server.
            std::thread::sleep(Duration::from_micros(20));
            let before = std::fs::read_link(dir.join("current")).ok();
            let Some(before) = before else {
                if seen {
                    errors.push("current disappeared".to_owned());
                }
                continue;
            };
            seen = true;
            let checked = match before.to_str().and_then(|t| t.strip_prefix("releases/")) {
                Some(v) => check_release(&dir.join("current"), v),
                None => Err(format!("current -> {}", before.display())),
            };
            let after = std::fs::read_link(dir.join("current")).ok();
            // A switch between the two reads makes the sample meaningless, not wrong.
            if after.as_ref() == Some(&before) {
                samples += 1;
                if let Err(e) = checked {
                    errors.push(e);
                }
            }
        }
        (samples, errors)
    })
}

/// Where an interrupted pass of `version` had got to.
fn phase(dir: &Path, version: &str) -> &'static str {
    if current(dir).as_deref() == Some(version) {
        "switched"
    } else if dir.join("releases").join(version).exists() {
        "unpacked"
    } else if release_dirs(dir).iter().any(|n| n.starts_with(".tmp-")) {
        "unpacking"
    } else {
        "earlier"
    }
}

#[test]
fn sigkill_at_random_instants_never_exposes_a_partial_release() {
    let r = Rig::new();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch(r.dir.clone(), stop.clone());
    r.push("1.0.0", vec![]);
    r.once(&[], 0);
    // How long an upgrade pass takes here: half the kills are spread over it.
    r.push("2.0.0", vec![]);
    let start = Instant::now();
    r.once(&[], 0);
    let full = start.elapsed();
    r.assert_running("2.0.0", &["1.0.0", "2.0.0"]);

    let mut target = 3u32;
    r.push("3.0.0", vec![]);
    let (mut killed, mut late, mut converged) = (0, 0, 0);
    let mut phases = std::collections::BTreeMap::<&str, u32>::new();
    const ROUNDS: u32 = 24;
    for i in 0..ROUNDS {
        if r.current() == Some(format!("{target}.0.0")) {
            converged += 1;
            target += 1;
            r.push(&format!("{target}.0.0"), vec![]);
        }
        let version = format!("{target}.0.0");
        let mut agent = Running(
            r.agent()
                .arg("--once")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let jitter = Duration::from_millis(u64::from(seed(&i.to_string()) % 5));
        if i % 2 == 0 {
            // At a random instant: 30% .. 110% of a whole pass.
            std::thread::sleep(full.mul_f64(0.3 + 0.8 * f64::from(i) / f64::from(ROUNDS)) + jitter);
        } else {
            // Around the switch: once unpacking has begun, then a few milliseconds later.
            let deadline = Instant::now() + Duration::from_secs(30);
            while phase(&r.dir, &version) == "earlier"
                && agent.try_wait().is_none()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_micros(200));
            }
            std::thread::sleep(jitter);
        }
        if agent.try_wait().is_none() {
            killed += 1;
            let at = phase(&r.dir, &version);
            late += u32::from(at != "earlier");
            *phases.entry(at).or_default() += 1;
        }
        agent.kill9();
        check_invariants(&r.dir).unwrap_or_else(|e| panic!("after a kill at round {i}: {e}"));
    }
    // One clean run converges and cleans up.
    let want = format!("{target}.0.0");
    let out = r.once(&[], 0);
    stop.store(true, Ordering::Relaxed);
    let (samples, errors) = watcher.join().unwrap();
    assert!(errors.is_empty(), "the watcher saw: {errors:?}");
    assert!(samples > 100, "the watcher sampled only {samples} times");
    assert_eq!(r.current(), Some(want), "{out}");
    check_invariants(&r.dir).unwrap();
    assert!(
        release_dirs(&r.dir).iter().all(|n| !n.starts_with('.')),
        "{:?}",
        release_dirs(&r.dir)
    );
    assert_eq!(leftovers(&r.dir, ".current.tmp", ""), Vec::<String>::new());
    assert_eq!(
        leftovers(&r.dir.join("state"), "", ".part"),
        Vec::<String>::new()
    );
    eprintln!(
        "upgrade pass {full:?}; {killed}/{ROUNDS} killed mid-pass, by phase {phases:?}; \
         {converged} converged; {samples} samples"
    );
    assert!(killed >= 8, "only {killed} passes were interrupted");
    assert!(
        late >= 3,
        "only {late} kills came after unpacking began: {phases:?}"
    );
}

#[test]
fn sigkill_during_a_health_check_rechecks_it_on_restart() {
    let r = Rig::new();
    let marks = r.s.path("marks");
    std::fs::create_dir_all(&marks).unwrap();
    // The first check of each version hangs (it records its pid so that the test can stop it);
    // with `fail` present every check fails.
    let health = format!(
        "m={m}; echo $$ > $m/pid; \
         if [ -e $m/fail ]; then echo 'refused on recheck' >&2; exit 1; fi; \
         if [ ! -e $m/slept-$ARCA_VERSION ]; then touch $m/slept-$ARCA_VERSION; exec sleep 30; fi",
        m = marks.display()
    );
    let pid_file = marks.join("pid");
    std::fs::write(marks.join("slept-1.0.0"), "").unwrap();
    r.push("1.0.0", vec![]);
    r.once(&["--health-cmd", &health], 0);
    assert_eq!(r.current().as_deref(), Some("1.0.0"));

    // Kills the agent while the health check of `version` hangs; returns what current was.
    let kill_mid_check = |version: &str| {
        let _ = std::fs::remove_file(&pid_file);
        let mut agent = Running(
            r.agent()
                .args(["--once", "--health-cmd", &health])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let slept = marks.join(format!("slept-{version}"));
        wait_for(Duration::from_secs(30), "the health check to start", || {
            slept.exists() && pid_file.exists()
        });
        agent.kill9();
        // The hanging check survives its agent (its own process group): stop it.
        wait_for(Duration::from_secs(5), "the pid file", || {
            std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim().parse::<i32>().is_ok())
        });
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        r.current()
    };

    // 2.0.0: killed mid-check, its second check fails: back to 1.0.0.
    r.push("2.0.0", vec![]);
    assert_eq!(kill_mid_check("2.0.0").as_deref(), Some("2.0.0"));
    check_invariants(&r.dir).unwrap();
    std::fs::write(marks.join("fail"), "").unwrap();
    // The pass that went back says so: exit 3 (unhealthy).
    let out = r.once(&["--health-cmd", &health], 6);
    assert!(out.contains("2.0.0 unhealthy"), "{out}");
    assert_eq!(r.current().as_deref(), Some("1.0.0"));
    assert_row(
        &r.s,
        AGENT,
        "failed",
        Some("1.0.0"),
        Some("2.0.0"),
        "refused on recheck",
    );
    // And it is not tried again (the wanted release does not run here: exit 3).
    std::fs::remove_file(marks.join("fail")).unwrap();
    r.once(&["--health-cmd", &health], 6);
    assert_eq!(r.current().as_deref(), Some("1.0.0"));

    // 3.0.0: killed mid-check, its second check passes: it stays.
    r.push("3.0.0", vec![]);
    assert_eq!(kill_mid_check("3.0.0").as_deref(), Some("3.0.0"));
    r.once(&["--health-cmd", &health], 0);
    assert_eq!(r.current().as_deref(), Some("3.0.0"));
    let ok = reports(&r.s, AGENT)
        .into_iter()
        .any(|(o, v, m)| o == "ok" && v.as_deref() == Some("3.0.0") && m.contains("restart"));
    assert!(ok, "{:?}", reports(&r.s, AGENT));
    assert_row(&r.s, AGENT, "ok", Some("3.0.0"), Some("3.0.0"), "");
}

// =============================================================================================
// 5. A malicious server or store

/// The agent refused `version` (or the metadata naming it): exit 5, still on 1.0.0 with nothing
/// else installed, and an `error` report naming `msg` reached the server.
fn assert_refused(r: &Rig, version: Option<&str>, msg: &str) -> String {
    let out = r.once(&[], 5);
    assert!(out.contains("nothing installed"), "{out}");
    assert!(out.contains(msg), "{out}");
    r.assert_running("1.0.0", &["1.0.0"]);
    assert_eq!(
        leftovers(&r.dir.join("state"), "", ".part"),
        Vec::<String>::new()
    );
    assert_row(&r.s, AGENT, "error", Some("1.0.0"), version, msg);
    out
}

/// Edits the `signed` part of a metadata body WITHOUT re-signing it.
fn tamper_signed(body: &[u8], edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(body).unwrap();
    edit(v.get_mut("signed").unwrap());
    arca_keys::canonical::to_canonical_json(&v).unwrap()
}

/// A tamperable server where the agent runs 1.0.0 and 2.0.0 has just been pushed.
fn v1_running_v2_pushed() -> Rig {
    let r = Rig::tamperable();
    r.push("1.0.0", vec![]);
    r.once(&[], 0);
    r.push("2.0.0", vec![]);
    r
}

#[test]
fn targets_forged_with_the_online_key_to_point_at_other_bytes_are_refused() {
    let r = v1_running_v2_pushed();
    let (_, body) = latest_meta(&r.s, "dev", "targets");
    let env = arca::tuf::metadata::Envelope::from_slice("targets", &body).unwrap();
    let v2 = env.signed["targets"]["app/web/web-2.0.0.tar.gz"].clone();
    assert!(v2.is_object(), "{}", env.signed);

    // (a) The signed length is one byte short: the download is cut off, nothing is unpacked.
    forge_targets_with_online_key(&r.s, "dev", |signed| {
        let t = &mut signed["targets"]["app/web/web-2.0.0.tar.gz"];
        t["length"] = Value::from(t["length"].as_u64().unwrap() - 1);
    });
    assert_refused(&r, Some("2.0.0"), "exceeds its length limit");

    // (b) The entry's digests are those of other bytes (an older blob the server holds): the
    // build statement signs the real digests, so no valid build signature remains.
    let other = r.s.path("web-1.0.0.tar.gz");
    let bytes = std::fs::read(&other).unwrap();
    forge_targets_with_online_key(&r.s, "dev", |signed| {
        let t = &mut signed["targets"]["app/web/web-2.0.0.tar.gz"];
        *t = v2.clone();
        t["length"] = Value::from(bytes.len() as u64);
        t["hashes"]["sha256"] = Value::from(arca::tuf::metadata::sha256_hex(&bytes));
        t["custom"]["blake3"] = Value::from(blake3::hash(&bytes).to_hex().to_string());
    });
    assert_refused(&r, Some("2.0.0"), "no valid build signature");
}

#[test]
fn targets_altered_without_resigning_are_refused() {
    let r = v1_running_v2_pushed();
    let (v, body) = latest_meta(&r.s, "dev", "targets");
    let forged = tamper_signed(&body, |signed| {
        signed["targets"]["app/web/web-2.0.0.tar.gz"]["hashes"]["sha256"] =
            Value::from("0".repeat(64));
    });
    set_meta_body(&r.s, "dev", "targets", v, &forged);
    assert_refused(&r, None, "channel metadata refused");
}

#[test]
fn replayed_older_timestamp_cannot_take_the_agent_back() {
    let r = Rig::tamperable();
    r.push("1.0.0", vec![]);
    r.once(&[], 0);
    let (old_v, old_ts) = latest_meta(&r.s, "dev", "timestamp");
    r.push("2.0.0", vec![]);
    r.once(&[], 0);
    r.assert_running("2.0.0", &["1.0.0", "2.0.0"]);

    // The server replays the older, validly signed timestamp (which leads to 1.0.0).
    let (new_v, _) = latest_meta(&r.s, "dev", "timestamp");
    set_meta_body(&r.s, "dev", "timestamp", new_v, &old_ts);
    let out = r.once(&[], 5);
    let msg =
        format!("timestamp rollback: version {old_v} is older than the trusted version {new_v}");
    assert!(out.contains(&msg), "{out}");
    r.assert_running("2.0.0", &["1.0.0", "2.0.0"]);
    let row = agent_row(&r.s, "dev", AGENT).unwrap();
    assert_eq!(row["outcome"], "error", "{row}");
    assert_eq!(row["current"], "2.0.0", "{row}");
    assert!(row["message"].as_str().unwrap().contains(&msg), "{row}");
}

#[test]
fn altered_blob_in_the_store_is_refused() {
    let r = v1_running_v2_pushed();
    let f = r.s.path("web-2.0.0.tar.gz");
    let blob =
        r.s.home
            .join("blobs/blobs")
            .join(blake3::hash(&std::fs::read(&f).unwrap()).to_hex().as_str());
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let mut perm = std::fs::metadata(&blob).unwrap().permissions();
    perm.set_mode(0o644);
    std::fs::set_permissions(&blob, perm).unwrap();
    std::fs::write(&blob, &bytes).unwrap();
    assert_refused(
        &r,
        Some("2.0.0"),
        "length or hash does not match the signed metadata",
    );
}

// =============================================================================================
// 6. Archives that try to write outside the release

#[test]
fn signed_archives_that_escape_the_release_are_refused() {
    let r = Rig::new();
    r.push("1.0.0", vec![]);
    r.once(&[], 0);
    let outside = r.s.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let abs = format!("{}/abs-escape", outside.display());
    let abs_dir = outside.display().to_string();
    let attacks: Vec<(&str, Vec<Entry>, &str)> = vec![
        (
            "2.0.0",
            vec![Entry::File("../escape", b"pwned".to_vec(), 0o755)],
            "path contains `..`",
        ),
        (
            "3.0.0",
            vec![Entry::File("bin/../../../escape", b"pwned".to_vec(), 0o755)],
            "path contains `..`",
        ),
        (
            "4.0.0",
            vec![Entry::File(&abs, b"pwned".to_vec(), 0o644)],
            "absolute path",
        ),
        (
            "5.0.0",
            vec![
                Entry::Symlink("link", &abs_dir),
                Entry::File("link/pwned", b"pwned".to_vec(), 0o644),
            ],
            "symlink to the absolute path",
        ),
        (
            "6.0.0",
            vec![
                Entry::Symlink("up", ".."),
                Entry::File("up/pwned", b"pwned".to_vec(), 0o644),
            ],
            "leaves the release",
        ),
    ];
    let pax_record = |key: &str, value: &str| {
        // "LEN key=value\n", where LEN counts its own digits too.
        let rest = format!(" {key}={value}\n");
        let mut len = rest.len() + 1;
        while (rest.len() + len.to_string().len()) != len {
            len = rest.len() + len.to_string().len();
        }
        format!("{len}{rest}").into_bytes()
    };
    let long = format!("{}../../gnu-escape", "deep/".repeat(30));
    let attacks: Vec<(&str, Vec<Entry>, &str)> = attacks
        .into_iter()
        .chain([
            (
                // A pax header renames the next, harmless-looking entry.
                "7.0.0",
                vec![
                    Entry::Raw(
                        tar::EntryType::XHeader,
                        "PaxHeaders/harmless",
                        pax_record("path", "../pax-escape"),
                    ),
                    Entry::File("harmless", b"pwned".to_vec(), 0o644),
                ],
                "entry `../pax-escape` refused: path contains `..`",
            ),
            (
                // So does a GNU long-name header, with the `..` past the 100-byte field.
                "8.0.0",
                vec![
                    Entry::Raw(tar::EntryType::GNULongName, "././@LongLink", {
                        let mut b = long.clone().into_bytes();
                        b.push(0);
                        b
                    }),
                    Entry::File("harmless", b"pwned".to_vec(), 0o644),
                ],
                "gnu-escape` refused: path contains `..`",
            ),
        ])
        .collect();
    for (version, extra, why) in attacks {
        r.push(version, extra);
        let out = r.once(&[], 6);
        assert!(out.contains("refused"), "{version}: {out}");
        assert!(out.contains(why), "{version}: {out}");
        r.assert_running("1.0.0", &["1.0.0"]);
        // A bad archive is the release's fault: reported as failed, and not fetched again.
        assert_row(&r.s, AGENT, "failed", Some("1.0.0"), Some(version), why);
        let out = r.once(&[], 6);
        assert!(
            out.contains(&format!(
                "{version} failed here before; still running 1.0.0"
            )),
            "{version} retried: {out}"
        );
        let everything = common::list_files(r.s.dir.path());
        let escaped: Vec<_> = everything
            .iter()
            .filter(|f| f.contains("escape") || f.contains("pwned"))
            .collect();
        assert!(escaped.is_empty(), "{version} wrote {escaped:?}");
        assert_eq!(common::list_files(&outside), Vec::<String>::new());
    }

    // A zip whose entry climbs out.
    let zip_path = r.s.path("web-9.0.0.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    zip.start_file("VERSION", opts).unwrap();
    zip.write_all(b"9.0.0").unwrap();
    zip.start_file("../zip-escape", opts).unwrap();
    zip.write_all(b"pwned").unwrap();
    zip.finish().unwrap();
    r.s.push(&zip_path, NAME, "9.0.0", &r.key);
    let out = r.once(&[], 6);
    assert!(
        out.contains("archive entry `../zip-escape` refused"),
        "{out}"
    );
    r.assert_running("1.0.0", &["1.0.0"]);
    assert_row(
        &r.s,
        AGENT,
        "failed",
        Some("1.0.0"),
        Some("9.0.0"),
        "zip-escape",
    );
    let escaped: Vec<_> = common::list_files(r.s.dir.path())
        .into_iter()
        .filter(|f| f.contains("escape") || f.contains("pwned"))
        .collect();
    assert!(escaped.is_empty(), "wrote {escaped:?}");
}

// =============================================================================================
// 7. Conditional polling

#[test]
fn idle_polling_is_conditional_and_a_new_release_is_picked_up() {
    let r = Rig::new();
    r.push("1.0.0", vec![]);
    let mut agent = r.spawn(&["--interval", "100ms"], "agent.log");
    wait_for(Duration::from_secs(30), "1.0.0 to be installed", || {
        r.current().as_deref() == Some("1.0.0")
    });
    wait_for(Duration::from_secs(10), "the agent's report", || {
        agent_row(&r.s, "dev", AGENT).is_some()
    });

    let not_modified = r#"arca_http_responses_total{class="3xx"}"#;
    let ok = r#"arca_http_responses_total{class="2xx"}"#;
    // Settled: the first pass after an install fetches the timestamp without an ETag; from the
    // first 304 on, an idle agent should ask nothing else.
    let nm_start = metric(&r.s, not_modified);
    wait_for(Duration::from_secs(10), "a first 304", || {
        metric(&r.s, not_modified) > nm_start
    });
    let (nm0, ok0) = (metric(&r.s, not_modified), metric(&r.s, ok));
    let mut polls = 1.0;
    wait_for(Duration::from_secs(20), "ten 304 answers", || {
        polls += 1.0;
        metric(&r.s, not_modified) - nm0 >= 10.0
    });
    let nm = metric(&r.s, not_modified) - nm0;
    // Every /metrics request is a 2xx too: those are not the agent's.
    let agent_ok = metric(&r.s, ok) - ok0 - polls;
    assert!(
        agent_ok <= 1.0,
        "an idle agent made {agent_ok} full requests for {nm} conditional ones"
    );

    let pushed = Instant::now();
    r.push("2.0.0", vec![]);
    wait_for(Duration::from_secs(20), "2.0.0 to be picked up", || {
        r.current().as_deref() == Some("2.0.0")
    });
    let took = pushed.elapsed();
    wait_for(Duration::from_secs(10), "the report of 2.0.0", || {
        agent_row(&r.s, "dev", AGENT).is_some_and(|row| row["current"] == "2.0.0")
    });
    agent.kill9();
    check_invariants(&r.dir).unwrap();
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[test]
fn a_server_answering_304_cannot_freeze_a_polling_agent() {
    // The timestamp expires after 6 s and the server does not re-sign it: an agent that keeps
    // getting 304s must notice that what it trusts went stale, and say so.
    let s = Server::start_with(
        Some("[tuf]\ntimestamp_expiry = \"6s\"\nrefresh_interval = \"1h\"\n"),
        &[],
    );
    let r = Rig::with(s);
    r.push("1.0.0", vec![]);
    let mut agent = r.spawn(&["--interval", "100ms"], "agent.log");
    wait_for(Duration::from_secs(20), "1.0.0 to be installed", || {
        r.current().as_deref() == Some("1.0.0")
    });
    wait_for(
        Duration::from_secs(30),
        "an error report about expiry",
        || {
            agent_row(&r.s, "dev", AGENT).is_some_and(|row| {
                row["outcome"] == "error" && row["message"].as_str().unwrap().contains("expired")
            })
        },
    );
    assert_eq!(r.current().as_deref(), Some("1.0.0"));
    // Fresh metadata: the agent moves on.
    r.push("2.0.0", vec![]);
    wait_for(Duration::from_secs(20), "2.0.0 to be installed", || {
        r.current().as_deref() == Some("2.0.0")
    });
    agent.kill9();
    check_invariants(&r.dir).unwrap();
}

// =============================================================================================
// 8. The wrong trust anchor or the wrong channel

/// `arca agent --once` with `root` as the pinned root.
fn agent_with_root(r: &Rig, channel: &str, root: &Path) -> Output {
    r.s.arca()
        .env("ARCA_TOKEN", &r.token)
        .env("RUST_LOG", "warn")
        .args(["agent", "--once", "--channel", channel, "--name", NAME])
        .arg("--root")
        .arg(root)
        .arg("--dir")
        .arg(&r.dir)
        .args(["--id", AGENT])
        .output()
        .unwrap()
}

#[test]
fn another_servers_root_is_refused() {
    let r = Rig::new();
    r.push("1.0.0", vec![]);
    let other = Server::start();
    let out = agent_with_root(&r, "dev", &other.root_json());
    let text = expect_exit(&out, 5);
    assert!(
        text.contains("root metadata: 0 valid signature(s)"),
        "{text}"
    );
    assert_eq!(r.current(), None);
    assert_eq!(release_dirs(&r.dir), Vec::<String>::new());
    let row = agent_row(&r.s, "dev", AGENT).expect("the refusal was reported");
    assert_eq!(row["outcome"], "error", "{row}");

    // Its state is bound to that root: the right root cannot be slipped in later either.
    let out = agent_with_root(&r, "dev", &r.s.root_json());
    let text = expect_exit(&out, 1);
    assert!(text.contains("--root differs"), "{text}");
    assert_eq!(r.current(), None);
}

#[test]
fn another_channels_repository_is_refused() {
    let r = Rig::tamperable();
    r.push("1.0.0", vec![]);
    // The server answers prod's URLs with dev's repository.
    r.s.db()
        .execute_batch(
            "DELETE FROM tuf_metadata WHERE channel = 'prod';
             INSERT INTO tuf_metadata (channel, role, version, body, expires)
                 SELECT 'prod', role, version, body, expires FROM tuf_metadata WHERE channel = 'dev';
             INSERT INTO releases (channel, name, artifact_id, action, actor, reason, created_at)
                 SELECT 'prod', name, artifact_id, action, actor, reason, created_at
                 FROM releases WHERE channel = 'dev';",
        )
        .unwrap();
    let out = agent_with_root(&r, "prod", &r.s.root_json());
    let text = expect_exit(&out, 5);
    assert!(
        text.contains("root metadata v2 is bound to channel \"dev\", not prod"),
        "{text}"
    );
    assert_eq!(r.current(), None);
    assert_eq!(release_dirs(&r.dir), Vec::<String>::new());
}

// =============================================================================================
// SIGKILL between truncating and writing a state file
//
// strace's fault injection delivers the SIGKILL at an exact system call: the first write(2) to
// the named file, i.e. after open(2) has created or truncated it and before any byte is in it.

/// Runs `arca agent --once` under strace, SIGKILLed at its first write to `file`, and then
/// again normally: however the killed run left its state, the second must install 1.0.0. (When
/// `file` is written some other way, e.g. to a temporary name renamed over it, no kill happens
/// and the first run must simply succeed.)
fn killed_at_first_write_then_converges(file: &str) {
    let r = Rig::new();
    r.push("1.0.0", vec![]);
    let file = r.dir.join(file);
    let agent = r.agent();
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-o", "/dev/null", "-P"])
        .arg(&file)
        .args(["-e", "trace=write,pwrite64,writev", "-e"])
        .arg("inject=write,pwrite64,writev:signal=SIGKILL")
        .arg(agent.get_program())
        .args(agent.get_args())
        .arg("--once");
    for (k, v) in agent.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("this test needs strace (>= 4.16, for fault injection) on the PATH: {e}")
    });
    use std::os::unix::process::ExitStatusExt;
    if out.status.signal() == Some(9) {
        assert_eq!(r.current(), None);
    } else {
        // Not killed: then it must have run to the end (and not failed to trace at all).
        let text = expect_exit(&out, 0);
        assert!(text.contains("installed 1.0.0"), "{text}");
    }
    let out = r.once(&[], 0);
    assert!(
        out.contains("installed 1.0.0") || out.contains("up to date: 1.0.0"),
        "{out}"
    );
    r.assert_running("1.0.0", &["1.0.0"]);
}

#[test]
fn sigkill_while_writing_the_trust_document_does_not_brick_the_agent() {
    killed_at_first_write_then_converges("state/tuf/trust.json");
}

#[test]
fn sigkill_while_writing_the_bootstrap_marker_does_not_brick_the_agent() {
    killed_at_first_write_then_converges("state/tuf/bootstrap.sha256");
}

/// A server that accepts connections and then says nothing cannot hang the agent: the read
/// times out (ARCA_HTTP_TIMEOUT), the pass fails naming it, and nothing changes in DIR.
#[test]
fn a_server_that_stops_answering_does_not_hang_the_agent() {
    let r = Rig::new();
    r.push("1.0.0", vec![]);
    r.once(&[], 0);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    // Accept and hold every connection, never answering.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming() {
            held.push(c);
        }
    });
    let started = std::time::Instant::now();
    let out = r
        .agent()
        .args(["--once", "--server", &format!("http://{addr}")])
        .env("ARCA_HTTP_TIMEOUT", "1s")
        .output()
        .unwrap();
    let text = expect_exit(&out, 5);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert!(text.to_lowercase().contains("timed out"), "{text}");
    r.assert_running("1.0.0", &["1.0.0"]);
}
