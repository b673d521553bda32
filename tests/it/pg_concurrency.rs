//! Concurrency of use cases that touch shared rows (src/db/locks.rs: trust, then channel, then
//! the audit head), run through one server (on PostgreSQL: through two on one database and
//! one blob store, alternately). They are written for PostgreSQL, where the server
//! runs a pool of connections under READ COMMITTED and only the row locks serialise writers,
//! but they hold on SQLite too (one writer at a time), so they run on both engines:
//!
//! - many promotions and rollbacks of several names into one channel at once: no gap in the
//!   targets versions, one version per change, metadata, history and `arca ls` agree, and the
//!   audit chain verifies;
//! - a promotion racing the revocation of its builder key: a promotion that committed did so
//!   before the revocation, never after it;
//! - two pushes of one name@version with different bytes at once: one wins, the other is a
//!   conflict, and only the winner's bytes are stored.

use crate::common;
use crate::promotion_guarantees::{key_id, latest_signed, meta_versions};
use crate::staged_uploads::assert_no_tmp;

use std::collections::BTreeMap;
use std::process::Output;
use std::sync::Barrier;

use common::Server;
use common::raw::{self, Answer, blake3_hex, path_str, push_args};
use serde_json::Value;

const STAGING: &str = "staging";

/// The servers the runs of a test go through: `s`, and on PostgreSQL a second server on the
/// same database and blobs (`Server::peer`), so that the row locks, not one process, decide.
fn servers(s: &Server) -> Vec<Server> {
    common::pg_admin_url()
        .map(|_| s.peer())
        .into_iter()
        .collect()
}

/// Runs every `args` as its own `arca` process, all released at once by a barrier, the i-th
/// through `s` or one of `others` in turn; returns their outputs in order.
fn run_at_once(s: &Server, others: &[Server], runs: &[Vec<String>]) -> Vec<Output> {
    let all: Vec<&Server> = std::iter::once(s).chain(others).collect();
    let barrier = Barrier::new(runs.len());
    std::thread::scope(|sc| {
        let handles: Vec<_> = runs
            .iter()
            .enumerate()
            .map(|(i, args)| {
                let (barrier, s) = (&barrier, all[i % all.len()]);
                sc.spawn(move || {
                    let mut cmd = s.arca();
                    cmd.args(args);
                    barrier.wait();
                    cmd.output().unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// The newest `releases` row of every name in `channel`: name -> version.
fn current_releases(s: &Server, channel: &str) -> BTreeMap<String, String> {
    let rows: Vec<(String, String)> = s.db().all(
        "SELECT r.name, a.version FROM releases r JOIN artifacts a ON a.id = r.artifact_id \
         WHERE r.channel = ?1 AND r.id = \
         (SELECT MAX(r2.id) FROM releases r2 WHERE r2.channel = r.channel AND r2.name = r.name)",
        params![channel],
    );
    rows.into_iter().collect()
}

fn release_rows(s: &Server, channel: &str) -> i64 {
    s.db().one(
        "SELECT COUNT(*) FROM releases WHERE channel = ?1",
        params![channel],
    )
}

/// What the newest targets metadata of `channel` lists: name -> versions (sorted).
fn listed(s: &Server, channel: &str) -> BTreeMap<String, Vec<String>> {
    let (_, signed) = latest_signed(s, channel, "targets");
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in signed["targets"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
    {
        out.entry(t["custom"]["name"].as_str().unwrap().to_owned())
            .or_default()
            .push(t["custom"]["version"].as_str().unwrap().to_owned());
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

/// What `arca ls --channel CH --json` reports: name -> version.
fn ls(s: &Server, channel: &str) -> BTreeMap<String, String> {
    let out = s.ok(&["ls", "--channel", channel, "--json"]);
    let board: Vec<Value> = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let ch = board
        .iter()
        .find(|c| c["channel"] == channel)
        .unwrap_or_else(|| panic!("no {channel} in: {out}"));
    ch["releases"]
        .as_array()
        .unwrap_or_else(|| panic!("no releases in: {out}"))
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The newest `targets` versions of `channel` are 1..=N, without a gap or a duplicate.
fn assert_contiguous_targets(s: &Server, channel: &str) -> u64 {
    let versions = meta_versions(s, channel, "targets");
    let n = versions.len() as u64;
    assert_eq!(
        versions,
        (1..=n).collect::<Vec<_>>(),
        "{channel} targets versions have gaps"
    );
    n
}

// 1. Promotions and rollbacks of several names into one channel at once.

#[test]
fn concurrent_promotions_and_rollbacks_of_many_names_into_one_channel() {
    let s = Server::start();
    let others = servers(&s);
    let key = s.builder("builder", "app/*");
    let names: Vec<String> = (0..5).map(|i| format!("app/c{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let seed = (i * 2) as u8;
        let f1 = s.file(&format!("c{i}-1.bin"), 5_000 + i * 100, seed);
        s.push(&f1, name, "1.0.0", &key);
        s.ok(&["promote", &format!("{name}@1.0.0"), "--to", STAGING]);
        let f2 = s.file(&format!("c{i}-2.bin"), 6_000 + i * 100, seed + 1);
        s.push(&f2, name, "2.0.0", &key);
        s.ok(&["promote", &format!("{name}@2.0.0"), "--to", STAGING]);
    }
    let targets_before = assert_contiguous_targets(&s, STAGING);
    let rows_before = release_rows(&s, STAGING);
    let audits_before = s.audit_count("ok");
    let (mut rolled_back, mut not_rolled_back) = (0, 0);

    // Two rounds of 20 at once: each name gets two rollbacks (to 1.0.0) and two promotions
    // (of 2.0.0) a round, interleaved by the scheduler.
    for round in 0..2 {
        let runs: Vec<Vec<String>> = (0..20)
            .map(|i| {
                let name = &names[i % names.len()];
                if (i / names.len()).is_multiple_of(2) {
                    strings(&[
                        "rollback",
                        &format!("{name}@1.0.0"),
                        "--channel",
                        STAGING,
                        "--reason",
                        &format!("round {round}"),
                    ])
                } else {
                    strings(&["promote", &format!("{name}@2.0.0"), "--to", STAGING])
                }
            })
            .collect();
        let outs = run_at_once(&s, &others, &runs);
        for (args, out) in runs.iter().zip(&outs) {
            let t = text(out);
            if args[0] == "rollback" && out.status.success() {
                rolled_back += 1;
            } else if args[0] == "promote" {
                // 2.0.0 is current in dev and newer than anything in staging: always allowed.
                assert!(out.status.success(), "{args:?}: {t}");
            } else if !out.status.success() {
                // A rollback to the release that is already current is refused as such,
                // cleanly; never a server error or a lost race surfacing to the client.
                not_rolled_back += 1;
                let err =
                    common::failure_line(&args.iter().map(String::as_str).collect::<Vec<_>>(), out);
                assert!(err.contains("409 already_current"), "{args:?}: {t}");
            }
        }
    }

    eprintln!("rollbacks done: {rolled_back}, refused: {not_rolled_back}");
    assert!(rolled_back > 0, "no rollback went through");
    // One targets version per recorded change, numbered without gaps.
    let targets_after = assert_contiguous_targets(&s, STAGING);
    let new_rows = release_rows(&s, STAGING) - rows_before;
    assert!(new_rows > 0, "no change was recorded");
    assert_eq!(
        (targets_after - targets_before) as i64,
        new_rows,
        "targets versions published vs. releases recorded"
    );
    // One `ok` audit entry per recorded change.
    assert_eq!(s.audit_count("ok") - audits_before, new_rows);

    // Every name's current release is what the newest targets lists, and what `arca ls` says.
    let current = current_releases(&s, STAGING);
    assert_eq!(current.len(), names.len(), "{current:?}");
    let want: BTreeMap<String, Vec<String>> = current
        .iter()
        .map(|(n, v)| (n.clone(), vec![v.clone()]))
        .collect();
    assert_eq!(listed(&s, STAGING), want, "newest targets vs. releases");
    assert_eq!(ls(&s, STAGING), current, "arca ls vs. releases");
    // `arca history` ends on the same release for each name.
    for (name, version) in &current {
        let out = s.ok(&["history", name, "--channel", STAGING, "--json"]);
        let h: Vec<Value> = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(
            h.last().unwrap()["version"],
            version.as_str(),
            "{name}: {out}"
        );
    }
    // The server serves that newest targets.
    let served = common::raw::block(async {
        let r = common::raw::http()
            .get(format!("{}/tuf/{STAGING}/metadata/targets.json", s.url))
            .send()
            .await
            .unwrap();
        r.bytes().await.unwrap().to_vec()
    });
    let served: Value = serde_json::from_slice(&served).unwrap();
    assert_eq!(served["signed"]["version"], targets_after);
    s.ok(&["audit", "verify"]);
}

// 2. A promotion racing the revocation of its builder key.

/// A raw authenticated POST of `body` (JSON) to `path`, prepared before and sent after
/// `barrier`.
fn post_at(s: &Server, barrier: &Barrier, path: &str, body: Vec<u8>) -> Answer {
    raw::block(async {
        let req = raw::http()
            .post(format!("{}{path}", s.url))
            .bearer_auth(&s.token)
            .header("content-type", "application/json")
            .body(body);
        barrier.wait();
        raw::answer(req.send().await.unwrap()).await
    })
}

#[test]
fn promotion_racing_a_revocation_of_its_builder_key_commits_before_it_or_not_at_all() {
    let s = Server::start();
    let root = s.root_key();
    const PER_KEY: usize = 4;
    let (mut before, mut refused) = (0, 0);
    for i in 0..10 {
        let key = s.builder(&format!("builder{i}"), &format!("app/r{i}-*"));
        let names: Vec<String> = (0..PER_KEY).map(|j| format!("app/r{i}-{j}")).collect();
        for (j, name) in names.iter().enumerate() {
            let f = s.file(&format!("r{i}-{j}.bin"), 4_000 + j * 10, (i * 8 + j) as u8);
            s.push(&f, name, "1.0.0", &key);
        }
        // The revocation is signed beforehand, so that only its submission (one request)
        // races the promotions of the key's releases.
        let change = s.path(&format!("revoke-{i}.json"));
        s.ok(&[
            "trust",
            "propose",
            "revoke",
            &key_id(&key),
            "--sign",
            path_str(&root),
            "--out",
            path_str(&change),
        ]);
        let change: Value = serde_json::from_slice(&std::fs::read(&change).unwrap()).unwrap();
        let trust = serde_json::to_vec(&change["trust"]).unwrap();
        let seq_before: i64 = s.db().one("SELECT MAX(seq) FROM audit", params![]);

        let barrier = Barrier::new(PER_KEY + 1);
        let (answers, revoked) = std::thread::scope(|sc| {
            let promotions: Vec<_> = names
                .iter()
                .map(|name| {
                    let body = serde_json::to_vec(&serde_json::json!({
                        "name": name, "version": "1.0.0", "to": STAGING,
                    }))
                    .unwrap();
                    let barrier = &barrier;
                    let s = &s;
                    sc.spawn(move || post_at(s, barrier, "/api/v1/promotions", body))
                })
                .collect();
            let revoked = post_at(&s, &barrier, "/api/v1/trust", trust);
            let answers: Vec<Answer> = promotions.into_iter().map(|h| h.join().unwrap()).collect();
            (answers, revoked)
        });
        assert_eq!(revoked.status, 201, "revocation: {}", revoked.body);

        let c = s.db();
        let changes: Vec<(i64, String)> = c.all(
            "SELECT seq, outcome FROM audit WHERE seq > ?1 AND action = 'trust.change' \
             ORDER BY seq",
            params![seq_before],
        );
        assert_eq!(changes.len(), 1, "round {i}: {changes:?}");
        assert_eq!(changes[0].1, "ok", "round {i}: {changes:?}");
        let revoked_at = changes[0].0;
        let current = current_releases(&s, STAGING);
        let listed_now = listed(&s, STAGING);
        for (name, a) in names.iter().zip(&answers) {
            let subject = format!("{name}@1.0.0 -> {STAGING}");
            let entries: Vec<(i64, String)> = c.all(
                "SELECT seq, outcome FROM audit WHERE seq > ?1 AND subject = ?2 ORDER BY seq",
                params![seq_before, &subject],
            );
            assert_eq!(
                entries.len(),
                1,
                "round {i} {name}: {entries:?}: {}",
                a.body
            );
            let (seq, outcome) = &entries[0];
            let published = current.contains_key(name) || listed_now.contains_key(name);
            if a.status == 200 {
                before += 1;
                let v: Value = serde_json::from_str(&a.body).unwrap();
                assert_eq!(v["promoted"], true, "round {i} {name}: {}", a.body);
                assert!(outcome.starts_with("ok"), "round {i} {name}: {outcome}");
                assert!(
                    *seq < revoked_at,
                    "round {i}: promotion of {name} (audit seq {seq}) committed after the \
                     revocation of its only builder key (audit seq {revoked_at})"
                );
                assert!(published, "round {i}: {name} promoted but not published");
            } else {
                refused += 1;
                assert_eq!(a.status, 403, "round {i} {name}: {}", a.body);
                assert!(
                    a.body.contains("require_build_signature"),
                    "round {i} {name}: {}",
                    a.body
                );
                assert_eq!(outcome, "refused", "round {i} {name}");
                assert!(
                    *seq > revoked_at,
                    "round {i}: {name} refused (audit seq {seq}) before the revocation \
                     (audit seq {revoked_at})"
                );
                assert!(!published, "round {i}: refused {name} is published");
            }
        }
    }
    eprintln!("promotions committed before the revocation: {before}, refused after it: {refused}");
    assert_contiguous_targets(&s, STAGING);
    s.ok(&["audit", "verify"]);
}

// 3. Two pushes of one name@version with different bytes at once.

#[test]
fn concurrent_pushes_of_one_version_with_different_bytes_one_wins() {
    let s = Server::start();
    let others = servers(&s);
    let key = s.builder("builder", "app/*");
    for round in 0..4u8 {
        let version = format!("1.0.{round}");
        let files = [
            s.file(&format!("p{round}-a.bin"), 300_000, round * 2),
            s.file(&format!("p{round}-b.bin"), 300_000, round * 2 + 1),
        ];
        let hashes: Vec<String> = files
            .iter()
            .map(|f| blake3_hex(&std::fs::read(f).unwrap()))
            .collect();
        let runs: Vec<Vec<String>> = files
            .iter()
            .map(|f| strings(&push_args(f, "app/p", &version, &key)))
            .collect();
        let outs = run_at_once(&s, &others, &runs);
        let won: Vec<usize> = (0..2).filter(|&k| outs[k].status.success()).collect();
        assert_eq!(
            won.len(),
            1,
            "round {round}: exactly one push wins:\n{}\n{}",
            text(&outs[0]),
            text(&outs[1])
        );
        let (w, l) = (won[0], 1 - won[0]);
        let err = common::failure_line(
            &runs[l].iter().map(String::as_str).collect::<Vec<_>>(),
            &outs[l],
        );
        assert!(
            err.contains("already exists") && err.contains(&hashes[w]),
            "round {round}: the loser must be told of the winner's bytes: {err}"
        );

        let c = s.db();
        let stored: Vec<String> = c.all(
            "SELECT blake3 FROM artifacts WHERE name = 'app/p' AND version = ?1",
            params![&version],
        );
        assert_eq!(stored, vec![hashes[w].clone()], "round {round}");
        let blobs: i64 = c.one(
            "SELECT COUNT(*) FROM blobs WHERE blake3 = ?1",
            params![&hashes[l]],
        );
        assert_eq!(blobs, 0, "round {round}: the loser's blob row is stored");
        let files_in_store = common::list_files(&s.home.join("blobs"));
        assert!(
            !files_in_store.iter().any(|f| f.contains(&hashes[l])),
            "round {round}: the loser's bytes are in the store: {files_in_store:?}"
        );
        assert!(
            files_in_store.iter().any(|f| f.contains(&hashes[w])),
            "round {round}: the winner's bytes are not in the store: {files_in_store:?}"
        );
        assert_no_tmp(&s);
    }
    s.ok(&["audit", "verify"]);
}
