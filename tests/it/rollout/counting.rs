//! Section 6: Reports that do not count: another version, `error`, the same agent twice; an agent's
//! latest word is the one that counts.

use super::*;

#[test]
fn only_each_agents_latest_word_on_the_rollouts_release_counts() {
    let s = Server::start();
    let key = builder(&s);
    let reporter = s.reporter_token();
    release_fully(&s, &key, "1.0.0", 1);
    let id = roll_out(&s, &key, "2.0.0", 2, &SLOW);
    let send = |agent: &str, version: Option<&str>, outcome: &str| {
        report(
            &s,
            &reporter,
            &report_body(agent, version, outcome, Some("1.0.0")),
        )
    };
    // Other versions: recorded, counted for nothing.
    for (agent, version, outcome) in [
        ("n-1", "1.0.0", "failed"),
        ("n-2", "1.0.0", "ok"),
        ("n-3", "3.0.0", "failed"),
        ("n-4", "2.0.0-rc1", "failed"),
    ] {
        let r = send(agent, Some(version), outcome);
        assert!(r.get("rollout").is_none(), "{agent} {version}: {r}");
    }
    // `error` reports, with the version or without: not counted.
    send("n-5", Some("2.0.0"), "error");
    send("n-6", None, "error");
    send("n-7", Some("2.0.0"), "error");
    assert_eq!(figures(&s), (0, 0));
    // The same agent failing twice is one failed agent.
    send("n-8", Some("2.0.0"), "failed");
    send("n-8", Some("2.0.0"), "failed");
    assert_eq!(figures(&s), (0, 1));
    // Failed, then ok: counts as ok. Ok, then error: still ok.
    send("n-9", Some("2.0.0"), "failed");
    send("n-9", Some("2.0.0"), "ok");
    send("n-9", Some("2.0.0"), "error");
    assert_eq!(figures(&s), (1, 1));
    // Two agents, not three: 50% failed, but below min_reports, so no halt.
    assert_eq!(status(&s, NAME)["state"], "running");
    let steps = status(&s, NAME)["steps"].clone();
    assert_eq!(
        steps,
        json!([{"step": 0, "percent": 10, "ok": 1, "failed": 1}])
    );
    // An ok agent turning failed changes the figures the other way.
    send("n-9", Some("2.0.0"), "failed");
    assert_eq!(figures(&s), (0, 2));
    assert_eq!(status(&s, NAME)["state"], "running");
    // The third agent is the one that decides: 2 of 3 failed.
    let r = send("n-10", Some("2.0.0"), "ok");
    assert_eq!(r["halted"], true, "{r}");
    assert_eq!(r["rollout"], id, "{r}");
    let halts = audit(&s, "rollout-halt");
    assert_eq!(halts.len(), 1);
    assert_eq!(
        (halts[0].2["ok"].clone(), halts[0].2["failed"].clone()),
        (json!(1), json!(2)),
        "{:?}",
        halts[0]
    );
    assert_plain_entry(&s, "1.0.0");
}
