//! The README's walk-through is executable: its shell blocks run, in order, as one script in a
//! fresh directory, so that a user who pastes them line by line gets what the README says.
//!
//! What the test changes, and only this: `cargo build`/`cargo run` lines are dropped (the
//! binary under test is put first on PATH instead), and the README's port 8480 becomes a free
//! port, so that tests never share a fixed port.

use crate::common;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The ```sh blocks of the README section titled `title`, in order.
fn shell_blocks(readme: &str, title: &str) -> Vec<String> {
    let start = readme
        .find(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("README has no section {title:?}"));
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut blocks = Vec::new();
    let mut rest = section;
    while let Some(i) = rest.find("```sh\n") {
        let body = &rest[i + 6..];
        let end = body.find("\n```").expect("an unterminated code block");
        blocks.push(body[..end].to_owned());
        rest = &body[end + 4..];
    }
    blocks
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_walk_through_runs_as_written() {
    let readme = std::fs::read_to_string(common::repo_root().join("README.md")).unwrap();
    let blocks = shell_blocks(&readme, "Five-minute walk-through");
    assert!(blocks.len() >= 3, "the walk-through lost its blocks");
    let port = free_port().to_string();
    let mut script = String::from(
        "set -euo pipefail\n\
         trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n",
    );
    for line in blocks.join("\n").lines() {
        if line.trim_start().starts_with("cargo ") {
            continue;
        }
        script.push_str(&line.replace("8480", &port));
        script.push('\n');
    }

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("walk-through.sh"), &script).unwrap();
    let bin_dir = common::arca_bin().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.arg("walk-through.sh")
        .current_dir(dir.path())
        .env("PATH", path)
        .env("HOME", dir.path())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for (k, _) in std::env::vars() {
        if k.starts_with("ARCA_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().unwrap();
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).ok();
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).ok();
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > Duration::from_secs(300) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Whatever is left of the script (its background server) goes with it.
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
    let out = out_reader.join().unwrap();
    let err = err_reader.join().unwrap();
    let report = format!("script:\n{script}\nstdout:\n{out}\nstderr:\n{err}");
    let status = status.unwrap_or_else(|| panic!("the walk-through hung\n{report}"));
    assert!(
        status.success(),
        "the walk-through failed ({status})\n{report}"
    );

    // What the README says happened, happened.
    let d = dir.path();
    assert_eq!(
        std::fs::read_to_string(d.join("out/hello.txt")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("prod/hello.txt")).unwrap(),
        "hello\n"
    );
    for want in [
        "pushed app/hello@1.0.0",
        "require_approvals",
        "rolled back app/hello in prod: 1.0.1 -> 1.0.0",
        "audit log verified",
    ] {
        assert!(out.contains(want), "{want:?} not in the output\n{report}");
    }
}
