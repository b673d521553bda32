//! Section 4: SIGKILL at random instants, and during a health check

use super::*;

/// Reads `DIR/current` as a service would, as fast as it can, until `stop`: every sample must
/// be absent (only before the first release) or a complete release. Returns (samples, errors).
fn watch(dir: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, Vec<String>)> {
    std::thread::spawn(move || {
        let (mut samples, mut errors, mut seen) = (0u64, Vec::new(), false);
        while !stop.load(Ordering::Relaxed) {
            // Often, but leaving the CPU to the agent and the server.
            std::thread::sleep(Duration::from_micros(20));
            let before = std::fs::read_link(dir.join("current")).ok();
            let Some(before) = before else {
                if seen {
                    errors.push("current disappeared".to_owned());
                }
                continue;
            };
            seen = true;
            let checked = match before.to_str().and_then(|t| t.strip_prefix("releases/")) {
                Some(v) => check_release(&dir.join("current"), v),
                None => Err(format!("current -> {}", before.display())),
            };
            let after = std::fs::read_link(dir.join("current")).ok();
            // A switch between the two reads makes the sample meaningless, not wrong.
            if after.as_ref() == Some(&before) {
                samples += 1;
                if let Err(e) = checked {
                    errors.push(e);
                }
            }
        }
        (samples, errors)
    })
}

/// Where an interrupted pass of `version` had got to.
fn phase(dir: &Path, version: &str) -> &'static str {
    if current(dir).as_deref() == Some(version) {
        "switched"
    } else if dir.join("releases").join(version).exists() {
        "unpacked"
    } else if release_dirs(dir).iter().any(|n| n.starts_with(".tmp-")) {
        "unpacking"
    } else {
        "earlier"
    }
}

#[test]
fn sigkill_at_random_instants_never_exposes_a_partial_release() {
    let r = Rig::new();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch(r.dir.clone(), stop.clone());
    r.push("1.0.0", vec![]);
    r.once(&[], 0);
    // How long an upgrade pass takes here: half the kills are spread over it.
    r.push("2.0.0", vec![]);
    let start = Instant::now();
    r.once(&[], 0);
    let full = start.elapsed();
    r.assert_running("2.0.0", &["1.0.0", "2.0.0"]);

    let mut target = 3u32;
    r.push("3.0.0", vec![]);
    let (mut killed, mut late, mut converged) = (0, 0, 0);
    let mut phases = std::collections::BTreeMap::<&str, u32>::new();
    const ROUNDS: u32 = 24;
    for i in 0..ROUNDS {
        if r.current() == Some(format!("{target}.0.0")) {
            converged += 1;
            target += 1;
            r.push(&format!("{target}.0.0"), vec![]);
        }
        let version = format!("{target}.0.0");
        let mut agent = Running(
            r.agent()
                .arg("--once")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let jitter = Duration::from_millis(u64::from(seed(&i.to_string()) % 5));
        if i % 2 == 0 {
            // At a random instant: 30% .. 110% of a whole pass.
            std::thread::sleep(full.mul_f64(0.3 + 0.8 * f64::from(i) / f64::from(ROUNDS)) + jitter);
        } else {
            // Around the switch: once unpacking has begun, then a few milliseconds later.
            let deadline = Instant::now() + Duration::from_secs(30);
            while phase(&r.dir, &version) == "earlier"
                && agent.try_wait().is_none()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_micros(200));
            }
            std::thread::sleep(jitter);
        }
        if agent.try_wait().is_none() {
            killed += 1;
            let at = phase(&r.dir, &version);
            late += u32::from(at != "earlier");
            *phases.entry(at).or_default() += 1;
        }
        agent.kill9();
        check_invariants(&r.dir).unwrap_or_else(|e| panic!("after a kill at round {i}: {e}"));
    }
    // One clean run converges and cleans up.
    let want = format!("{target}.0.0");
    let out = r.once(&[], 0);
    stop.store(true, Ordering::Relaxed);
    let (samples, errors) = watcher.join().unwrap();
    assert!(errors.is_empty(), "the watcher saw: {errors:?}");
    assert!(samples > 100, "the watcher sampled only {samples} times");
    assert_eq!(r.current(), Some(want), "{out}");
    check_invariants(&r.dir).unwrap();
    assert!(
        release_dirs(&r.dir).iter().all(|n| !n.starts_with('.')),
        "{:?}",
        release_dirs(&r.dir)
    );
    assert_eq!(leftovers(&r.dir, ".current.tmp", ""), Vec::<String>::new());
    assert_eq!(
        leftovers(&r.dir.join("state"), "", ".part"),
        Vec::<String>::new()
    );
    eprintln!(
        "upgrade pass {full:?}; {killed}/{ROUNDS} killed mid-pass, by phase {phases:?}; \
         {converged} converged; {samples} samples"
    );
    assert!(killed >= 8, "only {killed} passes were interrupted");
    assert!(
        late >= 3,
        "only {late} kills came after unpacking began: {phases:?}"
    );
}

#[test]
fn sigkill_during_a_health_check_rechecks_it_on_restart() {
    let r = Rig::new();
    let marks = r.s.path("marks");
    std::fs::create_dir_all(&marks).unwrap();
    // The first check of each version hangs (it records its pid so that the test can stop it);
    // with `fail` present every check fails.
    let health = format!(
        "m={m}; echo $$ > $m/pid; \
         if [ -e $m/fail ]; then echo 'refused on recheck' >&2; exit 1; fi; \
         if [ ! -e $m/slept-$ARCA_VERSION ]; then touch $m/slept-$ARCA_VERSION; exec sleep 30; fi",
        m = marks.display()
    );
    let pid_file = marks.join("pid");
    std::fs::write(marks.join("slept-1.0.0"), "").unwrap();
    r.push("1.0.0", vec![]);
    r.once(&["--health-cmd", &health], 0);
    assert_eq!(r.current().as_deref(), Some("1.0.0"));

    // Kills the agent while the health check of `version` hangs; returns what current was.
    let kill_mid_check = |version: &str| {
        let _ = std::fs::remove_file(&pid_file);
        let mut agent = Running(
            r.agent()
                .args(["--once", "--health-cmd", &health])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let slept = marks.join(format!("slept-{version}"));
        wait_for(Duration::from_secs(30), "the health check to start", || {
            slept.exists() && pid_file.exists()
        });
        agent.kill9();
        // The hanging check survives its agent (its own process group): stop it.
        wait_for(Duration::from_secs(5), "the pid file", || {
            std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim().parse::<i32>().is_ok())
        });
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        r.current()
    };

    // 2.0.0: killed mid-check, its second check fails: back to 1.0.0.
    r.push("2.0.0", vec![]);
    assert_eq!(kill_mid_check("2.0.0").as_deref(), Some("2.0.0"));
    check_invariants(&r.dir).unwrap();
    std::fs::write(marks.join("fail"), "").unwrap();
    // The pass that went back says so: exit 3 (unhealthy).
    let out = r.once(&["--health-cmd", &health], 6);
    assert!(out.contains("2.0.0 unhealthy"), "{out}");
    assert_eq!(r.current().as_deref(), Some("1.0.0"));
    assert_row(
        &r.s,
        AGENT,
        "failed",
        Some("1.0.0"),
        Some("2.0.0"),
        "refused on recheck",
    );
    // And it is not tried again (the wanted release does not run here: exit 3).
    std::fs::remove_file(marks.join("fail")).unwrap();
    r.once(&["--health-cmd", &health], 6);
    assert_eq!(r.current().as_deref(), Some("1.0.0"));

    // 3.0.0: killed mid-check, its second check passes: it stays.
    r.push("3.0.0", vec![]);
    assert_eq!(kill_mid_check("3.0.0").as_deref(), Some("3.0.0"));
    r.once(&["--health-cmd", &health], 0);
    assert_eq!(r.current().as_deref(), Some("3.0.0"));
    let ok = reports(&r.s, AGENT)
        .into_iter()
        .any(|(o, v, m)| o == "ok" && v.as_deref() == Some("3.0.0") && m.contains("restart"));
    assert!(ok, "{:?}", reports(&r.s, AGENT));
    assert_row(&r.s, AGENT, "ok", Some("3.0.0"), Some("3.0.0"), "");
}
