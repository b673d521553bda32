//! A name's first release in a channel has no previous release: agents outside the step install
//! nothing, and an abort leaves the entry listed at 0%.

use super::*;

#[test]
fn first_release_rollout_reaches_only_its_step_and_aborts_to_zero() {
    let s = Server::start();
    let key = builder(&s);
    let reporter = s.reporter_token();
    let inside = agent(
        &s,
        &(0..)
            .map(|i| format!("f-{i}"))
            .find(|id| picked(id, NAME, 10))
            .unwrap(),
    );
    let outside = agent(
        &s,
        &(0..)
            .map(|i| format!("f-{i}"))
            .find(|id| !picked(id, NAME, 10))
            .unwrap(),
    );
    roll_out(&s, &key, "1.0.0", 1, &SLOW);
    let st = status(&s, NAME);
    assert!(st.get("previous").is_none(), "{st}");
    let es = entries(&s, NAME);
    assert_eq!(es.len(), 1, "{es:#?}");
    assert!(es[0].1["rollout"].get("previous").is_none(), "{es:#?}");

    let (code, pass_in) = pass(&s, &reporter, &inside, &[]);
    assert_eq!(
        (code, &pass_in["result"]),
        (0, &json!("installed")),
        "{pass_in}"
    );
    let (code, pass_out) = pass(&s, &reporter, &outside, &[]);
    assert_eq!(
        (code, &pass_out["result"]),
        (0, &json!("up_to_date")),
        "{pass_out}"
    );
    assert_eq!(current_of(&outside.dir), None);

    let st = act(&s, "abort", &[]);
    assert_eq!(st["state"], "aborted");
    let es = entries(&s, NAME);
    assert_eq!(es.len(), 1, "{es:#?}");
    assert_eq!(es[0].1["rollout"]["percent"], 0, "{es:#?}");
    assert_eq!(es[0].1["rollout"]["state"], "aborted", "{es:#?}");
    // No history row: there was nothing to go back to.
    let h = history(&s);
    assert!(h.iter().all(|r| r["action"] != "rollback"), "{h:#?}");
    // A fresh agent inside the old step installs nothing now.
    let late = agent(
        &s,
        &(0..)
            .map(|i| format!("g-{i}"))
            .find(|id| picked(id, NAME, 10))
            .unwrap(),
    );
    let (code, pass_late) = pass(&s, &reporter, &late, &[]);
    assert_eq!(
        (code, &pass_late["result"]),
        (0, &json!("up_to_date")),
        "{pass_late}"
    );
    assert_eq!(current_of(&late.dir), None);
    // The next release goes out plainly to everyone.
    release_fully(&s, &key, "2.0.0", 2);
    assert_plain_entry(&s, "2.0.0");
}
