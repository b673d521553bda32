//! Section 7: Conditional polling

use super::*;

#[test]
fn idle_polling_is_conditional_and_a_new_release_is_picked_up() {
    let r = Rig::new();
    r.push("1.0.0", vec![]);
    let mut agent = r.spawn(&["--interval", "100ms"], "agent.log");
    wait_for(Duration::from_secs(30), "1.0.0 to be installed", || {
        r.current().as_deref() == Some("1.0.0")
    });
    wait_for(Duration::from_secs(10), "the agent's report", || {
        agent_row(&r.s, "dev", AGENT).is_some()
    });

    let not_modified = r#"arca_http_responses_total{class="3xx"}"#;
    let ok = r#"arca_http_responses_total{class="2xx"}"#;
    // Settled: the first pass after an install fetches the timestamp without an ETag; from the
    // first 304 on, an idle agent should ask nothing else.
    let nm_start = metric(&r.s, not_modified);
    wait_for(Duration::from_secs(10), "a first 304", || {
        metric(&r.s, not_modified) > nm_start
    });
    let (nm0, ok0) = (metric(&r.s, not_modified), metric(&r.s, ok));
    let mut polls = 1.0;
    wait_for(Duration::from_secs(20), "ten 304 answers", || {
        polls += 1.0;
        metric(&r.s, not_modified) - nm0 >= 10.0
    });
    let nm = metric(&r.s, not_modified) - nm0;
    // Every /metrics request is a 2xx too: those are not the agent's.
    let agent_ok = metric(&r.s, ok) - ok0 - polls;
    assert!(
        agent_ok <= 1.0,
        "an idle agent made {agent_ok} full requests for {nm} conditional ones"
    );

    let pushed = Instant::now();
    r.push("2.0.0", vec![]);
    wait_for(Duration::from_secs(20), "2.0.0 to be picked up", || {
        r.current().as_deref() == Some("2.0.0")
    });
    let took = pushed.elapsed();
    wait_for(Duration::from_secs(10), "the report of 2.0.0", || {
        agent_row(&r.s, "dev", AGENT).is_some_and(|row| row["current"] == "2.0.0")
    });
    agent.kill9();
    check_invariants(&r.dir).unwrap();
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[test]
fn a_server_answering_304_cannot_freeze_a_polling_agent() {
    // The timestamp expires after 15 s and the server does not re-sign it: an agent that keeps
    // getting 304s must notice that what it trusts went stale, and say so. (At 6 s, a loaded
    // CI machine once took longer than that from the push to the agent's first fetch, so the
    // agent never installed 1.0.0 at all.)
    let s = Server::start_with(
        Some("[tuf]\ntimestamp_expiry = \"15s\"\nrefresh_interval = \"1h\"\n"),
        &[],
    );
    let r = Rig::with(s);
    r.push("1.0.0", vec![]);
    let mut agent = r.spawn(&["--interval", "100ms"], "agent.log");
    wait_for(Duration::from_secs(20), "1.0.0 to be installed", || {
        r.current().as_deref() == Some("1.0.0")
    });
    wait_for(
        Duration::from_secs(45),
        "an error report about expiry",
        || {
            agent_row(&r.s, "dev", AGENT).is_some_and(|row| {
                row["outcome"] == "error" && row["message"].as_str().unwrap().contains("expired")
            })
        },
    );
    assert_eq!(r.current().as_deref(), Some("1.0.0"));
    // Fresh metadata: the agent moves on.
    r.push("2.0.0", vec![]);
    wait_for(Duration::from_secs(20), "2.0.0 to be installed", || {
        r.current().as_deref() == Some("2.0.0")
    });
    agent.kill9();
    check_invariants(&r.dir).unwrap();
}
