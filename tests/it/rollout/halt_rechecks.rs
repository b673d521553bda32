//! A halt is a rollback: it must not return the channel to a release that `arca rollback` itself
//! refuses (guarantee 4: re-checked at the moment it happens).

use super::*;

/// `arca pull NAME --channel staging` into a fresh directory: (success, stderr).
fn pull(s: &Server, tag: &str) -> (bool, String) {
    let args = s.pull_args(
        NAME,
        CH,
        &s.path(&format!("pull-{tag}")),
        &s.path(&format!("pull-state-{tag}")),
    );
    let out = s
        .arca()
        .args(args.iter().map(String::as_str))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn halt_does_not_roll_back_to_a_release_whose_builder_key_was_revoked() {
    let s = Server::start();
    let old = s.builder("old", "app/*");
    let new = s.builder("new", "app/*");
    let reporter = s.reporter_token();
    // 1.0.0 was built with a key that is then revoked; 2.0.0, the fix, goes out in phases.
    release_fully(&s, &old, "1.0.0", 1);
    let old_id = s.ok(&["key", "id", p(&old)]).trim().to_owned();
    s.ok(&["trust", "revoke", &old_id, "--sign", p(&s.root_key())]);
    let (ok, err) = pull(&s, "before");
    assert!(!ok && err.contains("revoked"), "{err}");
    let id = roll_out(
        &s,
        &new,
        "2.0.0",
        2,
        &Plan {
            max_failure_rate: "0",
            min_reports: "1",
            ..SLOW
        },
    );
    assert_eq!(pull(&s, "during"), (true, String::new()));
    // An operator may not return the channel to 1.0.0...
    let line = refused(
        &s,
        &["rollback", NAME, "--channel", CH, "--to", "1.0.0"],
        &["1.0.0", "build signature"],
    );
    assert!(line.contains("rollback_target_invalid"), "{line}");
    // ...and neither may a failed report.
    let r = report(
        &s,
        &reporter,
        &report_body("k-1", Some("2.0.0"), "failed", Some("2.0.0")),
    );
    assert_eq!(r["rollout"], id, "{r}");
    // The rollout stops all the same...
    assert_eq!(status(&s, NAME)["state"], "halted");
    // BUG (src/service/rollout.rs `halt_tx`, also reached by `abort`): the previous release is
    // made current again without the build-signature check `rollback` does, so the channel now
    // serves 1.0.0, which `arca rollback` refused a moment ago and which every client refuses.
    let h = history(&s);
    let last = h.last().unwrap();
    assert_ne!(
        (&last["action"], &last["version"]),
        (&json!("rollback"), &json!("1.0.0")),
        "the halt rolled {CH} back to 1.0.0, whose only build key is revoked: {h:#?}"
    );
    let (ok, err) = pull(&s, "after");
    assert!(
        ok,
        "after the halt, {CH} serves a release clients refuse: {err}"
    );
}
