//! Promotion (docs/security.md guarantees 3, 4 and 6; docs/policy.md; docs/cli.md): a release
//! moves dev -> staging -> prod only when every rule of the target channel's policy passes at
//! that moment, against the trust document as it is then. Every refusal names the failing rule,
//! lists every rule on stdout, and changes nothing but the audit log (the channel's TUF targets
//! version and the store included). Policy changes need the root threshold; rollback is a
//! roll-forward that clients accept while replayed old metadata stays refused.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::Server;
use serde_json::Value;

/// The artifact every test promotes.
const NAME: &str = "app/x";
/// The attestation type the policies below require.
const TESTS: &str = "https://example.com/tests/v1";
/// Another attestation type, which must not count for `TESTS`.
const SCAN: &str = "https://example.com/scan/v1";
/// A server whose background task (auto-promotion, soak periods) runs every second.
const FAST: &str = "[tuf]\nrefresh_interval = \"1s\"\n";

use crate::common::p;

/// A new key `name` with `roles` and `scopes`, added to the trust document with the root key.
fn add_key(s: &Server, name: &str, roles: &[&str], scopes: &[&str]) -> PathBuf {
    let k = s.key(name);
    let public = format!("{}.pub", k.display());
    let root = s.root_key();
    let mut args = vec!["trust", "add-key", public.as_str()];
    for r in roles {
        args.extend(["--role", r]);
    }
    for sc in scopes {
        args.extend(["--scope", sc]);
    }
    args.extend(["--sign", p(&root)]);
    s.ok(&args);
    k
}

/// An approver key for `scope` (channel names or `*`).
fn approver(s: &Server, name: &str, scope: &str) -> PathBuf {
    add_key(s, name, &["approver"], &[scope])
}

/// An attestor key without a scope (any name).
fn attestor(s: &Server, name: &str) -> PathBuf {
    add_key(s, name, &["attestor"], &[])
}

/// `arca key id FILE`.
fn key_id(s: &Server, key: &Path) -> String {
    s.ok(&["key", "id", p(key)]).trim().to_owned()
}

/// Pushes a fresh file `x-VERSION.bin` as `app/x@VERSION`; returns the file.
fn push(s: &Server, key: &Path, version: &str, seed: u8) -> PathBuf {
    let file = s.file(
        &format!("x-{version}.bin"),
        40_000 + usize::from(seed),
        seed,
    );
    s.push(&file, NAME, version, key);
    file
}

/// Writes a policy file into the test dir.
fn policy_file(s: &Server, toml: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let f = s.path(&format!(
        "policy-{}.toml",
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&f, toml).unwrap();
    f
}

/// `arca policy set CHANNEL FILE --sign ROOT`.
fn set_policy(s: &Server, channel: &str, toml: &str) {
    let f = policy_file(s, toml);
    let out = s.ok(&["policy", "set", channel, p(&f), "--sign", p(&s.root_key())]);
    assert!(out.contains(&format!("policy of {channel} set")), "{out}");
}

fn release(version: &str) -> String {
    format!("{NAME}@{version}")
}

/// `arca promote app/x@VERSION --to CH EXTRA...`, expecting success; returns stdout.
fn promote(s: &Server, version: &str, to: &str, extra: &[&str]) -> String {
    let r = release(version);
    let mut args = vec!["promote", r.as_str(), "--to", to];
    args.extend(extra);
    s.ok(&args)
}

/// `arca approve app/x@VERSION --channel CH --key K EXTRA...`.
fn approve(s: &Server, version: &str, channel: &str, key: &Path, extra: &[&str]) -> String {
    let r = release(version);
    let mut args = vec!["approve", r.as_str(), "--channel", channel, "--key", p(key)];
    args.extend(extra);
    s.ok(&args)
}

/// `arca attest app/x@VERSION --type URI --key K`.
fn attest(s: &Server, version: &str, predicate_type: &str, key: &Path) -> String {
    s.ok(&[
        "attest",
        &release(version),
        "--type",
        predicate_type,
        "--key",
        p(key),
    ])
}

/// `arca history app/x --channel CH --json`.
fn history(s: &Server, channel: &str) -> Vec<Value> {
    let out = s.ok(&["history", NAME, "--channel", channel, "--json"]);
    serde_json::from_str::<Vec<Value>>(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The version of app/x current in `channel` (the newest history row), if any.
fn current(s: &Server, channel: &str) -> Option<String> {
    history(s, channel)
        .last()
        .map(|h| h["version"].as_str().unwrap().to_owned())
}

/// The version of the newest stored targets metadata of `channel`.
fn targets_version(s: &Server, channel: &str) -> i64 {
    s.db().one(
        "SELECT MAX(version) FROM tuf_metadata WHERE channel = ?1 AND role = 'targets'",
        params![channel],
    )
}

/// The newest metadata row of `role` in `channel`: (version, body).
fn latest_meta(s: &Server, channel: &str, role: &str) -> (i64, Vec<u8>) {
    s.db().one(
        "SELECT version, body FROM tuf_metadata WHERE channel = ?1 AND role = ?2 \
         ORDER BY version DESC LIMIT 1",
        params![channel, role],
    )
}

/// Every policy body the server holds (the `policies` table is not part of `state()`).
fn policies(s: &Server) -> Vec<String> {
    let c = s.db();
    c.all::<(String, String)>(
        "SELECT sha256, body FROM policies ORDER BY sha256",
        params![],
    )
    .into_iter()
    .map(|(sha, body)| format!("{sha}|{body}"))
    .collect()
}

/// Number of audit entries.
fn audit_len(s: &Server) -> i64 {
    s.db().one("SELECT COUNT(*) FROM audit", params![])
}

/// The `pass`/`FAIL` lines of a printed decision: (passed, rule).
fn rule_lines(stdout: &str) -> Vec<(bool, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let pass = match w.next()? {
                "pass" => true,
                "FAIL" => false,
                _ => return None,
            };
            Some((pass, w.next()?.to_owned()))
        })
        .collect()
}

/// Asserts the printed decision lists exactly `expected` rules with these outcomes, in order.
fn assert_rules(stdout: &str, expected: &[(bool, &str)]) {
    let got = rule_lines(stdout);
    let want: Vec<(bool, String)> = expected.iter().map(|(b, r)| (*b, r.to_string())).collect();
    assert_eq!(got, want, "printed decision:\n{stdout}");
}

/// Runs `arca ARGS` expecting a refusal that changes nothing: exit non-zero, exactly one
/// `error:` line, and the state fingerprint (every table but the audit log, and the store),
/// the stored policies and `channel`'s targets version all as they were. Returns (stdout, the
/// error line).
fn refused(s: &Server, args: &[&str], channel: &str) -> (String, String) {
    let before = s.state();
    let pols = policies(s);
    let tv = targets_version(s, channel);
    let out = s.arca().args(args).output().unwrap();
    let stderr = common::failure_line(args, &out);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap()
        .to_owned();
    assert_eq!(
        targets_version(s, channel),
        tv,
        "{channel}'s targets version moved"
    );
    assert_eq!(policies(s), pols, "stored policies changed");
    assert_eq!(s.state(), before, "refused {args:?} changed state");
    (String::from_utf8(out.stdout).unwrap(), line)
}

/// `arca promote app/x@VERSION --to CH`, expecting a refusal that names `rule` (in the error
/// line and as a FAIL line of the printed decision), changes nothing but appends one `refused`
/// audit entry. Returns (stdout, error line).
fn promote_refused(s: &Server, version: &str, to: &str, rule: &str) -> (String, String) {
    let r = release(version);
    let audits = s.audit_count("refused");
    let (stdout, line) = refused(s, &["promote", r.as_str(), "--to", to], to);
    let prefix = format!("error: promotion {r} -> {to} refused: ");
    assert!(line.starts_with(&prefix), "{line}");
    let failures = &line[prefix.len()..];
    assert!(
        failures.starts_with(&format!("{rule}: ")) || failures.contains(&format!("; {rule}: ")),
        "error line does not name rule {rule}: {line}"
    );
    assert!(
        stdout.contains("REFUSED"),
        "no decision printed on stdout: {stdout}"
    );
    assert!(
        rule_lines(&stdout).contains(&(false, rule.to_owned())),
        "rule {rule} not listed as FAIL:\n{stdout}"
    );
    assert_eq!(
        s.audit_count("refused"),
        audits + 1,
        "a refused promotion is audited once"
    );
    (stdout, line)
}

// 1. The happy path.

#[test]
fn release_moves_dev_staging_prod_and_prod_pulls_identical_bytes() {
    let s = Server::start();
    let b = s.builder("builder", "app/*");
    let a = approver(&s, "approver", "prod");
    let file = push(&s, &b, "1.0.0", 1);
    assert_eq!(current(&s, "dev").as_deref(), Some("1.0.0"));

    let out = promote(&s, "1.0.0", "staging", &[]);
    assert!(out.contains("promoted (targets v"), "{out}");
    assert_rules(&out, &[(true, "require_build_signature"), (true, "from")]);

    approve(&s, "1.0.0", "prod", &a, &[]);
    let tv = targets_version(&s, "prod");
    let reason = "CHG-4711 weekly release train";
    let out = promote(&s, "1.0.0", "prod", &["--reason", reason]);
    assert!(
        out.contains(&format!("promoted (targets v{})", tv + 1)),
        "{out}"
    );
    assert_eq!(targets_version(&s, "prod"), tv + 1);
    assert_rules(
        &out,
        &[
            (true, "require_build_signature"),
            (true, "from"),
            (true, "require_approvals"),
        ],
    );

    let dir = s.path("out");
    let msg = s.pull_ok(NAME, "prod", &dir, &s.path("state"));
    assert!(msg.contains("verified app/x@1.0.0"), "{msg}");
    assert_eq!(
        std::fs::read(dir.join("x-1.0.0.bin")).unwrap(),
        std::fs::read(&file).unwrap()
    );

    let h = history(&s, "prod");
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["action"], "promote");
    assert_eq!(h[0]["version"], "1.0.0");
    assert_eq!(h[0]["reason"], reason);
    let actor = h[0]["actor"].as_str().unwrap();
    assert!(actor.starts_with("token:"), "{actor}");
    assert_eq!(s.audit_count("ok (break-glass)"), 0);
}

// 2. Skipping a stage.

#[test]
fn skipping_staging_is_refused_naming_from() {
    let s = Server::start();
    let b = s.builder("builder", "app/*");
    let a = approver(&s, "approver", "prod");
    push(&s, &b, "1.0.0", 1);
    approve(&s, "1.0.0", "prod", &a, &[]);
    let (stdout, line) = promote_refused(&s, "1.0.0", "prod", "from");
    assert!(
        line.contains("app/x@1.0.0 is not the current release in staging"),
        "{line}"
    );
    // Only `from` failed: the signature and approval rules are listed as passing.
    assert_rules(
        &stdout,
        &[
            (true, "require_build_signature"),
            (false, "from"),
            (true, "require_approvals"),
        ],
    );
    assert!(history(&s, "prod").is_empty());
}

// 3. Four eyes.

#[test]
fn builder_cannot_approve_its_own_release() {
    let s = Server::start();
    let both = add_key(&s, "both", &["builder", "approver"], &["app/*", "prod"]);
    push(&s, &both, "1.0.0", 1);
    promote(&s, "1.0.0", "staging", &[]);
    // The server accepts the approval statement (the key is an approver for prod)...
    approve(&s, "1.0.0", "prod", &both, &[]);
    // ... but it does not count: the same key built the release.
    let (_, line) = promote_refused(&s, "1.0.0", "prod", "require_approvals");
    assert!(line.contains("built it themselves"), "{line}");
    let id = key_id(&s, &both);
    assert!(
        line.contains(&id[..12]),
        "the self-approver is not named: {line}"
    );

    // A second pair of eyes is enough.
    let other = approver(&s, "other", "prod");
    approve(&s, "1.0.0", "prod", &other, &[]);
    promote(&s, "1.0.0", "prod", &[]);
    assert_eq!(current(&s, "prod").as_deref(), Some("1.0.0"));
}

// 4. Approvals are bound to their channel.

#[test]
fn approval_for_staging_does_not_count_for_prod() {
    let s = Server::start();
    let b = s.builder("builder", "app/*");
    // An approver for every channel: only the channel named in the approval stops it counting.
    let a = approver(&s, "approver", "*");
    push(&s, &b, "1.0.0", 1);
    approve(&s, "1.0.0", "staging", &a, &[]);
    promote(&s, "1.0.0", "staging", &[]);
    let (_, line) = promote_refused(&s, "1.0.0", "prod", "require_approvals");
    assert!(line.contains("0 of 1 approval(s) for prod"), "{line}");

    approve(&s, "1.0.0", "prod", &a, &[]);
    promote(&s, "1.0.0", "prod", &[]);
    assert_eq!(current(&s, "prod").as_deref(), Some("1.0.0"));
}

// 5. Signatures are re-checked against the trust document as it is now.

#[test]
fn release_of_a_revoked_builder_key_cannot_be_promoted() {
    let s = Server::start();
    let b = s.builder("builder", "app/*");
    let a = approver(&s, "approver", "prod");
    push(&s, &b, "1.0.0", 1);
    promote(&s, "1.0.0", "staging", &[]);
    approve(&s, "1.0.0", "prod", &a, &[]);
    s.ok(&[
        "trust",
        "revoke",
        &key_id(&s, &b),
        "--sign",
        p(&s.root_key()),
    ]);
    let (stdout, line) = promote_refused(&s, "1.0.0", "prod", "require_build_signature");
    assert!(line.contains("0 of 1 valid build signature"), "{line}");
    assert_rules(
        &stdout,
        &[
            (false, "require_build_signature"),
            (true, "from"),
            (true, "require_approvals"),
        ],
    );
}

#[test]
fn approval_by_a_revoked_approver_key_no_longer_counts() {
    let s = Server::start();
    let b = s.builder("builder", "app/*");
    let a = approver(&s, "approver", "prod");
    push(&s, &b, "1.0.0", 1);
    promote(&s, "1.0.0", "staging", &[]);
    approve(&s, "1.0.0", "prod", &a, &[]);
    promote(&s, "1.0.0", "prod", &["--dry-run"]);
    s.ok(&[
        "trust",
        "revoke",
        &key_id(&s, &a),
        "--sign",
        p(&s.root_key()),
    ]);
    let (_, line) = promote_refused(&s, "1.0.0", "prod", "require_approvals");
    assert!(line.contains("0 of 1 approval(s) for prod"), "{line}");
}

// 6. Policy changes need the root threshold.

#[test]
fn policy_change_needs_the_root_key() {
    let s = Server::start();
    let b = s.builder("builder", "app/*");
    push(&s, &b, "1.0.0", 1);
    promote(&s, "1.0.0", "staging", &[]);
    let before_show = s.ok(&["policy", "show", "prod"]);
    assert!(before_show.contains("require_approvals"), "{before_show}");

    // A weaker prod policy (no approval) signed by a key that is in the trust document, but
    // not a root key: refused, nothing changes.
    let weak = policy_file(&s, "from = \"staging\"\n");
    let audits = s.audit_count("refused");
    let (_, line) = refused(
        &s,
        &["policy", "set", "prod", p(&weak), "--sign", p(&b)],
        "prod",
    );
    assert!(line.contains("root_threshold"), "{line}");
    assert!(
        line.contains("0 valid signature(s) from distinct trusted keys, 1 required"),
        "{line}"
    );
    assert_eq!(
        s.audit_count("refused"),
        audits + 1,
        "the refusal is audited"
    );
    assert_eq!(s.ok(&["policy", "show", "prod"]), before_show);
    // The old policy still applies.
    promote_refused(&s, "1.0.0", "prod", "require_approvals");

    // Signed by the root key it is accepted and applies at once.
    let before = s.state();
    s.ok(&[
        "policy",
        "set",
        "prod",
        p(&weak),
        "--sign",
        p(&s.root_key()),
    ]);
    assert_ne!(s.state(), before, "the trust document has a new version");
    let show = s.ok(&["policy", "show", "prod"]);
    assert!(!show.contains("require_approvals"), "{show}");
    let out = promote(&s, "1.0.0", "prod", &[]);
    assert_rules(&out, &[(true, "require_build_signature"), (true, "from")]);
    assert_eq!(current(&s, "prod").as_deref(), Some("1.0.0"));
}

// 7. Freeze windows and break-glass.

#[test]
fn freeze_refuses_until_a_break_glass_approval() {
    let s = Server::start();
    let now = chrono::Utc::now();
    let start = arca_keys::format_time(now - chrono::Duration::hours(1));
    let end = arca_keys::format_time(now + chrono::Duration::hours(1));
    set_policy(
        &s,
        "staging",
        &format!(
            "from = \"dev\"\n\n[[freeze]]\nstart = \"{start}\"\nend = \"{end}\"\nreason = \"incident review\"\n"
        ),
    );
    let b = s.builder("builder", "app/*");
    let a = approver(&s, "approver", "staging");
    push(&s, &b, "1.0.0", 1);
    let (_, line) = promote_refused(&s, "1.0.0", "staging", "freeze");
    assert!(line.contains("no break-glass approval"), "{line}");
    assert!(line.contains("incident review"), "{line}");

    // An ordinary approval does not open a freeze.
    approve(&s, "1.0.0", "staging", &a, &[]);
    promote_refused(&s, "1.0.0", "staging", "freeze");

    let out = approve(
        &s,
        "1.0.0",
        "staging",
        &a,
        &["--break-glass", "--reason", "outage"],
    );
    assert!(out.contains("BREAK-GLASS"), "{out}");
    let out = promote(&s, "1.0.0", "staging", &[]);
    assert!(out.contains("BREAK-GLASS"), "{out}");
    assert_eq!(current(&s, "staging").as_deref(), Some("1.0.0"));

    let outcomes: Vec<String> = {
        let c = s.db();
        c.all(
            "SELECT outcome FROM audit WHERE action = 'promote' ORDER BY seq",
            params![],
        )
    };
    assert_eq!(outcomes, ["refused", "refused", "ok (break-glass)"]);
}

// 8. Soak time.

#[test]
fn min_soak_refuses_until_the_release_has_soaked() {
    let s = Server::start();
    set_policy(&s, "staging", "from = \"dev\"\nmin_soak = \"3s\"\n");
    let b = s.builder("builder", "app/*");
    push(&s, &b, "1.0.0", 1);
    let pushed = Instant::now();
    let (_, line) = promote_refused(&s, "1.0.0", "staging", "min_soak");
    assert!(line.contains("3s required"), "{line}");
    // Release times are kept to the second and the soak counts from the next whole second, so
    // 3 s of soak can take up to 4 s.
    std::thread::sleep(Duration::from_millis(4200).saturating_sub(pushed.elapsed()));
    let out = promote(&s, "1.0.0", "staging", &[]);
    assert!(
        rule_lines(&out).contains(&(true, "min_soak".into())),
        "{out}"
    );
    assert_eq!(current(&s, "staging").as_deref(), Some("1.0.0"));
}

// 9. Downgrades.

#[test]
fn downgrade_is_refused_unless_allowed() {
    let s = Server::start();
    // No `from`: only the build signature and the downgrade rule are in play.
    set_policy(&s, "staging", "# a build signature only\n");
    let b = s.builder("builder", "app/*");
    push(&s, &b, "1.0.0", 1);
    push(&s, &b, "2.0.0", 2);
    promote(&s, "2.0.0", "staging", &[]);
    let (stdout, line) = promote_refused(&s, "1.0.0", "staging", "allow_downgrade");
    assert!(
        line.contains("1.0.0 is older than the current 2.0.0"),
        "{line}"
    );
    assert_rules(
        &stdout,
        &[
            (true, "require_build_signature"),
            (false, "allow_downgrade"),
        ],
    );

    set_policy(&s, "staging", "allow_downgrade = true\n");
    promote(&s, "1.0.0", "staging", &[]);
    assert_eq!(current(&s, "staging").as_deref(), Some("1.0.0"));
}

// 10. Required attestations.

#[test]
fn required_attestation_must_be_of_that_type_by_an_attestor() {
    let s = Server::start();
    set_policy(
        &s,
        "staging",
        &format!("from = \"dev\"\n\n[[require_attestations]]\ntype = \"{TESTS}\"\n"),
    );
    let b = s.builder("builder", "app/*");
    let att = attestor(&s, "attestor");
    push(&s, &b, "1.0.0", 1);
    let rule = format!("require_attestations[{TESTS}]");
    promote_refused(&s, "1.0.0", "staging", &rule);

    // Another type by the attestor does not count.
    attest(&s, "1.0.0", SCAN, &att);
    promote_refused(&s, "1.0.0", "staging", &rule);
    // The right type signed by the builder (accepted as a statement) does not count either:
    // the rule's roles default to ["attestor"].
    attest(&s, "1.0.0", TESTS, &b);
    let (_, line) = promote_refused(&s, "1.0.0", "staging", &rule);
    assert!(
        line.contains("0 of 1 signer(s) with role attestor"),
        "{line}"
    );

    attest(&s, "1.0.0", TESTS, &att);
    let out = promote(&s, "1.0.0", "staging", &[]);
    assert!(rule_lines(&out).contains(&(true, rule)), "{out}");
    assert_eq!(current(&s, "staging").as_deref(), Some("1.0.0"));
}

// 11 and 12. Continuous delivery.

#[test]
fn auto_promotion_when_the_missing_attestation_arrives() {
    let s = Server::start();
    set_policy(
        &s,
        "staging",
        &format!("from = \"dev\"\nauto = true\n\n[[require_attestations]]\ntype = \"{TESTS}\"\n"),
    );
    let b = s.builder("builder", "app/*");
    let att = attestor(&s, "attestor");
    push(&s, &b, "1.0.0", 1);
    assert!(history(&s, "staging").is_empty());

    let out = attest(&s, "1.0.0", TESTS, &att);
    let arrived = common::wait_until(Duration::from_secs(5), || {
        current(&s, "staging").as_deref() == Some("1.0.0")
    });
    assert!(arrived, "not auto-promoted; attest said: {out}");
    let h = history(&s, "staging");
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["action"], "auto-promote");
    assert_eq!(h[0]["actor"], "auto");
    let audit: (String, String) = s.db().one(
        "SELECT actor, outcome FROM audit WHERE action = 'auto-promote'",
        params![],
    );
    assert_eq!(audit, ("auto".to_owned(), "ok".to_owned()));
    // prod is not an auto channel (and needs an approval).
    assert!(history(&s, "prod").is_empty());
}

#[test]
fn auto_promotion_after_the_soak_period() {
    let s = Server::start_with(Some(FAST), &[]);
    set_policy(
        &s,
        "staging",
        "from = \"dev\"\nauto = true\nmin_soak = \"2s\"\n",
    );
    let b = s.builder("builder", "app/*");
    push(&s, &b, "1.0.0", 1);
    let pushed = Instant::now();
    assert!(history(&s, "staging").is_empty());
    let arrived = common::wait_until(Duration::from_secs(8), || {
        current(&s, "staging").as_deref() == Some("1.0.0")
    });
    assert!(arrived, "not auto-promoted within 8 s after the push");
    // Created-at times have second resolution, so the soak may end up to 1 s early; never more.
    assert!(
        pushed.elapsed() >= Duration::from_secs(1),
        "promoted before the soak period ended"
    );
    let h = history(&s, "staging");
    assert_eq!(h[0]["action"], "auto-promote");
    assert_eq!(h[0]["actor"], "auto");
}

#[test]
// Regression: a push did not trigger auto-promotion (only the periodic sweep did).
fn auto_promotion_right_after_a_push() {
    // Default config: the periodic sweep runs at start and then every 5 minutes.
    let s = Server::start();
    set_policy(&s, "staging", "from = \"dev\"\nauto = true\n");
    let b = s.builder("builder", "app/*");
    push(&s, &b, "1.0.0", 1);
    let arrived = common::wait_until(Duration::from_secs(5), || {
        current(&s, "staging").as_deref() == Some("1.0.0")
    });
    assert!(arrived, "staging did not take app/x@1.0.0 after the push");
    assert_eq!(history(&s, "staging")[0]["action"], "auto-promote");
}

// 13. Rollback is a roll-forward.

#[test]
fn rollback_publishes_a_new_version_that_clients_accept() {
    let s = Server::start_tamperable();
    let b = s.builder("builder", "app/*");
    let f1 = push(&s, &b, "1.0.0", 1);
    promote(&s, "1.0.0", "staging", &[]);
    let f2 = push(&s, &b, "2.0.0", 2);
    promote(&s, "2.0.0", "staging", &[]);

    // A client (arca and python-tuf, each keeping its metadata) follows staging at 2.0.0.
    let state = s.path("client");
    let py_state = s.path("py-client");
    let py_dir = ["--metadata-dir", p(&py_state)];
    let msg = s.pull_ok(NAME, "staging", &s.path("out2"), &state);
    assert!(msg.contains("verified app/x@2.0.0"), "{msg}");
    assert_eq!(
        std::fs::read(s.path("out2/x-2.0.0.bin")).unwrap(),
        std::fs::read(&f2).unwrap()
    );
    let (ok, log) = s.python_tuf("staging", "app/x/x-2.0.0.bin", &s.path("py2"), &py_dir);
    assert!(ok, "{log}");
    let (old_ts_v, old_ts) = latest_meta(&s, "staging", "timestamp");
    let tv = targets_version(&s, "staging");

    let out = s.ok(&["rollback", NAME, "--channel", "staging", "--reason", "bad"]);
    assert!(out.contains("2.0.0 -> 1.0.0"), "{out}");
    assert_eq!(targets_version(&s, "staging"), tv + 1, "not a roll-forward");
    let h = history(&s, "staging");
    let last = h.last().unwrap();
    assert_eq!(last["action"], "rollback");
    assert_eq!(last["version"], "1.0.0");
    assert_eq!(last["reason"], "bad");
    assert!(last["actor"].as_str().unwrap().starts_with("token:"));

    // The same clients accept the higher version that points at the older content.
    let msg = s.pull_ok(NAME, "staging", &s.path("out1"), &state);
    assert!(msg.contains("verified app/x@1.0.0"), "{msg}");
    assert_eq!(
        std::fs::read(s.path("out1/x-1.0.0.bin")).unwrap(),
        std::fs::read(&f1).unwrap()
    );
    let (ok, log) = s.python_tuf("staging", "app/x/x-1.0.0.bin", &s.path("py1"), &py_dir);
    assert!(ok, "{log}");
    assert_eq!(
        std::fs::read(s.path("py1/app%2Fx%2Fx-1.0.0.bin")).unwrap(),
        std::fs::read(&f1).unwrap()
    );

    // Replaying the metadata from before the rollback is still refused.
    let (new_ts_v, _) = latest_meta(&s, "staging", "timestamp");
    assert!(new_ts_v > old_ts_v);
    let n = s.db().execute(
        "UPDATE tuf_metadata SET body = ?1 WHERE channel = 'staging' AND role = 'timestamp' \
         AND version = ?2",
        params![old_ts, new_ts_v],
    );
    assert_eq!(n, 1);
    let dir = s.path("out-replay");
    let err = s.pull_fails(NAME, "staging", &dir, &state);
    assert!(
        err.contains(&format!(
            "version {old_ts_v} is older than the trusted version {new_ts_v}"
        )),
        "{err}"
    );
    assert!(common::list_files(&dir).is_empty());
    let (ok, log) = s.python_tuf(
        "staging",
        "app/x/x-1.0.0.bin",
        &s.path("py-replay"),
        &[
            "--metadata-dir",
            p(&py_state),
            "--expect-error",
            "BadVersionNumberError",
        ],
    );
    assert!(ok, "{log}");
}

// 14. Dry run.

#[test]
fn dry_run_changes_nothing_and_prints_every_rule() {
    let s = Server::start();
    let b = s.builder("builder", "app/*");
    push(&s, &b, "1.0.0", 1);
    let r = release("1.0.0");

    // Allowed: says so, exits 0, changes nothing (not even the audit log).
    let (before, audits, tv) = (s.state(), audit_len(&s), targets_version(&s, "staging"));
    let out = promote(&s, "1.0.0", "staging", &["--dry-run"]);
    assert!(out.contains("would be allowed"), "{out}");
    assert_rules(&out, &[(true, "require_build_signature"), (true, "from")]);
    assert_eq!(s.state(), before);
    assert_eq!(audit_len(&s), audits);
    assert_eq!(targets_version(&s, "staging"), tv);
    assert!(history(&s, "staging").is_empty());

    // Would be refused: prints every rule, exits 1, changes nothing.
    let out = s
        .arca()
        .args(["promote", r.as_str(), "--to", "prod", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("would be REFUSED"), "{stdout}");
    assert_rules(
        &stdout,
        &[
            (true, "require_build_signature"),
            (false, "from"),
            (false, "require_approvals"),
        ],
    );
    assert_eq!(s.state(), before);
    assert_eq!(audit_len(&s), audits);
}

// 15. Retries.

#[test]
fn retried_promotion_is_a_no_op() {
    let s = Server::start();
    let b = s.builder("builder", "app/*");
    push(&s, &b, "1.0.0", 1);
    promote(&s, "1.0.0", "staging", &[]);
    let before = s.state();
    let out = promote(&s, "1.0.0", "staging", &[]);
    assert!(out.contains("already current"), "{out}");
    assert_eq!(s.state(), before);
    assert_eq!(history(&s, "staging").len(), 1);
}
