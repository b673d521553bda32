//! A small fleet, the way an operator sees it: a rollout step never waits on a bucket no
//! known agent is in (the server raises the signed percentage until the step holds one, and
//! needs no more reports than the step has agents); agents off the release their channel
//! means for them are shown and counted; agents send heartbeats, so `last_seen` stays fresh
//! and stale agents stand out; decommissioned agents can be forgotten (admin, audited).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{Server, wait_until};
use serde_json::{Value, json};

const NAME: &str = "app/fleet";
const CH: &str = "staging";
/// The ticker looks at running rollouts five times a second.
const FAST: &str = "[rollout]\ntick = \"200ms\"\n";

struct Agent {
    id: String,
    dir: PathBuf,
}

fn agent(s: &Server, id: &str) -> Agent {
    let dir = s.path(&format!("agents/{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    Agent {
        id: id.to_owned(),
        dir,
    }
}

fn current_of(dir: &Path) -> Option<String> {
    std::fs::read_link(dir.join("current"))
        .ok()
        .and_then(|t| t.file_name().map(|f| f.to_string_lossy().into_owned()))
}

fn release(s: &Server, key: &Path, version: &str, seed: u8, extra: &[&str]) {
    let f = s.file(&format!("fleet-{version}.bin"), 1500, seed);
    s.push(&f, NAME, version, key);
    let r = format!("{NAME}@{version}");
    let mut args = vec!["promote", r.as_str(), "--to", CH];
    args.extend(extra);
    s.ok(&args);
}

/// One `arca agent --once --json` pass: (exit code, the pass).
fn pass(s: &Server, token: &str, a: &Agent, extra: &[&str]) -> (i32, Value) {
    let out = s
        .agent_cmd(token, CH, NAME, &a.dir, &a.id)
        .args(["--once", "--json"])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{stdout}{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), v)
}

fn status(s: &Server) -> Value {
    serde_json::from_str(&s.ok(&["rollout", "status", NAME, "--channel", CH, "--json"])).unwrap()
}

fn agents_json(s: &Server) -> Vec<Value> {
    serde_json::from_str(&s.ok(&["agents", "--channel", CH, "--json"])).unwrap()
}

fn row(s: &Server, id: &str) -> Value {
    agents_json(s)
        .into_iter()
        .find(|r| r["agent"] == id)
        .unwrap_or_else(|| panic!("no agent {id}"))
}

/// The accepted changes of `action` in the audit log (refusals are audited too, as `refused`).
fn audit_actions(s: &Server, action: &str) -> Vec<(String, Value)> {
    let c = s.db();
    c.all::<(String, String)>(
        "SELECT actor, details FROM audit WHERE action = ?1 AND outcome = 'ok' ORDER BY seq",
        params![action],
    )
    .into_iter()
    .map(|(actor, d)| (actor, serde_json::from_str(&d).unwrap()))
    .collect()
}

fn set_last_seen(s: &Server, id: &str, at: &str) {
    s.db().execute(
        "UPDATE agents SET last_seen = ?2 WHERE agent = ?1",
        params![id, at],
    );
}

fn last_seen(s: &Server, id: &str) -> String {
    s.db().one(
        "SELECT last_seen FROM agents WHERE agent = ?1 AND name = ?2",
        params![id, NAME],
    )
}

/// A long-running agent, killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------------

/// Five agents, steps 20, 60, 100, and the default `--min-reports 5`: none of the five is in
/// the 20% bucket, so before, the first step held nobody and waited for ever.
#[test]
fn five_agents_and_a_twenty_percent_step_roll_out_to_completion() {
    let s = Server::start_with(Some(FAST), &[]);
    let key = s.builder("builder", "app/*");
    let token = s.reporter_token();
    let ids: Vec<String> = (0..)
        .map(|i| format!("small-{i}"))
        .filter(|id| arca::rollout::bucket(id, NAME) >= 2000)
        .take(5)
        .collect();
    let fleet: Vec<Agent> = ids.iter().map(|id| agent(&s, id)).collect();
    release(&s, &key, "1.0.0", 1, &[]);
    for a in &fleet {
        assert_eq!(pass(&s, &token, a, &[]).0, 0);
    }
    release(
        &s,
        &key,
        "2.0.0",
        2,
        &["--rollout", "20,60,100", "--step-interval", "1s"],
    );
    // The server widens the first step until it holds one of the five known agents.
    let mut st = Value::Null;
    assert!(
        wait_until(Duration::from_secs(20), || {
            st = status(&s);
            st["reach"][0]["agents"].as_u64() >= Some(1)
        }),
        "the first step never reached a known agent: {st}"
    );
    assert_eq!(st["known_agents"], 5, "{st}");
    assert_eq!(st["reach"][0]["planned"], 20, "{st}");
    assert!(st["percent"].as_u64().unwrap() > 20, "{st}");
    let widen = audit_actions(&s, "rollout-widen");
    assert_eq!(widen.len(), 1, "{widen:?}");
    assert_eq!(widen[0].1["planned_percent"], 20);

    // Agents poll and report; the rollout goes through every step to completion.
    assert!(
        wait_until(Duration::from_secs(120), || {
            for a in &fleet {
                pass(&s, &token, a, &[]);
            }
            st = status(&s);
            st["state"] == "completed"
        }),
        "the rollout did not complete: {st}"
    );
    for a in &fleet {
        pass(&s, &token, a, &[]);
        assert_eq!(current_of(&a.dir).as_deref(), Some("2.0.0"), "{}", a.id);
    }
    assert_eq!(st["figures"]["ok"], 5, "{st}");
    assert_eq!(st["figures"]["failed"], 0, "{st}");
    // `rollout status` says how many known agents each step holds.
    let reach = st["reach"].as_array().unwrap();
    assert_eq!(reach.len(), 3, "{st}");
    assert!(
        reach.iter().all(|r| r["agents"].as_u64() >= Some(1)),
        "{st}"
    );
    assert_eq!(reach[2]["agents"], 5, "{st}");
    let text = s.ok(&["rollout", "status", NAME, "--channel", CH]);
    assert!(text.contains("known agents: 5"), "{text}");
    assert!(text.contains("(planned 20%)"), "{text}");
}

/// A completed rollout leaves the agent whose health check failed on the old release: the
/// listing and /metrics say so.
#[test]
fn agents_off_their_channels_release_are_shown_and_counted() {
    let s = Server::start_with(Some(FAST), &[]);
    let key = s.builder("builder", "app/*");
    let token = s.reporter_token();
    let fleet: Vec<Agent> = (0..3).map(|i| agent(&s, &format!("off-{i}"))).collect();
    release(&s, &key, "1.0.0", 1, &[]);
    for a in &fleet {
        assert_eq!(pass(&s, &token, a, &[]).0, 0);
    }
    release(
        &s,
        &key,
        "2.0.0",
        2,
        &[
            "--rollout",
            "100",
            "--step-interval",
            "1s",
            "--max-failure-rate",
            "0.5",
            "--min-reports",
            "3",
        ],
    );
    let (code, p) = pass(&s, &token, &fleet[0], &["--health-cmd", "exit 1"]);
    assert_eq!((code, &p["result"]), (6, &json!("reverted")), "{p}");
    for a in &fleet[1..] {
        assert_eq!(pass(&s, &token, a, &[]).0, 0);
    }
    let mut st = Value::Null;
    assert!(
        wait_until(Duration::from_secs(20), || {
            st = status(&s);
            st["state"] == "completed"
        }),
        "{st}"
    );

    let sick = row(&s, "off-0");
    assert_eq!(sick["current"], "1.0.0", "{sick}");
    assert_eq!(sick["wanted"], "2.0.0", "{sick}");
    assert_eq!(sick["off_release"], true, "{sick}");
    for id in ["off-1", "off-2"] {
        let r = row(&s, id);
        assert_eq!(
            (r["wanted"].clone(), r["off_release"].clone()),
            (json!("2.0.0"), json!(false)),
            "{r}"
        );
    }
    let text = s.ok(&["agents", "--channel", CH]);
    let line = text.lines().find(|l| l.starts_with("off-0")).unwrap();
    assert!(line.contains("OFF"), "{text}");
    assert!(
        text.contains("warning: 1 agents run something other than"),
        "{text}"
    );

    let url = format!("{}/metrics", s.url);
    let metrics = common::raw::block(async {
        common::raw::http()
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let off = format!("arca_agents_off_release{{channel=\"{CH}\",name=\"{NAME}\"}} 1");
    assert!(
        metrics.lines().any(|l| l == off),
        "no {off:?} in\n{metrics}"
    );
}

/// An idle agent keeps `last_seen` fresh with heartbeats; a restarted one says it is there at
/// once, without hiding its last outcome; a silent one is marked stale and can be forgotten.
#[test]
fn heartbeats_keep_agents_seen_and_stale_agents_can_be_forgotten() {
    let s = Server::start();
    let key = s.builder("builder", "app/*");
    let token = s.reporter_token();
    release(&s, &key, "1.0.0", 1, &[]);

    // An idle long-running agent: after its install it has nothing to say but heartbeats.
    let idle = agent(&s, "idle-1");
    let _running = Running(
        s.agent_cmd(&token, CH, NAME, &idle.dir, &idle.id)
            .args(["--interval", "200ms", "--heartbeat", "1s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(wait_until(Duration::from_secs(30), || {
        current_of(&idle.dir).as_deref() == Some("1.0.0")
            && agents_json(&s).iter().any(|r| r["agent"] == "idle-1")
    }));
    const LONG_AGO: &str = "2000-01-01T00:00:00Z";
    set_last_seen(&s, "idle-1", LONG_AGO);
    assert!(
        wait_until(Duration::from_secs(15), || last_seen(&s, "idle-1")
            != LONG_AGO),
        "an idle agent sent no heartbeat"
    );
    drop(_running);

    // A restarted agent whose wanted release failed here (it has nothing new to report).
    let sick = agent(&s, "sick-1");
    release(&s, &key, "2.0.0", 2, &[]);
    let (code, _) = pass(&s, &token, &sick, &["--health-cmd", "exit 1"]);
    assert_eq!(code, 6);
    set_last_seen(&s, "sick-1", LONG_AGO);
    let (code, p) = pass(&s, &token, &sick, &["--health-cmd", "exit 1"]);
    assert_eq!((code, &p["result"]), (6, &json!("skipped")), "{p}");
    let r = row(&s, "sick-1");
    assert_ne!(r["last_seen"], LONG_AGO, "{r}");
    assert_eq!(r["outcome"], "failed", "a heartbeat hid the failure: {r}");
    assert_eq!(r["stale"], false, "{r}");

    // Silent for long: listed as stale.
    set_last_seen(&s, "idle-1", LONG_AGO);
    let r = row(&s, "idle-1");
    assert_eq!(r["stale"], true, "{r}");
    let text = s.ok(&["agents", "--channel", CH]);
    let line = text.lines().find(|l| l.starts_with("idle-1")).unwrap();
    assert!(line.contains("STALE"), "{text}");

    // Forgetting it: admins only, and audited.
    let before = s.state();
    let out = s
        .arca()
        .env("ARCA_TOKEN", &token)
        .args(["agents", "forget", "idle-1", "--channel", CH])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("token_role"));
    assert_eq!(s.state(), before, "a refused forget changed state");
    let out = s.ok(&["agents", "forget", "idle-1", "--channel", CH]);
    assert!(
        out.contains("forgot agent idle-1 in staging (app/fleet)"),
        "{out}"
    );
    assert!(agents_json(&s).iter().all(|r| r["agent"] != "idle-1"));
    let reports: i64 = s.db().one(
        "SELECT COUNT(*) FROM reports WHERE agent = 'idle-1'",
        params![],
    );
    assert_eq!(reports, 0);
    let forgot = audit_actions(&s, "agent-forget");
    assert_eq!(forgot.len(), 1, "{forgot:?}");
    assert_eq!(forgot[0].1["agent"], "idle-1");
    let line = s.fails(&["agents", "forget", "idle-1", "--channel", CH]);
    assert!(line.contains("no agent idle-1"), "{line}");
}
