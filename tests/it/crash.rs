//! Guarantee 8 (docs/security.md): a half-finished upload never becomes visible. The server or the
//! client is SIGKILLed while a large push is streaming; afterwards nothing is registered, no
//! blob is published, the channel has no release, and the same push then succeeds.
//!
//! What a crash leaves behind, by design (local disk backend): the upload's bytes land in a
//! temporary file `blobs/tmp/<32 hex>` and are only linked to `blobs/blobs/<blake3>` after the
//! digests were checked. A server killed mid-upload cannot clean that file up; nothing refers
//! to it and
//! `BlobStore::sweep_temp` (run by `arca serve` at start, store/src/temp.rs) deletes it once it
//! is older than one hour — not earlier, because another server process on the same store might
//! still be writing it. A client that hangs up is different: the server sees the broken body,
//! drops the upload and deletes the temporary file at once.
//! (On S3 the same crash leaves a pending multipart upload; see tests/s3.rs.)

use crate::common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::Server;

const MIB: usize = 1024 * 1024;
/// Large enough that a debug-build push takes well over the time needed to notice it started.
const BIG: usize = 200 * MIB;
/// A staging file this large means the server has received and written real bytes.
const PART: u64 = 5 * MIB as u64;

/// Writes `len` pseudo-random bytes in 1 MiB chunks (never the whole file in memory).
fn big_file(s: &Server, name: &str, len: usize) -> PathBuf {
    let p = s.path(name);
    let mut f = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
    let mut left = len;
    let mut i = 0u8;
    while left > 0 {
        let n = left.min(MIB);
        f.write_all(&common::pseudo_random(n, i)).unwrap();
        left -= n;
        i = i.wrapping_add(1);
    }
    f.flush().unwrap();
    p
}

/// `arca push` as a child process, output captured.
fn spawn_push(s: &Server, file: &Path, name: &str, version: &str, key: &Path) -> Child {
    s.arca()
        .args(["push", file.to_str().unwrap(), "--name", name])
        .args(["--version", version, "--key", key.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn arca push")
}

/// The files of uploads in progress in the local store: `blobs/tmp/<id>`.
fn staging_files(s: &Server) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(s.home.join("blobs/tmp")) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect()
}

/// Waits until the server has written at least one part of the upload to its staging file
/// while `push` is still running; returns how many bytes the staging file held.
fn wait_mid_upload(s: &Server, push: &mut Child) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = push.try_wait().unwrap() {
            panic!(
                "the push ended ({status}) before it could be interrupted: use a bigger file\n{}",
                output(push)
            );
        }
        let written: u64 = staging_files(s)
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        if written >= PART {
            eprintln!("interrupting with {written} of the upload's bytes written");
            return written;
        }
        assert!(
            Instant::now() < deadline,
            "no upload bytes reached the server in 120 s; log:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (up to 60 s) for a child to exit; returns (success, stdout + stderr).
fn reap(child: &mut Child) -> (bool, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("arca push did not exit within 60 s of the interruption");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.success(), output(child))
}

fn output(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut text);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut text);
    }
    text
}

/// The database part of `Server::state` (every table but the audit log).
fn db_state(s: &Server) -> String {
    let state = s.state();
    state.split("[blobs/]").next().unwrap().to_owned()
}

fn count(s: &Server, table: &str) -> i64 {
    s.db()
        .one(&format!("SELECT COUNT(*) FROM {table}"), params![])
}

/// Files equal, compared in chunks (the files are too big for a readable assert_eq! diff).
fn same_bytes(a: &Path, b: &Path) -> bool {
    let (mut a, mut b) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    let (mut x, mut y) = (vec![0u8; MIB], vec![0u8; MIB]);
    loop {
        let n = a.read(&mut x).unwrap();
        if n == 0 {
            return b.read(&mut y).unwrap() == 0;
        }
        if b.read_exact(&mut y[..n]).is_err() || x[..n] != y[..n] {
            return false;
        }
    }
}

/// Nothing of `name` is visible: no artifact, no blob, no release in dev.
fn assert_nothing_published(s: &Server, name: &str, before: &str) {
    assert_eq!(count(s, "artifacts"), 0, "an artifact row appeared");
    assert_eq!(count(s, "blobs"), 0, "a blob row appeared");
    assert_eq!(
        common::list_files(&s.home.join("blobs/blobs")),
        Vec::<String>::new(),
        "a blob was published"
    );
    assert_eq!(
        before,
        db_state(s),
        "the interrupted push changed the state"
    );
    let out = s.path("out-none");
    let err = s.pull_fails(name, "dev", &out, &s.path("state-none"));
    assert!(err.contains("no release"), "{err}");
}

/// The same push now succeeds and pulls back identical bytes.
fn push_again_and_pull(s: &Server, file: &Path, name: &str, key: &Path) {
    let out = s.push(file, name, "1.0.0", key);
    assert!(out.contains(&format!("pushed {name}@1.0.0")), "{out}");
    let dir = s.path("out");
    let msg = s.pull_ok(name, "dev", &dir, &s.path("state"));
    assert!(msg.contains(&format!("verified {name}@1.0.0")), "{msg}");
    let file_name = file.file_name().unwrap().to_str().unwrap();
    assert!(
        same_bytes(&dir.join(file_name), file),
        "pulled bytes differ"
    );
    assert_eq!(count(s, "artifacts"), 1);
    assert!(staging_files(s).is_empty(), "a finished push left staging");
}

#[test]
fn server_killed_mid_upload_publishes_nothing() {
    let mut s = Server::start();
    let key = s.builder("builder", "app/*");
    let file = big_file(&s, "image.img", BIG);
    let before = db_state(&s);

    let mut push = spawn_push(&s, &file, "app/image", "1.0.0", &key);
    let written = wait_mid_upload(&s, &mut push);
    s.kill(); // SIGKILL: no cleanup, no graceful shutdown
    let (ok, out) = reap(&mut push);
    assert!(!ok, "the push succeeded although the server died:\n{out}");
    assert!(out.contains("error:"), "{out}");
    assert!(written < BIG as u64, "the whole file was already written");

    // What the crash left: only the staging file, under tmp/.
    let leftover = common::list_files(&s.home.join("blobs"));
    assert!(
        !leftover.is_empty(),
        "expected the interrupted staging file"
    );
    assert!(
        leftover.iter().all(|f| f.starts_with("tmp/")),
        "a crash left more than a staging file: {leftover:?}"
    );

    s.launch();
    assert_nothing_published(&s, "app/image", &before);
    // The staging file is younger than the sweep's hour, so the restart keeps it...
    assert_eq!(common::list_files(&s.home.join("blobs")), leftover);
    // ...and once it is older, the next start deletes it.
    let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 3600);
    for p in staging_files(&s) {
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(two_hours_ago).unwrap();
    }
    s.kill();
    s.launch();
    assert_eq!(
        common::list_files(&s.home.join("blobs")),
        Vec::<String>::new(),
        "sweep_temp left the abandoned staging file; log:\n{}",
        s.log()
    );
    assert!(s.log().contains("removed abandoned uploads"), "{}", s.log());

    push_again_and_pull(&s, &file, "app/image", &key);
}

#[test]
fn client_killed_mid_upload_publishes_nothing() {
    let s = Server::start();
    let key = s.builder("builder", "app/*");
    let file = big_file(&s, "image.img", BIG);
    let before_all = s.state();
    let before = db_state(&s);

    let mut push = spawn_push(&s, &file, "app/image", "1.0.0", &key);
    wait_mid_upload(&s, &mut push);
    push.kill().unwrap(); // SIGKILL
    let (ok, _) = reap(&mut push);
    assert!(!ok);

    // The server notices the broken body, aborts the upload and removes the staging file.
    let cleaned = common::wait_until(Duration::from_secs(30), || {
        common::list_files(&s.home.join("blobs")).is_empty()
    });
    assert!(
        cleaned,
        "the aborted upload left {:?}; log:\n{}",
        common::list_files(&s.home.join("blobs")),
        s.log()
    );
    assert_nothing_published(&s, "app/image", &before);
    assert_eq!(before_all, s.state());

    push_again_and_pull(&s, &file, "app/image", &key);
}
