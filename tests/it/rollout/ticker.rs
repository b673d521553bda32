//! Section 3: The ticker: waits for reports after the interval, advances, holds the last step a full
//! interval, completes; the entry is then plain.

use super::*;

#[test]
fn ticker_advances_and_completes_once_reports_allow() {
    let mut s = Server::start_with(Some(FAST), &[]);
    let key = builder(&s);
    let reporter = s.reporter_token();
    release_fully(&s, &key, "1.0.0", 1);
    let id = roll_out(
        &s,
        &key,
        "2.0.0",
        2,
        &Plan {
            interval: "2s",
            max_failure_rate: "0.5",
            min_reports: "1",
            ..SLOW
        },
    );
    let actor = format!("rollout:{id}");
    // The interval passes without a report: it waits for one, at 10%.
    let st = wait_for(
        "the rollout to wait for reports",
        Duration::from_secs(15),
        || {
            let st = status(&s, NAME);
            let waiting = st["next"]
                .as_str()
                .is_some_and(|n| n.contains("reports needed"));
            (waiting, st)
        },
    );
    assert_eq!(
        (st["step"].clone(), st["percent"].clone()),
        (json!(0), json!(10)),
        "{st}"
    );
    // Let the ticker look a few times more: nothing moves without a report.
    std::thread::sleep(Duration::from_millis(800));
    let st = status(&s, NAME);
    assert_eq!(
        (st["state"].clone(), st["step"].clone()),
        (json!("running"), json!(0)),
        "{st}"
    );
    assert!(audit(&s, "rollout-advance").is_empty());
    // A restart keeps the rollout, and the new process's ticker takes over.
    s.kill();
    s.launch();
    assert_eq!(status(&s, NAME)["id"], id);

    let r = report(
        &s,
        &reporter,
        &report_body("t-1", Some("2.0.0"), "ok", Some("2.0.0")),
    );
    assert_eq!(r["rollout"], id, "{r}");
    assert_eq!(r["halted"], false, "{r}");
    let st = wait_for("the rollout to complete", Duration::from_secs(20), || {
        let st = status(&s, NAME);
        (st["state"] == "completed", st)
    });
    assert_eq!(st["percent"], 100, "{st}");
    assert!(st.get("next").is_none(), "{st}");

    let adv = audit(&s, "rollout-advance");
    let done = audit(&s, "rollout-complete");
    assert_eq!((adv.len(), done.len()), (1, 1), "{adv:#?} {done:#?}");
    assert_eq!(adv[0].0, actor);
    assert_eq!(done[0].0, actor);
    assert_eq!(adv[0].2["percent"], 100, "{:?}", adv[0]);
    assert_eq!(adv[0].2["forced"], false, "{:?}", adv[0]);
    // The last step held its interval before completing (the server keeps times to the
    // second, so that is what can be checked: a completion at the next tick shows as 0s or 1s).
    let held = parse_time(&done[0].3) - parse_time(&adv[0].3);
    assert!(
        held >= chrono::Duration::seconds(2),
        "completed {held} after the last step began, before its 2s interval"
    );
    assert_plain_entry(&s, "2.0.0");
    // Completing changes what runs nowhere: no history row.
    let h = history(&s);
    assert_eq!(h.last().unwrap()["version"], "2.0.0");
    assert_eq!(h.last().unwrap()["action"], "promote", "{h:#?}");
}
