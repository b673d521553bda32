//! Token roles and scopes: every endpoint that needs a token, for every role, in scope and out
//! of scope. A token whose role may never do an action is refused `403 token_role`, one whose
//! role may but not for that name, channel or agent `403 token_scope`; both name the token,
//! the action and the scope, leave state unchanged and are audited (outcome `refused`, actor
//! `token:<id>`), like every refusal of an authenticated request. Expired and revoked tokens
//! are `401` and, like every request without a valid token, only logged.

use crate::common;

use std::time::Duration;

use arca_keys::SigningKey;
use arca_keys::dsse::Envelope;
use arca_keys::intoto::{PAYLOAD_TYPE, Statement, Subject};
use common::{Server, raw, wait_until};
use serde_json::{Value, json};

const ROLES: [&str; 5] = ["admin", "publisher", "promoter", "reporter", "viewer"];

fn token(s: &Server, args: &[&str]) -> String {
    let mut all = vec!["token", "create"];
    all.extend(args);
    let out = s.ok(&all);
    assert_eq!(out.lines().count(), 1, "the secret alone on stdout: {out}");
    out.trim().to_owned()
}

fn token_id(t: &str) -> String {
    t.strip_prefix("arca_").unwrap()[..16].to_owned()
}

/// One token of each role: publisher for `team-a/*`; promoter for `team-a/*` in staging;
/// reporter for agent host-1 in staging; viewer.
fn tokens(s: &Server) -> Vec<(&'static str, String)> {
    vec![
        ("admin", s.token.clone()),
        (
            "publisher",
            token(s, &["--role", "publisher", "--scope", "team-a/*"]),
        ),
        (
            "promoter",
            token(
                s,
                &[
                    "--role",
                    "promoter",
                    "--channel",
                    "staging",
                    "--scope",
                    "team-a/*",
                ],
            ),
        ),
        (
            "reporter",
            token(
                s,
                &[
                    "--role",
                    "reporter",
                    "--agent",
                    "host-1",
                    "--channel",
                    "staging",
                ],
            ),
        ),
        ("viewer", token(s, &["--role", "viewer"])),
    ]
}

fn request(s: &Server, token: &str, method: &str, path: &str, body: Option<&[u8]>) -> raw::Answer {
    let url = format!("{}{path}", s.url);
    raw::block(async {
        let http = raw::http();
        let req = match method {
            "GET" => http.get(&url),
            "POST" => http.post(&url),
            "DELETE" => http.delete(&url),
            other => panic!("{other}"),
        };
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(b.to_vec()),
            None => req,
        };
        raw::answer(req.bearer_auth(token).send().await.unwrap()).await
    })
}

/// A signed statement about `subject` with `predicate` (any key: the token is checked first).
fn statement(subject: &str, predicate_type: &str, predicate: Value) -> Vec<u8> {
    let key = SigningKey::generate().unwrap();
    let st = Statement::new(
        Subject {
            name: subject.to_owned(),
            digest: [("sha256".to_owned(), "ab".repeat(32))].into(),
        },
        predicate_type,
        predicate,
    );
    Envelope::sign(PAYLOAD_TYPE, &st.to_bytes(), &[&key])
        .unwrap()
        .to_bytes()
}

fn report(agent: &str, channel: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "agent": agent, "channel": channel, "name": "team-a/x", "version": "1.0.0",
        "outcome": "ok", "message": "fine", "current": "1.0.0",
        "at": arca_keys::format_time(chrono::Utc::now()),
    }))
    .unwrap()
}

/// One request to one endpoint, and which roles its token check lets through (`pass`) or
/// refuses for scope (`scope`); every other role is refused for its role.
struct Case {
    what: &'static str,
    method: &'static str,
    path: String,
    body: Option<Vec<u8>>,
    pass: &'static [&'static str],
    scope: &'static [&'static str],
}

fn cases(s: &Server) -> Vec<Case> {
    let signer = SigningKey::generate().unwrap().key_id().to_string();
    let trust: Value = raw::block(async {
        raw::http()
            .get(format!("{}/api/v1/trust", s.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let j = |v: Value| Some(serde_json::to_vec(&v).unwrap());
    let attest = |name: &str| {
        Some(statement(
            &format!("{name}@1.0.0"),
            "https://example.com/test-result/v1",
            json!({ "passed": true }),
        ))
    };
    let approve = |channel: &str| {
        Some(statement(
            "team-a/x@1.0.0",
            "https://arca.dev/approval/v1",
            json!({ "channel": channel }),
        ))
    };
    let promote = |name: &str, to: &str| j(json!({ "name": name, "version": "9.9.9", "to": to }));
    let rollout = |ch: &str| j(json!({ "channel": ch, "name": "team-a/x" }));
    let c = |what, method, path: String, body, pass, scope| Case {
        what,
        method,
        path,
        body,
        pass,
        scope,
    };
    const ADMIN: &[&str] = &["admin"];
    const NONE: &[&str] = &[];
    vec![
        c(
            "stage an upload in scope",
            "POST",
            format!("/api/v1/uploads?name=team-a/x&version=1.0.0&signer={signer}"),
            Some(b"bytes".to_vec()),
            &["admin", "publisher"],
            NONE,
        ),
        c(
            "stage an upload out of scope",
            "POST",
            format!("/api/v1/uploads?name=team-b/x&version=1.0.0&signer={signer}"),
            Some(b"bytes".to_vec()),
            ADMIN,
            &["publisher"],
        ),
        c(
            "push in scope",
            "POST",
            "/api/v1/artifacts?name=team-a/x&version=1.0.0&file=x.bin".into(),
            Some(b"bytes".to_vec()),
            &["admin", "publisher"],
            NONE,
        ),
        c(
            "push out of scope",
            "POST",
            "/api/v1/artifacts?name=team-b/x&version=1.0.0&file=x.bin".into(),
            Some(b"bytes".to_vec()),
            ADMIN,
            &["publisher"],
        ),
        c(
            "attest in scope",
            "POST",
            "/api/v1/statements".into(),
            attest("team-a/x"),
            &["admin", "publisher"],
            NONE,
        ),
        c(
            "attest out of scope",
            "POST",
            "/api/v1/statements".into(),
            attest("team-b/x"),
            ADMIN,
            &["publisher"],
        ),
        c(
            "approve in scope",
            "POST",
            "/api/v1/statements".into(),
            approve("staging"),
            &["admin", "promoter"],
            NONE,
        ),
        c(
            "approve for another channel",
            "POST",
            "/api/v1/statements".into(),
            approve("prod"),
            ADMIN,
            &["promoter"],
        ),
        c(
            "promote in scope",
            "POST",
            "/api/v1/promotions".into(),
            promote("team-a/x", "staging"),
            &["admin", "promoter"],
            NONE,
        ),
        c(
            "promote to another channel",
            "POST",
            "/api/v1/promotions".into(),
            promote("team-a/x", "prod"),
            ADMIN,
            &["promoter"],
        ),
        c(
            "promote another name",
            "POST",
            "/api/v1/promotions".into(),
            promote("team-b/x", "staging"),
            ADMIN,
            &["promoter"],
        ),
        c(
            "roll back in scope",
            "POST",
            "/api/v1/rollbacks".into(),
            j(json!({ "name": "team-a/x", "channel": "staging" })),
            &["admin", "promoter"],
            NONE,
        ),
        c(
            "roll back another channel",
            "POST",
            "/api/v1/rollbacks".into(),
            j(json!({ "name": "team-a/x", "channel": "prod" })),
            ADMIN,
            &["promoter"],
        ),
        c(
            "advance a rollout in scope",
            "POST",
            "/api/v1/rollouts/advance".into(),
            rollout("staging"),
            &["admin", "promoter"],
            NONE,
        ),
        c(
            "abort a rollout in another channel",
            "POST",
            "/api/v1/rollouts/abort".into(),
            rollout("prod"),
            ADMIN,
            &["promoter"],
        ),
        c(
            "report in scope",
            "POST",
            "/api/v1/reports".into(),
            Some(report("host-1", "staging")),
            &["admin", "reporter"],
            NONE,
        ),
        c(
            "report as another agent",
            "POST",
            "/api/v1/reports".into(),
            Some(report("host-2", "staging")),
            ADMIN,
            &["reporter"],
        ),
        c(
            "report on another channel",
            "POST",
            "/api/v1/reports".into(),
            Some(report("host-1", "dev")),
            ADMIN,
            &["reporter"],
        ),
        c(
            "list agents",
            "GET",
            "/api/v1/agents".into(),
            None,
            &["admin", "reporter", "viewer"],
            NONE,
        ),
        c(
            "forget an agent",
            "DELETE",
            "/api/v1/agents/host-9?channel=staging".into(),
            None,
            ADMIN,
            NONE,
        ),
        c(
            "read the audit log",
            "GET",
            "/api/v1/audit".into(),
            None,
            &["admin", "viewer"],
            NONE,
        ),
        c(
            "read the checkpoints",
            "GET",
            "/api/v1/audit/checkpoints".into(),
            None,
            &["admin", "viewer"],
            NONE,
        ),
        c(
            "sign a checkpoint",
            "POST",
            "/api/v1/audit/checkpoints".into(),
            None,
            ADMIN,
            NONE,
        ),
        c(
            "create a token",
            "POST",
            "/api/v1/tokens".into(),
            j(json!({ "role": "nope" })),
            ADMIN,
            NONE,
        ),
        c(
            "list tokens",
            "GET",
            "/api/v1/tokens".into(),
            None,
            &["admin", "viewer"],
            NONE,
        ),
        c(
            "revoke a token",
            "DELETE",
            "/api/v1/tokens/0123456789abcdef".into(),
            None,
            ADMIN,
            NONE,
        ),
        c(
            "change trust",
            "POST",
            "/api/v1/trust".into(),
            j(trust.clone()),
            ADMIN,
            NONE,
        ),
        c(
            "rotate the root keys",
            "POST",
            "/api/v1/trust/rotation".into(),
            j(json!({ "trust": trust, "roots": {} })),
            ADMIN,
            NONE,
        ),
        c(
            "propose an online key",
            "POST",
            "/api/v1/channels/qa/online-key".into(),
            None,
            ADMIN,
            NONE,
        ),
        c(
            "install a channel root",
            "POST",
            "/api/v1/channels/qa/root".into(),
            j(json!({ "signed": {}, "signatures": [] })),
            ADMIN,
            NONE,
        ),
        c(
            "set a policy",
            "POST",
            "/api/v1/policies/staging".into(),
            j(json!({ "policy": "", "trust": trust })),
            ADMIN,
            NONE,
        ),
    ]
}

fn last_audit(s: &Server) -> (String, String, String) {
    s.db().one(
        "SELECT actor, outcome, details FROM audit ORDER BY seq DESC LIMIT 1",
        params![],
    )
}

#[test]
fn every_endpoint_checks_every_role_and_scope() {
    let s = Server::start();
    let tokens = tokens(&s);
    let mut checked = 0;
    for case in cases(&s) {
        for (role, token) in &tokens {
            let id = token_id(token);
            let expect = if case.pass.contains(role) {
                None
            } else if case.scope.contains(role) {
                Some("token_scope")
            } else {
                Some("token_role")
            };
            let before = s.state();
            let audited = s.audit_count("refused");
            let a = request(&s, token, case.method, &case.path, case.body.as_deref());
            let at = format!("{} as {role}: {} {}", case.what, a.status, a.body);
            match expect {
                None => {
                    assert!(
                        a.status != 401 && !a.code.starts_with("token"),
                        "let through: {at}"
                    );
                }
                Some(code) => {
                    assert_eq!((a.status, a.code.as_str()), (403, code), "{at}");
                    assert!(
                        a.message.contains(&id) && a.message.contains(role),
                        "the refusal names the token and its role: {at}"
                    );
                    assert_eq!(s.state(), before, "a refusal changed state: {at}");
                    assert_eq!(s.audit_count("refused"), audited + 1, "not audited: {at}");
                    let (actor, outcome, details) = last_audit(&s);
                    assert_eq!(
                        (actor.as_str(), outcome.as_str()),
                        (format!("token:{id}").as_str(), "refused"),
                        "{at}"
                    );
                    assert!(details.contains(code), "{details}");
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 31 * ROLES.len());
}

#[test]
fn a_publisher_for_team_a_pushes_team_a_only() {
    let s = Server::start();
    let key = s.builder("builder", "**");
    let publisher = token(
        &s,
        &[
            "--role",
            "publisher",
            "--scope",
            "team-a/*",
            "--label",
            "ci a",
        ],
    );
    let id = token_id(&publisher);
    let as_publisher = |args: &[&str]| {
        s.arca()
            .env("ARCA_TOKEN", &publisher)
            .args(args)
            .output()
            .unwrap()
    };
    let f = s.file("a.bin", 500, 1);
    let out = as_publisher(&raw::push_args(&f, "team-a/x", "1.0.0", &key));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let before = s.state();
    let out = as_publisher(&raw::push_args(&f, "team-b/x", "1.0.0", &key));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("token_scope")
            && err.contains(&id)
            && err.contains("team-b/x")
            && err.contains("team-a/*"),
        "{err}"
    );
    for args in [
        vec!["promote", "team-a/x@1.0.0", "--to", "staging"],
        vec!["token", "create", "--role", "admin"],
        vec!["rollback", "team-a/x", "--channel", "dev"],
    ] {
        let out = as_publisher(&args);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(4), "{args:?}: {err}");
        assert!(err.contains("token_role"), "{args:?}: {err}");
    }
    assert_eq!(s.state(), before, "refusals changed state");
}

#[test]
fn a_promoter_for_staging_cannot_promote_to_prod() {
    let s = Server::start();
    let key = s.builder("builder", "app/*");
    s.push(&s.file("p.bin", 500, 2), "app/p", "1.0.0", &key);
    let promoter = token(&s, &["--role", "promoter", "--channel", "staging"]);
    let run = |args: &[&str]| {
        s.arca()
            .env("ARCA_TOKEN", &promoter)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["promote", "app/p@1.0.0", "--to", "staging"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = s.state();
    let out = run(&["promote", "app/p@1.0.0", "--to", "prod"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("token_scope") && err.contains("prod"), "{err}");
    assert_eq!(s.state(), before);
    // Pushing is a publisher's.
    let out = run(&raw::push_args(
        &s.file("q.bin", 10, 3),
        "app/p",
        "1.0.1",
        &key,
    ));
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("token_role"));
    assert_eq!(s.state(), before);
}

#[test]
fn a_viewer_reads_and_changes_nothing() {
    let s = Server::start();
    let viewer = token(&s, &["--role", "viewer", "--label", "dashboard"]);
    let run = |args: &[&str]| {
        s.arca()
            .env("ARCA_TOKEN", &viewer)
            .args(args)
            .output()
            .unwrap()
    };
    for args in [
        vec![
            "audit",
            "verify",
            "--state",
            s.path("verify-state").to_str().unwrap(),
        ],
        vec!["agents"],
        vec!["token", "list"],
        vec!["audit", "export"],
    ] {
        let out = run(&args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let status = request(&s, &viewer, "GET", "/api/v1/status", None);
    assert_eq!(status.status, 200, "{}", status.body);
    let before = s.state();
    for args in [
        vec!["token", "create", "--role", "viewer"],
        vec!["audit", "checkpoint"],
        vec!["promote", "app/x@1.0.0", "--to", "staging"],
    ] {
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(4), "{args:?}: {err}");
        assert!(err.contains("token_role"), "{args:?}: {err}");
    }
    assert_eq!(s.state(), before);
}

#[test]
fn expired_and_revoked_tokens_are_refused() {
    let s = Server::start();
    let short = token(&s, &["--role", "viewer", "--expires", "2s"]);
    let long = token(
        &s,
        &["--role", "viewer", "--expires", "90d", "--label", "l"],
    );
    let revoked = token(&s, &["--role", "viewer"]);
    s.ok(&["token", "revoke", &token_id(&revoked)]);
    let list: Value = serde_json::from_str(&s.ok(&["token", "list", "--json"])).unwrap();
    let row = |id: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .unwrap()
            .clone()
    };
    let l = row(&token_id(&long));
    let expires = chrono::DateTime::parse_from_rfc3339(l["expires_at"].as_str().unwrap()).unwrap();
    let days = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_days();
    assert!((89..=90).contains(&days), "{l}");
    assert!(
        row(&token_id(&s.token))["expires_at"].is_null(),
        "the init token never expires"
    );

    let before = s.state();
    let audited = s.audit_count("refused");
    assert!(
        wait_until(Duration::from_secs(10), || {
            request(&s, &short, "GET", "/api/v1/tokens", None).status == 401
        }),
        "the 2s token never expired"
    );
    let a = request(&s, &short, "GET", "/api/v1/tokens", None);
    assert!(
        a.message.contains("expired at") && a.message.contains(&token_id(&short)),
        "{}",
        a.body
    );
    let out = s
        .arca()
        .env("ARCA_TOKEN", &short)
        .args(["token", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expired at"));
    let a = request(&s, &revoked, "GET", "/api/v1/tokens", None);
    assert_eq!(a.status, 401, "{}", a.body);
    // A token that does not authenticate is logged, not audited (as any bad token).
    assert_eq!(s.state(), before);
    assert_eq!(s.audit_count("refused"), audited);
    // The long one still works.
    assert_eq!(
        request(&s, &long, "GET", "/api/v1/tokens", None).status,
        200
    );
}

#[test]
fn last_use_is_recorded_at_most_once_a_minute() {
    let s = Server::start();
    let viewer = token(&s, &["--role", "viewer"]);
    let id = token_id(&viewer);
    let used = || -> Option<String> {
        let list: Value = serde_json::from_str(&s.ok(&["token", "list", "--json"])).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id.as_str())
            .unwrap()["last_used_at"]
            .as_str()
            .map(str::to_owned)
    };
    assert_eq!(used(), None, "never used yet");
    assert_eq!(
        request(&s, &viewer, "GET", "/api/v1/audit", None).status,
        200
    );
    let first = used().expect("recorded");
    // Within the minute: not written again (the time only has seconds, so wait one).
    let t0 = std::time::Instant::now();
    assert!(wait_until(Duration::from_secs(3), || t0.elapsed()
        > Duration::from_millis(1100)));
    assert_eq!(
        request(&s, &viewer, "GET", "/api/v1/audit", None).status,
        200
    );
    assert_eq!(used().as_deref(), Some(first.as_str()));
    let text = s.ok(&["token", "list"]);
    assert!(
        text.contains("last used") && text.contains(&first),
        "{text}"
    );
}

#[test]
fn token_changes_are_audited_with_their_scope_and_expiry() {
    let s = Server::start();
    let t = token(
        &s,
        &[
            "--role",
            "promoter",
            "--channel",
            "prod",
            "--scope",
            "app/*",
            "--expires",
            "1h",
        ],
    );
    let details: String = s.db().one(
        "SELECT details FROM audit WHERE action = 'token-create' AND subject = ?1",
        params![format!("token:{}", token_id(&t))],
    );
    let d: Value = serde_json::from_str(&details).unwrap();
    assert_eq!(d["role"], "promoter");
    assert_eq!(d["names"], json!(["app/*"]));
    assert_eq!(d["channels"], json!(["prod"]));
    assert!(d["expires_at"].is_string(), "{d}");
    let out = s.ok(&["token", "revoke", &token_id(&t), "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["revoked"], true);
    // Bad scopes and expiries are refused with what is wrong.
    let before = s.state();
    for (args, needle) in [
        (vec!["--role", "publisher"], "names what it may push"),
        (vec!["--role", "promoter"], "names the channels"),
        (
            vec!["--role", "viewer", "--scope", "a/*"],
            "not bound to names",
        ),
        (vec!["--role", "publisher", "--scope", "a b"], "not a glob"),
        (
            vec!["--role", "viewer", "--expires", "20000d"],
            "within ten years",
        ),
    ] {
        let mut all = vec!["token", "create"];
        all.extend(&args);
        let line = s.fails(&all);
        assert!(line.contains(needle), "{args:?}: {line}");
    }
    assert_eq!(s.state(), before);
}
