//! Metadata leases on PostgreSQL (docs/architecture.md, "Concurrency", item 5): a server that
//! holds one answers polls from memory, so every publication through any server must take it
//! back before it commits. These tests try to make a server answer from memory what another
//! server has already replaced, and to make a publication wait on a lease nobody can give back.

use crate::common;

use common::cluster::Cluster;
use common::prometheus::metrics;
use common::{Server, wait_until};
use serde_json::Value;
use std::time::Duration;

/// The version of `channel`'s timestamp that `s` serves.
fn served(s: &Server, channel: &str) -> u64 {
    let (code, body) =
        crate::tuf_repo::get(&format!("{}/tuf/{channel}/metadata/timestamp.json", s.url));
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    v["signed"]["version"].as_u64().unwrap()
}

fn holds_lease(s: &Server) -> bool {
    metrics(s).get("arca_meta_lease") == Some(&1.0)
}

fn revocations(s: &Server) -> f64 {
    metrics(s)["arca_meta_lease_revocations_total"]
}

/// Waits until every server holds a lease (a new one is taken 100 ms after the last
/// publication), then has each read dev's timestamp under it, so that it answers from memory.
fn leased(servers: &[&Server]) -> Vec<u64> {
    for s in servers {
        assert!(
            wait_until(Duration::from_secs(20), || holds_lease(s)),
            "server {} took no metadata lease:\n{}",
            s.url,
            s.log()
        );
    }
    servers.iter().map(|s| served(s, "dev")).collect()
}

#[test]
fn a_server_answering_from_memory_never_misses_what_another_published() {
    let Some(c) = Cluster::start(2, "") else {
        return;
    };
    let (a, b) = (&c.servers[0], &c.servers[1]);
    let key = a.builder("ci", "app/*");
    let revoked = revocations(b);
    for i in 0..6 {
        let before = leased(&[a, b]);
        // Published through one server (each in turn), polled at once on both: the publication
        // took both leases back before it committed, so neither answers the old version.
        let (publisher, other) = if i % 2 == 0 { (a, b) } else { (b, a) };
        let f = publisher.file(&format!("f{i}.bin"), 1024, i as u8);
        publisher.push(&f, "app/lease", &format!("1.0.{i}"), &key);
        let newest = common::latest_meta(a, "dev", "timestamp").0;
        assert!(newest > before[0].max(before[1]), "{newest} {before:?}");
        assert_eq!(served(other, "dev"), newest, "the other server, round {i}");
        assert_eq!(served(publisher, "dev"), newest, "the publisher, round {i}");
    }
    assert!(
        revocations(b) >= revoked + 6.0,
        "server b gave back {} leases for 6 publications",
        revocations(b) - revoked
    );
}

#[test]
fn a_killed_lease_holder_does_not_hold_up_publishing() {
    let Some(mut c) = Cluster::start(2, "") else {
        return;
    };
    let key = c.servers[0].builder("ci", "app/*");
    leased(&[&c.servers[0], &c.servers[1]]);
    // SIGKILL: its session, and with it its lock, ends with its socket; were the lock kept,
    // the push would wait for it and fail after 15 s.
    c.servers[1].kill();
    let a = &c.servers[0];
    let before = served(a, "dev");
    let f = a.file("after-kill.bin", 1024, 9);
    a.push(&f, "app/lease", "2.0.0", &key);
    assert!(served(a, "dev") > before);
}

#[test]
fn a_server_whose_lease_session_is_ended_reads_the_database_until_it_has_a_new_one() {
    let Some(c) = Cluster::start(2, "") else {
        return;
    };
    let (a, b) = (&c.servers[0], &c.servers[1]);
    let key = a.builder("ci", "app/*");
    leased(&[a, b]);
    // The database ends every lease session (as a restart or an administrator would).
    let ended: i64 = a.db().one(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'arca metadata lease' AND datname = current_database()) t",
        params![],
    );
    assert_eq!(ended, 2, "one lease session per server");
    let f = a.file("ended.bin", 1024, 3);
    a.push(&f, "app/lease", "3.0.0", &key);
    let newest = common::latest_meta(a, "dev", "timestamp").0;
    assert_eq!(served(b, "dev"), newest);
    // Both connect again and take new leases, and answer the newest from memory.
    assert_eq!(leased(&[a, b]), vec![newest, newest]);
}
