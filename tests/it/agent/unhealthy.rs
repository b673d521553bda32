//! Section 2: An unhealthy release is rolled back and not retried

use super::*;

#[test]
fn unhealthy_release_goes_back_and_is_not_retried() {
    let r = Rig::new();
    let log = r.s.path("health.log");
    let health = format!(
        "echo \"$ARCA_VERSION\" >> {}; test -f VERSION_OK",
        log.display()
    );
    r.push(
        "1.0.0",
        vec![Entry::File("VERSION_OK", b"ok".to_vec(), 0o644)],
    );
    r.once(&["--health-cmd", &health], 0);
    assert_eq!(r.current().as_deref(), Some("1.0.0"));

    // 2.0.0 lacks VERSION_OK: its health check fails.
    r.push("2.0.0", vec![]);
    let out = r.once(&["--health-cmd", &health], 6);
    assert!(out.contains("2.0.0 unhealthy"), "{out}");
    assert!(out.contains("back to 1.0.0"), "{out}");
    assert_eq!(r.current().as_deref(), Some("1.0.0"));
    assert_row(
        &r.s,
        AGENT,
        "failed",
        Some("1.0.0"),
        Some("2.0.0"),
        "health check failed: health command `echo",
    );
    let last = reports(&r.s, AGENT).pop().unwrap();
    assert!(last.2.contains("test -f VERSION_OK` failed"), "{last:?}");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "1.0.0\n2.0.0\n");

    // Later passes stay on 1.0.0 without trying 2.0.0 again (its health command does not run),
    // and say that the wanted release does not run here: exit 3.
    let out = r.once(&["--health-cmd", &health, "--json"], 6);
    let pass: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(pass["result"], "skipped", "{out}");
    assert_eq!(pass["version"], "2.0.0", "{out}");
    assert_eq!(pass["current"], "1.0.0", "{out}");
    assert_eq!(r.current().as_deref(), Some("1.0.0"));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "1.0.0\n2.0.0\n");

    // A fixed 3.0.0 is installed.
    r.push(
        "3.0.0",
        vec![Entry::File("VERSION_OK", b"ok".to_vec(), 0o644)],
    );
    r.once(&["--health-cmd", &health], 0);
    assert_eq!(r.current().as_deref(), Some("3.0.0"));
    assert_row(&r.s, AGENT, "ok", Some("3.0.0"), Some("3.0.0"), "healthy");
}

#[test]
fn unhealthy_first_release_leaves_no_current_link() {
    let r = Rig::new();
    r.push("1.0.0", vec![]);
    let out = r.once(&["--health-cmd", "echo broken >&2; exit 3"], 6);
    assert!(out.contains("back to no release"), "{out}");
    assert_eq!(r.current(), None);
    assert_row(&r.s, AGENT, "failed", None, Some("1.0.0"), "stderr: broken");
}

#[test]
fn health_command_past_its_timeout_is_killed_with_its_children() {
    let r = Rig::new();
    r.push("1.0.0", vec![]);
    r.once(&[], 0);
    r.push("2.0.0", vec![]);
    // The command leaves a child behind and hangs: both must go when the timeout strikes.
    let pid_file = r.s.path("child.pid");
    let health = format!("sleep 60 & echo $! > {}; wait", pid_file.display());
    let started = Instant::now();
    let out = r.once(&["--health-cmd", &health, "--health-timeout", "1s"], 6);
    assert!(started.elapsed() < Duration::from_secs(30), "{out}");
    assert!(out.contains("back to 1.0.0"), "{out}");
    r.assert_running("1.0.0", &["1.0.0", "2.0.0"]);
    assert_row(
        &r.s,
        AGENT,
        "failed",
        Some("1.0.0"),
        Some("2.0.0"),
        "timed out after 1s",
    );
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    // Gone, or a zombie waiting for a reaper that this container may not have.
    wait_for(
        Duration::from_secs(10),
        "the health command's child to die",
        || {
            std::fs::read_to_string(&stat)
                .map(|s| {
                    s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z')
                })
                .unwrap_or(true)
        },
    );
}
