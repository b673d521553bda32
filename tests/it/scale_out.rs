//! Three servers on one PostgreSQL database and one S3 bucket (moto), the second and third
//! made with `arca init --join`, as docs/operations.md ("Several servers") sets them up: no
//! push, promotion, poll, key rotation or background task may depend on which server a request
//! reaches, and losing any one server loses nothing.

use crate::common;

use common::cluster::Cluster;
use common::{Server, p};
use serde_json::Value;
use std::time::Duration;

/// GET `url` over HTTP: (status, body).
fn get(url: &str) -> (u16, Vec<u8>) {
    crate::tuf_repo::get(url)
}

/// The signed part of the timestamp `s` serves for `channel`, and the key ids that signed it.
fn timestamp(s: &Server, channel: &str) -> (u64, Vec<String>) {
    let (code, body) = get(&format!("{}/tuf/{channel}/metadata/timestamp.json", s.url));
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    let keys = v["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["keyid"].as_str().unwrap().to_owned())
        .collect();
    (v["signed"]["version"].as_u64().unwrap(), keys)
}

/// The versions of `channel`'s `role` files, in order.
fn versions(s: &Server, channel: &str, role: &str) -> Vec<i64> {
    s.db().all(
        "SELECT version FROM tuf_metadata WHERE channel = ?1 AND role = ?2 ORDER BY version",
        params![channel, role],
    )
}

fn assert_contiguous(v: &[i64], what: &str) {
    let first = v[0];
    let expected: Vec<i64> = (first..first + v.len() as i64).collect();
    assert_eq!(v, expected, "{what}: versions with a gap or a duplicate");
}

/// `/readyz` of `s` as JSON (any status).
fn readiness(s: &Server) -> Option<Value> {
    let (_, body) = get(&format!("{}/readyz", s.url));
    serde_json::from_slice(&body).ok()
}

fn is_leader(s: &Server) -> bool {
    readiness(s).is_some_and(|r| r["leader"] == true)
}

#[test]
fn promotions_of_many_names_through_three_servers_lose_nothing() {
    let Some(c) = Cluster::start(3, "") else {
        return;
    };
    let a = &c.servers[0];
    let key = a.builder("ci", "app/*");
    let n = 9;
    for i in 0..n {
        let f = a.file(&format!("f{i}.bin"), 2048 + i, i as u8);
        c.at(i).push(&f, &format!("app/n{i}"), "1.0.0", &key);
    }
    let before = versions(a, "staging", "targets").len();
    let barrier = std::sync::Barrier::new(n);
    std::thread::scope(|sc| {
        for i in 0..n {
            let (s, barrier) = (c.at(i), &barrier);
            sc.spawn(move || {
                barrier.wait();
                s.ok(&["promote", &format!("app/n{i}@1.0.0"), "--to", "staging"]);
            });
        }
    });
    let targets = versions(a, "staging", "targets");
    assert_eq!(
        targets.len(),
        before + n,
        "one targets version per promotion"
    );
    assert_contiguous(&targets, "staging targets");
    // Every server serves the newest targets, and it lists every name.
    let (_, newest) = common::latest_meta(a, "staging", "targets");
    let newest = String::from_utf8(newest).unwrap();
    for i in 0..n {
        assert!(
            newest.contains(&format!("app/n{i}/")),
            "app/n{i} lost: {newest}"
        );
    }
    let served: Vec<u64> = c
        .servers
        .iter()
        .map(|s| timestamp(s, "staging").0)
        .collect();
    assert!(served.windows(2).all(|w| w[0] == w[1]), "{served:?}");
    for s in &c.servers {
        s.ok(&["audit", "verify"]);
    }
}

#[test]
fn two_pushes_of_one_version_with_other_bytes_through_two_servers_one_wins() {
    let Some(c) = Cluster::start(3, "") else {
        return;
    };
    let key = c.servers[0].builder("ci", "app/*");
    let files: Vec<_> = (0..2)
        .map(|i| c.servers[0].file(&format!("v{i}.bin"), 300_000, 40 + i as u8))
        .collect();
    let barrier = std::sync::Barrier::new(2);
    let outs: Vec<std::process::Output> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..2)
            .map(|i| {
                let (s, f, key, barrier) = (c.at(i), &files[i], &key, &barrier);
                sc.spawn(move || {
                    let mut cmd = s.arca();
                    cmd.args(["push", p(f), "--name", "app/race", "--version", "1.0.0"])
                        .args(["--key", p(key)]);
                    barrier.wait();
                    cmd.output().unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won: Vec<bool> = outs.iter().map(|o| o.status.success()).collect();
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{outs:?}");
    let loser = outs.iter().find(|o| !o.status.success()).unwrap();
    let err = String::from_utf8_lossy(&loser.stderr);
    assert!(
        err.contains("version_exists") || err.contains("already exists"),
        "{err}"
    );
    // One artifact, one blob in the bucket: the loser left nothing behind.
    let rows: i64 = c.servers[0].db().one(
        "SELECT COUNT(*) FROM artifacts WHERE name = 'app/race'",
        params![],
    );
    assert_eq!(rows, 1);
    let blobs: Vec<_> = c
        .moto
        .objects()
        .into_iter()
        .filter(|(k, _)| k.contains("/blobs/"))
        .collect();
    assert_eq!(blobs.len(), 1, "{blobs:?}");
}

#[test]
fn clients_alternating_between_three_servers_while_they_publish_see_no_replay() {
    let Some(c) = Cluster::start(3, "") else {
        return;
    };
    let a = &c.servers[0];
    let key = a.builder("ci", "app/*");
    // Every release is a file named x.bin, so the target path stays app/x/x.bin.
    let release = |i: usize| {
        std::fs::create_dir_all(a.path(&format!("v{i}"))).unwrap();
        a.file(&format!("v{i}/x.bin"), 4096, 1 + i as u8)
    };
    a.push(&release(0), "app/x", "1.0.0", &key);
    a.ok(&["promote", "app/x@1.0.0", "--to", "staging"]);
    let done = std::sync::atomic::AtomicBool::new(false);
    let (py_state, arca_state) = (a.path("py-state"), a.path("arca-state"));
    std::fs::create_dir_all(&py_state).unwrap();
    let rounds = std::thread::scope(|sc| {
        sc.spawn(|| {
            // Releases through every server in turn: each a new dev and staging version.
            for i in 1..=6 {
                c.at(i)
                    .push(&release(i), "app/x", &format!("1.0.{i}"), &key);
                c.at(i + 1)
                    .ok(&["promote", &format!("app/x@1.0.{i}"), "--to", "staging"]);
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let mut rounds = 0;
        while !done.load(std::sync::atomic::Ordering::SeqCst) || rounds < 6 {
            let s = c.at(rounds);
            let out = s.path(&format!("py{rounds}"));
            let (ok, log) = s.python_tuf(
                "dev",
                "app/x/x.bin",
                &out,
                &["--metadata-dir", p(&py_state)],
            );
            assert!(
                ok,
                "python-tuf through server {} failed:\n{log}",
                rounds % 3
            );
            s.pull_ok(
                "app/x",
                "staging",
                &s.path(&format!("o{rounds}")),
                &arca_state,
            );
            rounds += 1;
        }
        rounds
    });
    assert!(rounds >= 6, "{rounds}");
}

#[test]
fn an_online_key_rotated_through_one_server_signs_on_every_server() {
    let Some(c) = Cluster::start(3, "") else {
        return;
    };
    let (a, b, third) = (&c.servers[0], &c.servers[1], &c.servers[2]);
    let key = a.builder("ci", "app/*");
    let (_, before) = timestamp(third, "dev");
    a.ok(&[
        "trust",
        "rotate-online",
        "--channel",
        "dev",
        "--sign",
        p(&a.root_key()),
    ]);
    let (_, after_rotation) = timestamp(third, "dev");
    assert_ne!(
        after_rotation, before,
        "C serves the new key's timestamp at once"
    );
    // B publishes next: with the new key, which it never had in memory.
    let f = a.file("r.bin", 1000, 3);
    b.push(&f, "app/r", "1.0.0", &key);
    for s in &c.servers {
        let (_, signed_by) = timestamp(s, "dev");
        assert_eq!(signed_by, after_rotation, "{}", s.url);
    }
    // A pinned client follows the rotation through C.
    let state = third.path("state");
    third.pull_ok("app/r", "dev", &third.path("o"), &state);
}

#[test]
fn the_leader_killed_another_server_takes_over_and_keeps_metadata_fresh() {
    // A timestamp that lives 4 s: only a working leader keeps it from expiring.
    let Some(mut c) = Cluster::start(
        3,
        "[tuf]\ntimestamp_expiry = \"4s\"\nrefresh_interval = \"500ms\"\n",
    ) else {
        return;
    };
    let deadline = Duration::from_secs(20);
    assert!(
        common::wait_until(deadline, || c
            .servers
            .iter()
            .filter(|s| is_leader(s))
            .count()
            == 1),
        "one leader"
    );
    let leader = c.servers.iter().position(is_leader).unwrap();
    let (v0, _) = timestamp(&c.servers[(leader + 1) % 3], "dev");
    c.servers[leader].kill();
    let killed = c.servers.remove(leader);
    // Another server leads within 10 s.
    let started = std::time::Instant::now();
    assert!(
        common::wait_until(Duration::from_secs(10), || c.servers.iter().any(is_leader)),
        "no new leader 10 s after the leader was killed"
    );
    eprintln!("new leader after {:?}", started.elapsed());
    // And the timestamp keeps being re-signed: two new versions, each unexpired.
    let s = &c.servers[0];
    assert!(
        common::wait_until(deadline, || timestamp(s, "dev").0 >= v0 + 2),
        "the timestamp was not re-signed after the leader died"
    );
    let (code, body) = get(&format!("{}/tuf/dev/metadata/timestamp.json", s.url));
    assert_eq!(code, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(v["signed"]["expires"].as_str().unwrap()).unwrap();
    assert!(expires > chrono::Utc::now(), "{v}");
    drop(killed);
}

#[test]
fn a_server_killed_mid_push_leaves_nothing_and_the_retry_through_another_succeeds() {
    let Some(mut c) = Cluster::start(3, "") else {
        return;
    };
    let key = c.servers[0].builder("ci", "app/*");
    let big = c.servers[0].file("big.bin", 48 << 20, 9);
    let mut push = c.servers[0].arca();
    push.args(["push", p(&big), "--name", "app/big", "--version", "1.0.0"])
        .args(["--key", p(&key)]);
    let mut child = push
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill A while the upload streams into it.
    let metrics = format!("{}/metrics", c.servers[0].url);
    assert!(
        common::wait_until(Duration::from_secs(60), || {
            let (_, m) = get(&metrics);
            String::from_utf8_lossy(&m).contains("arca_transfers_in_flight{kind=\"upload\"} 1")
        }),
        "the upload never started"
    );
    c.servers[0].kill();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the push through the killed server cannot succeed"
    );
    // Nothing of it is visible: no artifact, nothing in dev, no blob.
    let b = &c.servers[1];
    let rows: i64 = b.db().one(
        "SELECT COUNT(*) FROM artifacts WHERE name = 'app/big'",
        params![],
    );
    assert_eq!(rows, 0);
    let (_, dev) = common::latest_meta(b, "dev", "targets");
    assert!(!String::from_utf8_lossy(&dev).contains("app/big"));
    assert!(
        !c.moto.objects().iter().any(|(k, _)| k.contains("/blobs/")),
        "{:?}",
        c.moto.objects()
    );
    // The same command through B succeeds, and the release verifies from C.
    b.push(&big, "app/big", "1.0.0", &key);
    let third = &c.servers[2];
    third.pull_ok("app/big", "dev", &third.path("o"), &third.path("state"));
    let got = std::fs::read(third.path("o").join("big.bin")).unwrap();
    assert_eq!(got, std::fs::read(&big).unwrap());
    let rows: i64 = b.db().one(
        "SELECT COUNT(*) FROM artifacts WHERE name = 'app/big'",
        params![],
    );
    assert_eq!(rows, 1);
    c.servers.remove(0);
}

#[test]
fn an_upload_staged_through_one_server_is_committed_through_another() {
    let Some(c) = Cluster::start(3, "") else {
        return;
    };
    use crate::staged_uploads::{raw_commit, signing_key, stage_ok};
    let (a, third) = (&c.servers[0], &c.servers[2]);
    let key_path = a.builder("ci", "app/*");
    let bytes = common::pseudo_random(700_000, 30);
    let id = stage_ok(a, &a.token, "app/s", "1.0.0", &key_path, &bytes);
    // The staged bytes wait in the bucket's tmp/, for whichever server the push reaches.
    let tmp: Vec<_> = c
        .moto
        .objects()
        .into_iter()
        .filter(|(k, _)| k.contains("/tmp/"))
        .collect();
    assert_eq!(tmp.len(), 1, "{tmp:?}");
    let st =
        common::raw::build_statement(&signing_key(&key_path), "app/s", "1.0.0", "s.bin", &bytes);
    let answer = raw_commit(third, &third.token, "app/s", "1.0.0", "s.bin", &id, &st);
    assert_eq!(answer.status, 201, "{answer:?}");
    assert!(
        !c.moto.objects().iter().any(|(k, _)| k.contains("/tmp/")),
        "the committed upload's temporary object is gone: {:?}",
        c.moto.objects()
    );
    let out = c.servers[1].path("out");
    c.servers[1].pull_ok("app/s", "dev", &out, &c.servers[1].path("state"));
    assert_eq!(std::fs::read(out.join("s.bin")).unwrap(), bytes);
}
