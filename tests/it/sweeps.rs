//! Nothing is left in the store for ever: a crash's temporary upload is swept while the server
//! runs (an upload still staged is not), and a push that loses the race for its
//! `name@version` removes the blob it published.

use crate::common;

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use common::Server;
use common::raw::{self, block};

/// Stages `bytes` for `name@version`; returns the upload id.
fn stage(s: &Server, key: &Path, name: &str, version: &str, bytes: &[u8]) -> String {
    let signer = raw::key_id(key);
    let a = block(async {
        raw::answer(
            raw::http()
                .post(format!("{}/api/v1/uploads", s.url))
                .query(&[("name", name), ("version", version), ("signer", &signer)])
                .bearer_auth(&s.token)
                .body(bytes.to_vec())
                .send()
                .await
                .unwrap(),
        )
        .await
    });
    assert_eq!(a.status, 201, "{a:?}");
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    v["upload"].as_str().unwrap().to_owned()
}

/// Commits a staged upload with a build statement over `bytes`; returns the answer.
fn commit(
    url: &str,
    token: &str,
    key: &Path,
    name: &str,
    version: &str,
    upload: &str,
    bytes: &[u8],
) -> raw::Answer {
    let key = arca_keys::SigningKey::read_file(key).unwrap();
    let st = raw::build_statement(&key, name, version, "f.bin", bytes);
    let header = base64::engine::general_purpose::STANDARD.encode(st);
    block(async {
        raw::answer(
            raw::http()
                .post(format!("{url}/api/v1/artifacts"))
                .query(&[
                    ("name", name),
                    ("version", version),
                    ("file", "f.bin"),
                    ("upload", upload),
                ])
                .bearer_auth(token)
                .header("arca-statement", header)
                .send()
                .await
                .unwrap(),
        )
        .await
    })
}

fn blob_file(s: &Server, bytes: &[u8]) -> std::path::PathBuf {
    s.home.join("blobs/blobs").join(raw::blake3_hex(bytes))
}

#[test]
fn a_crash_leftover_is_swept_while_the_server_runs_and_a_staged_upload_is_not() {
    let s = Server::start_with(
        Some("[store]\nsweep_interval = \"200ms\"\ntemp_max_age = \"1s\"\n"),
        &[],
    );
    let key = s.builder("builder", "app/*");
    let bytes = common::pseudo_random(10_000, 7);
    let upload = stage(&s, &key, "app/s", "1.0.0", &bytes);
    // What a server killed mid-upload leaves: a temporary object nobody owns.
    let leftover = s.home.join("blobs/tmp/0123456789abcdef0123456789abcdef");
    std::fs::write(&leftover, b"half an upload").unwrap();
    assert!(
        common::wait_until(Duration::from_secs(20), || !leftover.exists()),
        "the leftover was not swept"
    );
    // The staged upload is older than the leftover, yet still there: its push works.
    let a = commit(&s.url, &s.token, &key, "app/s", "1.0.0", &upload, &bytes);
    assert_eq!(a.status, 201, "{a:?}");
    assert!(blob_file(&s, &bytes).exists());
    assert!(s.log().contains("removed abandoned uploads"), "{}", s.log());
}

/// A push in one request: the statement over `bytes` in its header, the bytes in the body.
fn push_in_one_request(
    url: &str,
    token: &str,
    key: &Path,
    name: &str,
    version: &str,
    bytes: &[u8],
) -> raw::Answer {
    let key = arca_keys::SigningKey::read_file(key).unwrap();
    let st = raw::build_statement(&key, name, version, "f.bin", bytes);
    let header = base64::engine::general_purpose::STANDARD.encode(st);
    block(async {
        raw::answer(
            raw::http()
                .post(format!("{url}/api/v1/artifacts"))
                .query(&[("name", name), ("version", version), ("file", "f.bin")])
                .bearer_auth(token)
                .header("arca-statement", header)
                .header("content-type", "application/octet-stream")
                .body(bytes.to_vec())
                .send()
                .await
                .unwrap(),
        )
        .await
    })
}

/// The loser's side of the race, made deterministic: the push has published its blob and
/// waits for the write lock, which the test holds while it records another artifact for the
/// same `name@version` (what the winner's transaction does). The push then finds it, answers
/// 409, and must remove the blob it published. (A push in one request: a staged upload's
/// push claims its row, a write, before it publishes, and would wait for the lock there.)
#[test]
fn the_loser_of_a_race_for_a_version_leaves_no_blob() {
    let s = Server::start();
    let key = s.builder("builder", "app/*");
    let (winner, loser) = (
        common::pseudo_random(20_000, 1),
        common::pseudo_random(20_000, 2),
    );

    let db = s.db();
    db.begin_write();
    let push = {
        let (url, token, key, loser) = (s.url.clone(), s.token.clone(), key.clone(), loser.clone());
        std::thread::spawn(move || {
            push_in_one_request(&url, &token, &key, "app/r", "1.0.0", &loser)
        })
    };
    assert!(
        common::wait_until(Duration::from_secs(8), || blob_file(&s, &loser).exists()),
        "the push should have published its blob"
    );
    let (b3, sha) = (raw::blake3_hex(&winner), raw::sha256_hex(&winner));
    db.execute(
        "INSERT INTO blobs (blake3, sha256, size, created_at) VALUES (?1, ?2, 20000, '2026-01-01T00:00:00Z')",
        params![&b3, &sha],
    );
    db.execute(
        "INSERT INTO artifacts (name, version, file_name, blake3, media_type, uploaded_by, created_at) \
         VALUES ('app/r', '1.0.0', 'f.bin', ?1, 'application/octet-stream', 'token:winner', '2026-01-01T00:00:00Z')",
        params![&b3],
    );
    db.commit();
    let a = push.join().unwrap();
    assert_eq!(
        (a.status, a.code.as_str()),
        (409, "version_exists"),
        "{a:?}"
    );
    assert!(
        common::wait_until(Duration::from_secs(5), || !blob_file(&s, &loser).exists()),
        "the losing push's blob is still in the store"
    );
    assert!(common::list_files(&s.home.join("blobs")).is_empty());
}

/// Real concurrent pushes of one `name@version` with different bytes, a few rounds: however
/// the race goes, one wins and only its blob is left.
#[test]
fn concurrent_pushes_of_one_version_leave_only_the_winners_blob() {
    let s = Server::start();
    let key = s.builder("builder", "app/*");
    for round in 0..5u8 {
        let version = format!("1.0.{round}");
        let (a, b) = (
            common::pseudo_random(50_000, 2 * round + 10),
            common::pseudo_random(50_000, 2 * round + 11),
        );
        let ids = [
            stage(&s, &key, "app/c", &version, &a),
            stage(&s, &key, "app/c", &version, &b),
        ];
        let pushes: Vec<_> = [(ids[0].clone(), a.clone()), (ids[1].clone(), b.clone())]
            .into_iter()
            .map(|(id, bytes)| {
                let (url, token, key, version) =
                    (s.url.clone(), s.token.clone(), key.clone(), version.clone());
                std::thread::spawn(move || {
                    commit(&url, &token, &key, "app/c", &version, &id, &bytes)
                })
            })
            .collect();
        let answers: Vec<_> = pushes.into_iter().map(|p| p.join().unwrap()).collect();
        let mut statuses: Vec<u16> = answers.iter().map(|x| x.status).collect();
        statuses.sort();
        assert_eq!(statuses, [201, 409], "{answers:?}");
        let (won, lost) = if answers[0].status == 201 {
            (&a, &b)
        } else {
            (&b, &a)
        };
        assert!(
            common::wait_until(Duration::from_secs(5), || !blob_file(&s, lost).exists()),
            "round {round}: the losing push's blob is still in the store"
        );
        assert!(blob_file(&s, won).exists());
    }
}

#[test]
fn a_blob_left_by_a_crash_before_its_row_is_removed_at_the_next_start() {
    let mut s = Server::start();
    let key = s.builder("builder", "app/*");
    let kept = s.file("kept.bin", 5000, 1);
    s.push(&kept, "app/kept", "1.0.0", &key);
    let kept_blob = blob_file(&s, &std::fs::read(&kept).unwrap());

    // What a SIGKILL between storing the bytes and committing the row leaves: a blob that no
    // artifact names, written a while ago.
    let orphan_bytes = b"bytes of a push that never committed".to_vec();
    let orphan = blob_file(&s, &orphan_bytes);
    std::fs::write(&orphan, &orphan_bytes).unwrap();
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 3600);
    for f in [&orphan, &kept_blob] {
        std::fs::File::options()
            .write(true)
            .open(f)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
    }

    s.kill();
    s.launch();
    assert!(!orphan.exists(), "the orphan blob survived a restart");
    assert!(kept_blob.exists(), "a referenced blob was removed");
    s.pull_ok("app/kept", "dev", &s.path("out"), &s.path("state"));
    assert!(
        s.log().contains("removed blobs that no artifact names"),
        "{}",
        s.log()
    );
}
