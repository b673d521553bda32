//! Reporter tokens sit on every agent host, so they are bound: to the agent ids they may
//! speak for (one, a prefix such as `web-*` for a fleet sharing a token, or `*` explicitly)
//! and optionally to channels. A report outside the binding is refused with `403
//! token_scope` naming the token, the agent or channel and the scope, and changes nothing.
//! Reports are rate-limited per token (429 with Retry-After), only each agent's latest
//! reports are kept, an agent's clock cannot date a report in the future, bodies are capped,
//! and the agent and history listings are paginated. Tokens carry labels, shown in listings
//! and in the audit log. `rollout advance --reason` keeps its reason.

use crate::common;

use common::{Server, raw};
use serde_json::{Value, json};

const NAME: &str = "app/tok";
const CH: &str = "staging";

fn setup(s: &Server) -> std::path::PathBuf {
    let key = s.builder("builder", "app/*");
    let f = s.file("tok-1.bin", 900, 1);
    s.push(&f, NAME, "1.0.0", &key);
    s.ok(&["promote", &format!("{NAME}@1.0.0"), "--to", CH]);
    key
}

fn token(s: &Server, extra: &[&str]) -> String {
    let mut args = vec!["token", "create", "--role", "reporter"];
    args.extend(extra);
    s.ok(&args).trim().to_owned()
}

fn token_id(t: &str) -> String {
    t.strip_prefix("arca_").unwrap()[..16].to_owned()
}

fn body(agent: &str, channel: &str) -> Value {
    json!({
        "agent": agent, "channel": channel, "name": NAME, "version": "1.0.0",
        "outcome": "ok", "message": "fine", "current": "1.0.0",
        "at": arca_keys::format_time(chrono::Utc::now()),
    })
}

/// POST /api/v1/reports: (answer, Retry-After).
fn post(s: &Server, token: &str, body: &Value) -> (raw::Answer, Option<String>) {
    let url = format!("{}/api/v1/reports", s.url);
    let bytes = serde_json::to_vec(body).unwrap();
    raw::block(async {
        let resp = raw::http()
            .post(&url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(bytes)
            .send()
            .await
            .unwrap();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (raw::answer(resp).await, retry)
    })
}

fn get_json(s: &Server, token: &str, path: &str) -> Value {
    let url = format!("{}{path}", s.url);
    raw::block(async {
        let resp = raw::http()
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        resp.json().await.unwrap()
    })
}

fn count(s: &Server, sql: &str) -> i64 {
    s.db().one(sql, params![])
}

#[test]
fn a_reporter_token_speaks_only_for_its_agents_and_channels() {
    let s = Server::start();
    setup(&s);
    let one = token(
        &s,
        &["--agent", "web-1", "--channel", CH, "--label", "web-1 host"],
    );
    let id = token_id(&one);

    // Another agent id, another channel: refused, naming token, agent/channel and scope.
    let before = s.state();
    let (a, _) = post(&s, &one, &body("web-2", CH));
    assert_eq!(
        (a.status, a.code.as_str()),
        (403, "token_scope"),
        "{}",
        a.body
    );
    assert!(
        a.message.contains(&id) && a.message.contains("web-2") && a.message.contains("web-1"),
        "{}",
        a.message
    );
    let (a, _) = post(&s, &one, &body("web-1", "dev"));
    assert_eq!(
        (a.status, a.code.as_str()),
        (403, "token_scope"),
        "{}",
        a.body
    );
    assert!(
        a.message.contains(&id) && a.message.contains("dev") && a.message.contains(CH),
        "{}",
        a.message
    );
    assert_eq!(s.state(), before, "a refused report changed state");
    // Its own agent on its channel: accepted.
    let (a, _) = post(&s, &one, &body("web-1", CH));
    assert_eq!(a.status, 200, "{}", a.body);

    // A fleet token: a prefix.
    let fleet = token(&s, &["--agent", "db-*"]);
    assert_eq!(post(&s, &fleet, &body("db-7", CH)).0.status, 200);
    assert_eq!(post(&s, &fleet, &body("db-7", "dev")).0.status, 200);
    let before = s.state();
    let (a, _) = post(&s, &fleet, &body("web-9", CH));
    assert_eq!(
        (a.status, a.code.as_str()),
        (403, "token_scope"),
        "{}",
        a.body
    );
    assert_eq!(s.state(), before);

    // A reporter token must say whom it speaks for; bindings are for reporter tokens; the
    // patterns and channels are checked.
    let before = s.state();
    for (args, needle) in [
        (
            vec!["token", "create", "--role", "reporter"],
            "names the agents",
        ),
        (
            vec!["token", "create", "--role", "admin", "--agent", "web-1"],
            "admin tokens are not bound",
        ),
        (
            vec!["token", "create", "--role", "reporter", "--agent", "w*b"],
            "may only end it",
        ),
        (
            vec![
                "token",
                "create",
                "--role",
                "reporter",
                "--agent",
                "x",
                "--channel",
                "qa",
            ],
            "no channel named",
        ),
    ] {
        let line = s.fails(&args);
        assert!(line.contains(needle), "{args:?}: {line}");
    }
    assert_eq!(s.state(), before);

    // The agents listing names the token and its label.
    let rows = get_json(&s, &s.token, &format!("/api/v1/agents?channel={CH}"));
    let web1 = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["agent"] == "web-1")
        .unwrap();
    assert_eq!(web1["token"], format!("token:{id}"));
    assert_eq!(web1["token_label"], "web-1 host");
    let text = s.ok(&["agents", "--channel", CH]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("web-1") && l.contains("web-1 host")),
        "{text}"
    );
}

#[test]
fn a_flood_is_rate_limited_and_the_reports_table_stays_bounded() {
    let s = Server::start_with(
        Some("[agents]\nreports_per_minute = 30\nkeep_reports = 5\n"),
        &[],
    );
    setup(&s);
    let t = token(&s, &["--agent", "web-1"]);
    let mut ok = 0;
    let mut limited = None;
    for _ in 0..60 {
        let (a, retry) = post(&s, &t, &body("web-1", CH));
        match a.status {
            200 => ok += 1,
            429 => {
                assert_eq!(a.code, "rate_limited", "{}", a.body);
                assert!(a.message.contains(&token_id(&t)), "{}", a.message);
                limited = Some(retry.expect("a 429 says when to retry"));
            }
            other => panic!("{other}: {}", a.body),
        }
    }
    let retry: u64 = limited
        .expect("60 reports in a burst were never limited")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!((30..=36).contains(&ok), "{ok} accepted");
    // Only the latest reports per agent are kept.
    let rows = count(&s, "SELECT COUNT(*) FROM reports");
    assert!(rows <= 5, "{rows} report rows kept");
    // Another token has its own allowance.
    let other = token(&s, &["--agent", "web-2"]);
    assert_eq!(post(&s, &other, &body("web-2", CH)).0.status, 200);
}

#[test]
fn report_times_are_clamped_bodies_capped_and_listings_paginated() {
    let s = Server::start();
    let key = setup(&s);
    let t = token(&s, &["--agent", "*"]);
    let mut b = body("late-1", CH);
    b["at"] = json!("2099-01-01T00:00:00Z");
    assert_eq!(post(&s, &t, &b).0.status, 200);
    let at: String = s
        .db()
        .one("SELECT at FROM reports WHERE agent = 'late-1'", params![]);
    assert!(
        at.as_str() <= arca_keys::format_time(chrono::Utc::now()).as_str(),
        "{at}"
    );

    let before = s.state();
    let mut big = body("big-1", CH);
    big["message"] = json!("\u{1}".repeat(3000));
    let (a, _) = post(&s, &t, &big);
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        a.message.contains("limit") || a.message.contains("bytes"),
        "{}",
        a.message
    );
    assert_eq!(s.state(), before);

    for i in 0..5 {
        assert_eq!(post(&s, &t, &body(&format!("page-{i}"), CH)).0.status, 200);
    }
    let p1 = get_json(&s, &t, &format!("/api/v1/agents?channel={CH}&limit=2"));
    let p2 = get_json(
        &s,
        &t,
        &format!("/api/v1/agents?channel={CH}&limit=2&offset=2"),
    );
    let all = get_json(&s, &t, &format!("/api/v1/agents?channel={CH}"));
    assert_eq!(p1.as_array().unwrap().len(), 2);
    assert_eq!(p2.as_array().unwrap().len(), 2);
    assert_eq!(all.as_array().unwrap().len(), 6);
    assert_eq!(p1[0]["agent"], all[0]["agent"]);
    assert_eq!(p2[0]["agent"], all[2]["agent"]);

    for (v, seed) in [("1.1.0", 2), ("1.2.0", 3)] {
        let f = s.file(&format!("tok-{v}.bin"), 900, seed);
        s.push(&f, NAME, v, &key);
        s.ok(&["promote", &format!("{NAME}@{v}"), "--to", CH]);
    }
    let h1 = get_json(
        &s,
        &t,
        &format!("/api/v1/history?name={NAME}&channel={CH}&limit=2"),
    );
    assert_eq!(h1.as_array().unwrap().len(), 2);
    let after = h1[1]["seq"].as_i64().unwrap();
    let h2 = get_json(
        &s,
        &t,
        &format!("/api/v1/history?name={NAME}&channel={CH}&limit=2&after={after}"),
    );
    assert_eq!(h2.as_array().unwrap().len(), 1);
    assert_eq!(h2[0]["version"], "1.2.0");
    let cli: Vec<Value> =
        serde_json::from_str(&s.ok(&["history", NAME, "--channel", CH, "--json"])).unwrap();
    assert_eq!(cli.len(), 3);
}

#[test]
fn tokens_carry_labels_into_listings_and_the_audit_log() {
    let s = Server::start();
    let labelled = s
        .ok(&[
            "token",
            "create",
            "--role",
            "admin",
            "--label",
            "ops: alice",
        ])
        .trim()
        .to_owned();
    let old_flag = token(&s, &["--agent", "web-*", "--description", "web fleet"]);
    let list: Vec<Value> = serde_json::from_str(&s.ok(&["token", "list", "--json"])).unwrap();
    let find = |id: &str| list.iter().find(|t| t["id"] == id).unwrap().clone();
    let a = find(&token_id(&labelled));
    assert_eq!(
        (a["role"].clone(), a["label"].clone()),
        (json!("admin"), json!("ops: alice"))
    );
    let r = find(&token_id(&old_flag));
    assert_eq!(
        r["label"], "web fleet",
        "--description still sets the label: {r}"
    );
    assert_eq!(r["agents"], json!(["web-*"]));
    assert!(r.get("revoked_at").is_none(), "{r}");
    let text = s.ok(&["token", "list"]);
    assert!(
        text.contains("ops: alice") && text.contains("web-*"),
        "{text}"
    );

    // An action by the labelled token: the audit entry's details carry the label.
    s.arca()
        .env("ARCA_TOKEN", &labelled)
        .args(["token", "revoke", &token_id(&old_flag)])
        .output()
        .unwrap();
    let (actor, details): (String, String) = s.db().one(
        "SELECT actor, details FROM audit WHERE action = 'token-revoke'",
        params![],
    );
    assert_eq!(actor, format!("token:{}", token_id(&labelled)));
    let details: Value = serde_json::from_str(&details).unwrap();
    assert_eq!(details["token_label"], "ops: alice", "{details}");
    assert_eq!(details["label"], "web fleet", "{details}");
    let list: Vec<Value> = serde_json::from_str(&s.ok(&["token", "list", "--json"])).unwrap();
    let r = list
        .iter()
        .find(|t| t["id"] == token_id(&old_flag))
        .unwrap();
    assert!(r["revoked_at"].is_string(), "{r}");
}

#[test]
fn rollout_advance_keeps_its_reason_and_status_takes_none() {
    let s = Server::start();
    let key = setup(&s);
    let f = s.file("tok-2.bin", 900, 2);
    s.push(&f, NAME, "2.0.0", &key);
    s.ok(&[
        "promote",
        &format!("{NAME}@2.0.0"),
        "--to",
        CH,
        "--rollout",
        "10,100",
        "--step-interval",
        "1h",
    ]);
    s.ok(&[
        "rollout",
        "advance",
        NAME,
        "--channel",
        CH,
        "--reason",
        "CHG-42 canaries fine",
    ]);
    let details: String = s.db().one(
        "SELECT details FROM audit WHERE action = 'rollout-advance'",
        params![],
    );
    let details: Value = serde_json::from_str(&details).unwrap();
    assert_eq!(details["reason"], "CHG-42 canaries fine", "{details}");
    assert_eq!(details["forced"], true, "{details}");
    // An option that would do nothing is not offered.
    let out = s
        .arca()
        .args(["rollout", "status", NAME, "--channel", CH, "--reason", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--reason"));
}
