//! Root rotation (docs/key-management.md): the root keys and threshold change through a trust
//! version and every channel's next TUF root, signed by the old threshold and the new one;
//! clients pinned to the first root follow the chain, arca's and python-tuf alike.

use crate::common;

use std::path::{Path, PathBuf};

use common::Server;
use common::prometheus::metrics;

use crate::common::p;

fn pubkey(key: &Path) -> String {
    format!("{}.pub", key.display())
}

/// Rotates to `new` keys with `threshold`, signing with `sign`.
fn rotate(s: &Server, new: &[PathBuf], threshold: u32, sign: &[&Path]) -> std::process::Output {
    let mut args: Vec<String> = vec!["trust".into(), "rotate-root".into()];
    for k in new {
        args.extend(["--key".into(), pubkey(k)]);
    }
    args.extend(["--threshold".into(), threshold.to_string()]);
    for k in sign {
        args.extend(["--sign".into(), p(k).to_owned()]);
    }
    s.arca().args(&args).output().unwrap()
}

fn roots(s: &Server, channel: &str) -> Vec<i64> {
    let c = s.db();
    c.all(
        "SELECT version FROM tuf_metadata WHERE channel = ?1 AND role = 'root' ORDER BY version",
        params![channel],
    )
}

#[test]
fn rotation_to_two_of_three_then_one_signature_is_not_enough() {
    let s = Server::start();
    let new: Vec<PathBuf> = (1..=3).map(|i| s.key(&format!("root{i}"))).collect();
    let old = s.root_key();

    // Signed by the old key and only one new key: the new threshold (2) is not met.
    let before = s.state();
    let out = rotate(&s, &new, 2, &[&old, &new[0]]);
    let err = common::failure_line(&["trust", "rotate-root"], &out);
    assert!(
        err.contains("root_threshold") && err.contains("root (new)"),
        "{err}"
    );
    // Signed by new keys only: the current threshold is not met.
    let out = rotate(&s, &new, 2, &[&new[0], &new[1]]);
    let err = common::failure_line(&["trust", "rotate-root"], &out);
    assert!(err.contains("root (current)"), "{err}");
    assert_eq!(before, s.state());

    let out = rotate(&s, &new, 2, &[&old, &new[0], &new[2]]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for ch in ["dev", "staging", "prod"] {
        assert_eq!(roots(&s, ch), vec![1, 2, 3], "{ch}");
    }

    // Now a trust change signed by one of the three is refused; by two it is accepted.
    let b = s.key("builder");
    let err = s.fails(&[
        "trust",
        "add-key",
        &pubkey(&b),
        "--role",
        "builder",
        "--scope",
        "**",
        "--sign",
        p(&new[1]),
    ]);
    assert!(
        err.contains("root_threshold") && err.contains("2 required"),
        "{err}"
    );
    // The old root key no longer counts at all.
    let err = s.fails(&[
        "trust",
        "add-key",
        &pubkey(&b),
        "--role",
        "builder",
        "--scope",
        "**",
        "--sign",
        p(&old),
        "--sign",
        p(&new[1]),
    ]);
    assert!(err.contains("root_threshold"), "{err}");
    s.ok(&[
        "trust",
        "add-key",
        &pubkey(&b),
        "--role",
        "builder",
        "--scope",
        "**",
        "--sign",
        p(&new[1]),
        "--sign",
        p(&new[2]),
    ]);
}

#[test]
fn a_plain_trust_change_cannot_swap_the_root_keys_without_the_channel_roots() {
    let s = Server::start();
    let new = s.key("newroot");
    arca::client::install_crypto();
    // The next trust document with a new root key, signed by old and new, sent without roots.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = rt.block_on(async {
        let r = reqwest::Client::new()
            .get(format!("{}/api/v1/trust", s.url))
            .send()
            .await
            .unwrap();
        r.bytes().await.unwrap()
    });
    let cur: arca_keys::TrustDocument = arca_keys::SignedEnvelope::from_slice(&body)
        .unwrap()
        .decode("trust")
        .unwrap();
    let new_key = arca_keys::SigningKey::read_file(&new).unwrap();
    let old_key = arca_keys::SigningKey::read_file(&s.root_key()).unwrap();
    let mut next = cur.next();
    next.keys.insert(
        new_key.key_id(),
        arca_keys::KeyEntry {
            public: new_key.public().to_tuf(),
            roles: [arca_keys::Role::Root].into(),
            scope: vec![],
            status: arca_keys::KeyStatus::Active,
            not_after: None,
            label: None,
            replaced_by: None,
        },
    );
    next.root = arca_keys::RootRole {
        keyids: [new_key.key_id()].into(),
        threshold: 1,
    };
    let env = arca_keys::SignedEnvelope::sign(&next, &[&old_key, &new_key]).unwrap();
    let before = s.state();
    let (status, text) = rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/trust", s.url))
            .bearer_auth(&s.token)
            .body(env.to_bytes())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("root_rotation"), "{text}");
    assert_eq!(before, s.state());
}

#[test]
fn clients_pinned_to_the_first_root_follow_two_root_rotations_and_an_online_rotation() {
    let s = Server::start();
    let b = s.builder("builder", "app/*");
    let f1 = s.file("a.bin", 10_000, 1);
    s.push(&f1, "app/a", "1", &b);
    let state = s.path("state");
    s.pull_ok("app/a", "dev", &s.path("o1"), &state);
    let py_state = s.path("py-state");
    let (ok, log) = s.python_tuf(
        "dev",
        "app/a/a.bin",
        &s.path("py1"),
        &["--metadata-dir", p(&py_state)],
    );
    assert!(ok, "{log}");

    let first: Vec<PathBuf> = (1..=3).map(|i| s.key(&format!("r{i}"))).collect();
    let out = rotate(&s, &first, 2, &[&s.root_key(), &first[0], &first[1]]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second: Vec<PathBuf> = (1..=2).map(|i| s.key(&format!("q{i}"))).collect();
    let out = rotate(&s, &second, 1, &[&first[1], &first[2], &second[1]]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.ok(&[
        "trust",
        "rotate-online",
        "--channel",
        "dev",
        "--sign",
        p(&second[0]),
    ]);

    let f2 = s.file("b.bin", 12_000, 2);
    s.push(&f2, "app/b", "1", &b);

    // The same client state, and a fresh one from the pinned root.json (v1).
    s.pull_ok("app/b", "dev", &s.path("o2"), &state);
    s.pull_ok("app/b", "dev", &s.path("o3"), &s.path("fresh"));
    assert_eq!(
        std::fs::read(s.path("o3/b.bin")).unwrap(),
        std::fs::read(&f2).unwrap()
    );
    let (ok, log) = s.python_tuf(
        "dev",
        "app/b/b.bin",
        &s.path("py2"),
        &["--metadata-dir", p(&py_state)],
    );
    assert!(ok && log.contains("root=5"), "{log}");
}

#[test]
fn a_served_root_that_skips_a_version_is_refused_by_the_client() {
    let s = Server::start();
    let b = s.builder("builder", "**");
    let f = s.file("x.bin", 1000, 3);
    s.push(&f, "x", "1", &b);
    // A root that says version 4, signed by the root key, served as 3.root.json.
    let c = s.db();
    let body: Vec<u8> = c.one(
        "SELECT body FROM tuf_metadata WHERE channel = 'dev' AND role = 'root' AND version = 2",
        params![],
    );
    let env = arca::tuf::metadata::Envelope::from_slice("root", &body).unwrap();
    let mut root: arca::tuf::metadata::Root = env.decode().unwrap();
    root.version = 4;
    let key = arca_keys::SigningKey::read_file(&s.root_key()).unwrap();
    let forged = arca::tuf::metadata::Envelope::sign(&root, &[&key]).to_bytes();
    c.execute(
        "INSERT INTO tuf_metadata (channel, role, version, body, expires) VALUES ('dev', 'root', 3, ?1, ?2)",
        params![forged, root.expires],
    );
    let err = s.pull_fails("x", "dev", &s.path("out"), &s.path("state"));
    assert!(
        err.contains("root metadata version 4 where 3 was required"),
        "{err}"
    );
    assert!(common::list_files(&s.path("out")).is_empty());
    let (ok, log) = s.python_tuf(
        "dev",
        "x/x.bin",
        &s.path("py"),
        &["--expect-error", "BadVersionNumberError"],
    );
    assert!(ok, "{log}");
}

#[test]
fn a_root_rotation_signed_offline_by_each_holder_in_turn() {
    let s = Server::start();
    let new: Vec<PathBuf> = (1..=3).map(|i| s.key(&format!("h{i}"))).collect();
    let change = s.path("change.json");
    let mut args: Vec<String> = vec!["trust".into(), "propose".into(), "rotate-root".into()];
    for k in &new {
        args.extend(["--key".into(), pubkey(k)]);
    }
    args.extend([
        "--threshold".into(),
        "2".into(),
        "--out".into(),
        p(&change).to_owned(),
    ]);
    let out = s.arca().args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = s.state();

    // Each holder sees what they sign.
    let shown = s.ok(&["trust", "sign", p(&change), "--key", p(&s.root_key())]);
    assert!(
        shown.contains("rotate the root keys to 2 of 3")
            && shown.contains("next TUF root of: dev, prod, staging"),
        "{shown}"
    );
    s.ok(&["trust", "sign", p(&change), "--key", p(&new[0])]);
    // One new signature is not the new threshold: refused, nothing changes.
    let err = s.fails(&["trust", "submit", p(&change)]);
    assert!(err.contains("root_threshold"), "{err}");
    assert_eq!(before, s.state());
    s.ok(&["trust", "sign", p(&change), "--key", p(&new[2])]);
    let done = s.ok(&["trust", "submit", p(&change)]);
    assert!(done.contains("submitted"), "{done}");
    assert_eq!(roots(&s, "dev"), vec![1, 2, 3]);
    s.pull_fails("nothing", "dev", &s.path("o"), &s.path("st")); // the chain verifies; no such release
}

#[test]
fn revoking_a_builder_lists_the_releases_it_built() {
    let s = Server::start();
    let b = s.builder("builder", "app/*");
    let f = s.file("a.bin", 1000, 5);
    s.push(&f, "app/a", "1.0.0", &b);
    s.ok(&["promote", "app/a@1.0.0", "--to", "staging"]);
    let id = s.ok(&["key", "id", &pubkey(&b)]).trim().to_owned();
    let out = s.ok(&["trust", "revoke", &id, "--sign", p(&s.root_key())]);
    assert!(
        out.contains("dev holds app/a@1.0.0") && out.contains("staging holds app/a@1.0.0"),
        "{out}"
    );
    let err = s.pull_fails("app/a", "dev", &s.path("o"), &s.path("st"));
    assert!(err.contains("revoked"), "{err}");
}

#[test]
fn a_rotated_builder_key_is_retired_but_its_releases_stay_valid() {
    let s = Server::start();
    let old = s.builder("old", "app/*");
    let new = s.key("new");
    let f1 = s.file("a.bin", 1000, 7);
    s.push(&f1, "app/a", "1.0.0", &old);
    let id = s.ok(&["key", "id", &pubkey(&old)]).trim().to_owned();
    let out = s.ok(&[
        "trust",
        "rotate",
        &id,
        "--new",
        &pubkey(&new),
        "--sign",
        p(&s.root_key()),
    ]);
    assert!(out.contains("retired now"), "{out}");
    // The old key signs nothing new...
    let f2 = s.file("b.bin", 1000, 8);
    let err = s.fails(&[
        "push",
        p(&f2),
        "--name",
        "app/b",
        "--version",
        "1.0.0",
        "--key",
        p(&old),
    ]);
    // ...and its refusal names the key that replaced it.
    let new_id = s.ok(&["key", "id", &pubkey(&new)]).trim().to_owned();
    assert!(
        err.contains("retired") && err.contains(&format!("replaced by {new_id}")),
        "{err}"
    );
    // ...the new one has its roles and scope...
    s.push(&f2, "app/b", "1.0.0", &new);
    let err = s.fails(&[
        "push",
        p(&f2),
        "--name",
        "other/b",
        "--version",
        "1.0.0",
        "--key",
        p(&new),
    ]);
    assert!(err.contains("app/*"), "{err}");
    // ...and what the old one built before still verifies and promotes.
    s.pull_ok("app/a", "dev", &s.path("o"), &s.path("st"));
    s.ok(&["promote", "app/a@1.0.0", "--to", "staging"]);
}

#[test]
fn during_an_overlap_both_keys_may_sign() {
    let s = Server::start();
    let old = s.builder("old", "app/*");
    let new = s.key("new");
    let id = s.ok(&["key", "id", &pubkey(&old)]).trim().to_owned();
    let out = s.ok(&[
        "trust",
        "rotate",
        &id,
        "--new",
        &pubkey(&new),
        "--overlap",
        "1h",
        "--sign",
        p(&s.root_key()),
    ]);
    assert!(out.contains("signs nothing new after"), "{out}");
    let f1 = s.file("a.bin", 1000, 9);
    s.push(&f1, "app/a", "1.0.0", &old);
    let f2 = s.file("b.bin", 1000, 10);
    s.push(&f2, "app/b", "1.0.0", &new);
}

#[test]
fn online_keys_rotate_and_pinned_clients_keep_verifying() {
    let s = Server::start();
    let b = s.builder("builder", "**");
    let f1 = s.file("a.bin", 5000, 11);
    s.push(&f1, "a", "1", &b);
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
    let old = common::online_key(&s, "dev").key_id();

    // Signed by a key that is not the root: refused, the old key stays.
    let stranger = s.key("stranger");
    let err = s.fails(&[
        "trust",
        "rotate-online",
        "--channel",
        "dev",
        "--sign",
        p(&stranger),
    ]);
    assert!(
        err.contains("root_rotation") && err.contains("current root keys"),
        "{err}"
    );
    assert_eq!(common::online_key(&s, "dev").key_id(), old);

    let out = s.ok(&["trust", "rotate-online", "--sign", p(&s.root_key())]);
    for ch in ["dev", "staging", "prod"] {
        assert!(out.contains(&format!("{ch}: online key rotated")), "{out}");
        assert_eq!(roots(&s, ch), vec![1, 2, 3], "{ch}");
    }
    assert_ne!(common::online_key(&s, "dev").key_id(), old);

    // Existing client state and fresh clients follow the new root to the new key.
    let f2 = s.file("b.bin", 6000, 12);
    s.push(&f2, "b", "1", &b);
    s.pull_ok("b", "dev", &s.path("o2"), &state);
    s.pull_ok("b", "dev", &s.path("o3"), &s.path("fresh"));
    let (ok, log) = s.python_tuf(
        "dev",
        "b/b.bin",
        &s.path("py2"),
        &["--metadata-dir", p(&py_state)],
    );
    assert!(ok && log.contains("root=3"), "{log}");

    // After a restart the server signs with the new key (the rotation survived).
    let mut s = s;
    s.kill();
    s.launch();
    let f3 = s.file("c.bin", 7000, 13);
    s.push(&f3, "c", "1", &b);
    s.pull_ok("c", "dev", &s.path("o4"), &state);
}

#[test]
fn expiry_is_watched_in_status_and_metrics() {
    let s = Server::start();
    let soon = arca_keys::format_time(chrono::Utc::now() + chrono::Duration::days(2));
    let k = s.key("short");
    s.ok(&[
        "trust",
        "add-key",
        &pubkey(&k),
        "--role",
        "builder",
        "--scope",
        "**",
        "--not-after",
        &soon,
        "--sign",
        p(&s.root_key()),
    ]);
    let out = s.ok(&["trust", "status", "--warn-within", "30days"]);
    assert!(out.contains(&format!("signs until {soon} WARN")), "{out}");
    assert!(
        out.contains("dev      timestamp") && !out.contains("EXPIRED"),
        "{out}"
    );

    let before = metrics(&s);
    let ts = before[r#"arca_tuf_metadata_expiry_seconds{channel="dev",role="timestamp"}"#];
    assert!(ts > 3600.0 && ts <= 86_400.0, "{ts}");
    assert!(
        before
            .keys()
            .any(|k| k.starts_with("arca_key_not_after_seconds{")),
        "{before:?}"
    );
    let targets = r#"arca_tuf_metadata_version{channel="dev",role="targets"}"#;
    let f = s.file("a.bin", 100, 1);
    s.push(&f, "a", "1", &k);
    let after = metrics(&s);
    assert_eq!(after[targets], before[targets] + 1.0);
    assert!(after["arca_audit_entries"] > before["arca_audit_entries"]);
}

/// Serves a forged `3.root.json` for dev: the next root with new root keys, signed by `signers`.
fn serve_forged_root(
    s: &Server,
    new_root: &arca_keys::SigningKey,
    signers: &[&arca_keys::SigningKey],
) {
    let c = s.db();
    let body: Vec<u8> = c.one(
        "SELECT body FROM tuf_metadata WHERE channel = 'dev' AND role = 'root' AND version = 2",
        params![],
    );
    let cur: arca::tuf::metadata::Root = arca::tuf::metadata::Envelope::from_slice("root", &body)
        .unwrap()
        .decode()
        .unwrap();
    let next = arca::tuf::repo::rotated_root(&cur, &[new_root.public()], 1, cur.expires.clone());
    let forged = arca::tuf::metadata::Envelope::sign(&next, signers).to_bytes();
    c.execute(
        "INSERT INTO tuf_metadata (channel, role, version, body, expires) VALUES ('dev', 'root', 3, ?1, ?2)",
        params![forged, next.expires],
    );
}

#[test]
fn a_served_root_signed_only_by_old_or_only_by_new_keys_is_refused_by_clients() {
    for only_old in [true, false] {
        let s = Server::start();
        let b = s.builder("builder", "**");
        let f = s.file("x.bin", 1000, 4);
        s.push(&f, "x", "1", &b);
        let old = arca_keys::SigningKey::read_file(&s.root_key()).unwrap();
        let new = arca_keys::SigningKey::generate().unwrap();
        let signer = if only_old { &old } else { &new };
        serve_forged_root(&s, &new, &[signer]);
        let err = s.pull_fails("x", "dev", &s.path("out"), &s.path("state"));
        assert!(
            err.contains("root metadata: 0 valid signature(s)"),
            "{only_old}: {err}"
        );
        assert!(common::list_files(&s.path("out")).is_empty());
        let (ok, log) = s.python_tuf(
            "dev",
            "x/x.bin",
            &s.path("py"),
            &["--expect-error", "UnsignedMetadataError"],
        );
        assert!(ok, "{only_old}: {log}");
    }
}

#[test]
fn the_server_refuses_a_rotation_whose_channel_root_skips_a_version() {
    let s = Server::start();
    let new = s.key("r1");
    let change = s.path("change.json");
    s.ok(&[
        "trust",
        "rotate-root",
        "--key",
        &pubkey(&new),
        "--threshold",
        "1",
        "--out",
        p(&change),
    ]);
    // Bump dev's root from v3 to v4 in the file, then sign it properly.
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&change).unwrap()).unwrap();
    v["roots"]["dev"]["signed"]["version"] = serde_json::json!(4);
    std::fs::write(&change, serde_json::to_vec(&v).unwrap()).unwrap();
    s.ok(&[
        "trust",
        "sign",
        p(&change),
        "--key",
        p(&s.root_key()),
        "--key",
        p(&new),
    ]);
    let before = s.state();
    let err = s.fails(&["trust", "submit", p(&change)]);
    assert!(
        err.contains("root_rotation") && err.contains("root version 4 cannot follow 2"),
        "{err}"
    );
    assert_eq!(before, s.state());
}

#[test]
fn rotation_under_load_fails_no_pull_and_accepts_nothing_unsigned() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let s = Arc::new(Server::start());
    let b = s.builder("builder", "app/*");
    let f = s.file("base.bin", 2000, 20);
    s.push(&f, "app/x", "0", &b);
    let stop = Arc::new(AtomicBool::new(false));
    let (pulls, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    // A client that keeps its state pulls continuously while the keys change.
    let puller = {
        let (s, stop, pulls, failures) = (s.clone(), stop.clone(), pulls.clone(), failures.clone());
        std::thread::spawn(move || {
            let state = s.path("load-state");
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let args = s.pull_args("app/x", "dev", &s.path(&format!("lo{i}")), &state);
                let out = s.arca().args(&args).output().unwrap();
                pulls.fetch_add(1, Ordering::Relaxed);
                if !out.status.success() {
                    eprintln!("pull failed: {}", String::from_utf8_lossy(&out.stderr));
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        })
    };
    // Pushes continue, and an unsigned push is attempted every round.
    let mut builder = b.clone();
    let stranger = s.key("stranger");
    let roots: Vec<PathBuf> = (1..=3).map(|i| s.key(&format!("lr{i}"))).collect();
    // Each key change must be seen by pulls that start after it (a loaded machine makes pulls
    // slow, so count them instead of sleeping).
    let wait_for_pulls = |n: usize| {
        let target = pulls.load(Ordering::Relaxed) + n;
        assert!(
            common::wait_until(std::time::Duration::from_secs(60), || pulls
                .load(Ordering::Relaxed)
                >= target),
            "the puller stalled"
        );
    };
    for round in 1..=3 {
        let f = s.file(&format!("r{round}.bin"), 2000 + round, round as u8);
        s.push(&f, "app/x", &format!("{round}.0"), &builder);
        let err = s.fails(&[
            "push",
            p(&f),
            "--name",
            "app/x",
            "--version",
            &format!("{round}.1"),
            "--key",
            p(&stranger),
        ]);
        assert!(err.contains("untrusted_key"), "{err}");
        match round {
            1 => {
                // Builder key rotation.
                let next = s.key(&format!("builder{round}"));
                let id = s.ok(&["key", "id", &pubkey(&builder)]).trim().to_owned();
                s.ok(&[
                    "trust",
                    "rotate",
                    &id,
                    "--new",
                    &pubkey(&next),
                    "--sign",
                    p(&s.root_key()),
                ]);
                builder = next;
            }
            2 => {
                s.ok(&["trust", "rotate-online", "--sign", p(&s.root_key())]);
            }
            _ => {
                let out = rotate(&s, &roots, 2, &[&s.root_key(), &roots[0], &roots[1]]);
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        wait_for_pulls(2);
    }
    let f = s.file("last.bin", 3000, 99);
    s.push(&f, "app/x", "9.0", &builder);
    wait_for_pulls(2);
    stop.store(true, Ordering::Relaxed);
    puller.join().unwrap();
    assert!(
        pulls.load(Ordering::Relaxed) >= 5,
        "too few pulls to mean anything"
    );
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "pulls failed during the rotations"
    );
    // Nothing unsigned was accepted: every artifact has a build statement by a trusted builder.
    let unsigned: i64 = s
        .db()
        .one(
            "SELECT COUNT(*) FROM artifacts a WHERE NOT EXISTS (SELECT 1 FROM statements st WHERE st.artifact_id = a.id)",
            params![],
        );
    assert_eq!(unsigned, 0);
    let msg = s.pull_ok("app/x", "dev", &s.path("final"), &s.path("load-state"));
    assert!(msg.contains("app/x@9.0"), "{msg}");
}
