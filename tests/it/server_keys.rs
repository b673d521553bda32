//! The server's own keys (each channel's online key, the audit key) are sealed in the database
//! with a master key that every server of the database holds: a fresh home keeps no such key
//! file; a server without the right master key, or whose sealed rows were moved, refuses to
//! start; a rotation through one server is what every other signs with from then on; a home
//! from before sealed keys is imported at start and keeps serving its pinned clients.

use std::os::unix::fs::PermissionsExt;

use crate::common;
use crate::common::p;

use common::{Server, latest_meta, online_key, sealed_key};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The key ids that signed a metadata body.
fn signers(body: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["keyid"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_fresh_home_keeps_only_the_root_key_file_and_a_private_master_key() {
    let s = Server::start();
    let keys: Vec<String> = common::list_files(&s.home.join("keys"))
        .into_iter()
        .filter(|f| !f.ends_with(".pub"))
        .collect();
    assert_eq!(keys, ["root.key"]);
    assert_eq!(mode(&s.home.join("master.key")), 0o600);
    let rows: Vec<(String, String, Vec<u8>)> = s.db().all(
        "SELECT name, key_id, sealed FROM server_keys ORDER BY name",
        params![],
    );
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        names,
        ["audit", "online/dev", "online/prod", "online/staging"]
    );
    for (name, key_id, sealed) in &rows {
        let key = sealed_key(&s, name);
        assert_eq!(key.key_id().as_str(), key_id);
        let seed = key.seed();
        assert!(
            !sealed.windows(32).any(|w| w == seed.as_slice()),
            "{name} holds its seed in the clear"
        );
    }
    // The newest dev metadata is signed by the sealed dev key.
    let (_, body) = latest_meta(&s, "dev", "timestamp");
    assert_eq!(signers(&body), [online_key(&s, "dev").key_id().to_string()]);
}

#[test]
fn a_wrong_or_missing_master_key_refuses_to_start() {
    let mut s = Server::start();
    let other = s.path("other.key");
    arca_keys::sealed::MasterKey::generate()
        .unwrap()
        .write_file(&other)
        .unwrap();
    let err = s.serve_fails(&[("ARCA_MASTER_KEY_FILE", p(&other))]);
    assert!(
        err.contains(&format!("the master key {} does not open", other.display()))
            && err.contains("wrong master key"),
        "{err}"
    );
    // A master key others may read is refused too.
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = s.serve_fails(&[("ARCA_MASTER_KEY_FILE", p(&other))]);
    assert!(err.contains("chmod 600"), "{err}");

    let kept = s.path("master.key.kept");
    std::fs::rename(s.home.join("master.key"), &kept).unwrap();
    let err = s.serve_fails(&[]);
    assert!(
        err.contains("master key") && err.contains("is missing"),
        "{err}"
    );
    // With its own master key back, the server starts and signs.
    std::fs::rename(&kept, s.home.join("master.key")).unwrap();
    s.launch();
    let b = s.builder("ci", "**");
    s.push(&s.file("a.bin", 100, 1), "a", "1", &b);
}

#[test]
fn a_sealed_row_moved_to_another_name_is_refused_at_start() {
    let mut s = Server::start();
    s.kill();
    // The dev key's sealed bytes and id put in prod's row: prod would sign with dev's key.
    let (id, sealed): (String, Vec<u8>) = s.db().one(
        "SELECT key_id, sealed FROM server_keys WHERE name = 'online/dev'",
        params![],
    );
    s.db().execute(
        "UPDATE server_keys SET key_id = ?1, sealed = ?2 WHERE name = 'online/prod'",
        params![id, sealed],
    );
    let err = s.serve_fails(&[]);
    assert!(
        err.contains("does not open the server key online/prod"),
        "{err}"
    );
}

#[test]
fn a_rotation_through_one_server_is_what_the_others_sign_with() {
    if common::pg_admin_url().is_none() {
        eprintln!("ARCA_TEST_PG unset: several servers need PostgreSQL");
        return;
    }
    let a = Server::start();
    let b = a.peer();
    let ci = a.builder("ci", "**");
    a.push(&a.file("a.bin", 3000, 1), "a", "1", &ci);
    // Clients with state from before the rotation, through B.
    let state = b.path("state");
    b.pull_ok("a", "dev", &b.path("o1"), &state);
    let py_state = b.path("py-state");
    let (ok, log) = b.python_tuf(
        "dev",
        "a/a.bin",
        &b.path("py1"),
        &["--metadata-dir", p(&py_state)],
    );
    assert!(ok, "{log}");
    let old = online_key(&a, "dev").key_id();

    let out = a.ok(&[
        "trust",
        "rotate-online",
        "--channel",
        "dev",
        "--sign",
        p(&a.root_key()),
    ]);
    assert!(out.contains("dev: online key rotated"), "{out}");
    let new = online_key(&a, "dev").key_id();
    assert_ne!(new, old);

    // B, which cached the old key, publishes with the new one.
    b.push(&b.file("b.bin", 3000, 2), "b", "1", &ci);
    for role in ["targets", "snapshot", "timestamp"] {
        let (_, body) = latest_meta(&b, "dev", role);
        assert_eq!(signers(&body), [new.to_string()], "{role}");
    }
    b.pull_ok("b", "dev", &b.path("o2"), &state);
    let (ok, log) = b.python_tuf(
        "dev",
        "b/b.bin",
        &b.path("py2"),
        &["--metadata-dir", p(&py_state)],
    );
    assert!(ok, "{log}");
    a.pull_ok("b", "dev", &a.path("o3"), &a.path("fresh"));
    assert!(
        b.log()
            .contains("signing with the online key the database names"),
        "{}",
        b.log()
    );
}

#[test]
fn a_home_with_key_files_is_imported_at_start_and_keeps_serving() {
    let mut s = Server::start();
    let ci = s.builder("ci", "**");
    s.push(&s.file("a.bin", 2000, 1), "a", "1", &ci);
    let state = s.path("state");
    s.pull_ok("a", "dev", &s.path("o1"), &state);
    let py_state = s.path("py-state");
    let (ok, log) = s.python_tuf(
        "dev",
        "a/a.bin",
        &s.path("py1"),
        &["--metadata-dir", p(&py_state)],
    );
    assert!(ok, "{log}");
    // Turn the home into one from before sealed keys: key files, no rows, no master key.
    s.kill();
    let mut ids = Vec::new();
    for (row, file) in [
        ("audit", "audit.key".to_owned()),
        ("online/dev", "dev.online.key".into()),
        ("online/staging", "staging.online.key".into()),
        ("online/prod", "prod.online.key".into()),
    ] {
        let key = sealed_key(&s, row);
        key.write_files(&s.home.join("keys").join(file)).unwrap();
        ids.push((row, key.key_id().to_string()));
    }
    s.db().execute("DELETE FROM server_keys", params![]);
    std::fs::remove_file(s.home.join("master.key")).unwrap();

    s.launch();
    assert_eq!(mode(&s.home.join("master.key")), 0o600);
    for (row, id) in &ids {
        assert_eq!(sealed_key(&s, row).key_id().to_string(), *id, "{row}");
    }
    let left: Vec<String> = common::list_files(&s.home.join("keys"));
    assert_eq!(
        left,
        ["root.key", "root.key.pub"],
        "the key files are removed"
    );
    assert_eq!(
        s.log().matches("imported the server's key files").count(),
        1,
        "{}",
        s.log()
    );
    s.push(&s.file("b.bin", 2000, 2), "b", "1", &ci);
    s.pull_ok("b", "dev", &s.path("o2"), &state);
    let (ok, log) = s.python_tuf(
        "dev",
        "b/b.bin",
        &s.path("py2"),
        &["--metadata-dir", p(&py_state)],
    );
    assert!(ok, "{log}");
    // A restart finds rows and imports nothing again.
    s.kill();
    s.launch();
    assert_eq!(
        s.log().matches("imported the server's key files").count(),
        1
    );
    s.pull_ok("b", "dev", &s.path("o3"), &state);
}

/// `arca init --join ARGS` (with `--home` in the test's directory); its output.
fn join_cmd(s: &Server, home: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(common::arca_bin())
        .args(["init", "--join", "--home", p(&s.path(home))])
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("ARCA_MASTER_KEY_FILE")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn init_join_writes_a_home_that_serves_the_same_channels() {
    let Some(admin) = common::pg_admin_url() else {
        eprintln!("ARCA_TEST_PG unset: --join needs PostgreSQL");
        return;
    };
    let moto = common::moto::Moto::start();
    let a = Server::start_with(Some(&moto.config("")), &[]);
    let url = a.database_url().unwrap().to_owned();
    let master = p(&a.home.join("master.key")).to_owned();
    let store = moto.store_url();

    // A local store: refused.
    let out = join_cmd(
        &a,
        "h1",
        &[
            "--database",
            &url,
            "--store",
            "file:///tmp/blobs",
            "--master-key",
            &master,
        ],
    );
    let err = common::failure_line(&["init", "--join"], &out);
    assert!(
        err.contains("blobs must be shared: --store must be an object store URL"),
        "{err}"
    );
    let out = join_cmd(&a, "h1", &["--database", &url, "--master-key", &master]);
    let err = common::failure_line(&["init", "--join"], &out);
    assert!(err.contains("blobs must be shared"), "{err}");
    // Another master key: refused at join.
    let other = a.path("other.key");
    arca_keys::sealed::MasterKey::generate()
        .unwrap()
        .write_file(&other)
        .unwrap();
    let out = join_cmd(
        &a,
        "h2",
        &[
            "--database",
            &url,
            "--store",
            &store,
            "--master-key",
            p(&other),
        ],
    );
    let err = common::failure_line(&["init", "--join"], &out);
    assert!(
        err.contains("does not open the server key") && err.contains("wrong master key"),
        "{err}"
    );
    // A database without an arca home: refused.
    let empty = common::PgDatabase::create(&admin);
    let out = join_cmd(
        &a,
        "h3",
        &[
            "--database",
            empty.url(),
            "--store",
            &store,
            "--master-key",
            &master,
        ],
    );
    let err = common::failure_line(&["init", "--join"], &out);
    assert!(err.contains("holds no arca home"), "{err}");
    for h in ["h1", "h2", "h3"] {
        assert!(!a.path(h).join("arca.toml").exists(), "{h} was written");
    }

    let ci = a.builder("ci", "**");
    a.push(&a.file("a.bin", 3000, 1), "a", "1", &ci);
    let b = a.join(&store, &moto.store_options());
    assert_eq!(mode(&b.home.join("master.key")), 0o600);
    assert_eq!(
        std::fs::read(b.home.join("root.json")).unwrap(),
        std::fs::read(a.home.join("root.json")).unwrap()
    );
    // B serves what A published, and publishes what A serves.
    for ch in ["dev", "staging", "prod"] {
        let get = |s: &Server| {
            crate::tuf_repo::get(&format!("{}/tuf/{ch}/metadata/timestamp.json", s.url))
        };
        assert_eq!(get(&a), get(&b), "{ch}");
    }
    let state = b.path("state");
    b.pull_ok("a", "dev", &b.path("o1"), &state);
    b.push(&b.file("b.bin", 3000, 2), "b", "1", &ci);
    a.pull_ok("b", "dev", &a.path("o2"), &a.path("state-a"));
    b.pull_ok("b", "dev", &b.path("o3"), &state);
    let (ok, log) = b.python_tuf("dev", "b/b.bin", &b.path("py"), &[]);
    assert!(ok, "{log}");
}
