//! Promotion guarantees (docs/security.md: 4, 5, 6 and 8):
//!
//! - concurrent promotions and rollbacks of one name serialise: no lost update, one targets
//!   version per change, history and metadata agree;
//! - the server's online key alone cannot make arca's client install a release that lacks the
//!   approvals the channel's policy asks for (a generic TUF client does install it);
//! - a SIGKILL in the middle of promotions leaves state, metadata and audit log consistent;
//! - a rollback is a roll-forward: a higher metadata version pointing at older content, while
//!   replayed old metadata stays refused;
//! - a promotion re-checks the approvals against the trust document as it is at that moment.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime};

use common::{Client, Server, forge_targets_with_online_key, latest_meta, set_meta_body};
use serde_json::Value;

const NAME: &str = "app/x";

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The file a version of `app/x` is pushed from (its name is the target's file name).
fn file_name(version: &str) -> String {
    format!("x-{version}.bin")
}

/// Pushes `app/x@version` (bytes seeded by `seed`); returns the file.
fn push_version(s: &Server, key: &Path, version: &str, seed: u8) -> PathBuf {
    let f = s.file(&file_name(version), 20_000 + usize::from(seed) * 1000, seed);
    s.push(&f, NAME, version, key);
    f
}

/// A staging policy without `from`: any validly built release may be promoted, downgrades too.
fn open_staging(s: &Server) {
    let p = s.path("open.toml");
    std::fs::write(&p, "allow_downgrade = true\n").unwrap();
    s.ok(&[
        "policy",
        "set",
        "staging",
        path_str(&p),
        "--sign",
        path_str(&s.root_key()),
    ]);
}

fn history(s: &Server, channel: &str) -> Vec<Value> {
    let out = s.ok(&["history", NAME, "--channel", channel, "--json"]);
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The `signed` part of the newest `role` metadata of `channel`.
pub(crate) fn latest_signed(s: &Server, channel: &str, role: &str) -> (u64, Value) {
    let (v, body) = latest_meta(s, channel, role);
    let env = arca::tuf::metadata::Envelope::from_slice(role, &body).unwrap();
    (v, env.signed)
}

/// The (target path, custom.version) of every entry of the newest `channel` targets naming
/// `app/x`.
fn listed_versions(s: &Server, channel: &str) -> Vec<(String, String)> {
    let (_, signed) = latest_signed(s, channel, "targets");
    signed["targets"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, t)| t["custom"]["name"] == NAME)
                .map(|(p, t)| {
                    (
                        p.clone(),
                        t["custom"]["version"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every stored version of `role` in `channel`, ascending.
pub(crate) fn meta_versions(s: &Server, channel: &str, role: &str) -> Vec<u64> {
    let c = s.db();
    c.all(
        "SELECT version FROM tuf_metadata WHERE channel = ?1 AND role = ?2 ORDER BY version",
        params![channel, role],
    )
}

fn count(s: &Server, sql: &str) -> i64 {
    s.db().one(sql, params![])
}

/// The newest timestamp names the newest snapshot, which names the newest targets.
fn assert_metadata_chain(s: &Server, channel: &str) {
    let (tv, _) = latest_meta(s, channel, "targets");
    let (sv, snap) = latest_signed(s, channel, "snapshot");
    let (_, ts) = latest_signed(s, channel, "timestamp");
    assert_eq!(snap["meta"]["targets.json"]["version"], tv, "{snap}");
    assert_eq!(ts["meta"]["snapshot.json"]["version"], sv, "{ts}");
}

/// Asserts that a refused pull left nothing in DIR (which may not exist at all).
fn assert_nothing_in(dir: &Path) {
    let files = common::list_files(dir);
    assert!(
        files.is_empty(),
        "refused pull left files in {dir:?}: {files:?}"
    );
}

/// Pulls `app/x` from `channel` into a fresh `out` and asserts it got exactly `want`.
fn pull_expect(s: &Server, channel: &str, out: &Path, state: &Path, version: &str, want: &Path) {
    let msg = s.pull_ok(NAME, channel, out, state);
    assert!(msg.contains(&format!("verified {NAME}@{version}")), "{msg}");
    assert_eq!(
        common::list_files(out),
        vec![file_name(version)],
        "pull of {channel}"
    );
    assert_eq!(
        std::fs::read(out.join(file_name(version))).unwrap(),
        std::fs::read(want).unwrap(),
        "pulled bytes of {channel} are not {NAME}@{version}'s"
    );
}

pub(crate) fn key_id(key: &Path) -> String {
    arca_keys::PublicKey::read_file(&PathBuf::from(format!("{}.pub", key.display())))
        .unwrap()
        .key_id()
        .to_string()
}

// 1. Concurrent promotions and rollbacks of one name.

#[test]
fn concurrent_promotions_and_rollbacks_serialise_without_lost_updates() {
    let s = Server::start();
    let key = s.builder("builder", "app/*");
    let versions: Vec<String> = (0..5).map(|k| format!("1.0.{k}")).collect();
    let mut files = std::collections::BTreeMap::new();
    for (k, v) in versions.iter().enumerate() {
        files.insert(v.clone(), push_version(&s, &key, v, k as u8 + 1));
        s.ok(&["promote", &format!("{NAME}@{v}"), "--to", "staging"]);
    }
    let before = history(&s, "staging");
    assert_eq!(
        before
            .iter()
            .map(|h| h["version"].as_str().unwrap())
            .collect::<Vec<_>>(),
        versions,
    );
    open_staging(&s);
    let (targets_before, _) = latest_meta(&s, "staging", "targets");

    // 20 requests at once: even ones promote, odd ones roll back, over all five versions.
    let n = 20;
    let barrier = Barrier::new(n);
    let results: Vec<(&str, Output)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (s, barrier, versions) = (&s, &barrier, &versions);
                scope.spawn(move || {
                    let v = &versions[(i / 2 + i % 3) % versions.len()];
                    barrier.wait();
                    if i.is_multiple_of(2) {
                        let release = format!("{NAME}@{v}");
                        let args = ["promote", &release, "--to", "staging", "--json"];
                        ("promote", s.arca().args(args).output().unwrap())
                    } else {
                        let args = ["rollback", NAME, "--channel", "staging", "--to", v];
                        let args = [&args[..], &["--json"]].concat();
                        ("rollback", s.arca().args(args).output().unwrap())
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    // Which requests changed the channel, and the targets version each one reported.
    let mut changed = Vec::new();
    for (action, out) in &results {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            let r: Value = serde_json::from_str(&stdout).unwrap();
            match *action {
                "promote" if r["promoted"] == true => {
                    changed.push((*action, r["targets_version"].as_u64().unwrap()))
                }
                "promote" => assert_eq!(r["already_current"], true, "{stdout}"),
                _ => changed.push((*action, r["targets_version"].as_u64().unwrap())),
            }
        } else {
            // The only acceptable failure: the release asked for was current at that moment
            // (a rollback to the current release). Never a lock timeout or an internal error.
            assert!(
                *action == "rollback" && stderr.contains("already current"),
                "{action} failed: {stderr}{stdout}"
            );
        }
    }
    assert!(
        changed.len() >= 2,
        "too few changes to mean anything: {changed:?}"
    );

    // History: a consistent sequence with exactly one new row per reported change.
    let after = history(&s, "staging");
    let new = &after[before.len()..];
    assert_eq!(after[..before.len()], before[..], "history was rewritten");
    assert_eq!(
        new.len(),
        changed.len(),
        "new history rows {new:?} vs changes reported {changed:?}"
    );
    for w in after.windows(2) {
        assert!(
            w[0]["seq"].as_i64().unwrap() < w[1]["seq"].as_i64().unwrap(),
            "{after:?}"
        );
    }
    for h in &after {
        assert!(versions.iter().any(|v| h["version"] == v.as_str()), "{h}");
    }
    for action in ["promote", "rollback"] {
        assert_eq!(
            new.iter().filter(|h| h["action"] == action).count(),
            changed.iter().filter(|(a, _)| *a == action).count(),
            "{action}: {new:?} vs {changed:?}"
        );
    }

    // Each change published exactly one targets version: the reported ones are distinct and
    // are exactly the versions that follow the one before the storm.
    let mut reported: Vec<u64> = changed.iter().map(|(_, v)| *v).collect();
    reported.sort_unstable();
    let expected: Vec<u64> = (targets_before + 1..=targets_before + changed.len() as u64).collect();
    assert_eq!(reported, expected);
    let all = meta_versions(&s, "staging", "targets");
    let top = *all.last().unwrap();
    assert_eq!(all, (1..=top).collect::<Vec<_>>(), "gaps or duplicates");
    let releases = count(
        &s,
        "SELECT COUNT(*) FROM releases WHERE channel = 'staging'",
    );
    assert_eq!(
        top - 1,
        releases as u64,
        "targets v1 is init's; one more per change"
    );
    assert_metadata_chain(&s, "staging");

    // The newest targets lists exactly the last history row's release, and a client gets it.
    let last = after.last().unwrap()["version"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        listed_versions(&s, "staging"),
        vec![(format!("{NAME}/{}", file_name(&last)), last.clone())]
    );
    pull_expect(
        &s,
        "staging",
        &s.path("out"),
        &s.path("state"),
        &last,
        &files[&last],
    );
}

// 2. The online key cannot skip the approvals.

#[test]
fn online_key_cannot_publish_an_unapproved_release_to_prod() {
    let s = Server::start_tamperable();
    let key = s.builder("builder", "app/*");
    let file = push_version(&s, &key, "1.0.0", 1);
    s.ok(&["promote", &format!("{NAME}@1.0.0"), "--to", "staging"]);
    let target = format!("{NAME}/{}", file_name("1.0.0"));

    // The server itself refuses: no approval.
    let err = s.fails(&["promote", &format!("{NAME}@1.0.0"), "--to", "prod"]);
    assert!(err.contains("require_approvals: 0 of 1"), "{err}");

    // A server whose prod online key is compromised lists the release in prod anyway, with the
    // entry exactly as arca publishes it (digests and the build statement, no approval).
    let (_, staging) = latest_signed(&s, "staging", "targets");
    let entry = staging["targets"][&target].clone();
    assert!(entry.is_object(), "{staging}");
    forge_targets_with_online_key(&s, "prod", |signed| {
        if !signed["targets"].is_object() {
            signed["targets"] = Value::Object(Default::default());
        }
        signed["targets"][&target] = entry;
    });

    // arca's client checks prod's policy against the root-signed trust document: the approval
    // it requires is missing, and the online key cannot supply one.
    let dir = s.path("out");
    let err = s.pull_fails(NAME, "prod", &dir, &s.path("state"));
    assert!(
        err.contains("app/x@1.0.0 does not meet the prod policy"),
        "{err}"
    );
    assert!(err.contains("require_approvals: 0 of 1"), "{err}");
    assert_nothing_in(&dir);

    // A generic TUF client (python-tuf) installs it: for TUF the online key IS the targets
    // role. Checking the policy's signature rules is what arca's own client adds.
    // The forged metadata is all the attacker needs: prod's target URL answers only for releases
    // prod has held, so the bytes come from a mirror (here staging's targets URL, which serves
    // the same consistent-snapshot path). Neither client trusts where the bytes come from.
    let mirror = format!("{}/tuf/staging/targets/", s.url);
    let (ok, log) = s.python_tuf("prod", &target, &s.path("py"), &["--targets-url", &mirror]);
    assert!(ok && log.contains("VERIFIED"), "{log}");
    // (python-tuf names the file after the URL-encoded target path.)
    let got = common::list_files(&s.path("py"));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        std::fs::read(s.path("py").join(&got[0])).unwrap(),
        std::fs::read(&file).unwrap()
    );
}

// 3. SIGKILL in the middle of promotions.

/// Promotes 1.0.1 and rolls back to 1.0.0, alternately, until told to stop (or the server is
/// gone). Counts the requests that got an answer.
fn churn(c: Client, start: usize, stop: Arc<AtomicBool>, answered: Arc<AtomicUsize>) {
    let mut i = start;
    while !stop.load(Ordering::Relaxed) {
        let out = if i.is_multiple_of(2) {
            c.run(&["promote", &format!("{NAME}@1.0.1"), "--to", "staging"])
        } else {
            c.run(&["rollback", NAME, "--channel", "staging", "--to", "1.0.0"])
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || stderr.contains("already current") {
            answered.fetch_add(1, Ordering::Relaxed);
        }
        i += 1;
    }
}

/// 1000..2000 ms, differing from run to run.
fn random_ish_delay(round: u32) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    Duration::from_millis(1000 + u64::from((nanos / 1000 + round * 337) % 1000))
}

fn assert_consistent_after_crash(s: &Server, files: &[(&str, &PathBuf)], state: &Path, round: u32) {
    let c = s.db();
    // SQLite's own check of its file after the kill (PostgreSQL has no such file to check: its
    // write-ahead log replays on its own; the checks below hold on both).
    if !c.is_postgres() {
        let check: String = c.one("PRAGMA integrity_check", params![]);
        assert_eq!(check, "ok");
    }
    drop(c);

    // The newest targets lists exactly the release of the last history row.
    let h = history(s, "staging");
    let last = h.last().unwrap()["version"].as_str().unwrap().to_owned();
    assert_eq!(
        listed_versions(s, "staging"),
        vec![(format!("{NAME}/{}", file_name(&last)), last.clone())],
        "round {round}: history ends with {last}"
    );
    assert_metadata_chain(s, "staging");
    let all = meta_versions(s, "staging", "targets");
    assert_eq!(
        all,
        (1..=*all.last().unwrap()).collect::<Vec<_>>(),
        "round {round}"
    );
    let releases = count(s, "SELECT COUNT(*) FROM releases WHERE channel = 'staging'");
    assert_eq!(*all.last().unwrap() - 1, releases as u64, "round {round}");

    // Every promotion or rollback in history has its audit entry, and no audit entry claims one
    // that history lacks.
    let rows = count(
        s,
        "SELECT COUNT(*) FROM releases WHERE action IN ('promote', 'rollback')",
    );
    let audited = count(
        s,
        "SELECT COUNT(*) FROM audit WHERE action IN ('promote', 'rollback') AND outcome LIKE 'ok%'",
    );
    assert_eq!(rows, audited, "round {round}");
    s.ok(&["audit", "verify"]);

    // A client that kept its state across the crashes follows and gets the last row's bytes.
    let want = files.iter().find(|(v, _)| *v == last).unwrap().1;
    pull_expect(
        s,
        "staging",
        &s.path(&format!("out-{round}")),
        state,
        &last,
        want,
    );
}

#[test]
fn sigkill_during_promotions_leaves_state_metadata_and_audit_consistent() {
    let mut s = Server::start();
    let key = s.builder("builder", "app/*");
    let f0 = push_version(&s, &key, "1.0.0", 1);
    s.ok(&["promote", &format!("{NAME}@1.0.0"), "--to", "staging"]);
    let f1 = push_version(&s, &key, "1.0.1", 2);
    s.ok(&["promote", &format!("{NAME}@1.0.1"), "--to", "staging"]);
    open_staging(&s);
    let files = [("1.0.0", &f0), ("1.0.1", &f1)];
    let state = s.path("state");

    let mut total_answered = 0;
    for round in 0..3 {
        let rows_before = history(&s, "staging").len();
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        // Two clients at once, so the kill is likely to land while one waits on the writer.
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let (c, stop, answered) = (Client::of(&s), stop.clone(), answered.clone());
                std::thread::spawn(move || churn(c, w, stop, answered))
            })
            .collect();
        std::thread::sleep(random_ish_delay(round));
        s.kill();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().unwrap();
        }
        total_answered += answered.load(Ordering::Relaxed);

        s.launch();
        assert!(
            history(&s, "staging").len() >= rows_before,
            "round {round}: history shrank"
        );
        assert_consistent_after_crash(&s, &files, &state, round);
    }
    assert!(
        total_answered >= 6,
        "the churn barely ran ({total_answered} answers): the test proves little"
    );
}

// 4. Rollback is a roll-forward.

#[test]
fn rollback_is_a_roll_forward_and_old_metadata_stays_refused() {
    let s = Server::start_tamperable();
    let key = s.builder("builder", "app/*");
    let f0 = push_version(&s, &key, "1.0.0", 1);
    s.ok(&["promote", &format!("{NAME}@1.0.0"), "--to", "staging"]);
    let f1 = push_version(&s, &key, "1.0.1", 2);
    s.ok(&["promote", &format!("{NAME}@1.0.1"), "--to", "staging"]);

    let state = s.path("state");
    let py_state = s.path("py-state");
    pull_expect(&s, "staging", &s.path("out1"), &state, "1.0.1", &f1);
    let target1 = format!("{NAME}/{}", file_name("1.0.1"));
    let (ok, log) = s.python_tuf(
        "staging",
        &target1,
        &s.path("py1"),
        &["--metadata-dir", path_str(&py_state)],
    );
    assert!(ok, "{log}");
    let (targets_before, _) = latest_meta(&s, "staging", "targets");
    let (ts_before, old_ts) = latest_meta(&s, "staging", "timestamp");

    let out = s.ok(&[
        "rollback",
        NAME,
        "--channel",
        "staging",
        "--reason",
        "bad release",
        "--json",
    ]);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (r["from"].as_str(), r["to"].as_str()),
        (Some("1.0.1"), Some("1.0.0"))
    );
    let (targets_after, _) = latest_meta(&s, "staging", "targets");
    assert!(targets_after > targets_before);
    assert_eq!(r["targets_version"], targets_after);
    let (ts_after, _) = latest_meta(&s, "staging", "timestamp");
    assert!(ts_after > ts_before);
    let h = history(&s, "staging");
    let last = h.last().unwrap();
    assert_eq!(
        (&last["version"], &last["action"]),
        (&Value::from("1.0.0"), &Value::from("rollback"))
    );
    assert_eq!(last["reason"], "bad release");

    // The client that had the newer release accepts the newer metadata and gets the older bytes;
    // so does a generic TUF client with state.
    pull_expect(&s, "staging", &s.path("out2"), &state, "1.0.0", &f0);
    let target0 = format!("{NAME}/{}", file_name("1.0.0"));
    let (ok, log) = s.python_tuf(
        "staging",
        &target0,
        &s.path("py2"),
        &["--metadata-dir", path_str(&py_state)],
    );
    assert!(ok, "{log}");

    // The pre-rollback timestamp (validly signed, unexpired) replayed: refused.
    set_meta_body(&s, "staging", "timestamp", ts_after, &old_ts);
    let dir = s.path("out3");
    let err = s.pull_fails(NAME, "staging", &dir, &state);
    assert!(
        err.contains(&format!(
            "timestamp rollback: version {ts_before} is older than the trusted version {ts_after}"
        )),
        "{err}"
    );
    assert_nothing_in(&dir);
    let (ok, log) = s.python_tuf(
        "staging",
        &target0,
        &s.path("py3"),
        &[
            "--metadata-dir",
            path_str(&py_state),
            "--expect-error",
            "BadVersionNumberError",
        ],
    );
    assert!(ok, "{log}");
}

// 5. Promotion re-checks approvals at the moment it happens.

#[test]
fn approval_by_a_key_revoked_since_no_longer_counts() {
    let s = Server::start();
    let key = s.builder("builder", "app/*");
    let file = push_version(&s, &key, "1.0.0", 1);
    let release = format!("{NAME}@1.0.0");
    s.ok(&["promote", &release, "--to", "staging"]);
    let a = s.approver("approver-a", "prod");
    s.ok(&[
        "approve",
        &release,
        "--channel",
        "prod",
        "--key",
        path_str(&a),
    ]);

    // With A's approval the promotion would pass now.
    let out = s.ok(&["promote", &release, "--to", "prod", "--dry-run"]);
    assert!(out.contains("would be allowed"), "{out}");

    let id = key_id(&a);
    s.ok(&["trust", "revoke", &id, "--sign", path_str(&s.root_key())]);
    let refused_before = count(
        &s,
        "SELECT COUNT(*) FROM audit WHERE action = 'promote' AND outcome = 'refused'",
    );
    let state = s.state();
    let err = s.fails(&["promote", &release, "--to", "prod"]);
    assert!(err.contains("require_approvals: 0 of 1"), "{err}");
    assert!(history(&s, "prod").is_empty());
    assert_eq!(s.state(), state, "a refused promotion changed state");
    let refused_after = count(
        &s,
        "SELECT COUNT(*) FROM audit WHERE action = 'promote' AND outcome = 'refused'",
    );
    assert_eq!(refused_after, refused_before + 1, "the refusal is audited");

    // A valid approver's approval is what counts: with it, the same promotion passes.
    let b = s.approver("approver-b", "prod");
    s.ok(&[
        "approve",
        &release,
        "--channel",
        "prod",
        "--key",
        path_str(&b),
    ]);
    s.ok(&["promote", &release, "--to", "prod"]);
    pull_expect(
        &s,
        "prod",
        &s.path("out"),
        &s.path("pstate"),
        "1.0.0",
        &file,
    );
}
