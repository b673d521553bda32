//! SIGKILL between truncating and writing a state file
//!
//! strace's fault injection delivers the SIGKILL at an exact system call: the first write(2) to
//! the named file, i.e. after open(2) has created or truncated it and before any byte is in it.

use super::*;

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
