//! Clock faults (docs/operations.md "Clock faults", docs/security.md guarantee 5): the server
//! runs under libfaketime with a fake wall clock the test moves while it runs (the monotonic
//! clock stays real). A jump ahead and back leaves no long-lived metadata, a clock behind
//! signs no already-expired metadata, and each refusal to sign shows in `/metrics` and as a
//! clear error.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Server;
use common::prometheus::metrics;

const NAME: &str = "app/x";
/// Re-sign checks every 200 ms, so the test sees the server notice a jump quickly.
const CONFIG: &str = "[tuf]\nrefresh_interval = \"200ms\"\n";
/// Default lifetimes of the online roles.
const LIFETIMES: [(&str, i64); 3] = [
    ("targets", 30 * 86_400),
    ("snapshot", 7 * 86_400),
    ("timestamp", 86_400),
];

fn libfaketime() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.exists());
    found.expect("libfaketime is missing: run scripts/test-env.sh (Debian package libfaketime)")
}

/// A server whose wall clock is `real + offset`, where the offset is read from `file` (in
/// libfaketime's syntax: `+0`, `+400d`, `-3d`) on every clock call.
fn faked_server(file: &Path) -> Server {
    let lib = libfaketime();
    Server::start_with(
        Some(CONFIG),
        &[
            ("LD_PRELOAD", lib.to_str().unwrap()),
            ("FAKETIME_TIMESTAMP_FILE", file.to_str().unwrap()),
            ("FAKETIME_NO_CACHE", "1"),
            ("DONT_FAKE_MONOTONIC", "1"),
        ],
    )
}

fn set_offset(file: &Path, offset: &str) {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, format!("{offset}\n")).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

fn metric(s: &Server, name: &str) -> f64 {
    metrics(s).get(name).copied().unwrap_or(-1.0)
}

/// Every stored online-role metadata file: (channel, role, version, expires) with expiry
/// in seconds since the epoch.
fn online_metadata(s: &Server) -> Vec<(String, String, i64, i64)> {
    let c = s.db();
    c.all::<(String, String, i64, String)>(
        "SELECT channel, role, version, expires FROM tuf_metadata WHERE role != 'root'",
        params![],
    )
    .into_iter()
    .map(|(channel, role, version, expires)| {
        let t = chrono::DateTime::parse_from_rfc3339(&expires)
            .unwrap()
            .timestamp();
        (channel, role, version, t)
    })
    .collect()
}

/// No stored metadata expires further than its lifetime (plus a minute) from the real now,
/// and the newest of each role has not expired.
fn assert_sane_expiries(s: &Server) {
    let now = chrono::Utc::now().timestamp();
    let rows = online_metadata(s);
    assert!(!rows.is_empty());
    let mut newest: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for (channel, role, version, expires) in rows {
        let life = LIFETIMES.iter().find(|(r, _)| *r == role).unwrap().1;
        assert!(
            expires <= now + life + 60,
            "{channel} {role} v{version} expires {} s after now: signed under the jumped clock",
            expires - now
        );
        let e = newest.entry((channel, role)).or_insert((version, expires));
        if version > e.0 {
            *e = (version, expires);
        }
    }
    for ((channel, role), (version, expires)) in newest {
        assert!(
            expires > now,
            "{channel} {role} v{version} is already expired"
        );
    }
}

/// Fails naming only the lines of the state fingerprint that differ.
fn assert_unchanged(before: &str, after: &str) {
    let (b, a): (Vec<&str>, Vec<&str>) = (before.lines().collect(), after.lines().collect());
    let gone: Vec<&&str> = b.iter().filter(|l| !a.contains(l)).collect();
    let new: Vec<&&str> = a.iter().filter(|l| !b.contains(l)).collect();
    let cut = |v: Vec<&&str>| -> Vec<String> {
        v.iter().map(|l| l.chars().take(200).collect()).collect()
    };
    assert!(
        gone.is_empty() && new.is_empty(),
        "a refused signature changed state: gone {:?}, new {:?}",
        cut(gone),
        cut(new)
    );
}

fn push(s: &Server, key: &Path, version: &str, seed: u8) {
    let f = s.file(&format!("x-{version}.bin"), 5_000, seed);
    s.push(&f, NAME, version, key);
}

#[test]
fn a_clock_jump_ahead_and_back_signs_nothing_long_lived_and_is_alerted() {
    let dir = tempfile::tempdir().unwrap();
    let offset = dir.path().join("faketime");
    set_offset(&offset, "+0");
    let s = faked_server(&offset);
    let b = s.builder("builder", "app/*");
    push(&s, &b, "1.0.0", 1);
    assert!(common::wait_until(Duration::from_secs(10), || metric(
        &s,
        "arca_clock_fault"
    ) == 0.0));
    let refusals = metric(&s, "arca_signing_refusals_total");

    // 400 days ahead: every role looks due, and nothing may be signed.
    set_offset(&offset, "+400d");
    assert!(
        common::wait_until(Duration::from_secs(20), || metric(&s, "arca_clock_fault")
            == 1.0),
        "/metrics shows no clock fault; log:\n{}",
        s.log()
    );
    assert!(metric(&s, "arca_clock_drift_seconds") > 399.0 * 86_400.0);
    let before = s.state();
    let refused_entries = s.audit_count("refused");
    let line = s.fails(&["promote", "app/x@1.0.0", "--to", "staging"]);
    assert!(line.contains("clock_fault"), "{line}");
    assert!(line.contains("monotonic"), "{line}");
    assert!(line.contains("503"), "{line}");
    assert_unchanged(&before, &s.state());
    // A statement about a listed release republishes its channel: refused too. A server
    // failure is not the request's refusal: logged and counted, not audited.
    let line = s.fails(&[
        "attest",
        "app/x@1.0.0",
        "--type",
        "https://example.com/tests/v1",
        "--key",
        b.to_str().unwrap(),
    ]);
    assert!(line.contains("clock_fault"), "{line}");
    assert_unchanged(&before, &s.state());
    assert_eq!(s.audit_count("refused"), refused_entries);
    assert!(metric(&s, "arca_signing_refusals_total") > refusals);
    assert!(s.log().contains("clock fault"), "no error in the log");

    // Back: the fault clears by itself and signing resumes, with sane expiries.
    set_offset(&offset, "+0");
    assert!(common::wait_until(Duration::from_secs(20), || metric(
        &s,
        "arca_clock_fault"
    ) == 0.0));
    push(&s, &b, "2.0.0", 2);
    s.ok(&["promote", "app/x@2.0.0", "--to", "staging"]);
    assert_sane_expiries(&s);
    s.pull_ok(NAME, "dev", &s.path("out"), &s.path("state"));
}

#[test]
fn a_clock_behind_the_last_signing_signs_nothing_already_expired() {
    let dir = tempfile::tempdir().unwrap();
    let offset = dir.path().join("faketime");
    set_offset(&offset, "+0");
    let mut s = faked_server(&offset);
    let b = s.builder("builder", "app/*");
    push(&s, &b, "1.0.0", 1);

    // Restarted three days behind (the monotonic clock starts afresh: only the last signing
    // on record shows the clock is wrong).
    s.kill();
    set_offset(&offset, "-3d");
    s.launch();
    assert!(
        common::wait_until(Duration::from_secs(20), || metric(&s, "arca_clock_fault")
            == 1.0),
        "/metrics shows no clock fault; log:\n{}",
        s.log()
    );
    let before = s.state();
    let line = s.fails(&["promote", "app/x@1.0.0", "--to", "staging"]);
    assert!(line.contains("behind the last metadata signing"), "{line}");
    assert!(line.contains("503"), "{line}");
    assert_unchanged(&before, &s.state());
    assert_sane_expiries(&s);

    // Clock fixed, server restarted: signing works again.
    s.kill();
    set_offset(&offset, "+0");
    s.launch();
    push(&s, &b, "2.0.0", 2);
    s.ok(&["promote", "app/x@2.0.0", "--to", "staging"]);
    assert_eq!(metric(&s, "arca_clock_fault"), 0.0);
    assert_sane_expiries(&s);
    s.pull_ok(NAME, "dev", &s.path("out"), &s.path("state"));
}
