//! Three servers on one PostgreSQL database and one S3 bucket: a rollout's steps move once each,
//! whether one server leads the ticks (the election) or both tick at once (`[leader] always`:
//! the tick re-reads the rollout under its channel's lock, so a step another server has just
//! taken is not taken again).

use super::*;

/// Three steps, 2 s each: two advances and a completion, one report enough to move on.
const THREE_STEPS: Plan = Plan {
    steps: "10,50,100",
    interval: "2s",
    max_failure_rate: "0.5",
    min_reports: "1",
};

/// Rolls out 2.0.0 through A with B and C (joined) running too, reports one agent ok through
/// B, and waits for the rollout to complete; then each step moved exactly once.
fn each_step_moves_once(config: &str, both_lead: bool) {
    let Some(cluster) = common::cluster::Cluster::start(3, config) else {
        return;
    };
    let [a, b, c] = [0, 1, 2].map(|i| &cluster.servers[i]);
    let leaders = [a, b, c].map(crate::several_servers::leads);
    if both_lead {
        assert_eq!(leaders, [true, true, true], "[leader] always: all tick");
    } else {
        assert_eq!(
            leaders,
            [true, false, false],
            "the first server leads, the joined ones follow"
        );
    }
    let key = builder(a);
    let reporter = a.reporter_token();
    release_fully(a, &key, "1.0.0", 1);
    let id = roll_out(a, &key, "2.0.0", 2, &THREE_STEPS);
    let r = report(
        b,
        &reporter,
        &report_body("t-1", Some("2.0.0"), "ok", Some("2.0.0")),
    );
    assert_eq!(r["rollout"], id, "{r}");
    let st = wait_for("the rollout to complete", Duration::from_secs(30), || {
        let st = status(c, NAME);
        (st["state"] == "completed", st)
    });
    assert_eq!(st["percent"], 100, "{st}");
    // Ticks after the completion find nothing to move.
    std::thread::sleep(Duration::from_millis(600));
    let adv = audit(a, "rollout-advance");
    let from: Vec<_> = adv.iter().map(|e| e.2["from_step"].clone()).collect();
    assert_eq!(from, [json!(0), json!(1)], "one advance per step: {adv:#?}");
    let done = audit(a, "rollout-complete");
    assert_eq!(done.len(), 1, "{done:#?}");
    a.ok(&["audit", "verify"]);
    if !both_lead {
        // The follower's ticker never ran: every move is in the leader's log.
        assert!(a.log().contains("rollout advanced"), "{}", a.log());
        for s in [b, c] {
            assert!(!s.log().contains("rollout advanced"), "{}", s.log());
            assert!(!s.log().contains("rollout completed"), "{}", s.log());
        }
    }
}

#[test]
fn with_three_servers_the_leader_moves_each_step_once() {
    each_step_moves_once(FAST, false);
}

#[test]
fn every_server_leading_at_once_still_moves_each_step_once() {
    // All tick twenty times a second, so their ticks meet on every step.
    each_step_moves_once(
        "[rollout]\ntick = \"50ms\"\n[leader]\nalways = true\n",
        true,
    );
}
