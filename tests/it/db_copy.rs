//! `arca db copy` (docs/operations.md, "Moving to PostgreSQL"): a SQLite home with real history
//! copied into an empty PostgreSQL database serves from it with the same keys, root.json and
//! blobs: clients pulling before and after see the same, verified bytes; python-tuf accepts the
//! metadata; new rows take ids past the copied ones; the audit chain verifies. Refused, with
//! nothing written, into a database that holds a home, from a home already on PostgreSQL, and
//! while the home's server runs. PostgreSQL only (`ARCA_TEST_PG`).

use crate::common;

use std::path::Path;
use std::process::Output;

use common::{PgDatabase, Server, p};
use serde_json::Value;

/// The suite's cluster, or None (and a note) on the SQLite pass.
fn admin() -> Option<String> {
    let url = common::pg_admin_url();
    if url.is_none() {
        eprintln!("db_copy: skipped, the suite runs on SQLite (set ARCA_TEST_PG)");
    }
    url
}

/// `arca db copy --home HOME --to URL EXTRA...`.
fn copy(home: &Path, url: &str, extra: &[&str]) -> Output {
    std::process::Command::new(common::arca_bin())
        .args(["db", "copy", "--home", p(home), "--to", url])
        .args(extra)
        .env_remove("ARCA_DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// Whether the PostgreSQL database at `url` has any arca schema.
fn has_schema(url: &str) -> bool {
    let db = common::db::TestDb::postgres(url);
    let n: i64 = db.one(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema()",
        params![],
    );
    n > 0
}

/// `name@version` through staging to prod.
fn to_prod(s: &Server, name: &str, version: &str, approver: &Path) {
    let r = format!("{name}@{version}");
    s.ok(&["promote", &r, "--to", "staging"]);
    s.ok(&["approve", &r, "--channel", "prod", "--key", p(approver)]);
    s.ok(&["promote", &r, "--to", "prod"]);
}

#[test]
fn a_sqlite_home_moves_to_postgres_and_serves_the_same_repository() {
    let Some(admin) = admin() else { return };
    let mut s = Server::start_sqlite();
    assert!(s.home.join("arca.db").exists());
    let b = s.builder("builder", "app/*");
    let a = s.approver("approver", "prod");
    let f1 = s.file("a.bin", 20_000, 1);
    s.push(&f1, "app/a", "1.0.0", &b);
    to_prod(&s, "app/a", "1.0.0", &a);
    // A rollout in staging, a key rotation in dev, a signed audit checkpoint.
    let f2 = s.file("a2.bin", 21_000, 2);
    s.push(&f2, "app/a", "1.1.0", &b);
    let out = s.ok(&[
        "promote",
        "app/a@1.1.0",
        "--to",
        "staging",
        "--rollout",
        "10,100",
        "--step-interval",
        "1h",
        "--max-failure-rate",
        "0.2",
        "--min-reports",
        "3",
    ]);
    assert!(out.contains("rollout"), "{out}");
    s.ok(&[
        "trust",
        "rotate-online",
        "--channel",
        "dev",
        "--sign",
        p(&s.root_key()),
    ]);
    s.ok(&["audit", "checkpoint"]);
    let state = s.path("state");
    s.pull_ok("app/a", "prod", &s.path("before"), &state);
    let max_artifact: i64 = s.db().one("SELECT MAX(id) FROM artifacts", params![]);

    let pg = PgDatabase::create(&admin);
    // Refused while the server runs: it could write after the snapshot.
    let out = copy(&s.home, pg.url(), &[]);
    let line = common::failure_line(&["db", "copy"], &out);
    assert!(line.contains("in use"), "{line}");
    assert!(!has_schema(pg.url()), "a refused copy wrote the target");

    s.kill();
    let out = copy(&s.home, pg.url(), &["--json"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["tables"].as_array().unwrap().len(), 19, "{report}");
    assert!(report["rows"].as_i64().unwrap() > 50, "{report}");
    assert!(
        report["metadata_checked"].as_i64().unwrap() > 12,
        "{report}"
    );
    assert!(
        report["audit_checkpoints"].as_i64().unwrap() >= 1,
        "{report}"
    );
    assert_eq!(
        report["sequences"]["artifacts.id"].as_i64(),
        Some(max_artifact + 1),
        "{report}"
    );
    let toml = std::fs::read_to_string(s.home.join("arca.toml")).unwrap();
    assert!(
        toml.contains("[database]") && toml.contains(pg.url()),
        "{toml}"
    );

    // The same home, now on PostgreSQL: no init, the same keys, root.json and blobs.
    s.moved_to_database(pg.url());
    s.launch();
    let before = std::fs::read(s.path("before").join("a.bin")).unwrap();
    assert_eq!(before, std::fs::read(&f1).unwrap());
    s.pull_ok("app/a", "prod", &s.path("after"), &state);
    assert_eq!(
        std::fs::read(s.path("after").join("a.bin")).unwrap(),
        before
    );
    s.pull_ok("app/a", "prod", &s.path("fresh"), &s.path("fresh-state"));
    assert_eq!(
        std::fs::read(s.path("fresh").join("a.bin")).unwrap(),
        before
    );
    let (ok, log) = s.python_tuf("prod", "app/a/a.bin", &s.path("py"), &[]);
    assert!(ok, "{log}");

    // New rows take ids past the copied ones.
    let f3 = s.file("b.bin", 9_000, 3);
    s.push(&f3, "app/b", "1.0.0", &b);
    to_prod(&s, "app/b", "1.0.0", &a);
    let id: i64 = s
        .db()
        .one("SELECT id FROM artifacts WHERE name = 'app/b'", params![]);
    assert_eq!(id, max_artifact + 1);
    s.pull_ok("app/b", "prod", &s.path("b-out"), &state);
    assert_eq!(
        std::fs::read(s.path("b-out").join("b.bin")).unwrap(),
        std::fs::read(&f3).unwrap()
    );
    let v: Value = serde_json::from_str(&s.ok(&["audit", "verify", "--json"])).unwrap();
    assert!(
        v["entries"].as_i64().unwrap() > report["audit_entries"].as_i64().unwrap(),
        "{v}"
    );
}

#[test]
fn a_copy_into_a_database_holding_a_home_is_refused_and_writes_nothing() {
    let Some(admin) = admin() else { return };
    let mut s = Server::start_sqlite();
    s.kill();
    let pg = PgDatabase::create(&admin);
    let other = tempfile::tempdir().unwrap();
    let init = std::process::Command::new(common::arca_bin())
        .args([
            "init",
            "--home",
            p(&other.path().join("h")),
            "--database",
            pg.url(),
        ])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let db = common::db::TestDb::postgres(pg.url());
    let fingerprint = |db: &common::db::TestDb| -> Vec<i64> {
        ["trust", "audit", "tuf_metadata", "channels"]
            .iter()
            .map(|t| db.one(&format!("SELECT COUNT(*) FROM {t}"), params![]))
            .collect()
    };
    let before = fingerprint(&db);
    let toml = std::fs::read_to_string(s.home.join("arca.toml")).unwrap_or_default();

    let out = copy(&s.home, pg.url(), &[]);
    let line = common::failure_line(&["db", "copy"], &out);
    assert!(line.contains("already holds an arca home"), "{line}");
    assert_eq!(fingerprint(&db), before);
    assert_eq!(
        std::fs::read_to_string(s.home.join("arca.toml")).unwrap_or_default(),
        toml
    );
}

#[test]
fn a_home_already_on_postgres_is_not_copied() {
    let Some(admin) = admin() else { return };
    let mut s = Server::start();
    assert!(s.database_url().is_some());
    s.kill();
    let pg = PgDatabase::create(&admin);
    let out = copy(&s.home, pg.url(), &[]);
    let line = common::failure_line(&["db", "copy"], &out);
    assert!(line.contains("already runs on PostgreSQL"), "{line}");
    assert!(!has_schema(pg.url()), "a refused copy wrote the target");
}

#[test]
fn a_copy_into_a_database_with_other_tables_is_refused_before_migrating() {
    let Some(admin) = admin() else { return };
    let mut s = Server::start_sqlite();
    s.kill();
    let pg = PgDatabase::create(&admin);
    let db = common::db::TestDb::postgres(pg.url());
    db.batch("CREATE TABLE invoices (id BIGINT PRIMARY KEY)");
    let out = copy(&s.home, pg.url(), &[]);
    let line = common::failure_line(&["db", "copy"], &out);
    assert!(line.contains("not arca's (invoices)"), "{line}");
    let n: i64 = db.one(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema()",
        params![],
    );
    assert_eq!(n, 1, "a refused copy wrote the target");
}
