//! The tamper-evident audit log (docs/security.md guarantee 7; docs/api.md "Audit"): every state change
//! and refusal is appended to a hash chain, the server signs checkpoints, and `arca audit verify`
//! names a modified, removed or reordered entry — and, thanks to the checkpoints, a rewrite that
//! recomputed every hash. The attacks edit the server's SQLite directly, as someone with write
//! access to the database would.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::db::TestDb as Connection;
use arca::audit::{Entry, GENESIS_HASH, entry_hash};
use common::{Server, wait_until};

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every stored entry, in seq order.
fn rows(c: &Connection) -> Vec<Entry> {
    c.all(
        "SELECT seq, at, actor, action, subject, outcome, details, prev_hash, hash FROM audit \
         ORDER BY seq",
        params![],
    )
    .into_iter()
    .map(
        |(seq, at, actor, action, subject, outcome, details, prev_hash, hash)| Entry {
            seq,
            at,
            actor,
            action,
            subject,
            outcome,
            details,
            prev_hash,
            hash,
        },
    )
    .collect()
}

fn count(s: &Server) -> i64 {
    s.db().one("SELECT COUNT(*) FROM audit", params![])
}

/// The largest checkpointed size (0 when there is none).
fn max_checkpoint(s: &Server) -> i64 {
    s.db().one(
        "SELECT COALESCE(MAX(size), 0) FROM audit_checkpoints",
        params![],
    )
}

/// `arca audit verify --json`, expecting success; returns the report.
fn verify_ok(s: &Server) -> serde_json::Value {
    serde_json::from_str(&s.ok(&["audit", "verify", "--json"])).unwrap()
}

/// `arca audit verify`, expecting one error line; returns it.
fn verify_fails(s: &Server) -> String {
    let err = s.fails(&["audit", "verify"]);
    err.lines()
        .find(|l| l.starts_with("error:"))
        .unwrap()
        .to_owned()
}

/// The server signs a checkpoint when it starts (the init entry is there): wait for it, so
/// that no background checkpoint lands in the middle of a test's own sequence.
fn settle(s: &Server) {
    assert!(
        wait_until(Duration::from_secs(10), || max_checkpoint(s) >= 1),
        "no startup checkpoint; log:\n{}",
        s.log()
    );
}

/// A server with a builder `alice` (scope `app`) and three pushes: at least 5 entries
/// (init, trust.change, push ×3), settled.
fn small_log() -> (Server, std::path::PathBuf) {
    let s = Server::start();
    settle(&s);
    let alice = s.builder("alice", "app");
    for (i, v) in ["1.0.0", "1.0.1", "1.0.2"].iter().enumerate() {
        let f = s.file(&format!("app-{v}.bin"), 1000 + i, i as u8);
        s.push(&f, "app", v, &alice);
    }
    (s, alice)
}

/// Recomputes `prev_hash` and `hash` of every entry from `from` on, as an attacker who knows the
/// (public) hashing rule would after editing an entry.
fn rechain_from(c: &Connection, from: i64) {
    let all = rows(c);
    let mut prev = if from == 1 {
        GENESIS_HASH.to_owned()
    } else {
        all.iter().find(|e| e.seq == from - 1).unwrap().hash.clone()
    };
    for e in all.iter().filter(|e| e.seq >= from) {
        let hash = entry_hash(
            e.seq, &e.at, &e.actor, &e.action, &e.subject, &e.outcome, &e.details, &prev,
        );
        c.execute(
            "UPDATE audit SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
            params![prev, hash, e.seq],
        );
        prev = hash;
    }
}

/// Inserts a saved entry back as it was.
fn reinsert(c: &Connection, e: &Entry) {
    c.execute(
        "INSERT INTO audit (seq, at, actor, action, subject, outcome, details, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            e.seq,
            e.at,
            e.actor,
            e.action,
            e.subject,
            e.outcome,
            e.details,
            e.prev_hash,
            e.hash
        ],
    );
}

/// `curl` status code of `method url` with optional extra header.
fn curl_status(method: &str, url: &str, header: Option<&str>) -> u16 {
    let mut c = Command::new("curl");
    c.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method]);
    if let Some(h) = header {
        c.args(["-H", h]);
    }
    let out = c.arg(url).output().expect("curl");
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn an_honest_log_verifies_and_records_every_action() {
    let s = Server::start();
    let alice = s.builder("alice", "app");
    // A second trust change: an approver key.
    s.approver("approver", "prod");
    let f1 = s.file("app-1.bin", 4096, 1);
    s.push(&f1, "app", "1.0.0", &alice);
    let f2 = s.file("app-2.bin", 2048, 2);
    s.push(&f2, "app", "1.0.1", &alice);
    // A key that the trust document does not know.
    let mallory = s.key("mallory");
    let f3 = s.file("evil.bin", 512, 3);
    let err = s.fails(&[
        "push",
        path_str(&f3),
        "--name",
        "app",
        "--version",
        "6.6.6",
        "--key",
        path_str(&mallory),
    ]);
    assert!(
        err.contains("untrusted_key") || err.contains("trust"),
        "{err}"
    );
    s.ok(&["promote", "app@1.0.1", "--to", "staging"]);
    // prod needs an approval that was not given.
    let err = s.fails(&["promote", "app@1.0.1", "--to", "prod"]);
    assert!(err.contains("refused"), "{err}");
    s.ok(&[
        "attest",
        "app@1.0.0",
        "--type",
        "https://example.com/tests/v1",
        "--key",
        path_str(&alice),
    ]);

    let n = count(&s);
    let report = verify_ok(&s);
    assert_eq!(report["entries"], n, "{report}");
    let text = s.ok(&["audit", "verify"]);
    assert!(
        text.starts_with(&format!("audit log verified: {n} entries")),
        "{text}"
    );

    let c = s.db();
    let has = |action: &str, outcome: &str, subject: &str| -> bool {
        c.one::<i64>(
            "SELECT COUNT(*) FROM audit WHERE action = ?1 AND outcome = ?2 AND subject LIKE ?3",
            params![action, outcome, subject],
        ) > 0
    };
    assert!(has("init", "ok", "%"));
    assert!(has("trust.change", "ok", "%"));
    let trust_changes: i64 = c.one(
        "SELECT COUNT(*) FROM audit WHERE action = 'trust.change' AND outcome = 'ok'",
        params![],
    );
    assert_eq!(trust_changes, 2, "two keys added");
    assert!(has("push", "ok", "app@1.0.0"));
    assert!(has("push", "ok", "app@1.0.1"));
    assert!(has("push", "refused", "app@6.6.6"));
    assert!(has("promote", "ok", "app@1.0.1 -> staging"));
    assert!(has("promote", "refused", "app@1.0.1 -> prod"));
    assert!(has("attest", "ok", "app@1.0.0"));
    // The refused push names its reason; every token-made entry names the token.
    let reason: String = c.one(
        "SELECT details FROM audit WHERE action = 'push' AND outcome = 'refused'",
        params![],
    );
    assert!(reason.contains("reason"), "{reason}");
    let anonymous: i64 = c.one(
        "SELECT COUNT(*) FROM audit WHERE action != 'init' AND actor NOT LIKE 'token:%'",
        params![],
    );
    assert_eq!(anonymous, 0);
    // Sequence numbers are 1..=n.
    let seqs: Vec<i64> = rows(&c).iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>());
}

#[test]
fn an_edited_entry_is_named() {
    let (s, _) = small_log();
    let n = count(&s);
    assert!(n >= 5);
    let mid = n / 2 + 1;
    let cases: [(i64, &str, &str); 6] = [
        (1, "subject", "elsewhere"),
        (mid, "outcome", "refused"),
        (mid, "details", "{}"),
        (n, "actor", "token:someone-else"),
        (n, "at", "2000-01-01T00:00:00Z"),
        (2, "subject", "app@9.9.9"),
    ];
    for (seq, field, value) in cases {
        let c = s.db();
        let old: String = c.one(
            &format!("SELECT {field} FROM audit WHERE seq = ?1"),
            params![seq],
        );
        c.execute(
            &format!("UPDATE audit SET {field} = ?1 WHERE seq = ?2"),
            params![value, seq],
        );
        let err = verify_fails(&s);
        assert!(
            err.contains(&format!("entry {seq}:")) && err.contains("modified"),
            "{field} of entry {seq}: {err}"
        );
        c.execute(
            &format!("UPDATE audit SET {field} = ?1 WHERE seq = ?2"),
            params![old, seq],
        );
        assert_eq!(verify_ok(&s)["entries"], n, "restored");
    }
    // Editing the stored hash itself is as visible as editing what it covers.
    let c = s.db();
    c.execute(
        "UPDATE audit SET hash = ?1 WHERE seq = ?2",
        params!["ab".repeat(32), n],
    );
    let err = verify_fails(&s);
    assert!(err.contains(&format!("entry {n}:")), "{err}");
}

#[test]
fn a_removed_entry_is_named() {
    let (s, _) = small_log();
    let n = count(&s);
    let all = rows(&s.db());
    for seq in [n / 2 + 1, 1] {
        let c = s.db();
        c.execute("DELETE FROM audit WHERE seq = ?1", params![seq]);
        let err = verify_fails(&s);
        assert!(
            err.contains("removed or reordered") && err.contains(&format!("entry {}:", seq + 1)),
            "deleting entry {seq}: {err}"
        );
        reinsert(&c, &all[seq as usize - 1]);
        assert_eq!(verify_ok(&s)["entries"], n, "restored");
    }
}

#[test]
fn reordered_entries_are_named() {
    let (s, _) = small_log();
    let n = count(&s);
    let a = n / 2;
    let c = s.db();
    let swap = |x: i64, y: i64| {
        c.execute("UPDATE audit SET seq = -1 WHERE seq = ?1", params![x]);
        c.execute("UPDATE audit SET seq = ?1 WHERE seq = ?2", params![x, y]);
        c.execute("UPDATE audit SET seq = ?1 WHERE seq = -1", params![y]);
    };
    swap(a, a + 1);
    let err = verify_fails(&s);
    assert!(
        err.contains(&format!("entry {a}:")) && err.contains("removed or reordered"),
        "{err}"
    );
    swap(a, a + 1);
    assert_eq!(verify_ok(&s)["entries"], n, "restored");
    // The first two as well.
    swap(1, 2);
    let err = verify_fails(&s);
    assert!(
        err.contains("entry 1:") && err.contains("reordered"),
        "{err}"
    );
}

#[test]
fn a_rewrite_with_recomputed_hashes_is_caught_by_an_earlier_checkpoint() {
    let (s, _) = small_log();
    let n = count(&s);
    let out = s.ok(&["audit", "checkpoint"]);
    assert!(out.starts_with(&format!("checkpoint: size {n} ")), "{out}");
    assert_eq!(verify_ok(&s)["checkpointed"], n);
    // More activity after the checkpoint.
    let alice = s.path("alice.key");
    let f = s.file("late.bin", 300, 9);
    s.push(&f, "app", "2.0.0", &alice);
    let total = count(&s);
    assert!(total > n);

    // Rewrite entry 3 (a push, covered by the checkpoint) and re-chain everything after it.
    let c = s.db();
    c.execute(
        "UPDATE audit SET outcome = 'refused', subject = 'app@0.0.1' WHERE seq = 3",
        params![],
    );
    rechain_from(&c, 3);
    let err = verify_fails(&s);
    assert!(
        err.contains(&format!("checkpoint at size {n}:")) && err.contains("the log was rewritten"),
        "{err}"
    );
}

/// The limit: a rewrite of entries that no checkpoint covers yet passes `verify` (only the
/// chain protects them, and the chain's rule is public).
#[test]
fn a_rewrite_beyond_the_newest_checkpoint_passes() {
    let (s, _) = small_log();
    let n = count(&s);
    let covered = max_checkpoint(&s);
    assert!(covered < 3, "only the startup checkpoint: {covered}");
    let c = s.db();
    c.execute(
        "UPDATE audit SET subject = 'app@0.0.1' WHERE seq = 3",
        params![],
    );
    // The plain edit is caught...
    assert!(verify_fails(&s).contains("entry 3:"));
    // ...the re-chained one is not.
    rechain_from(&c, 3);
    let report = verify_ok(&s);
    assert_eq!(report["entries"], n);
    assert_eq!(report["checkpointed"], covered);
    // The same goes for dropping the newest (uncheckpointed) entry.
    c.execute("DELETE FROM audit WHERE seq = ?1", params![n]);
    assert_eq!(verify_ok(&s)["entries"], n - 1);
}

/// A rewrite that also deletes the checkpoints covering the rewritten entries: the module says
/// checkpoints catch "even someone who can rewrite the database and recompute every hash", but
/// the checkpoints live in that same database and `verify` only checks the ones the server
/// still has.
#[test]
// Regression: verify read checkpoints only from the server, so dropping them hid a rewrite.
fn a_rewrite_that_also_drops_the_checkpoints_is_caught() {
    let (s, _) = small_log();
    let n = count(&s);
    s.ok(&["audit", "checkpoint"]);
    // An auditor verified the log, checkpoint included.
    assert_eq!(verify_ok(&s)["checkpointed"], n);
    let c = s.db();
    c.execute(
        "UPDATE audit SET subject = 'app@0.0.1' WHERE seq = 3",
        params![],
    );
    rechain_from(&c, 3);
    c.execute("DELETE FROM audit_checkpoints WHERE size >= 3", params![]);
    let err = verify_fails(&s);
    assert!(err.contains("checkpoint"), "{err}");
}

#[test]
fn truncation_below_a_checkpoint_is_caught() {
    let (s, _) = small_log();
    let n = count(&s);
    s.ok(&["audit", "checkpoint"]);
    let c = s.db();
    c.execute("DELETE FROM audit WHERE seq > ?1", params![n - 2]);
    let err = verify_fails(&s);
    assert!(
        err.contains(&format!("checkpoint at size {n}:"))
            && err.contains(&format!("only {} entries", n - 2))
            && err.contains("removed from its end"),
        "{err}"
    );
}

#[test]
fn a_forged_checkpoint_is_named() {
    let (s, _) = small_log();
    let n = count(&s);
    s.ok(&["audit", "checkpoint"]);
    let c = s.db();
    let (head, sig): (String, String) = c.one(
        "SELECT head, sig FROM audit_checkpoints WHERE size = ?1",
        params![n],
    );

    // A flipped signature.
    let mut forged = sig.clone().into_bytes();
    forged[0] = if forged[0] == b'0' { b'1' } else { b'0' };
    c.execute(
        "UPDATE audit_checkpoints SET sig = ?1 WHERE size = ?2",
        params![String::from_utf8(forged).unwrap(), n],
    );
    let err = verify_fails(&s);
    assert!(
        err.contains(&format!("checkpoint at size {n}:")) && err.contains("signature"),
        "{err}"
    );
    c.execute(
        "UPDATE audit_checkpoints SET sig = ?1 WHERE size = ?2",
        params![sig, n],
    );
    assert_eq!(verify_ok(&s)["checkpointed"], n, "restored");

    // Another head under the real signature (as a rewriter would need).
    let prev_head = rows(&c)[n as usize - 2].hash.clone();
    c.execute(
        "UPDATE audit_checkpoints SET head = ?1 WHERE size = ?2",
        params![prev_head, n],
    );
    let err = verify_fails(&s);
    assert!(err.contains(&format!("checkpoint at size {n}:")), "{err}");
    c.execute(
        "UPDATE audit_checkpoints SET head = ?1 WHERE size = ?2",
        params![head, n],
    );

    // A checkpoint signed by a key that is not an audit key (a builder's).
    let alice = arca_keys::SigningKey::read_file(&s.path("alice.key")).unwrap();
    let cp = arca::audit::Checkpoint::sign(n, &head, "2030-01-01T00:00:00Z", &alice);
    c.execute(
        "UPDATE audit_checkpoints SET keyid = ?1, sig = ?2, at = ?3 WHERE size = ?4",
        params![cp.keyid, cp.sig, cp.at, n],
    );
    let err = verify_fails(&s);
    assert!(
        err.contains(&format!("checkpoint at size {n}:")) && err.contains("audit key"),
        "{err}"
    );
}

#[test]
fn export_writes_json_lines_in_order() {
    let (s, _) = small_log();
    let n = count(&s);
    let stored = rows(&s.db());
    let out = s.ok(&["audit", "export"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len() as i64, n);
    let exported: Vec<Entry> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(v.is_object(), "{l}");
            serde_json::from_value(v).unwrap()
        })
        .collect();
    assert_eq!(exported, stored);
    assert_eq!(
        exported.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );

    let after = s.ok(&["audit", "export", "--after", "3"]);
    let exported: Vec<Entry> = after
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(exported, stored[3..]);
    assert_eq!(exported[0].seq, 4);
    assert_eq!(
        s.ok(&["audit", "export", "--after", &n.to_string()]),
        "",
        "nothing after the last entry"
    );
}

#[test]
fn the_audit_endpoints_need_a_token() {
    let s = Server::start();
    let list = format!("{}/api/v1/audit", s.url);
    let cps = format!("{}/api/v1/audit/checkpoints", s.url);
    assert_eq!(curl_status("GET", &list, None), 401);
    assert_eq!(curl_status("GET", &cps, None), 401);
    assert_eq!(curl_status("POST", &cps, None), 401);
    let bad = "Authorization: Bearer not-a-token";
    assert_eq!(curl_status("GET", &list, Some(bad)), 401);
    assert_eq!(curl_status("POST", &cps, Some(bad)), 401);
    let good = format!("Authorization: Bearer {}", s.token);
    assert_eq!(curl_status("GET", &list, Some(&good)), 200);
    // And the CLI without a token fails with one line.
    let out = s
        .arca()
        .env_remove("ARCA_TOKEN")
        .args(["audit", "verify"])
        .output()
        .unwrap();
    common::failure_line(&["audit", "verify"], &out);
}

#[test]
fn the_server_signs_checkpoints_when_the_log_grows() {
    let s = Server::start_with(Some("[tuf]\nrefresh_interval = \"1s\"\n"), &[]);
    settle(&s);
    let alice = s.builder("alice", "app");
    let f = s.file("app.bin", 1000, 1);
    s.push(&f, "app", "1.0.0", &alice);
    let n = count(&s);
    assert!(
        wait_until(Duration::from_secs(5), || max_checkpoint(&s) == n),
        "newest checkpoint {} for {n} entries",
        max_checkpoint(&s)
    );
    let report = verify_ok(&s);
    assert_eq!(report["entries"], n);
    assert_eq!(report["checkpointed"], n);
    // Nothing grew: no new checkpoint.
    let before: i64 = s
        .db()
        .one("SELECT COUNT(*) FROM audit_checkpoints", params![]);
    std::thread::sleep(Duration::from_millis(2500));
    let after: i64 = s
        .db()
        .one("SELECT COUNT(*) FROM audit_checkpoints", params![]);
    assert_eq!(before, after);
}

/// Appends `k` well-formed entries (as a busy server would have) straight into the database.
fn append_history(c: &Connection, k: i64) {
    let last = rows(c).pop().unwrap();
    let (mut seq, mut prev) = (last.seq, last.hash);
    c.begin();
    for i in 0..k {
        seq += 1;
        let (at, subject) = ("2026-01-01T00:00:00Z", format!("app@0.{i}.0"));
        let details = format!("{{\"reason\":\"history {i}\"}}");
        let hash = entry_hash(
            seq, at, "token:x", "push", &subject, "refused", &details, &prev,
        );
        c.execute(
            "INSERT INTO audit (seq, at, actor, action, subject, outcome, details, prev_hash, hash) \
             VALUES (?1, ?2, 'token:x', 'push', ?3, 'refused', ?4, ?5, ?6)",
            params![seq, at, subject, details, prev, hash],
        );
        prev = hash;
    }
    c.commit();
}

/// An honest log that grows while it is being verified is still an honest log. `verify` reads
/// the entries, then the checkpoints: a checkpoint signed in between (by the background task or
/// `arca audit checkpoint`) covers more entries than it read.
#[test]
// Regression: verify read entries before checkpoints and saw a growing log as truncated.
fn verify_of_a_growing_log_does_not_cry_wolf() {
    let s = Server::start();
    settle(&s);
    append_history(&s.db(), 3000);
    assert_eq!(verify_ok(&s)["entries"], 3001, "an honest history");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (url, token, stop) = (s.url.clone(), s.token.clone(), stop.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            arca::client::install_crypto();
            let http = arca::client::http_client().unwrap();
            rt.block_on(async {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // A refused trust change appends a `refused` entry...
                    let r = http
                        .post(format!("{url}/api/v1/trust"))
                        .bearer_auth(&token)
                        .body("not a trust document")
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_client_error());
                    // ...and a checkpoint pins it (as the background task would).
                    let r = http
                        .post(format!("{url}/api/v1/audit/checkpoints"))
                        .bearer_auth(&token)
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        })
    };
    let mut failures = Vec::new();
    for _ in 0..6 {
        let out = s.arca().args(["audit", "verify"]).output().unwrap();
        if !out.status.success() {
            failures.push(String::from_utf8_lossy(&out.stderr).into_owned());
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} of 6 failed: {failures:#?}",
        failures.len()
    );
}
