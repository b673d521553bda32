//! The TUF differential harness (tests/tuf_diff/run.py): python-tuf's ngclient and
//! `arca tuf-client` on the same repositories, step by step. It needs no arca server and no
//! database, so the whole run (about two minutes) is made once, in the SQLite pass of the
//! suite, not again in the PostgreSQL one.

use crate::common;

use std::path::Path;
use std::process::Command;

/// Runs tests/tuf_diff/run.py with `args`; returns (success, everything it printed).
fn run_harness(args: &[&str]) -> (bool, String) {
    let script = common::repo_root().join("tests/tuf_diff/run.py");
    let o = Command::new(common::venv().join("bin/python"))
        .arg(&script)
        .arg("--arca")
        .arg(common::arca_bin())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn arca_agrees_with_python_tuf_on_every_scenario_but_the_known_gaps() {
    if common::engine() == "postgres" {
        eprintln!("engine-independent: run in the SQLite pass");
        return;
    }
    let (ok, out) = run_harness(&[]);
    assert!(ok, "the TUF differential harness failed:\n{out}");
    assert!(out.contains(" agree, "), "no summary line:\n{out}");
}

#[test]
fn the_known_gaps_list_fails_the_run_both_when_too_short_and_when_too_long() {
    let dir = tempfile::tempdir().unwrap();
    let gaps = |name: &str, lines: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, lines).unwrap();
        p
    };
    let arg = |p: &Path| p.to_str().unwrap().to_owned();
    // A scenario that differs today, not listed: a regression.
    let empty = gaps("empty.txt", "");
    let differing = "root_listing_an_unknown_key_type_is_refused";
    let (ok, out) = run_harness(&["--only", differing, "--known-gaps", &arg(&empty)]);
    assert!(
        !ok && out.contains(&format!("REGRESSION {differing}")),
        "{out}"
    );
    // A scenario that agrees, listed: the line must go.
    let agreeing = "timestamp_rollback_is_refused";
    let listed = gaps("listed.txt", &format!("{agreeing}  # not a gap\n"));
    let (ok, out) = run_harness(&["--only", agreeing, "--known-gaps", &arg(&listed)]);
    assert!(!ok && out.contains(&format!("FIXED {agreeing}")), "{out}");
    // And both as the list expects: passes.
    let right = gaps(
        "right.txt",
        &format!("{differing}  # python-tuf refuses the root\n"),
    );
    let (ok, out) = run_harness(&[
        "--only",
        differing,
        "--only",
        agreeing,
        "--known-gaps",
        &arg(&right),
    ]);
    assert!(ok, "{out}");
}
