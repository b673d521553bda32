//! Section 5: Tokens: a reporter token reports and lists agents, nothing else; no token, a bad token:
//! 401. Bad reports are refused naming the field, and leave no trace.

use super::*;

/// `arca ARGS` with `token` (None: no token at all), expecting a refusal that names every one
/// of `needles` and changes nothing.
fn refused_with(s: &Server, token: Option<&str>, args: &[&str], needles: &[&str]) -> String {
    let before = s.state();
    let mut cmd = s.arca();
    match token {
        Some(t) => cmd.env("ARCA_TOKEN", t),
        None => cmd.env_remove("ARCA_TOKEN"),
    };
    let out = cmd.args(args).output().unwrap();
    let stderr = common::failure_line(args, &out);
    let line = stderr.lines().find(|l| l.starts_with("error:")).unwrap();
    for n in needles {
        assert!(
            line.to_lowercase().contains(&n.to_lowercase()),
            "arca {args:?}: error line does not name {n:?}: {line}"
        );
    }
    assert_eq!(s.state(), before, "refused {args:?} changed state");
    line.to_owned()
}

#[test]
fn reporter_tokens_report_and_nothing_else() {
    let s = Server::start();
    let key = builder(&s);
    let reporter = s.reporter_token();
    release_fully(&s, &key, "1.0.0", 1);
    push(&s, &key, NAME, "2.0.0", 2);
    let file = s.file("other.bin", 1000, 9);
    let policy = s.path("weak.toml");
    std::fs::write(&policy, "").unwrap();
    let release = format!("{NAME}@2.0.0");
    let root = s.root_key();
    let forbidden: Vec<Vec<&str>> = vec![
        vec!["promote", &release, "--to", CH],
        vec!["promote", &release, "--to", CH, "--rollout", "10,100"],
        raw::push_args(&file, NAME, "9.0.0", &key),
        vec!["rollback", NAME, "--channel", "dev"],
        vec!["token", "create", "--role", "admin"],
        vec!["token", "create", "--role", "reporter"],
        vec!["policy", "set", CH, p(&policy), "--sign", p(&root)],
    ];
    for args in &forbidden {
        refused_with(&s, Some(&reporter), args, &["reporter"]);
    }
    // Rollout moves too, on a live rollout.
    promote(&s, NAME, "2.0.0", &SLOW.args());
    for action in ["pause", "advance", "abort"] {
        refused_with(
            &s,
            Some(&reporter),
            &["rollout", action, NAME, "--channel", CH],
            &["reporter"],
        );
        refused_with(
            &s,
            None,
            &["rollout", action, NAME, "--channel", CH],
            &["token"],
        );
    }
    assert_eq!(status(&s, NAME)["state"], "running");

    // Reports: no token, a made-up token, a reporter's, an admin's.
    let body = report_body("r-1", Some("2.0.0"), "ok", Some("2.0.0"));
    let bytes = serde_json::to_vec(&body).unwrap();
    let before = s.state();
    let a = post_raw(&s, "/api/v1/reports", None, bytes.clone());
    assert_eq!(a.status, 401, "{}", a.body);
    let forged = format!("arca_{}_{}", "0".repeat(16), "A".repeat(43));
    let a = post_raw(&s, "/api/v1/reports", Some(&forged), bytes.clone());
    assert_eq!(a.status, 401, "{}", a.body);
    let a = post_raw(&s, "/api/v1/reports", Some("garbage"), bytes);
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(s.state(), before, "an unauthenticated report left a trace");
    let (code, _, _) = get(&s, &format!("/api/v1/agents?channel={CH}"), &[]);
    assert_eq!(code, 401, "the fleet inventory is open to anyone");

    let r = report(&s, &reporter, &body);
    assert_eq!(r["halted"], false);
    assert!(r["rollout"].is_u64(), "{r}");
    report(
        &s,
        &s.token,
        &report_body("r-2", Some("2.0.0"), "ok", Some("2.0.0")),
    );
    assert_eq!(figures(&s), (2, 0));
    let seen = fleet(&s, &reporter);
    assert_eq!(seen.len(), 2, "{seen:?}");
    // The report names who sent it.
    let actors: Vec<String> = {
        let c = s.db();
        c.all("SELECT actor FROM reports ORDER BY id", params![])
    };
    assert_eq!(actors.len(), 2);
    assert_ne!(actors[0], actors[1], "{actors:?}");
    assert_eq!(actors[1], admin_actor(&s));
    // Only admins create tokens, and only of the roles there are.
    let before = s.state();
    for role in ["superuser", "", "Admin"] {
        let body = serde_json::to_vec(&json!({ "role": role })).unwrap();
        let a = post_raw(&s, "/api/v1/tokens", Some(&s.token), body);
        assert_eq!(a.status, 400, "role {role:?}: {}", a.body);
        assert!(a.message.contains("role"), "{}", a.message);
    }
    let body = serde_json::to_vec(&json!({ "role": "admin" })).unwrap();
    let a = post_raw(&s, "/api/v1/tokens", Some(&reporter), body);
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(s.state(), before, "a refused token request left a trace");
}

#[test]
fn invalid_reports_are_refused_naming_the_field_and_leave_no_trace() {
    let s = Server::start();
    let key = builder(&s);
    let reporter = s.reporter_token();
    release_fully(&s, &key, "1.0.0", 1);
    roll_out(
        &s,
        &key,
        "2.0.0",
        2,
        &Plan {
            min_reports: "1",
            ..SLOW
        },
    );
    let good = report_body("v-1", Some("2.0.0"), "failed", Some("1.0.0"));
    let with = |field: &str, value: Value| {
        let mut b = good.clone();
        b[field] = value;
        serde_json::to_vec(&b).unwrap()
    };
    let without = |field: &str| {
        let mut b = good.clone();
        b.as_object_mut().unwrap().remove(field);
        serde_json::to_vec(&b).unwrap()
    };
    let ok_without_version = {
        let mut b = good.clone();
        b["outcome"] = json!("ok");
        b.as_object_mut().unwrap().remove("version");
        serde_json::to_vec(&b).unwrap()
    };
    let long = "x".repeat(5000);
    let cases: Vec<(&str, Vec<u8>, u16, Vec<&str>)> = vec![
        (
            "agent ../x",
            with("agent", json!("../x")),
            400,
            vec!["agent"],
        ),
        ("empty agent", with("agent", json!("")), 400, vec!["agent"]),
        (
            "agent of 129 bytes",
            with("agent", json!("a".repeat(129))),
            400,
            vec!["agent"],
        ),
        (
            "agent with a space",
            with("agent", json!("a b")),
            400,
            vec!["agent"],
        ),
        ("agent as a number", with("agent", json!(7)), 400, vec![]),
        (
            "unknown outcome",
            with("outcome", json!("great")),
            400,
            vec!["great"],
        ),
        (
            "ok without version",
            ok_without_version,
            400,
            vec!["version"],
        ),
        (
            "failed without version",
            without("version"),
            400,
            vec!["version"],
        ),
        (
            "bad version",
            with("version", json!("2.0.0/../../x")),
            400,
            vec!["version"],
        ),
        (
            "bad current",
            with("current", json!("../1")),
            400,
            vec!["version"],
        ),
        (
            "message of 5000 bytes",
            with("message", json!(long)),
            400,
            vec!["message", "5000"],
        ),
        (
            "bad time",
            with("at", json!("yesterday")),
            400,
            vec!["yesterday"],
        ),
        ("no time", without("at"), 400, vec!["at"]),
        (
            "unknown channel",
            with("channel", json!("qa")),
            404,
            vec!["qa"],
        ),
        (
            "invalid channel",
            with("channel", json!("Not A Channel")),
            400,
            vec!["channel"],
        ),
        ("bad name", with("name", json!("../etc")), 400, vec!["name"]),
        (
            "unknown field",
            with("weight", json!(1)),
            400,
            vec!["weight"],
        ),
        ("not JSON", b"{\"agent\": ".to_vec(), 400, vec![]),
    ];
    let before = s.state();
    for (what, body, status, needles) in &cases {
        let a = post_raw(&s, "/api/v1/reports", Some(&reporter), body.clone());
        assert_eq!(a.status, *status, "{what}: {}", a.body);
        assert!(!a.code.is_empty(), "{what}: no error code: {}", a.body);
        for n in needles {
            assert!(
                a.message.to_lowercase().contains(&n.to_lowercase()),
                "{what}: the message does not name {n:?}: {}",
                a.message
            );
        }
        assert_eq!(s.state(), before, "{what}: the refused report left a trace");
    }
    // The good report itself goes in (and a 2048-byte message is still fine).
    let mut b = good.clone();
    b["message"] = json!("y".repeat(2048));
    report(&s, &reporter, &b);
    assert_ne!(s.state(), before);
    assert_eq!(figures(&s), (0, 1));
}
