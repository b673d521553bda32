//! Phased rollouts, the server side (docs/rollouts.md; docs/api.md; `src/rollout.rs`,
//! `src/service/rollout.rs`, `tuf/repo.rs` `entries_of`): agents fall in buckets by the hash
//! of their id and the name, so the same agents go first every time; reports that cross the
//! failure ceiling halt the rollout at once and roll the channel forward to the previous
//! release; the ticker advances and completes; operators pause, resume, advance and abort;
//! reporter tokens report and nothing else; bad reports change nothing; metrics and
//! conditional polling follow. Each refusal leaves every table but the audit log as it was.
//!
//! Tests whose comments say `BUG` fail because the server is wrong (the comment names where);
//! they stay as they are until it is fixed.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Server, raw};
use serde_json::{Value, json};

/// The name every test rolls out.
const NAME: &str = "app/fleet";
/// The channel rollouts happen in (its default policy: current in dev first).
const CH: &str = "staging";
/// A server whose ticker looks at running rollouts five times a second.
const FAST: &str = "[rollout]\ntick = \"200ms\"\n";
/// Agent processes run at once.
const PARALLEL_AGENTS: usize = 8;

pub(super) use crate::common::p;

// ---------------------------------------------------------------------------------------------
// Releases, rollouts and what the server says about them.

/// A builder key for `app/*`.
fn builder(s: &Server) -> PathBuf {
    s.builder("builder", "app/*")
}

/// Pushes `NAME@version` (a plain file, which the agent places as is) into dev.
fn push(s: &Server, key: &Path, name: &str, version: &str, seed: u8) {
    let file = s.file(
        &format!("{}-{version}.bin", name.replace('/', "-")),
        2_000 + usize::from(seed),
        seed,
    );
    s.push(&file, name, version, key);
}

/// `arca promote NAME@VERSION --to staging EXTRA...`.
fn promote(s: &Server, name: &str, version: &str, extra: &[&str]) -> String {
    let r = format!("{name}@{version}");
    let mut args = vec!["promote", r.as_str(), "--to", CH];
    args.extend(extra);
    s.ok(&args)
}

/// Pushes and promotes `version` of NAME plainly: every agent runs it.
fn release_fully(s: &Server, key: &Path, version: &str, seed: u8) {
    push(s, key, NAME, version, seed);
    promote(s, NAME, version, &[]);
}

/// A rollout plan as `arca promote` takes it.
#[derive(Clone, Copy)]
struct Plan {
    steps: &'static str,
    interval: &'static str,
    max_failure_rate: &'static str,
    min_reports: &'static str,
}

/// 10% then 100%, each step held an hour (so the clock never moves it during a test), halting
/// above 20% failed once 3 agents reported.
const SLOW: Plan = Plan {
    steps: "10,100",
    interval: "1h",
    max_failure_rate: "0.2",
    min_reports: "3",
};

impl Plan {
    fn args(&self) -> [&'static str; 8] {
        [
            "--rollout",
            self.steps,
            "--step-interval",
            self.interval,
            "--max-failure-rate",
            self.max_failure_rate,
            "--min-reports",
            self.min_reports,
        ]
    }
}

/// Pushes `version` of NAME and promotes it with `plan`; returns the rollout's id.
fn roll_out(s: &Server, key: &Path, version: &str, seed: u8, plan: &Plan) -> u64 {
    push(s, key, NAME, version, seed);
    let out = promote(s, NAME, version, &plan.args());
    assert!(out.contains("rollout"), "no rollout started: {out}");
    let st = status(s, NAME);
    assert_eq!(st["version"], version, "{st}");
    assert_eq!(st["state"], "running", "{st}");
    st["id"].as_u64().unwrap()
}

/// `arca rollout status NAME --channel staging --json`.
fn status(s: &Server, name: &str) -> Value {
    let out = s.ok(&["rollout", "status", name, "--channel", CH, "--json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// `arca rollout ACTION NAME --channel staging --json`, expecting success.
fn act(s: &Server, action: &str, extra: &[&str]) -> Value {
    let mut args = vec!["rollout", action, NAME, "--channel", CH, "--json"];
    args.extend(extra);
    let out = s.ok(&args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// `arca history NAME --channel staging --json`.
fn history(s: &Server) -> Vec<Value> {
    let out = s.ok(&["history", NAME, "--channel", CH, "--json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Audit entries of `action`, oldest first: (actor, subject, details, at).
fn audit(s: &Server, action: &str) -> Vec<(String, String, Value, String)> {
    let c = s.db();
    c.all::<(String, String, String, String)>(
        "SELECT actor, subject, details, at FROM audit WHERE action = ?1 ORDER BY seq",
        params![action],
    )
    .into_iter()
    .map(|(actor, subject, details, at)| {
        (actor, subject, serde_json::from_str(&details).unwrap(), at)
    })
    .collect()
}

/// The actor the admin token acts as: `token:<id>`.
fn admin_actor(s: &Server) -> String {
    format!("token:{}", &s.token["arca_".len().."arca_".len() + 16])
}

/// GET `path` without a token: (status, headers, body).
fn get(
    s: &Server,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    raw::block(async {
        let mut req = raw::http().get(format!("{}{path}", s.url));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.text().await.unwrap())
    })
}

/// The signed `targets` map of the channel's newest targets.json, as served.
fn targets(s: &Server) -> serde_json::Map<String, Value> {
    let (code, _, body) = get(s, &format!("/tuf/{CH}/metadata/targets.json"), &[]);
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["signed"]["targets"].as_object().unwrap().clone()
}

/// The target entries of `name`: (path, custom).
fn entries(s: &Server, name: &str) -> Vec<(String, Value)> {
    targets(s)
        .into_iter()
        .filter(|(_, t)| t["custom"]["name"] == name)
        .map(|(path, t)| (path, t["custom"].clone()))
        .collect()
}

/// Asserts the channel lists exactly one plain entry of NAME, at `version`: no rollout, no
/// previous release beside it.
fn assert_plain_entry(s: &Server, version: &str) {
    let es = entries(s, NAME);
    assert_eq!(es.len(), 1, "expected one plain entry of {NAME}: {es:#?}");
    let (path, custom) = &es[0];
    assert_eq!(custom["version"], version, "{custom}");
    assert!(custom.get("rollout").is_none(), "rollout left: {custom}");
    assert!(custom.get("previous").is_none(), "previous flag: {custom}");
    assert!(!path.contains("/-/previous/"), "{path}");
}

/// Runs `arca ARGS` expecting a refusal with one `error:` line that contains every one of
/// `needles` (case-insensitively), and no change to anything but the audit log.
fn refused(s: &Server, args: &[&str], needles: &[&str]) -> String {
    let before = s.state();
    let stderr = s.fails(args);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap()
        .to_owned();
    for n in needles {
        assert!(
            line.to_lowercase().contains(&n.to_lowercase()),
            "arca {args:?}: error line does not name {n:?}: {line}"
        );
    }
    assert_eq!(s.state(), before, "refused {args:?} changed state");
    line
}

/// Waits up to `timeout` for `f`, panicking with `what` (and the last value seen) if it never
/// holds.
fn wait_for<T: std::fmt::Debug>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> (bool, T),
) -> T {
    let start = Instant::now();
    loop {
        let (done, v) = f();
        if done {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}; last: {v:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn parse_time(t: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(t)
        .unwrap_or_else(|e| panic!("{t:?}: {e}"))
        .with_timezone(&chrono::Utc)
}

// ---------------------------------------------------------------------------------------------
// Reports.

fn now() -> String {
    arca_keys::format_time(chrono::Utc::now())
}

/// A report body: `agent` says `outcome` about `version`, running `current`.
fn report_body(agent: &str, version: Option<&str>, outcome: &str, current: Option<&str>) -> Value {
    let mut b = json!({
        "agent": agent, "channel": CH, "name": NAME, "outcome": outcome,
        "message": format!("{outcome} from {agent}"), "at": now(),
    });
    if let Some(v) = version {
        b["version"] = json!(v);
    }
    if let Some(c) = current {
        b["current"] = json!(c);
    }
    b
}

/// POST `body` (raw bytes) to `path` with `token` (if any).
fn post_raw(s: &Server, path: &str, token: Option<&str>, body: Vec<u8>) -> raw::Answer {
    raw::block(async {
        let mut req = raw::http()
            .post(format!("{}{path}", s.url))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        raw::answer(req.send().await.unwrap()).await
    })
}

/// POST /api/v1/reports.
fn post_report(s: &Server, token: &str, body: &Value) -> raw::Answer {
    post_raw(
        s,
        "/api/v1/reports",
        Some(token),
        serde_json::to_vec(body).unwrap(),
    )
}

/// Posts a report that must be accepted; returns the answer's JSON.
fn report(s: &Server, token: &str, body: &Value) -> Value {
    let a = post_report(s, token, body);
    assert_eq!(a.status, 200, "report {body} refused: {}", a.body);
    serde_json::from_str(&a.body).unwrap()
}

/// (ok, failed) of the newest rollout of NAME.
fn figures(s: &Server) -> (u64, u64) {
    let st = status(s, NAME);
    (
        st["figures"]["ok"].as_u64().unwrap(),
        st["figures"]["failed"].as_u64().unwrap(),
    )
}

// ---------------------------------------------------------------------------------------------
// Bucketing, reimplemented from its specification (docs/rollouts.md, src/rollout.rs docs): the
// first 8 bytes (big-endian) of SHA-256("arca-rollout\0" name "\0" agent id), modulo 10000,
// below percent * 100.

fn bucket(agent: &str, name: &str) -> u64 {
    let mut msg = b"arca-rollout\0".to_vec();
    msg.extend_from_slice(name.as_bytes());
    msg.push(0);
    msg.extend_from_slice(agent.as_bytes());
    let d = ring::digest::digest(&ring::digest::SHA256, &msg);
    u64::from_be_bytes(d.as_ref()[..8].try_into().unwrap()) % 10_000
}

fn picked(agent: &str, name: &str, percent: u64) -> bool {
    bucket(agent, name) < percent * 100
}

// ---------------------------------------------------------------------------------------------
// Agents.

/// One agent: its id and directory.
struct Agent {
    id: String,
    dir: PathBuf,
}

fn agents(s: &Server, prefix: &str, n: usize) -> Vec<Agent> {
    (0..n)
        .map(|i| {
            let id = format!("{prefix}-{i}");
            let dir = s.path(&format!("agents/{id}"));
            std::fs::create_dir_all(&dir).unwrap();
            Agent { id, dir }
        })
        .collect()
}

/// The version `DIR/current` points at (`releases/VERSION`), if any.
fn current_of(dir: &Path) -> Option<String> {
    let target = std::fs::read_link(dir.join("current")).ok()?;
    let rest = target
        .strip_prefix("releases")
        .unwrap_or_else(|_| panic!("current -> {}", target.display()));
    Some(rest.to_str().unwrap().to_owned())
}

/// One `arca agent --once --json` pass: (exit code, the pass as JSON).
fn pass(s: &Server, token: &str, a: &Agent, extra: &[&str]) -> (i32, Value) {
    let out = s
        .agent_cmd(token, CH, NAME, &a.dir, &a.id)
        .args(["--once", "--json"])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| {
        panic!(
            "agent {} printed nothing; stderr: {}",
            a.id,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (out.status.code().unwrap_or(-1), v)
}

/// One pass of every agent, `PARALLEL_AGENTS` processes at a time; results in agent order.
fn passes(s: &Server, token: &str, all: &[Agent], extra: &[&str]) -> Vec<(i32, Value)> {
    let next = AtomicUsize::new(0);
    let results = std::sync::Mutex::new(vec![None; all.len()]);
    std::thread::scope(|sc| {
        for _ in 0..PARALLEL_AGENTS {
            sc.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(a) = all.get(i) else { break };
                    let r = pass(s, token, a, extra);
                    results.lock().unwrap()[i] = Some(r);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect()
}

/// `arca agents --channel staging --json`: agent id -> what it reported running.
fn fleet(s: &Server, token: &str) -> BTreeMap<String, Option<String>> {
    let out = s
        .arca()
        .env("ARCA_TOKEN", token)
        .args(["agents", "--channel", CH, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    rows.into_iter()
        .map(|r| {
            (
                r["agent"].as_str().unwrap().to_owned(),
                r["current"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by several sections.

fn agent(s: &Server, id: &str) -> Agent {
    let dir = s.path(&format!("agents/{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    Agent {
        id: id.to_owned(),
        dir,
    }
}

mod buckets;
mod concurrency;
mod counting;
mod first_release;
mod halt_rechecks;
mod halts;
mod leaders;
mod metrics;
mod operators;
mod plans;
mod polling;
mod supersede;
mod ticker;
mod tokens;
