//! `arca backup` and `arca restore`: a copy taken while the server runs, more releases that
//! clients see, then a restore into a fresh home, after which every channel's metadata is
//! re-signed past what the clients saw, so the same clients (their trusted metadata kept)
//! update without a rollback error, and a fresh client pinned to root.json works too. On
//! PostgreSQL the database goes through `pg_dump` and `psql`, as docs/operations.md says.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `pg_dump` of the server's database (PostgreSQL only), plain SQL.
fn pg_dump(s: &Server, file: &Path) {
    let url = s.database_url().unwrap();
    run(Command::new(format!("{PG_BIN}/pg_dump"))
        .args(["--no-owner", "--dbname", url, "--file"])
        .arg(file));
}

/// The database dropped, made again empty, and the dump loaded into it with `psql`.
fn pg_restore(s: &Server, file: &Path) {
    let url = s.database_url().unwrap();
    let (_, name) = url.rsplit_once('/').unwrap();
    let admin = pg_admin_url().unwrap();
    let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
    c.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .unwrap();
    c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    run(Command::new(format!("{PG_BIN}/psql"))
        .args(["-q", "-v", "ON_ERROR_STOP=1", "--dbname", url, "--file"])
        .arg(file));
}

fn py_ok(s: &Server, target: &str, out: &Path, state: &Path) -> String {
    let (ok, log) = s.python_tuf(
        "dev",
        target,
        out,
        &["--metadata-dir", state.to_str().unwrap()],
    );
    assert!(ok, "python-tuf failed: {log}");
    log
}

fn backup_json(s: &Server, out: &Path) -> serde_json::Value {
    let text = s.ok(&["backup", "--home", p(&s.home), "--out", p(out), "--json"]);
    serde_json::from_str(&text).unwrap()
}

#[test]
fn restored_home_signs_past_what_clients_saw_and_they_keep_updating() {
    let mut s = Server::start();
    let key = s.builder("ci", "app/*");
    s.push(&s.file("x1.bin", 5000, 1), "app/x", "1.0.0", &key);
    let state = s.path("state");
    let py_state = s.path("py-state");
    s.pull_ok("app/x", "dev", &s.path("o1"), &state);
    py_ok(&s, "app/x/x1.bin", &s.path("p1"), &py_state);

    // The backup, taken while the server runs (and, on PostgreSQL, its pg_dump).
    let dir = s.path("backup");
    let b = backup_json(&s, &dir);
    let dump = s.path("arca.sql");
    if s.database_url().is_some() {
        pg_dump(&s, &dump);
    }
    let m = &b["manifest"];
    assert_eq!(m["engine"], engine());
    let backed_ts = m["channels"]["dev"]["timestamp"].as_u64().unwrap();
    assert!(m["schema_version"].as_i64().unwrap() > 0, "{m}");
    let files: Vec<&str> = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    for f in [
        "arca.toml",
        "root.json",
        "admin.token",
        "keys/root.key",
        "master.key",
    ] {
        assert!(files.contains(&f), "{f} not in {files:?}");
    }
    assert_eq!(
        files.contains(&"arca.db"),
        engine() == "sqlite",
        "{files:?}"
    );
    assert_eq!(mode(&dir.join("keys")), 0o700);
    assert_eq!(mode(&dir.join("master.key")), 0o600);
    assert!(
        !files.iter().any(|f| f.ends_with(".online.key")),
        "the online keys are sealed in the database: {files:?}"
    );
    assert_eq!(mode(&dir.join("admin.token")), 0o600);

    // After the backup: more releases, which both clients see (newer targets, snapshot,
    // timestamp than the backup holds).
    for (i, v) in ["2.0.0", "3.0.0"].iter().enumerate() {
        let name = format!("x{}.bin", i + 2);
        s.push(&s.file(&name, 5000, i as u8 + 2), "app/x", v, &key);
        let out = s.pull_ok("app/x", "dev", &s.path(&format!("o{}", i + 2)), &state);
        assert!(out.contains(&format!("app/x@{v}")), "{out}");
        py_ok(
            &s,
            &format!("app/x/{name}"),
            &s.path(&format!("p{}", i + 2)),
            &py_state,
        );
    }
    let (seen_ts, _) = latest_meta(&s, "dev", "timestamp");
    let (seen_targets, _) = latest_meta(&s, "dev", "targets");
    assert!(seen_ts > backed_ts);

    // The home is lost: the server stops, a fresh home is restored from the backup (the blob
    // store comes back from its own backup; on PostgreSQL the dump is loaded first).
    s.kill();
    let old = s.path("home.lost");
    std::fs::rename(&s.home, &old).unwrap();
    if s.database_url().is_some() {
        pg_restore(&s, &dump);
    }
    let before = chrono::Utc::now().timestamp() as u64;
    let out = s.ok(&["restore", "--home", p(&s.home), "--from", p(&dir), "--json"]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let floor = r["floor"].as_u64().unwrap();
    assert!(floor >= before, "{r}");
    let dev = r["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "dev")
        .unwrap();
    assert_eq!(
        dev["restored"]["timestamp"].as_u64().unwrap(),
        backed_ts,
        "{r}"
    );
    for role in ["targets", "snapshot", "timestamp"] {
        let v = dev[role].as_u64().unwrap();
        assert!(
            v >= floor && v > seen_ts && v > seen_targets,
            "{role} {v}: {r}"
        );
    }
    assert_eq!(mode(&s.home.join("keys")), 0o700);
    assert_eq!(mode(&s.home.join("master.key")), 0o600);
    assert_eq!(mode(&s.home.join("admin.token")), 0o600);
    assert_eq!(
        std::fs::read(s.home.join("root.json")).unwrap(),
        std::fs::read(old.join("root.json")).unwrap()
    );
    copy_tree(&old.join("blobs"), &s.home.join("blobs"));
    let audit: i64 = s.db().one(
        "SELECT COUNT(*) FROM audit WHERE action = 'restore' AND actor = 'restore'",
        params![],
    );
    assert_eq!(audit, 3, "one restore entry per channel");
    s.launch();

    // The same clients, with the metadata they trusted: no rollback error. The channel is back
    // at the backup's release.
    let out = s.pull_ok("app/x", "dev", &s.path("o9"), &state);
    assert!(out.contains("app/x@1.0.0"), "{out}");
    let log = py_ok(&s, "app/x/x1.bin", &s.path("p9"), &py_state);
    assert!(
        log.contains(&format!("timestamp={}", dev["timestamp"])),
        "{log}"
    );
    // And a fresh client pinned to root.json.
    let out = s.pull_ok("app/x", "dev", &s.path("o10"), &s.path("fresh"));
    assert!(out.contains("app/x@1.0.0"), "{out}");
    py_ok(&s, "app/x/x1.bin", &s.path("p10"), &s.path("py-fresh"));
    // The restored server goes on from there: a new release is seen by the same client.
    s.push(&s.file("x4.bin", 5000, 4), "app/x", "4.0.0", &key);
    let out = s.pull_ok("app/x", "dev", &s.path("o11"), &state);
    assert!(out.contains("app/x@4.0.0"), "{out}");
    let (ts, _) = latest_meta(&s, "dev", "timestamp");
    assert_eq!(ts, dev["timestamp"].as_u64().unwrap() + 1);
}

#[test]
fn backup_and_restore_refuse_non_empty_targets_and_damaged_backups() {
    let s = Server::start();
    // Backup into a non-empty directory.
    let full = s.path("full");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(full.join("x"), b"x").unwrap();
    let err = s.fails(&["backup", "--home", p(&s.home), "--out", p(&full)]);
    assert!(err.contains("is not empty"), "{err}");
    assert_eq!(list_files(&full), vec!["x".to_owned()]);

    let dir = s.path("backup");
    backup_json(&s, &dir);

    // Restore into a non-empty home (the live one, here).
    let err = s.fails(&["restore", "--home", p(&s.home), "--from", p(&dir)]);
    assert!(err.contains("is not empty"), "{err}");

    // A file that does not match the manifest's sha256: named, and nothing restored.
    let mut root = std::fs::read(dir.join("root.json")).unwrap();
    root.push(b'\n');
    std::fs::write(dir.join("root.json"), root).unwrap();
    let home: PathBuf = s.path("new-home");
    let err = s.fails(&["restore", "--home", p(&home), "--from", p(&dir)]);
    assert!(
        err.contains("root.json") && err.contains("does not match the manifest"),
        "{err}"
    );
    assert!(!home.exists(), "nothing restored");
    // An empty home directory stays empty.
    std::fs::create_dir_all(&home).unwrap();
    let err = s.fails(&["restore", "--home", p(&home), "--from", p(&dir)]);
    assert!(err.contains("root.json"), "{err}");
    assert!(list_files(&home).is_empty());
}
