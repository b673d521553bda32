//! Section 1: A hundred agents at 10%: exactly the agents the bucket rule picks take the new release,
//! the others install the previous one, and the next rollout of the name picks the same agents.

use super::*;

#[test]
fn hundred_agents_at_ten_percent_follow_the_bucket_rule() {
    let s = Server::start();
    let key = builder(&s);
    let reporter = s.reporter_token();
    let fleet_of = agents(&s, "agent", 100);
    let chosen: BTreeSet<String> = fleet_of
        .iter()
        .filter(|a| picked(&a.id, NAME, 10))
        .map(|a| a.id.clone())
        .collect();
    assert!(
        (7..=13).contains(&chosen.len()),
        "the rule picks {} of 100 at 10% for {NAME}: not a 10% spread",
        chosen.len()
    );

    release_fully(&s, &key, "1.0.0", 1);
    let id = roll_out(&s, &key, "2.0.0", 2, &SLOW);
    let es = entries(&s, NAME);
    assert_eq!(es.len(), 2, "{es:#?}");

    // First passes on empty directories: the chosen install 2.0.0, the others 1.0.0 from the
    // previous entry.
    let results = passes(&s, &reporter, &fleet_of, &[]);
    let mut took_new = BTreeSet::new();
    for (a, (code, pass)) in fleet_of.iter().zip(&results) {
        assert_eq!(*code, 0, "agent {}: {pass}", a.id);
        assert_eq!(pass["result"], "installed", "agent {}: {pass}", a.id);
        let running = current_of(&a.dir);
        assert_eq!(
            running.as_deref(),
            pass["version"].as_str(),
            "agent {}",
            a.id
        );
        match running.as_deref() {
            Some("2.0.0") => {
                took_new.insert(a.id.clone());
            }
            Some("1.0.0") => {}
            other => panic!("agent {} runs {other:?}", a.id),
        }
    }
    assert_eq!(
        took_new, chosen,
        "agents that took 2.0.0 are not the ones the bucket rule picks"
    );
    // The server saw the same: one ok per chosen agent on the rollout's release, and every
    // agent's last word names what it runs.
    let st = status(&s, NAME);
    assert_eq!(st["id"], id);
    assert_eq!(st["percent"], 10);
    assert_eq!(st["figures"]["ok"], chosen.len() as u64, "{st}");
    assert_eq!(st["figures"]["failed"], 0, "{st}");
    let seen = fleet(&s, &reporter);
    assert_eq!(seen.len(), 100, "{seen:?}");
    for (agent, running) in &seen {
        let want = if chosen.contains(agent) {
            "2.0.0"
        } else {
            "1.0.0"
        };
        assert_eq!(running.as_deref(), Some(want), "agent {agent}");
    }

    // A new rollout of the name at 10% picks the same agents; the others keep 1.0.0, the
    // release they ran, not 2.0.0 that only the first 10% ever ran.
    let id3 = roll_out(&s, &key, "3.0.0", 3, &SLOW);
    assert_ne!(id3, id);
    let st = status(&s, NAME);
    assert_eq!(st["previous"], "1.0.0", "{st}");
    let results = passes(&s, &reporter, &fleet_of, &[]);
    let mut took_new = BTreeSet::new();
    for (a, (code, pass)) in fleet_of.iter().zip(&results) {
        assert_eq!(*code, 0, "agent {}: {pass}", a.id);
        match current_of(&a.dir).as_deref() {
            Some("3.0.0") => {
                assert_eq!(pass["result"], "installed", "{pass}");
                took_new.insert(a.id.clone());
            }
            Some("1.0.0") => assert_eq!(pass["result"], "up_to_date", "{pass}"),
            other => panic!("agent {} runs {other:?} ({pass})", a.id),
        }
    }
    assert_eq!(took_new, chosen, "the second rollout picked other agents");
    let (ok, failed) = figures(&s);
    assert_eq!((ok, failed), (chosen.len() as u64, 0));
    // The rollout was superseded, not completed or halted.
    let c = s.db();
    let first: String = c.one(
        "SELECT state FROM rollouts WHERE id = ?1",
        params![id as i64],
    );
    assert_eq!(first, "superseded");
}
