//! Several servers on one PostgreSQL database (the first piece of running several; the rest is
//! still to build): what one server publishes, every other serves from its next poll on, so a
//! client that alternates between them never sees a metadata version go back
//! (`service::reads::latest_cached`).

use crate::common;

use common::Server;
use serde_json::Value;

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
