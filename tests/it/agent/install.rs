//! Section 1: Install and upgrade

use super::*;

#[test]
fn installs_upgrades_and_prunes_old_releases() {
    let r = Rig::new();
    r.push("1.0.0", vec![]);
    let out = r.once(&["--keep", "2"], 0);
    assert!(out.contains("installed 1.0.0 (was none)"), "{out}");
    r.assert_running("1.0.0", &["1.0.0"]);
    // The executable bit survived: the release runs.
    let ran = Command::new(r.dir.join("current/bin/run.sh"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "release 1.0.0\n");
    assert_row(&r.s, AGENT, "ok", Some("1.0.0"), Some("1.0.0"), "installed");

    // Nothing new: a second pass changes nothing.
    let out = r.once(&["--keep", "2", "--json"], 0);
    let pass: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(pass["result"], "up_to_date", "{out}");
    assert_eq!(pass["current"], "1.0.0", "{out}");

    r.push("2.0.0", vec![]);
    let out = r.once(&["--keep", "2"], 0);
    assert!(out.contains("installed 2.0.0 (was 1.0.0)"), "{out}");
    r.assert_running("2.0.0", &["1.0.0", "2.0.0"]);
    assert_row(&r.s, AGENT, "ok", Some("2.0.0"), Some("2.0.0"), "installed");

    // A third release: with --keep 2 the oldest goes.
    r.push("3.0.0", vec![]);
    r.once(&["--keep", "2"], 0);
    r.assert_running("3.0.0", &["2.0.0", "3.0.0"]);
    let rows = agents(&r.s, "dev");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["current"], "3.0.0", "{rows:?}");
}

#[test]
fn installs_zip_and_plain_file_releases() {
    let r = Rig::new();
    // A zip release.
    let zip = release_zip(&r.s, "1.0.0");
    r.s.push(&zip, "app/zipped", "1.0.0", &r.key);
    let zdir = r.s.path("zipped");
    let out =
        r.s.agent_cmd(&r.token, "dev", "app/zipped", &zdir, "zip-1")
            .arg("--once")
            .output()
            .unwrap();
    expect_exit(&out, 0);
    assert_eq!(current(&zdir).as_deref(), Some("1.0.0"));
    check_release(&zdir.join("current"), "1.0.0").unwrap();

    // A plain file: placed under its published name, not executable.
    let bin = r.s.file("tool-1.0.0.bin", 300_000, 3);
    r.s.push(&bin, "app/tool", "1.0.0", &r.key);
    let tdir = r.s.path("tool");
    let out =
        r.s.agent_cmd(&r.token, "dev", "app/tool", &tdir, "tool-1")
            .arg("--once")
            .output()
            .unwrap();
    expect_exit(&out, 0);
    assert_eq!(current(&tdir).as_deref(), Some("1.0.0"));
    let placed = tdir.join("current/tool-1.0.0.bin");
    assert_eq!(
        std::fs::read(&placed).unwrap(),
        std::fs::read(&bin).unwrap()
    );
    let mode = std::fs::metadata(&placed).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    assert_eq!(
        common::list_files(&tdir.join("current")),
        ["tool-1.0.0.bin"]
    );
    let ids: Vec<Value> = agents(&r.s, "dev")
        .iter()
        .map(|r| r["agent"].clone())
        .collect();
    assert!(
        ids.contains(&"zip-1".into()) && ids.contains(&"tool-1".into()),
        "{ids:?}"
    );
}
