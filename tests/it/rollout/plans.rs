//! Section 10: A channel policy's plan: a plain promotion starts a rollout; a bad plan is refused.

use super::*;

/// POSTs a policy change for `channel` straight to the server (past the CLI's own checks),
/// signed by the root key.
fn post_policy(s: &Server, channel: &str, text: &str) -> raw::Answer {
    raw::http();
    let api = arca::client::ApiClient::new(&s.url, Some(s.token.clone())).unwrap();
    let env = raw::block(api.trust()).unwrap();
    let current: arca_keys::TrustDocument = env.decode("trust document").unwrap();
    let mut next = current.next();
    next.policies
        .insert(channel.to_owned(), raw::sha256_hex(text.as_bytes()));
    let root = arca_keys::SigningKey::read_file(&s.root_key()).unwrap();
    let trust = arca_keys::SignedEnvelope::sign(&next, &[&root]).unwrap();
    let change = arca::model::api::PolicyChange {
        policy: text.to_owned(),
        trust,
    };
    post_raw(
        s,
        &format!("/api/v1/policies/{channel}"),
        Some(&s.token),
        serde_json::to_vec(&change).unwrap(),
    )
}

const PLANNED: &str = "from = \"dev\"\n\n[rollout]\nsteps = [25, 100]\nstep_interval = \"1h\"\n\
                       max_failure_rate = 0.1\nmin_reports = 2\n";

#[test]
fn a_channel_policy_plan_phases_plain_promotions() {
    let s = Server::start();
    let key = builder(&s);
    release_fully(&s, &key, "1.0.0", 1);
    let file = s.path("planned.toml");
    std::fs::write(&file, PLANNED).unwrap();
    s.ok(&["policy", "set", CH, p(&file), "--sign", p(&s.root_key())]);

    // A plain promotion follows the policy's plan.
    push(&s, &key, NAME, "2.0.0", 2);
    let out = promote(&s, NAME, "2.0.0", &[]);
    assert!(out.contains("rollout"), "{out}");
    let st = status(&s, NAME);
    assert_eq!(st["plan"]["steps"], json!([25, 100]), "{st}");
    assert_eq!(st["plan"]["min_reports"], 2, "{st}");
    assert_eq!(st["plan"]["max_failure_rate"], 0.1, "{st}");
    assert_eq!(
        (st["percent"].clone(), st["previous"].clone()),
        (json!(25), json!("1.0.0"))
    );
    let es = entries(&s, NAME);
    assert_eq!(es.len(), 2, "{es:#?}");
    let (_, main) = es.iter().find(|(_, c)| c["version"] == "2.0.0").unwrap();
    let (prev_path, prev) = es.iter().find(|(_, c)| c["version"] == "1.0.0").unwrap();
    let ro = &main["rollout"];
    assert_eq!(ro["id"], st["id"]);
    assert_eq!(ro["steps"], json!([25, 100]));
    assert_eq!(
        (ro["step"].clone(), ro["percent"].clone()),
        (json!(0), json!(25))
    );
    assert_eq!(ro["state"], "running");
    assert_eq!(ro["step_interval_secs"], 3600);
    assert_eq!(ro["max_failure_bp"], 1000);
    assert_eq!(ro["min_reports"], 2);
    assert_eq!(ro["previous"], prev_path.as_str());
    assert!(prev_path.contains("/-/previous/"), "{prev_path}");
    assert_eq!(prev["previous"], true, "{prev}");
    assert!(prev.get("rollout").is_none(), "{prev}");
    assert!(main.get("previous").is_none(), "{main}");

    // A promotion's own plan replaces the policy's; the previous release is still 1.0.0.
    push(&s, &key, NAME, "3.0.0", 3);
    let own = Plan {
        steps: "50,100",
        interval: "2h",
        ..SLOW
    };
    promote(&s, NAME, "3.0.0", &own.args());
    let st = status(&s, NAME);
    assert_eq!(st["plan"]["steps"], json!([50, 100]), "{st}");
    assert_eq!(st["previous"], "1.0.0", "{st}");
    // Forced to the end, it completes and the entry is plain.
    act(&s, "advance", &[]);
    let st = act(&s, "advance", &[]);
    assert_eq!(st["state"], "completed", "{st}");
    assert_plain_entry(&s, "3.0.0");
    assert_eq!(audit(&s, "rollout-complete").len(), 1);
    let mut completes = audit(&s, "rollout-complete");
    let (who, _, details, _) = completes.remove(0);
    assert_eq!(who, admin_actor(&s));
    assert_eq!(details["forced"], true);
    // A rollback is immediate even under a policy with a plan.
    s.ok(&["rollback", NAME, "--channel", CH, "--to", "1.0.0"]);
    assert_plain_entry(&s, "1.0.0");
    assert_eq!(status(&s, NAME)["state"], "completed");
}

#[test]
fn invalid_plans_are_refused_and_change_nothing() {
    let s = Server::start();
    let key = builder(&s);
    release_fully(&s, &key, "1.0.0", 1);
    push(&s, &key, NAME, "2.0.0", 2);
    let bad_policies = [
        (
            "steps = [10, 50]\nstep_interval = \"1h\"\nmax_failure_rate = 0.1\nmin_reports = 2\n",
            "not 100%",
        ),
        (
            "steps = [50, 10, 100]\nstep_interval = \"1h\"\nmax_failure_rate = 0.1\nmin_reports = 2\n",
            "increase",
        ),
        (
            "steps = [0, 100]\nstep_interval = \"1h\"\nmax_failure_rate = 0.1\nmin_reports = 2\n",
            "1..=100",
        ),
        (
            "steps = [100]\nstep_interval = \"1h\"\nmax_failure_rate = 1.5\nmin_reports = 2\n",
            "max_failure_rate",
        ),
        (
            "steps = [100]\nstep_interval = \"1h\"\nmax_failure_rate = 0.1\nmin_reports = 2\nspeed = 3\n",
            "speed",
        ),
    ];
    for (i, (plan, needle)) in bad_policies.iter().enumerate() {
        let text = format!("from = \"dev\"\n\n[rollout]\n{plan}");
        let file = s.path(&format!("bad-{i}.toml"));
        std::fs::write(&file, &text).unwrap();
        refused(
            &s,
            &["policy", "set", CH, p(&file), "--sign", p(&s.root_key())],
            &[needle],
        );
        // The server refuses it too, when the CLI is bypassed.
        let before = s.state();
        let a = post_policy(&s, CH, &text);
        assert_eq!(a.status, 400, "{}", a.body);
        assert!(a.message.contains(needle), "{needle}: {}", a.message);
        assert_eq!(s.state(), before, "a refused policy left a trace");
    }
    // The same plans on a promotion: the CLI, and the server past it.
    let release = format!("{NAME}@2.0.0");
    for (steps, needle) in [
        ("10,50", "not 100%"),
        ("50,10,100", "increase"),
        ("0,100", "1..=100"),
    ] {
        refused(
            &s,
            &["promote", &release, "--to", CH, "--rollout", steps],
            &[needle],
        );
    }
    for (plan, needle) in [
        (
            json!({"steps": [10, 50], "step_interval": "1h", "max_failure_rate": 0.1, "min_reports": 1}),
            "not 100%",
        ),
        (
            json!({"steps": [], "step_interval": "1h", "max_failure_rate": 0.1, "min_reports": 1}),
            "no steps",
        ),
        (
            json!({"steps": [100], "step_interval": "1h", "max_failure_rate": -0.1, "min_reports": 1}),
            "max_failure_rate",
        ),
        // The duration parser's message ("expected number at 0") names neither the field
        // nor the value; only the status is checked here.
        (
            json!({"steps": [100], "step_interval": "soon", "max_failure_rate": 0.1, "min_reports": 1}),
            "",
        ),
    ] {
        let before = s.state();
        let body = json!({"name": NAME, "version": "2.0.0", "to": CH, "rollout": plan});
        let a = post_raw(
            &s,
            "/api/v1/promotions",
            Some(&s.token),
            serde_json::to_vec(&body).unwrap(),
        );
        assert_eq!(a.status, 400, "{plan}: {}", a.body);
        assert!(a.message.contains(needle), "{needle}: {}", a.message);
        assert_eq!(s.state(), before, "a refused plan left a trace: {plan}");
    }
    assert_plain_entry(&s, "1.0.0");
    let none: Vec<Value> = serde_json::from_str(&s.ok(&["rollout", "list", "--json"])).unwrap();
    assert!(none.is_empty(), "{none:#?}");
}
