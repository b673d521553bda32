//! Section 3: SIGKILL during a download

use super::*;

/// Writes `len` pseudo-random bytes in 1 MiB chunks.
fn big_file(path: &Path, len: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..len.div_ceil(MIB) {
        let n = MIB.min(len - i * MIB);
        f.write_all(&common::pseudo_random(n, i as u8)).unwrap();
    }
    f.flush().unwrap();
}

#[test]
fn sigkill_during_download_leaves_the_old_release_running() {
    let r = Rig::new();
    r.push("1.0.0", vec![]);
    r.once(&[], 0);

    let big = r.s.path("web-2.0.0.bin");
    big_file(&big, 96 * MIB);
    r.s.push(&big, NAME, "2.0.0", &r.key);

    let part = r.dir.join("state/2.0.0.part");
    let mut agent = r.spawn(&["--interval", "200ms"], "agent1.log");
    // Kill while the partial download exists and has real bytes in it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let len = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        if len >= MIB as u64 {
            break len;
        }
        if let Some(status) = agent.try_wait() {
            panic!("the agent ended ({status}) before the download could be interrupted");
        }
        assert!(
            r.current().as_deref() != Some("2.0.0"),
            "the download finished before it could be interrupted: use a bigger file"
        );
        assert!(Instant::now() < deadline, "no partial download appeared");
        std::thread::sleep(Duration::from_millis(2));
    };
    agent.kill9();
    let left = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    assert!(
        left < 96 * MIB as u64,
        "killed after the download finished ({seen} bytes seen)"
    );
    r.assert_running("1.0.0", &["1.0.0"]);

    // Restarted, it converges: the partial file is dropped and the release installed whole.
    let mut agent = r.spawn(&["--interval", "200ms"], "agent2.log");
    wait_for(Duration::from_secs(90), "2.0.0 to be installed", || {
        r.current().as_deref() == Some("2.0.0")
    });
    agent.kill9();
    let installed = r.dir.join("releases/2.0.0/web-2.0.0.bin");
    let got = std::fs::read(&installed).unwrap();
    assert_eq!(got.len(), 96 * MIB);
    assert!(
        got == std::fs::read(&big).unwrap(),
        "installed bytes differ"
    );
    assert_eq!(
        leftovers(&r.dir.join("state"), "", ".part"),
        Vec::<String>::new()
    );
    assert_eq!(release_dirs(&r.dir), ["1.0.0", "2.0.0"]);
}
