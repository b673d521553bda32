//! `arca agent --once` exits 0 only when the release meant for this machine runs; every other
//! outcome has its own code (docs/agent.md): 3 the release is unhealthy or unacceptable here
//! (went back now, or failed here before), 4 the channel does not list the name, 5 nothing
//! could be verified or fetched. A script or cron job can tell them apart, and none of them
//! looks like success.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::Server;

const NAME: &str = "app/exit";
const AGENT: &str = "exit-1";

struct Rig {
    s: Server,
    key: PathBuf,
    token: String,
    dir: PathBuf,
}

impl Rig {
    fn new(s: Server) -> Rig {
        let key = s.builder("builder", "app/*");
        let token = s.reporter_token();
        let dir = s.path("agent");
        Rig { s, key, token, dir }
    }

    fn push(&self, version: &str, seed: u8) {
        let f = self.s.file(&format!("exit-{version}.bin"), 1000, seed);
        self.s.push(&f, NAME, version, &self.key);
    }

    /// `arca agent --once --json` for `name` with `extra` flags: (exit code, stdout+stderr).
    fn once(&self, name: &str, extra: &[&str]) -> (i32, String) {
        let out: Output = self
            .s
            .agent_cmd(&self.token, "dev", name, &self.dir, AGENT)
            .args(["--once", "--json"])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn current(&self) -> Option<String> {
        current(&self.dir)
    }
}

fn current(dir: &Path) -> Option<String> {
    std::fs::read_link(dir.join("current"))
        .ok()
        .and_then(|t| t.file_name().map(|f| f.to_string_lossy().into_owned()))
}

#[test]
fn once_exits_zero_only_when_the_wanted_release_runs() {
    let r = Rig::new(Server::start());
    r.push("1.0.0", 1);

    // Installed now, then already running: 0 both times.
    let (code, out) = r.once(NAME, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"installed\""), "{out}");
    let (code, out) = r.once(NAME, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"up_to_date\""), "{out}");
    assert_eq!(r.current().as_deref(), Some("1.0.0"));

    // 2.0.0 fails its health check: the agent goes back to 1.0.0 and says so with 3.
    r.push("2.0.0", 2);
    let (code, out) = r.once(NAME, &["--health-cmd", "exit 1"]);
    assert_eq!(code, 6, "{out}");
    assert!(out.contains("\"reverted\""), "{out}");
    assert_eq!(r.current().as_deref(), Some("1.0.0"));
    // Run again (cron): the wanted 2.0.0 still does not run here. Before, this exited 0.
    let (code, out) = r.once(NAME, &["--health-cmd", "exit 1"]);
    assert_eq!(code, 6, "{out}");
    assert!(
        out.contains("\"skipped\"") && out.contains("2.0.0"),
        "{out}"
    );
    assert_eq!(r.current().as_deref(), Some("1.0.0"));
}

#[test]
fn once_names_a_missing_name_and_refused_metadata_with_their_own_codes() {
    let r = Rig::new(Server::start_tamperable());
    r.push("1.0.0", 1);

    // A misspelled --name: the channel lists no such name. Before, this exited 0.
    let (code, out) = r.once("app/exti", &[]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("\"not_listed\""), "{out}");
    assert_eq!(r.current(), None);
    std::fs::remove_dir_all(&r.dir).unwrap();

    // The server serves a timestamp whose signature does not verify: 5, nothing installed.
    let (v, body) = common::latest_meta(&r.s, "dev", "timestamp");
    let mut forged: serde_json::Value = serde_json::from_slice(&body).unwrap();
    forged["signed"]["version"] = serde_json::json!(v + 7);
    common::set_meta_body(
        &r.s,
        "dev",
        "timestamp",
        v,
        &serde_json::to_vec(&forged).unwrap(),
    );
    let (code, out) = r.once(NAME, &[]);
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("\"failed\""), "{out}");
    assert_eq!(r.current(), None);
}
