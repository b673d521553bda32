//! Two-step pushes (docs/security.md guarantees 1 and 8; docs/api.md): `POST /api/v1/uploads` stages the bytes, `POST
//! /api/v1/artifacts?upload=ID` commits them with a build statement. A staged upload is visible
//! nowhere; it can be used only by the token that staged it, for the name@version it was staged
//! for, and only with a statement whose digests are the bytes'. Every refusal names the problem,
//! leaves the store and the database as they were and leaves no temporary object behind.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use arca_keys::SigningKey;
use base64::Engine as _;
use common::Server;
use common::raw::*;
use futures::StreamExt as _;

/// A few MiB: a body the server must refuse without reading.
const BIG: usize = 4 << 20;

pub(crate) fn signing_key(key: &Path) -> SigningKey {
    SigningKey::read_file(key).unwrap()
}

impl Answer {
    /// The JSON body of a successful answer.
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// `POST /api/v1/uploads?name&version&signer` with `body` as the bytes.
fn raw_stage(
    s: &Server,
    token: &str,
    name: &str,
    version: &str,
    signer: &str,
    body: Vec<u8>,
) -> Answer {
    block(async {
        let req = http()
            .post(format!("{}/api/v1/uploads", s.url))
            .query(&[("name", name), ("version", version), ("signer", signer)])
            .header("content-type", "application/octet-stream")
            .bearer_auth(token)
            .body(body);
        answer(req.send().await.unwrap()).await
    })
}

/// Stages `bytes` and expects success; returns the upload id, after checking that the server
/// computed the bytes' digests.
pub(crate) fn stage_ok(
    s: &Server,
    token: &str,
    name: &str,
    version: &str,
    key: &Path,
    bytes: &[u8],
) -> String {
    let a = raw_stage(s, token, name, version, &key_id(key), bytes.to_vec());
    assert_eq!(a.status, 201, "{a:?}");
    let v = a.json();
    assert_eq!(v["blake3"], blake3_hex(bytes), "{a:?}");
    assert_eq!(v["sha256"], sha256_hex(bytes), "{a:?}");
    assert_eq!(v["size"], bytes.len() as u64, "{a:?}");
    let id = v["upload"].as_str().unwrap().to_owned();
    assert!(!id.is_empty(), "{a:?}");
    id
}

/// Stages with a body that sends `BIG` bytes and then stalls forever: an answer can only come
/// from a server that decided before reading the whole body.
fn stage_stalled(s: &Server, name: &str, version: &str, signer: &str) -> Answer {
    block(async {
        let chunk = bytes::Bytes::from(common::pseudo_random(64 * 1024, 42));
        let chunks = BIG / chunk.len();
        let body =
            futures::stream::iter((0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())))
                .chain(futures::stream::pending());
        let req = http()
            .post(format!("{}/api/v1/uploads", s.url))
            .query(&[("name", name), ("version", version), ("signer", signer)])
            .header("content-type", "application/octet-stream")
            .bearer_auth(&s.token)
            .body(reqwest::Body::wrap_stream(body));
        let resp = tokio::time::timeout(Duration::from_secs(20), req.send())
            .await
            .expect("no answer while the body was incomplete: the server waited for the body")
            .unwrap();
        answer(resp).await
    })
}

/// `POST /api/v1/artifacts?...&upload=ID` with the statement header and an empty body.
pub(crate) fn raw_commit(
    s: &Server,
    token: &str,
    name: &str,
    version: &str,
    file: &str,
    upload: &str,
    statement: &[u8],
) -> Answer {
    block(async {
        let req = http()
            .post(format!("{}/api/v1/artifacts", s.url))
            .query(&[
                ("name", name),
                ("version", version),
                ("file", file),
                ("upload", upload),
            ])
            .header(
                "arca-statement",
                base64::engine::general_purpose::STANDARD.encode(statement),
            )
            .header("content-type", "application/octet-stream")
            .bearer_auth(token)
            .body(Vec::new());
        answer(req.send().await.unwrap()).await
    })
}

/// `GET /api/v1/artifacts?name&version`.
fn get_artifact(s: &Server, name: &str, version: &str) -> Answer {
    block(async {
        let req = http()
            .get(format!("{}/api/v1/artifacts", s.url))
            .query(&[("name", name), ("version", version)]);
        answer(req.send().await.unwrap()).await
    })
}

fn tmp_files(s: &Server) -> Vec<String> {
    common::list_files(&s.home.join("blobs/tmp"))
}

/// No temporary object is left (the cleanup of a dropped upload may run in a spawned task).
pub(crate) fn assert_no_tmp(s: &Server) {
    let gone = common::wait_until(Duration::from_secs(2), || tmp_files(s).is_empty());
    assert!(gone, "leftovers in blobs/tmp: {:?}", tmp_files(s));
}

/// Inserts a second admin token straight into the database; returns it.
fn second_token(s: &Server) -> String {
    let (token, id, hash) = arca::auth::new_token().unwrap();
    s.db().execute(
        "INSERT INTO tokens (id, hash, role, created_at) VALUES (?1, ?2, 'admin', ?3)",
        params![id, hash, chrono::Utc::now().to_rfc3339()],
    );
    token
}

fn artifact_rows(s: &Server) -> i64 {
    s.db().one("SELECT COUNT(*) FROM artifacts", params![])
}

fn upload_rows(s: &Server) -> i64 {
    s.db().one("SELECT COUNT(*) FROM uploads", params![])
}

#[test]
fn staged_upload_with_a_statement_for_other_bytes_is_refused_and_dropped() {
    let s = Server::start();
    let key_path = s.builder("builder", "app/*");
    let key = signing_key(&key_path);
    let real = common::pseudo_random(300_000, 1);
    let other = common::pseudo_random(300_000, 2);
    let before = s.state();
    let refused = s.audit_count("refused");

    let id = stage_ok(&s, &s.token, "app/a", "1.0.0", &key_path, &real);
    assert_eq!(tmp_files(&s).len(), 1, "the upload is staged under tmp/");

    let statement = build_statement(&key, "app/a", "1.0.0", "a.bin", &other);
    let a = raw_commit(&s, &s.token, "app/a", "1.0.0", "a.bin", &id, &statement);
    assert_eq!(
        (a.status, a.code.as_str()),
        (400, "digest_mismatch"),
        "{a:?}"
    );
    let (claimed, actual) = (blake3_hex(&other), blake3_hex(&real));
    assert!(
        a.message.contains("mismatch")
            && (a.message.contains(&claimed) || a.message.contains(&actual)),
        "the refusal must name the digest: {a:?}"
    );
    assert_eq!(before, s.state());
    assert_no_tmp(&s);
    assert_eq!(s.audit_count("refused"), refused + 1);

    // The staged upload is gone: neither a retry nor a now-correct statement can use it.
    let good = build_statement(&key, "app/a", "1.0.0", "a.bin", &real);
    for st in [&statement, &good] {
        let b = raw_commit(&s, &s.token, "app/a", "1.0.0", "a.bin", &id, st);
        assert_eq!((b.status, b.code.as_str()), (404, "no_upload"), "{b:?}");
        assert!(
            b.message.contains(&id),
            "the refusal must name the id: {b:?}"
        );
    }
    assert_eq!(before, s.state());
    assert_no_tmp(&s);
    assert!(
        !common::list_files(&s.home.join("blobs"))
            .join("\n")
            .contains(&actual)
    );
}

#[test]
fn upload_staged_for_another_version_or_unknown_is_refused() {
    let s = Server::start();
    let key_path = s.builder("builder", "app/*");
    let key = signing_key(&key_path);
    let bytes = common::pseudo_random(100_000, 3);
    let before = s.state();
    let id = stage_ok(&s, &s.token, "app/a", "1", &key_path, &bytes);
    let staged = s.state();
    let refused = s.audit_count("refused");

    // A valid statement for app/a@2 (and app/b@1) with the same bytes: the id is for app/a@1.
    for (name, version) in [("app/a", "2"), ("app/b", "1")] {
        let st = build_statement(&key, name, version, "a.bin", &bytes);
        let a = raw_commit(&s, &s.token, name, version, "a.bin", &id, &st);
        assert_eq!(
            (a.status, a.code.as_str()),
            (403, "upload_mismatch"),
            "{a:?}"
        );
        assert!(
            a.message.contains(&id) && a.message.contains("name@version"),
            "the refusal must name the upload and the problem: {a:?}"
        );
        assert_eq!(staged, s.state(), "{name}@{version}");
        assert!(get_artifact(&s, name, version).status == 404);
    }

    // An id nobody staged.
    let unknown = "0123456789abcdef0123456789abcdef";
    let st = build_statement(&key, "app/a", "1", "a.bin", &bytes);
    let b = raw_commit(&s, &s.token, "app/a", "1", "a.bin", unknown, &st);
    assert_eq!((b.status, b.code.as_str()), (404, "no_upload"), "{b:?}");
    assert!(b.message.contains(unknown), "{b:?}");
    assert_eq!(staged, s.state());
    assert_eq!(s.audit_count("refused"), refused + 3);

    // The refusals did not destroy the rightful owner's upload: it still commits, once.
    let c = raw_commit(&s, &s.token, "app/a", "1", "a.bin", &id, &st);
    assert_eq!(c.status, 201, "{c:?}");
    assert_eq!(c.json()["artifact"]["blake3"], blake3_hex(&bytes), "{c:?}");
    assert_no_tmp(&s);
    assert_ne!(before, s.state());
    let after = s.state();
    let d = raw_commit(&s, &s.token, "app/a", "1", "a.bin", &id, &st);
    // app/a@1 exists with these bytes now: the same statement is "already present" (200)
    // before the id is looked at.
    assert_eq!(d.status, 200, "{d:?}");
    assert_eq!(after, s.state());
}

#[test]
fn upload_used_with_another_token_is_refused() {
    let s = Server::start();
    let key_path = s.builder("builder", "app/*");
    let key = signing_key(&key_path);
    let other_token = second_token(&s);
    assert_ne!(other_token, s.token);
    let bytes = common::pseudo_random(100_000, 4);
    let st = build_statement(&key, "app/a", "1.0.0", "a.bin", &bytes);
    let before = s.state();

    let id = stage_ok(&s, &s.token, "app/a", "1.0.0", &key_path, &bytes);
    let staged = s.state();
    let refused = s.audit_count("refused");
    let a = raw_commit(&s, &other_token, "app/a", "1.0.0", "a.bin", &id, &st);
    assert_eq!(
        (a.status, a.code.as_str()),
        (403, "upload_mismatch"),
        "{a:?}"
    );
    assert!(
        a.message.contains(&id) && a.message.contains("another token"),
        "{a:?}"
    );
    assert_eq!(staged, s.state());
    assert_eq!(s.audit_count("refused"), refused + 1);
    assert_eq!(get_artifact(&s, "app/a", "1.0.0").status, 404);

    // The other way round too: an upload staged by the second token is its own.
    let id2 = stage_ok(&s, &other_token, "app/b", "1.0.0", &key_path, &bytes);
    let st2 = build_statement(&key, "app/b", "1.0.0", "a.bin", &bytes);
    let b = raw_commit(&s, &s.token, "app/b", "1.0.0", "a.bin", &id2, &st2);
    assert_eq!(
        (b.status, b.code.as_str()),
        (403, "upload_mismatch"),
        "{b:?}"
    );
    assert_eq!(s.audit_count("refused"), refused + 2);

    // Each owner can still commit its own upload; then nothing is left in tmp/.
    let c = raw_commit(&s, &s.token, "app/a", "1.0.0", "a.bin", &id, &st);
    assert_eq!(c.status, 201, "{c:?}");
    let d = raw_commit(&s, &other_token, "app/b", "1.0.0", "a.bin", &id2, &st2);
    assert_eq!(d.status, 201, "{d:?}");
    assert_ne!(before, s.state());
    assert_no_tmp(&s);
}

#[test]
fn staging_with_a_signer_that_may_not_push_is_refused_before_the_body() {
    let s = Server::start();
    let builder = s.builder("builder", "app/*");
    let stranger = s.key("stranger");
    let revoked = s.builder("revoked", "**");
    s.ok(&[
        "trust",
        "revoke",
        &key_id(&revoked),
        "--sign",
        path_str(&s.root_key()),
    ]);
    let before = s.state();

    for (key, name, code, says) in [
        (&stranger, "app/a", "untrusted_key", "not in trust document"),
        (&builder, "other/x", "key_not_allowed", "app/*"),
        (&revoked, "app/a", "key_not_allowed", "revoked"),
    ] {
        let id = key_id(key);
        let refused = s.audit_count("refused");

        // The body stalls after a few MiB: the answer proves the server did not wait for it.
        let a = stage_stalled(&s, name, "1.0.0", &id);
        assert_eq!((a.status, a.code.as_str()), (403, code), "{name}: {a:?}");
        assert!(
            a.message.contains(&id) && a.message.contains(says),
            "{name}: the refusal must name the key and why: {a:?}"
        );
        assert_eq!(before, s.state(), "{name}");
        assert_no_tmp(&s);
        assert_eq!(s.audit_count("refused"), refused + 1, "{name}");
        let (action, subject, outcome, details) = last_audit(&s);
        assert_eq!(
            (action.as_str(), subject.as_str(), outcome.as_str()),
            ("push", format!("{name}@1.0.0").as_str(), "refused"),
        );
        assert!(details.contains(&id), "{details}");

        // A complete body of a few MiB gets the same answer (no reset mid-body).
        let b = raw_stage(
            &s,
            &s.token,
            name,
            "1.0.0",
            &id,
            common::pseudo_random(BIG, 5),
        );
        assert_eq!((b.status, b.code.as_str()), (403, code), "{name}: {b:?}");
        assert_eq!(before, s.state(), "{name}");
        assert_no_tmp(&s);
    }

    // The CLI, which stages first, reports the refusal of a big file in one line.
    let big = s.file("big.bin", BIG, 6);
    let err = s.fails(&push_args(&big, "app/a", "1.0.0", &stranger));
    assert!(err.contains("untrusted_key"), "{err}");
    assert!(err.contains(&key_id(&stranger)), "{err}");
    assert_eq!(before, s.state());
    assert_no_tmp(&s);
}

#[test]
fn staging_an_existing_version_is_a_conflict() {
    let s = Server::start();
    let key = s.builder("builder", "app/*");
    let file = s.file("a.bin", 10_000, 7);
    s.push(&file, "app/a", "1.0.0", &key);
    let existing = blake3_hex(&std::fs::read(&file).unwrap());
    let before = s.state();
    let refused = s.audit_count("refused");

    // Other bytes, the same bytes, and a stalled big body: all refused before being staged.
    for body in [
        common::pseudo_random(10_000, 8),
        std::fs::read(&file).unwrap(),
    ] {
        let a = raw_stage(&s, &s.token, "app/a", "1.0.0", &key_id(&key), body);
        assert_eq!(
            (a.status, a.code.as_str()),
            (409, "version_exists"),
            "{a:?}"
        );
        assert!(
            a.message.contains("app/a@1.0.0")
                && a.message.contains("already exists")
                && a.message.contains(&existing),
            "the refusal must name the version and its blake3: {a:?}"
        );
        assert_eq!(before, s.state());
        assert_no_tmp(&s);
    }
    let b = stage_stalled(&s, "app/a", "1.0.0", &key_id(&key));
    assert_eq!(
        (b.status, b.code.as_str()),
        (409, "version_exists"),
        "{b:?}"
    );
    assert_eq!(before, s.state());
    assert_no_tmp(&s);
    assert_eq!(s.audit_count("refused"), refused + 3);
    let (action, subject, outcome, _) = last_audit(&s);
    assert_eq!(
        (action.as_str(), subject.as_str(), outcome.as_str()),
        ("push", "app/a@1.0.0", "refused")
    );
}

#[test]
fn cli_push_then_same_push_then_other_bytes() {
    let s = Server::start();
    let key = s.builder("builder", "app/*");
    let file = s.file("a.bin", 3 << 20, 9);
    let bytes = std::fs::read(&file).unwrap();

    let out = s.push(&file, "app/a", "1.0.0", &key);
    assert!(out.contains("pushed app/a@1.0.0"), "{out}");
    assert!(out.contains(&blake3_hex(&bytes)), "{out}");
    assert_no_tmp(&s);
    let pulled = s.path("out");
    s.pull_ok("app/a", "dev", &pulled, &s.path("state"));
    let got = common::list_files(&pulled);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(std::fs::read(pulled.join(&got[0])).unwrap(), bytes);
    let before = s.state();

    let again = s.push(&file, "app/a", "1.0.0", &key);
    assert!(again.contains("already present"), "{again}");
    assert_eq!(before, s.state());
    assert_no_tmp(&s);

    let other = s.file("b.bin", 3 << 20, 10);
    let refused = s.audit_count("refused");
    let err = s.fails(&push_args(&other, "app/a", "1.0.0", &key));
    assert!(err.contains("already exists"), "{err}");
    assert!(err.contains(&blake3_hex(&bytes)), "{err}");
    assert_eq!(before, s.state());
    assert_no_tmp(&s);
    assert_eq!(s.audit_count("refused"), refused + 1);
}

#[test]
fn staged_upload_that_is_never_committed_is_visible_nowhere() {
    let s = Server::start();
    let key = s.builder("builder", "app/*");
    // Another artifact, so the channel has metadata to pull from.
    let b = s.file("b.bin", 10_000, 11);
    s.push(&b, "app/b", "1.0.0", &key);
    let rows = artifact_rows(&s);

    let bytes = common::pseudo_random(200_000, 12);
    let b3 = blake3_hex(&bytes);
    let id = stage_ok(&s, &s.token, "app/a", "1.0.0", &key, &bytes);
    assert_eq!(tmp_files(&s).len(), 1, "{:?}", tmp_files(&s));

    assert_eq!(artifact_rows(&s), rows);
    let blob_rows: i64 = s
        .db()
        .one("SELECT COUNT(*) FROM blobs WHERE blake3 = ?1", params![&b3]);
    assert_eq!(blob_rows, 0);
    let blobs = common::list_files(&s.home.join("blobs/blobs"));
    assert!(!blobs.iter().any(|f| f.contains(&b3)), "{blobs:?}");
    let a = get_artifact(&s, "app/a", "1.0.0");
    assert_eq!((a.status, a.code.as_str()), (404, "no_artifact"), "{a:?}");
    let err = s.pull_fails("app/a", "dev", &s.path("out"), &s.path("state"));
    assert!(err.contains("no release"), "{err}");
    assert!(err.contains("app/a"), "{err}");

    // A restart keeps the staged upload (it is a row in the database), still visible
    // nowhere; only its push makes it an artifact.
    let mut s = s;
    s.kill();
    s.launch();
    assert_eq!(tmp_files(&s).len(), 1, "{:?}", tmp_files(&s));
    assert_eq!(artifact_rows(&s), rows);
    let a = get_artifact(&s, "app/a", "1.0.0");
    assert_eq!((a.status, a.code.as_str()), (404, "no_artifact"), "{a:?}");
    let st = build_statement(&signing_key(&key), "app/a", "1.0.0", "a.bin", &bytes);
    let c = raw_commit(&s, &s.token, "app/a", "1.0.0", "a.bin", &id, &st);
    assert_eq!(c.status, 201, "{c:?}");
    assert_eq!(artifact_rows(&s), rows + 1);
    assert_no_tmp(&s);
    assert_eq!(upload_rows(&s), 0);
}

#[test]
// Regression: a staged upload for a version pushed meanwhile used to stay in tmp/.
fn staged_upload_for_a_version_pushed_meanwhile_is_dropped() {
    let s = Server::start();
    let key_path = s.builder("builder", "app/*");
    let key = signing_key(&key_path);
    let first = common::pseudo_random(100_000, 13);
    let second = common::pseudo_random(100_000, 14);
    let before = s.state();

    // Two uploads for app/a@1.0.0 staged before either is committed (two CI jobs racing).
    let id_first = stage_ok(&s, &s.token, "app/a", "1.0.0", &key_path, &first);
    let id_second = stage_ok(&s, &s.token, "app/a", "1.0.0", &key_path, &second);
    let st_first = build_statement(&key, "app/a", "1.0.0", "a.bin", &first);
    let c = raw_commit(
        &s, &s.token, "app/a", "1.0.0", "a.bin", &id_first, &st_first,
    );
    assert_eq!(c.status, 201, "{c:?}");
    assert_ne!(before, s.state());
    let after = s.state();
    let refused = s.audit_count("refused");

    // The loser is refused: the version exists with other bytes.
    let st_second = build_statement(&key, "app/a", "1.0.0", "a.bin", &second);
    let a = raw_commit(
        &s, &s.token, "app/a", "1.0.0", "a.bin", &id_second, &st_second,
    );
    assert_eq!(
        (a.status, a.code.as_str()),
        (409, "version_exists"),
        "{a:?}"
    );
    assert!(
        a.message.contains("already exists") && a.message.contains(&blake3_hex(&first)),
        "{a:?}"
    );
    assert_eq!(s.audit_count("refused"), refused + 1);
    // Its bytes can never be committed (versions are immutable): nothing of it may remain.
    assert_no_tmp(&s);
    // `after` was taken while the loser's bytes were still staged: under tmp/, and its row
    // in `uploads`. Both are gone now; everything else is as it was.
    let without_staged = |st: String| {
        let mut in_uploads = false;
        st.lines()
            .filter(|l| {
                if l.starts_with('[') {
                    in_uploads = *l == "[uploads]";
                    return true;
                }
                !in_uploads && !l.starts_with("tmp/")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(without_staged(after), without_staged(s.state()));
    assert_eq!(upload_rows(&s), 0);
    let b = raw_commit(
        &s, &s.token, "app/a", "1.0.0", "a.bin", &id_second, &st_second,
    );
    assert_eq!(b.code, "version_exists", "{b:?}");
}

/// The row of a staged upload: (temporary object path, claimed_at).
fn upload_row(s: &Server, id: &str) -> Option<(String, Option<String>)> {
    s.db().opt(
        "SELECT temp_path, claimed_at FROM uploads WHERE id = ?1",
        params![id],
    )
}

/// The temporary object of staged upload `id`, on disk.
fn staged_file(s: &Server, id: &str) -> std::path::PathBuf {
    let (path, _) = upload_row(s, id).expect("the upload has a row");
    s.home.join("blobs").join(path)
}

fn blob_file(s: &Server, bytes: &[u8]) -> std::path::PathBuf {
    s.home.join("blobs/blobs").join(blake3_hex(bytes))
}

/// Two servers on one PostgreSQL database and a builder key for app/*: (a, b, the key's path,
/// the key); `None` without PostgreSQL.
fn two_servers() -> Option<(Server, Server, PathBuf, SigningKey)> {
    if common::pg_admin_url().is_none() {
        eprintln!("ARCA_TEST_PG unset: several servers need PostgreSQL");
        return None;
    }
    let a = Server::start();
    let b = a.peer();
    let key_path = a.builder("builder", "app/*");
    let key = signing_key(&key_path);
    Some((a, b, key_path, key))
}

/// Stages `bytes` as `name@version` through `s`: the upload's id and the build statement that
/// pushes it as `file`.
fn staged(
    s: &Server,
    key_path: &Path,
    key: &SigningKey,
    name: &str,
    version: &str,
    file: &str,
    bytes: &[u8],
) -> (String, Vec<u8>) {
    let id = stage_ok(s, &s.token, name, version, key_path, bytes);
    (id, build_statement(key, name, version, file, bytes))
}

#[test]
fn an_upload_staged_through_one_server_is_pushed_through_another() {
    let Some((a, b, key_path, key)) = two_servers() else {
        return;
    };
    let bytes = common::pseudo_random(300_000, 20);

    let (id, st) = staged(&a, &key_path, &key, "app/x", "1.0.0", "x.bin", &bytes);
    let c = raw_commit(&b, &b.token, "app/x", "1.0.0", "x.bin", &id, &st);
    assert_eq!(c.status, 201, "{c:?}");
    assert_eq!(c.json()["artifact"]["blake3"], blake3_hex(&bytes), "{c:?}");
    assert_no_tmp(&a);
    assert_eq!(upload_rows(&a), 0);

    // Both servers serve it, and the bytes are the staged ones.
    for s in [&a, &b] {
        let out = s.path("out");
        s.pull_ok("app/x", "dev", &out, &s.path("state"));
        let got = common::list_files(&out);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(std::fs::read(out.join(&got[0])).unwrap(), bytes);
    }

    // A second upload staged through B is pushed through A.
    let more = common::pseudo_random(50_000, 21);
    let (id2, st2) = staged(&b, &key_path, &key, "app/x", "2.0.0", "x.bin", &more);
    let d = raw_commit(&a, &a.token, "app/x", "2.0.0", "x.bin", &id2, &st2);
    assert_eq!(d.status, 201, "{d:?}");
    assert_eq!(get_artifact(&b, "app/x", "2.0.0").status, 200);
    assert_no_tmp(&a);
}

/// Two pushes naming one upload: the first has claimed it and waits for the trust lock (the
/// test holds it, as a slow transaction would); the second, through the other server, finds
/// it used and changes nothing. (On SQLite the claim itself waits for the one write lock, so
/// the moment cannot be held there: the next test races the pushes on both engines.)
#[test]
fn a_claimed_upload_cannot_be_pushed_again_through_another_server() {
    let Some((a, b, key_path, key)) = two_servers() else {
        return;
    };
    let bytes = common::pseudo_random(100_000, 22);
    let (id, st) = staged(&a, &key_path, &key, "app/y", "1.0.0", "y.bin", &bytes);

    let lock = a.db();
    lock.begin();
    lock.execute(
        "SELECT name FROM locks WHERE name = 'trust' FOR UPDATE",
        params![],
    );
    let first = {
        let (url, token, id, st) = (a.url.clone(), a.token.clone(), id.clone(), st.clone());
        std::thread::spawn(move || {
            block(async {
                let req = http()
                    .post(format!("{url}/api/v1/artifacts"))
                    .query(&[
                        ("name", "app/y"),
                        ("version", "1.0.0"),
                        ("file", "y.bin"),
                        ("upload", id.as_str()),
                    ])
                    .header(
                        "arca-statement",
                        base64::engine::general_purpose::STANDARD.encode(&st),
                    )
                    .bearer_auth(token)
                    .body(Vec::new());
                answer(req.send().await.unwrap()).await
            })
        })
    };
    // The first push has claimed the upload and published its bytes; it waits for the lock.
    let claimed = common::wait_until(Duration::from_secs(20), || {
        upload_row(&a, &id).is_some_and(|(_, claimed)| claimed.is_some())
            && blob_file(&a, &bytes).exists()
    });
    assert!(claimed, "the first push did not claim the upload");
    let before = a.state();
    let refused = a.audit_count("refused");

    let second = raw_commit(&b, &b.token, "app/y", "1.0.0", "y.bin", &id, &st);
    assert_eq!(
        (second.status, second.code.as_str()),
        (404, "no_upload"),
        "{second:?}"
    );
    assert!(
        second.message.contains(&id) && second.message.contains("already used"),
        "{second:?}"
    );
    assert_eq!(before, a.state(), "the refused push changed something");
    assert_eq!(a.audit_count("refused"), refused + 1);
    assert!(
        !first.is_finished(),
        "the first push did not wait for the lock"
    );

    lock.commit();
    let first = first.join().unwrap();
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!(upload_rows(&a), 0);
    assert_no_tmp(&a);
    let rows: i64 = a.db().one(
        "SELECT COUNT(*) FROM artifacts WHERE name = 'app/y'",
        params![],
    );
    assert_eq!(rows, 1);
}

/// Pushes naming one upload at once (through two servers on PostgreSQL): one creates the
/// artifact; each other one either finds the upload used (404) or, having come after that
/// push committed, the same bytes already there (200). Never two uses, never a 5xx.
#[test]
fn pushes_naming_one_upload_at_once_use_it_once() {
    let a = Server::start();
    let b = common::pg_admin_url().map(|_| a.peer());
    let key_path = a.builder("builder", "app/*");
    let key = signing_key(&key_path);
    for round in 0..4u8 {
        let version = format!("1.0.{round}");
        let bytes = common::pseudo_random(30_000, 30 + round);
        let id = stage_ok(&a, &a.token, "app/z", &version, &key_path, &bytes);
        let st = build_statement(&key, "app/z", &version, "z.bin", &bytes);
        let urls = [a.url.clone(), b.as_ref().unwrap_or(&a).url.clone()];
        let pushes: Vec<_> = urls
            .into_iter()
            .map(|url| {
                let (token, id, st, version) =
                    (a.token.clone(), id.clone(), st.clone(), version.clone());
                std::thread::spawn(move || {
                    block(async {
                        let req = http()
                            .post(format!("{url}/api/v1/artifacts"))
                            .query(&[
                                ("name", "app/z"),
                                ("version", version.as_str()),
                                ("file", "z.bin"),
                                ("upload", id.as_str()),
                            ])
                            .header(
                                "arca-statement",
                                base64::engine::general_purpose::STANDARD.encode(&st),
                            )
                            .bearer_auth(token)
                            .body(Vec::new());
                        answer(req.send().await.unwrap()).await
                    })
                })
            })
            .collect();
        let answers: Vec<Answer> = pushes.into_iter().map(|p| p.join().unwrap()).collect();
        let created = answers.iter().filter(|x| x.status == 201).count();
        assert_eq!(created, 1, "round {round}: {answers:?}");
        for x in answers.iter().filter(|x| x.status != 201) {
            assert!(
                (x.status, x.code.as_str()) == (404, "no_upload") || x.status == 200,
                "round {round}: {x:?}"
            );
        }
        let rows: i64 = a.db().one(
            "SELECT COUNT(*) FROM artifacts WHERE name = 'app/z' AND version = ?1",
            params![&version],
        );
        assert_eq!(rows, 1, "round {round}");
        assert_eq!(upload_rows(&a), 0, "round {round}");
        assert_no_tmp(&a);
    }
}

#[test]
fn a_staged_upload_survives_a_restart_and_its_start_up_sweep() {
    // Every temporary object older than a millisecond that nothing names is swept at start.
    let mut s = Server::start_with(
        Some("[store]\ntemp_max_age = \"1ms\"\nsweep_interval = \"1h\"\n"),
        &[],
    );
    let key_path = s.builder("builder", "app/*");
    let bytes = common::pseudo_random(200_000, 40);
    let id = stage_ok(&s, &s.token, "app/r", "1.0.0", &key_path, &bytes);
    let staged = staged_file(&s, &id);
    assert!(staged.exists(), "{staged:?}");
    // What a crash mid-upload leaves: a temporary object that no row names.
    let leftover = s.home.join("blobs/tmp/0123456789abcdef0123456789abcdef");
    std::fs::write(&leftover, b"half an upload").unwrap();

    s.kill();
    s.launch();
    // `launch` returns once the server listens, after its start-up sweep.
    assert!(
        !leftover.exists(),
        "the start-up sweep kept an unnamed leftover"
    );
    assert!(
        staged.exists(),
        "the start-up sweep removed a staged upload"
    );
    assert!(s.log().contains("removed abandoned uploads"), "{}", s.log());

    let st = build_statement(&signing_key(&key_path), "app/r", "1.0.0", "r.bin", &bytes);
    let c = raw_commit(&s, &s.token, "app/r", "1.0.0", "r.bin", &id, &st);
    assert_eq!(c.status, 201, "{c:?}");
    let out = s.path("out");
    s.pull_ok("app/r", "dev", &out, &s.path("state"));
    let got = common::list_files(&out);
    assert_eq!(std::fs::read(out.join(&got[0])).unwrap(), bytes);
    assert_no_tmp(&s);
    assert_eq!(upload_rows(&s), 0);
}

#[test]
fn a_staged_upload_older_than_its_ttl_is_removed() {
    let s = Server::start_with(
        Some("[store]\nupload_ttl = \"1s\"\n[tuf]\nrefresh_interval = \"200ms\"\n"),
        &[],
    );
    let key_path = s.builder("builder", "app/*");
    let bytes = common::pseudo_random(20_000, 41);
    let id = stage_ok(&s, &s.token, "app/e", "1.0.0", &key_path, &bytes);
    let staged = staged_file(&s, &id);
    assert!(staged.exists());

    let gone = common::wait_until(Duration::from_secs(20), || {
        upload_row(&s, &id).is_none() && !staged.exists()
    });
    assert!(
        gone,
        "row {:?}, object there: {}; log:\n{}",
        upload_row(&s, &id),
        staged.exists(),
        s.log()
    );
    assert!(
        s.log()
            .contains("dropped staged uploads that no push claimed"),
        "{}",
        s.log()
    );
    let st = build_statement(&signing_key(&key_path), "app/e", "1.0.0", "e.bin", &bytes);
    let c = raw_commit(&s, &s.token, "app/e", "1.0.0", "e.bin", &id, &st);
    assert_eq!((c.status, c.code.as_str()), (404, "no_upload"), "{c:?}");
    assert_no_tmp(&s);
    assert_eq!(artifact_rows(&s), 0);
}

#[test]
fn an_upload_row_naming_anything_but_a_temporary_object_is_refused() {
    let s = Server::start();
    let key_path = s.builder("builder", "app/*");
    let key = signing_key(&key_path);
    // An artifact whose blob a tampered row points at.
    let kept = s.file("kept.bin", 10_000, 42);
    s.push(&kept, "app/kept", "1.0.0", &key_path);
    let kept_bytes = std::fs::read(&kept).unwrap();
    let kept_blob = blob_file(&s, &kept_bytes);
    let kept_rel = format!("blobs/{}", blake3_hex(&kept_bytes));
    let rows = artifact_rows(&s);

    let bytes = common::pseudo_random(10_000, 43);
    for (n, path) in [
        kept_rel.clone(),
        format!("tmp/../{kept_rel}"),
        "arca.toml".to_owned(),
        "tmp/0123456789ABCDEF0123456789ABCDEF".to_owned(),
    ]
    .iter()
    .enumerate()
    {
        let version = format!("1.0.{n}");
        let id = stage_ok(&s, &s.token, "app/t", &version, &key_path, &bytes);
        let own = staged_file(&s, &id);
        s.db().execute(
            "UPDATE uploads SET temp_path = ?1 WHERE id = ?2",
            params![path, &id],
        );
        let st = build_statement(&key, "app/t", &version, "t.bin", &bytes);
        let a = raw_commit(&s, &s.token, "app/t", &version, "t.bin", &id, &st);
        assert_eq!(
            (a.status, a.code.as_str()),
            (500, "internal"),
            "{path}: {a:?}"
        );
        assert!(!a.message.contains(path.as_str()), "{path}: {a:?}");
        assert!(s.log().contains("not a temporary upload"), "{}", s.log());
        // Nothing was published or deleted: the artifact's blob is whole, the staged bytes
        // were not published, no artifact row was added.
        assert_eq!(std::fs::read(&kept_blob).unwrap(), kept_bytes, "{path}");
        assert!(!blob_file(&s, &bytes).exists(), "{path}");
        assert_eq!(artifact_rows(&s), rows, "{path}");
        assert_eq!(get_artifact(&s, "app/t", &version).status, 404);
        assert!(
            own.exists(),
            "{path}: the real temporary object was touched"
        );
        std::fs::remove_file(&own).unwrap();
    }
    assert!(s.home.join("arca.toml").exists());
    s.pull_ok("app/kept", "dev", &s.path("out"), &s.path("state"));
}
