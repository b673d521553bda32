//! Several servers on one PostgreSQL database: what one server publishes, every other serves
//! from its next poll on, so a client that alternates between them never sees a metadata
//! version go back (`service::reads::latest_cached`); and one of them, the leader, runs the
//! background work, which another takes over when it dies (`service::leader`).

use std::time::{Duration, Instant};

use crate::common;

use common::Server;
use common::prometheus::metrics;
use serde_json::Value;

/// `GET /readyz`: its status and JSON body.
pub(crate) fn readyz(s: &Server) -> (u16, Value) {
    let (code, body) = crate::tuf_repo::get(&format!("{}/readyz", s.url));
    let v = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)));
    (code, v)
}

/// Whether `s` says it leads, in /readyz and in /metrics (which must agree, unless the
/// answer changed between the two requests: then they are asked again).
pub(crate) fn leads(s: &Server) -> bool {
    let ask = || {
        let (code, r) = readyz(s);
        assert_eq!(code, 200, "a follower is ready too: {r}");
        r["leader"].as_bool().unwrap_or_else(|| panic!("{r}"))
    };
    loop {
        let leader = ask();
        let gauge = metrics(s)["arca_leader"];
        if ask() == leader {
            assert_eq!(
                gauge,
                f64::from(u8::from(leader)),
                "/readyz and arca_leader disagree"
            );
            return leader;
        }
    }
}

/// The newest timestamp of `channel` that `s` serves: (version, expires).
fn timestamp(s: &Server, channel: &str) -> (u64, chrono::DateTime<chrono::Utc>) {
    let (code, body) =
        crate::tuf_repo::get(&format!("{}/tuf/{channel}/metadata/timestamp.json", s.url));
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(v["signed"]["expires"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    (v["signed"]["version"].as_u64().unwrap(), expires)
}

/// The version of the timestamp `s` serves for `channel`, fetched over HTTP.
fn timestamp_version(s: &Server, channel: &str) -> u64 {
    let (code, body) =
        crate::tuf_repo::get(&format!("{}/tuf/{channel}/metadata/timestamp.json", s.url));
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    v["signed"]["version"].as_u64().unwrap()
}

#[test]
fn polls_alternating_between_two_servers_never_go_back() {
    if common::pg_admin_url().is_none() {
        eprintln!("ARCA_TEST_PG unset: several servers need PostgreSQL");
        return;
    }
    let a = Server::start();
    let b = a.peer();
    let key = a.builder("ci", "app/*");
    let file = a.file("f.bin", 4096, 7);
    // Both have served (and cached) dev's timestamp before anything changes.
    let mut seen = timestamp_version(&a, "dev");
    assert_eq!(timestamp_version(&b, "dev"), seen);
    for i in 0..5 {
        a.push(&file, "app/x", &format!("1.0.{i}"), &key);
        // The push through A committed a new timestamp: B's next poll serves it, not the
        // one B has in memory; and neither goes back.
        let from_b = timestamp_version(&b, "dev");
        let from_a = timestamp_version(&a, "dev");
        assert!(
            from_b > seen,
            "push {i}: B served timestamp v{from_b} after A published past v{seen}"
        );
        assert_eq!(from_a, from_b, "push {i}: both serve the newest timestamp");
        seen = from_a;
    }
}

/// Timestamps live 4 s (re-signed with 2 s left), looked at twice a second; the leader election
/// keeps its default retry.
const SHORT_LIVED: &str =
    "[tuf]\ntimestamp_expiry = \"4s\"\nsnapshot_expiry = \"60s\"\nrefresh_interval = \"500ms\"\n";

#[test]
fn one_server_leads_and_when_it_is_killed_the_other_takes_over_and_re_signs() {
    if common::pg_admin_url().is_none() {
        eprintln!("ARCA_TEST_PG unset: several servers need PostgreSQL");
        return;
    }
    let a = Server::start_with(Some(SHORT_LIVED), &[]);
    let mut b = a.peer();
    // B looks five times as often as A: were a follower to refresh, B would re-sign first.
    b.kill();
    let config = b.home.join("arca.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("\"500ms\"", "\"100ms\"")).unwrap();
    b.launch();
    // A took the lock at its start, before it served; B found it held.
    let (la, lb) = (leads(&a), leads(&b));
    assert!(la ^ lb, "exactly one of two servers leads: A {la}, B {lb}");
    // The lock is held by one session, the leader's own (not a pooled connection).
    let holders: i64 = a.db().one(
        "SELECT COUNT(*) FROM pg_locks l JOIN pg_stat_activity s ON s.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND s.application_name = 'arca leader' \
         AND s.datname = current_database()",
        &[],
    );
    assert_eq!(holders, 1);
    let (mut leader, survivor) = if la { (a, b) } else { (b, a) };
    // The follower stays a follower while the leader lives (it tries every 2 s).
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(3) {
        assert!(
            !leads(&survivor),
            "both lead; survivor log:\n{}",
            survivor.log()
        );
        assert!(leads(&leader));
    }
    // The leader keeps dev's timestamp fresh: the version moves on, twice; the follower
    // re-signs nothing (its refresh rounds only check its clock).
    for _ in 0..2 {
        let (before, _) = timestamp(&survivor, "dev");
        assert!(
            common::wait_until(Duration::from_secs(10), || timestamp(&survivor, "dev").0
                > before),
            "the leader did not re-sign dev's timestamp"
        );
    }
    assert!(leader.log().contains("re-signed expiring metadata"));
    assert!(
        !survivor.log().contains("re-signed expiring metadata"),
        "a follower re-signed: {}",
        survivor.log()
    );

    leader.kill();
    let killed = Instant::now();
    assert!(
        common::wait_until(Duration::from_secs(10), || leads(&survivor)),
        "the survivor did not take over within 10 s; its log:\n{}",
        survivor.log()
    );
    eprintln!("took over {:?} after the kill", killed.elapsed());
    assert!(
        survivor.log().contains("became leader"),
        "{}",
        survivor.log()
    );

    // Only the survivor can sign now: the timestamp keeps moving on and never expires.
    let (mut seen, _) = timestamp(&survivor, "dev");
    for round in 0..3 {
        let moved = common::wait_until(Duration::from_secs(10), || {
            let (v, expires) = timestamp(&survivor, "dev");
            assert!(
                expires > chrono::Utc::now(),
                "round {round}: v{v} expired at {expires}"
            );
            v > seen
        });
        assert!(
            moved,
            "round {round}: the survivor did not re-sign past v{seen}; its log:\n{}",
            survivor.log()
        );
        seen = timestamp(&survivor, "dev").0;
    }
    assert!(
        survivor.log().contains("re-signed expiring metadata"),
        "{}",
        survivor.log()
    );
}
