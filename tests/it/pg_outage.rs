//! The metadata database failing under the server: a SIGKILL of `arca serve` in the middle of
//! promotions of many names (both engines) leaves every channel's metadata agreeing with its
//! release history; PostgreSQL stopped under a running server (PostgreSQL only) makes every
//! request that needs it answer 503 `database_unavailable` in bounded time, and the same
//! server recovers on its own once PostgreSQL is back.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::raw::{self, block};
use common::{Client, Server};

fn promotions_audited(s: &Server) -> i64 {
    s.db().one(
        "SELECT COUNT(*) FROM audit WHERE action = 'promote' AND outcome LIKE 'ok%'",
        params![],
    )
}

/// The (name, version) of every entry of the newest targets of `channel`.
fn listed(s: &Server, channel: &str) -> BTreeSet<(String, String)> {
    let (_, body) = common::latest_meta(s, channel, "targets");
    let env = arca::tuf::metadata::Envelope::from_slice("targets", &body).unwrap();
    env.signed["targets"]
        .as_object()
        .map(|m| {
            m.values()
                .map(|t| {
                    (
                        t["custom"]["name"].as_str().unwrap().to_owned(),
                        t["custom"]["version"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The current release of every name of `channel`: the artifact of its newest `releases` row.
fn current_releases(s: &Server, channel: &str) -> BTreeSet<(String, String)> {
    s.db()
        .all::<(String, String)>(
            "SELECT a.name, a.version FROM releases r JOIN artifacts a ON a.id = r.artifact_id \
             WHERE r.channel = ?1 AND r.id = \
             (SELECT MAX(id) FROM releases r2 WHERE r2.channel = r.channel AND r2.name = r.name)",
            params![channel],
        )
        .into_iter()
        .collect()
}

/// Every channel's newest targets lists exactly its current releases, each role's versions
/// run 1, 2, ... without a gap, and the audit chain verifies.
fn assert_consistent(s: &Server, when: &str) {
    let c = s.db();
    if !c.is_postgres() {
        let check: String = c.one("PRAGMA integrity_check", params![]);
        assert_eq!(check, "ok", "{when}");
    }
    let channels: Vec<String> = c.all("SELECT name FROM channels ORDER BY position", params![]);
    drop(c);
    assert!(!channels.is_empty());
    for ch in &channels {
        assert_eq!(
            listed(s, ch),
            current_releases(s, ch),
            "{when}: the newest targets of {ch} is not its release history's"
        );
        for role in ["targets", "snapshot", "timestamp"] {
            let versions: Vec<u64> = s.db().all(
                "SELECT version FROM tuf_metadata WHERE channel = ?1 AND role = ?2 \
                 ORDER BY version",
                params![ch, role],
            );
            let want: Vec<u64> = (1..=versions.len() as u64).collect();
            assert_eq!(versions, want, "{when}: {ch} {role} versions have a gap");
        }
    }
    s.ok(&["audit", "verify"]);
}

#[test]
fn sigkill_during_promotions_of_many_names_leaves_every_channel_consistent() {
    const N: usize = 24;
    const THREADS: usize = 3;
    let mut s = Server::start();
    let key = s.builder("builder", "app/*");
    let names: Vec<String> = (0..N).map(|i| format!("app/n{i}")).collect();
    for (i, n) in names.iter().enumerate() {
        let f = s.file(&format!("n{i}.bin"), 2000 + i * 10, i as u8);
        s.push(&f, n, "1.0.0", &key);
    }
    assert_consistent(&s, "before the kill");
    let before = promotions_audited(&s);

    let promoted = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let c = Client::of(&s);
            let promoted = promoted.clone();
            let mine: Vec<String> = names.iter().skip(t).step_by(THREADS).cloned().collect();
            std::thread::spawn(move || {
                for n in mine {
                    let out = c.run(&["promote", &format!("{n}@1.0.0"), "--to", "staging"]);
                    if !out.status.success() {
                        // The server is gone: the rest of this thread's names stay unpromoted.
                        return;
                    }
                    promoted.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Kill once the first promotions are committed (their audit entries are in the same
    // transaction), while the others are in flight.
    let started = common::wait_until(Duration::from_secs(30), || promotions_audited(&s) > before);
    assert!(started, "no promotion was audited; log:\n{}", s.log());
    s.kill();
    for w in workers {
        w.join().unwrap();
    }
    let answered = promoted.load(Ordering::Relaxed);
    eprintln!("{answered} of {N} promotions answered before the kill");
    assert!(
        answered < N,
        "every promotion finished before the kill: the test proves little"
    );

    s.launch();
    assert_consistent(&s, "after the restart");
    let in_staging: BTreeSet<String> = current_releases(&s, "staging")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        in_staging.len() >= answered,
        "an answered promotion was lost: {} in staging, {answered} answered",
        in_staging.len()
    );
    assert!(
        in_staging.len() < N,
        "every name reached staging although the kill landed mid-way"
    );

    // A further promotion works, and the rest catch up.
    for n in names.iter().filter(|n| !in_staging.contains(*n)) {
        s.ok(&["promote", &format!("{n}@1.0.0"), "--to", "staging"]);
    }
    assert_eq!(current_releases(&s, "staging").len(), N);
    assert_consistent(&s, "after the further promotions");
}

// PostgreSQL stopped under load.

/// The PostgreSQL binaries of Debian's postgresql-15 (as scripts/pg.sh).
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A PostgreSQL cluster of this test's own (scripts/pg.sh), which it stops and starts.
/// Removed on drop, also when the test panics.
struct Cluster {
    dir: PathBuf,
    /// Keeps the directory's name reserved; scripts/pg.sh stop removes the directory itself.
    _tmp: tempfile::TempDir,
    admin: String,
    port: String,
}

/// Runs one of PostgreSQL's tools as the `postgres` OS user when root (it refuses root).
fn as_pg(tool: &str) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let bin = format!("{PG_BIN}/{tool}");
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &bin]);
        c
    } else {
        Command::new(bin)
    }
}

impl Cluster {
    fn start() -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let out = Command::new(common::repo_root().join("scripts/pg.sh"))
            .arg("start")
            .arg(&dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/pg.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let admin = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let port = admin.rsplit(':').next().unwrap().to_owned();
        Cluster {
            dir,
            _tmp: tmp,
            admin,
            port,
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn create_database(&self, name: &str) -> String {
        let mut c = postgres::Client::connect(&self.admin, postgres::NoTls).unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        format!("{}/{name}", self.admin)
    }

    /// `pg_ctl stop -m fast`: PostgreSQL disconnects every client and shuts down.
    fn stop(&self) {
        let st = as_pg("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "pg_ctl stop failed");
    }

    /// Starts it again on the same port.
    fn restart(&self) {
        let st = as_pg("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("postgres.log"))
            .args([
                "-w",
                "-t",
                "60",
                "-o",
                &format!("-p {}", self.port),
                "start",
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "pg_ctl start failed");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(common::repo_root().join("scripts/pg.sh"))
            .arg("stop")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .status();
    }
}

/// GET `path` (with the admin token), within 15 s: the answer and how long it took.
fn get(s: &Server, path: &str) -> (raw::Answer, Duration) {
    let http = raw::http();
    let t = Instant::now();
    let a = block(async {
        let r = tokio::time::timeout(
            Duration::from_secs(15),
            http.get(format!("{}{path}", s.url))
                .bearer_auth(&s.token)
                .send(),
        )
        .await
        .unwrap_or_else(|_| panic!("GET {path} hung for 15 s"))
        .unwrap();
        raw::answer(r).await
    });
    (a, t.elapsed())
}

/// A staged upload of `name@version` (the first request of a push), within 15 s.
fn stage(s: &Server, key: &Path, name: &str, version: &str) -> (raw::Answer, Duration) {
    let http = raw::http();
    let signer = raw::key_id(key);
    let t = Instant::now();
    let a = block(async {
        let r = tokio::time::timeout(
            Duration::from_secs(15),
            http.post(format!(
                "{}/api/v1/uploads?name={name}&version={version}&signer={signer}",
                s.url
            ))
            .bearer_auth(&s.token)
            .body(vec![7u8; 1000])
            .send(),
        )
        .await
        .unwrap_or_else(|_| panic!("the upload hung for 15 s"))
        .unwrap();
        raw::answer(r).await
    });
    (a, t.elapsed())
}

fn assert_unavailable(what: &str, (a, took): (raw::Answer, Duration), s: &Server) {
    assert_eq!(
        (a.status, a.code.as_str()),
        (503, "database_unavailable"),
        "{what} with PostgreSQL stopped: {a:?} after {took:?}; log:\n{}",
        tail(&s.log())
    );
    assert!(took < Duration::from_secs(15), "{what} took {took:?}");
    eprintln!("{what}: 503 database_unavailable after {took:?}");
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[test]
fn postgres_stopped_under_a_running_server_answers_503_and_recovers() {
    if common::engine() != "postgres" {
        eprintln!("PostgreSQL only: stops and starts a PostgreSQL cluster of its own");
        return;
    }
    let cluster = Cluster::start();
    let url = cluster.create_database("arca_outage");
    let s = Server::start_on_database(&url);
    let key = s.builder("builder", "app/*");
    let f = s.file("x.bin", 4000, 3);
    s.push(&f, "app/x", "1.0.0", &key);
    assert_eq!(get(&s, "/api/v1/status").0.status, 200);
    assert_eq!(get(&s, "/readyz").0.status, 200);

    // Load across the outage: status requests in a loop, from before the stop until after the
    // recovery. Each gets 200 or 503 database_unavailable, never anything else, never a hang.
    let stop_load = Arc::new(AtomicBool::new(false));
    let load = {
        let (url, token, stop_load) = (s.url.clone(), s.token.clone(), stop_load.clone());
        std::thread::spawn(move || {
            let http = raw::http();
            let mut seen = Vec::new();
            while !stop_load.load(Ordering::Relaxed) {
                let t = Instant::now();
                let a = block(async {
                    let r = tokio::time::timeout(
                        Duration::from_secs(15),
                        http.get(format!("{url}/api/v1/status"))
                            .bearer_auth(&token)
                            .send(),
                    )
                    .await
                    .expect("GET /api/v1/status hung for 15 s under the outage")
                    .unwrap();
                    raw::answer(r).await
                });
                seen.push((a.status, a.code, t.elapsed()));
                std::thread::sleep(Duration::from_millis(20));
            }
            seen
        })
    };
    std::thread::sleep(Duration::from_millis(200));

    cluster.stop();
    let (ready, took) = get(&s, "/readyz");
    let checks: serde_json::Value = serde_json::from_str(&ready.body).unwrap();
    assert_eq!(
        (&checks["ready"], &checks["database"], &checks["store"]),
        (
            &serde_json::json!(false),
            &serde_json::json!("unavailable"),
            &serde_json::json!("ok")
        ),
        "{checks}"
    );
    assert_unavailable("GET /readyz", (ready, took), &s);
    assert_unavailable("GET /api/v1/status", get(&s, "/api/v1/status"), &s);
    assert_unavailable("a push", stage(&s, &key, "app/y", "1.0.0"), &s);
    // The CLI names it a server failure (exit 5), not a refusal.
    let out = s
        .arca()
        .args(["promote", "app/x@1.0.0", "--to", "staging"])
        .output()
        .unwrap();
    let err = common::failure_line(&["promote"], &out);
    assert!(err.contains("503 database_unavailable"), "{err}");
    assert_eq!(out.status.code(), Some(5), "{err}");
    // And again, once the pool has seen its connections fail: still 503, still bounded.
    assert_unavailable("GET /readyz again", get(&s, "/readyz"), &s);

    cluster.restart();
    // The same process, not restarted, recovers on its own.
    let ready = common::wait_until(Duration::from_secs(20), || {
        get(&s, "/readyz").0.status == 200
    });
    assert!(
        ready,
        "the server did not recover after PostgreSQL came back: {:?}; log:\n{}",
        get(&s, "/readyz").0,
        tail(&s.log())
    );
    let (status, _) = get(&s, "/api/v1/status");
    assert_eq!(status.status, 200, "{status:?}");
    // Its leader session broke with the database: its next check says so, and a later try
    // connects again and leads.
    let leads = common::wait_until(Duration::from_secs(20), || {
        let (r, _) = get(&s, "/readyz");
        s.log().contains("lost leadership")
            && serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["leader"] == true
    });
    assert!(
        leads,
        "the server did not lose and take leadership again; log:\n{}",
        tail(&s.log())
    );
    stop_load.store(true, Ordering::Relaxed);
    let seen = load.join().expect("the load thread failed");
    let odd: Vec<_> = seen
        .iter()
        .filter(|(st, code, _)| !(*st == 200 || (*st == 503 && code == "database_unavailable")))
        .collect();
    assert!(
        odd.is_empty(),
        "under the outage: {odd:?}; log:\n{}",
        tail(&s.log())
    );
    let slowest = seen.iter().map(|(_, _, t)| *t).max().unwrap();
    let unavailable = seen.iter().filter(|(st, _, _)| *st == 503).count();
    eprintln!(
        "load: {} requests, {unavailable} answered 503, slowest {slowest:?}",
        seen.len()
    );
    assert!(unavailable > 0, "no request of the load saw the outage");
    assert_eq!(seen.last().unwrap().0, 200, "the load did not recover");
    s.ok(&["promote", "app/x@1.0.0", "--to", "staging"]);
    let promoted = common::wait_until(Duration::from_secs(10), || {
        s.db().one::<i64>(
            "SELECT COUNT(*) FROM releases WHERE channel = 'staging' AND name = 'app/x'",
            params![],
        ) == 1
    });
    assert!(promoted, "the promotion after the recovery left no release");
    assert_eq!(stage(&s, &key, "app/y", "1.0.0").0.status / 100, 2);
    s.ok(&["audit", "verify"]);
    drop(s);
    drop(cluster);
}
