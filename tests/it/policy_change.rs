//! Policy changes and the releases already in a channel (docs/policy.md "Changing a policy"):
//! arca's client re-checks the channel's newest policy on every pull, so a stricter policy
//! would strand the current release. `arca policy set` refuses such a change (naming the
//! releases) unless `--force`; a statement about a current release republishes its target
//! entry, so the approval the stricter policy asks for repairs it; promoting a current
//! release the policy now refuses fails.

use crate::common;

use std::path::PathBuf;

use common::{Server, latest_meta};

const NAME: &str = "app/x";
const TARGET: &str = "app/x/x-1.0.0.bin";

use crate::common::p;

/// A server with app/x@1.0.0 current in prod under the default policy (one approval).
fn prod_release() -> (Server, PathBuf, PathBuf) {
    let s = Server::start();
    let b = s.builder("builder", "app/*");
    let a1 = s.approver("approver1", "prod");
    let a2 = s.approver("approver2", "prod");
    let file = s.file("x-1.0.0.bin", 30_000, 7);
    s.push(&file, NAME, "1.0.0", &b);
    s.ok(&["promote", "app/x@1.0.0", "--to", "staging"]);
    s.ok(&[
        "approve",
        "app/x@1.0.0",
        "--channel",
        "prod",
        "--key",
        p(&a1),
    ]);
    s.ok(&["promote", "app/x@1.0.0", "--to", "prod"]);
    (s, a2, file)
}

fn two_approvals(s: &Server) -> PathBuf {
    let f = s.path("two-approvals.toml");
    std::fs::write(
        &f,
        "from = \"staging\"\n[require_approvals]\nthreshold = 2\n",
    )
    .unwrap();
    f
}

#[test]
fn stricter_policy_that_strands_the_current_release_needs_force_and_an_approval_repairs_it() {
    let (s, a2, file) = prod_release();
    let state = s.path("state");
    s.pull_ok(NAME, "prod", &s.path("out0"), &state);
    let py_state = s.path("py-state");
    std::fs::create_dir_all(&py_state).unwrap();
    let (ok, log) = s.python_tuf(
        "prod",
        TARGET,
        &s.path("py0"),
        &["--metadata-dir", p(&py_state)],
    );
    assert!(ok, "{log}");

    // Without --force: refused, naming the release and the rule it would fail; nothing changes.
    let policy = two_approvals(&s);
    let before = s.state();
    let line = s.fails(&[
        "policy",
        "set",
        "prod",
        p(&policy),
        "--sign",
        p(&s.root_key()),
    ]);
    assert!(line.contains("strand"), "{line}");
    assert!(line.contains("app/x@1.0.0"), "{line}");
    assert!(line.contains("require_approvals"), "{line}");
    assert!(line.contains("--force"), "{line}");
    assert_eq!(s.state(), before, "a refused policy change changed state");
    assert!(
        s.ok(&["policy", "show", "prod"]).contains("threshold = 1"),
        "the old policy must still hold"
    );

    // With --force: accepted, the stranded release listed, and clients now refuse it by name.
    let out = s.ok(&[
        "policy",
        "set",
        "prod",
        p(&policy),
        "--sign",
        p(&s.root_key()),
        "--force",
    ]);
    assert!(out.contains("STRANDED app/x@1.0.0"), "{out}");
    assert!(out.contains("require_approvals"), "{out}");
    let line = s.pull_fails(NAME, "prod", &s.path("out1"), &state);
    assert!(line.contains("require_approvals"), "{line}");
    assert!(common::list_files(&s.path("out1")).is_empty());

    // Promoting the current release again: it fails now, and says so with a non-zero exit.
    let out = s
        .arca()
        .args(["promote", "app/x@1.0.0", "--to", "prod"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "exit 0 for a refused release: {stdout}"
    );
    assert!(stdout.contains("already current"), "{stdout}");
    assert!(stdout.contains("FAIL"), "{stdout}");

    // A second approval republishes the release's entry (new targets, snapshot, timestamp,
    // audited) and repairs it for arca's client; python-tuf follows the new versions.
    let (tv, _) = latest_meta(&s, "prod", "targets");
    let (sv, _) = latest_meta(&s, "prod", "snapshot");
    let (tsv, _) = latest_meta(&s, "prod", "timestamp");
    s.ok(&[
        "approve",
        "app/x@1.0.0",
        "--channel",
        "prod",
        "--key",
        p(&a2),
    ]);
    assert_eq!(latest_meta(&s, "prod", "targets").0, tv + 1);
    assert!(latest_meta(&s, "prod", "snapshot").0 > sv);
    assert!(latest_meta(&s, "prod", "timestamp").0 > tsv);
    let details: String = s.db().one(
        "SELECT details FROM audit WHERE action = 'approve' ORDER BY seq DESC LIMIT 1",
        params![],
    );
    assert!(
        details.contains("republished") && details.contains(&format!("{}", tv + 1)),
        "{details}"
    );
    let msg = s.pull_ok(NAME, "prod", &s.path("out2"), &state);
    assert!(msg.contains("verified app/x@1.0.0"), "{msg}");
    assert_eq!(
        std::fs::read(s.path("out2/x-1.0.0.bin")).unwrap(),
        std::fs::read(&file).unwrap()
    );
    let (ok, log) = s.python_tuf(
        "prod",
        TARGET,
        &s.path("py1"),
        &["--metadata-dir", p(&py_state)],
    );
    assert!(ok, "{log}");
    let trusted: serde_json::Value =
        serde_json::from_slice(&std::fs::read(py_state.join("targets.json")).unwrap()).unwrap();
    assert_eq!(
        trusted["signed"]["version"],
        tv + 1,
        "python-tuf kept old targets"
    );

    // And promoting it again is a plain "already current" that succeeds.
    let out = s.ok(&["promote", "app/x@1.0.0", "--to", "prod"]);
    assert!(out.contains("already current"), "{out}");
}

#[test]
fn a_policy_that_strands_nothing_needs_no_force() {
    let (s, _, _) = prod_release();
    // Staging's release has a build signature and came from dev: a stricter staging policy
    // it still meets is accepted as before, and lists nothing.
    let f = s.path("staging.toml");
    std::fs::write(
        &f,
        "from = \"dev\"\n[require_build_signature]\nthreshold = 1\n",
    )
    .unwrap();
    let out = s.ok(&[
        "policy",
        "set",
        "staging",
        p(&f),
        "--sign",
        p(&s.root_key()),
    ]);
    assert!(out.contains("policy of staging set"), "{out}");
    assert!(!out.contains("STRANDED"), "{out}");
}
