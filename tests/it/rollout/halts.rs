//! Section 2: Failures halt the rollout at the report that crosses the ceiling and roll the channel
//! forward to the previous release; agents that took the new release go back on their next pass.

use super::*;

/// Fails on 2.0.0 in an agent directory that holds a file `unhealthy`, passes otherwise.
const HEALTH: &str = "test ! -e \"$ARCA_DIR/unhealthy\" || test \"$ARCA_VERSION\" != 2.0.0";

#[test]
fn failures_halt_the_rollout_and_roll_the_channel_back() {
    let s = Server::start();
    let key = builder(&s);
    let reporter = s.reporter_token();
    // Agents the rule picks at 50%: 4 healthy, 3 unhealthy on 2.0.0; 2 it does not pick.
    let (mut healthy, mut sick, mut bystanders) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0.. {
        let id = format!("h-{i}");
        if picked(&id, NAME, 50) {
            if healthy.len() < 4 {
                healthy.push(agent(&s, &id));
            } else if sick.len() < 3 {
                sick.push(agent(&s, &id));
            }
        } else if bystanders.len() < 2 {
            bystanders.push(agent(&s, &id));
        }
        if healthy.len() == 4 && sick.len() == 3 && bystanders.len() == 2 {
            break;
        }
    }
    let health = ["--health-cmd", HEALTH];
    release_fully(&s, &key, "1.0.0", 1);
    let everyone: Vec<&Agent> = healthy.iter().chain(&sick).chain(&bystanders).collect();
    for a in &everyone {
        let (code, pass) = pass(&s, &reporter, a, &health);
        assert_eq!((code, &pass["version"]), (0, &json!("1.0.0")), "{pass}");
    }
    for a in &sick {
        std::fs::write(a.dir.join("unhealthy"), "").unwrap();
    }
    let id = roll_out(
        &s,
        &key,
        "2.0.0",
        2,
        &Plan {
            steps: "50,100",
            ..SLOW
        },
    );
    let actor = format!("rollout:{id}");

    for a in &healthy {
        let (code, pass) = pass(&s, &reporter, a, &health);
        assert_eq!(code, 0, "{pass}");
        assert_eq!(pass["result"], "installed", "{pass}");
        assert_eq!(current_of(&a.dir).as_deref(), Some("2.0.0"));
    }
    for a in &bystanders {
        let (code, pass) = pass(&s, &reporter, a, &health);
        assert_eq!((code, &pass["result"]), (0, &json!("up_to_date")), "{pass}");
        assert_eq!(current_of(&a.dir).as_deref(), Some("1.0.0"));
    }
    // 1 failed of 5 is 20%: not above the ceiling.
    let (code, pass1) = pass(&s, &reporter, &sick[0], &health);
    assert_eq!((code, &pass1["result"]), (6, &json!("reverted")), "{pass1}");
    assert_eq!(current_of(&sick[0].dir).as_deref(), Some("1.0.0"));
    let st = status(&s, NAME);
    assert_eq!(
        st["state"], "running",
        "halted at exactly the ceiling: {st}"
    );
    assert_eq!(
        (st["figures"]["ok"].clone(), st["figures"]["failed"].clone()),
        (json!(4), json!(1))
    );
    assert!(audit(&s, "rollout-halt").is_empty());
    let history_before = history(&s).len();

    // 2 of 6 is 33%: the report halts it at once.
    let (code, pass2) = pass(&s, &reporter, &sick[1], &health);
    assert_eq!((code, &pass2["result"]), (6, &json!("reverted")), "{pass2}");
    let st = status(&s, NAME);
    assert_eq!(st["state"], "halted", "{st}");
    assert_eq!(st["id"], id);
    assert!(
        st["reason"].as_str().unwrap().contains("2 of 6"),
        "the reason does not give the figures: {st}"
    );
    assert!(st.get("next").is_none(), "{st}");

    // History: one rollback to 1.0.0 by the rollout itself.
    let h = history(&s);
    assert_eq!(h.len(), history_before + 1, "{h:#?}");
    let last = h.last().unwrap();
    assert_eq!(last["version"], "1.0.0", "{last}");
    assert_eq!(last["action"], "rollback", "{last}");
    assert_eq!(last["actor"], actor.as_str(), "{last}");
    // The targets name 1.0.0 alone, with no rollout.
    assert_plain_entry(&s, "1.0.0");
    // The audit entry carries the figures.
    let halts = audit(&s, "rollout-halt");
    assert_eq!(halts.len(), 1, "{halts:#?}");
    let (who, subject, details, _) = &halts[0];
    assert_eq!(who, &actor);
    assert!(
        subject.contains("2.0.0") && subject.contains("1.0.0"),
        "{subject}"
    );
    assert_eq!(details["ok"], 4, "{details}");
    assert_eq!(details["failed"], 2, "{details}");
    assert_eq!(details["failure_rate"], "0.3333", "{details}");
    assert_eq!(details["max_failure_rate"], "0.2000", "{details}");
    assert_eq!(details["min_reports"], 3, "{details}");
    assert_eq!(
        (&details["step"], &details["percent"]),
        (&json!(0), &json!(50)),
        "{details}"
    );

    // More failures on the halted release count for nothing and halt nothing again.
    let r = report(
        &s,
        &reporter,
        &report_body("late", Some("2.0.0"), "failed", Some("1.0.0")),
    );
    assert_eq!(r["halted"], false, "{r}");
    assert!(r.get("rollout").is_none(), "{r}");
    assert_eq!(audit(&s, "rollout-halt").len(), 1);

    // The last sick agent never gets 2.0.0; the healthy ones go back to 1.0.0.
    let (code, pass3) = pass(&s, &reporter, &sick[2], &health);
    assert_eq!(
        (code, &pass3["result"]),
        (0, &json!("up_to_date")),
        "{pass3}"
    );
    for a in &healthy {
        let (code, pass) = pass(&s, &reporter, a, &health);
        assert_eq!(code, 0, "{pass}");
        assert_eq!(pass["result"], "installed", "{pass}");
        assert_eq!(pass["version"], "1.0.0", "{pass}");
        assert_eq!(current_of(&a.dir).as_deref(), Some("1.0.0"));
    }
    let seen = fleet(&s, &reporter);
    for a in &everyone {
        assert_eq!(seen[&a.id].as_deref(), Some("1.0.0"), "agent {}", a.id);
    }
    s.ok(&["audit", "verify"]);
}
