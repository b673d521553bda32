//! Expand and contract on PostgreSQL (`db::schema::COMPATIBLE_FROM`): during a rolling upgrade
//! the database is already migrated by the new binary while servers on the previous one keep
//! serving and restarting beside it; once a contract step has run, the previous binary refuses
//! to serve instead of reading a schema it does not know.

use crate::common;

use common::Server;
use std::process::{Command, Stdio};

/// `arca serve` on `s`'s home, expected to stop at once: its exit status and stderr.
fn serve_refused(s: &Server) -> (Option<i32>, String) {
    let out = Command::new(common::arca_bin())
        .args(["serve", "--home"])
        .arg(&s.home)
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_newer_schema_is_served_until_a_contract_step_says_otherwise() {
    if common::pg_admin_url().is_none() {
        eprintln!("ARCA_TEST_PG unset: expand and contract is for PostgreSQL");
        return;
    }
    let mut s = Server::start();
    let db = s.db();
    let known: i64 = db.one("SELECT version FROM arca_schema", params![]);
    let floor: i64 = db.one("SELECT compatible_from FROM arca_schema", params![]);
    assert!(
        floor >= 1 && floor <= known,
        "the migrating binary records the oldest compatible schema: {floor} of {known}"
    );
    s.kill();

    // A newer binary migrated the database with an expand step (the floor stays): this binary
    // starts, serves and warns.
    db.execute("UPDATE arca_schema SET version = ?1", params![known + 1]);
    s.launch();
    let (code, _) = crate::tuf_repo::get(&format!("{}/tuf/dev/metadata/timestamp.json", s.url));
    assert_eq!(code, 200);
    assert!(s.log().contains("newer arca schema"), "{}", s.log());
    s.kill();

    // A contract step raised the floor past this binary: it refuses, saying why.
    db.execute(
        "UPDATE arca_schema SET compatible_from = ?1",
        params![known + 1],
    );
    let (code, err) = serve_refused(&s);
    assert_ne!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!("schema {}", known + 1)) && err.contains("newer arca"),
        "{err}"
    );
}
