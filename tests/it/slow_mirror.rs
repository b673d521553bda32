//! TUF's slow-retrieval attack (docs/security.md guarantee 5): a mirror that drips a byte now
//! and then never trips a read timeout, so arca's client also requires a minimum average rate
//! of every file (`ARCA_MIN_RATE`) and bounds every refresh (`ARCA_REFRESH_TIMEOUT`). A pull
//! through a dripping mirror fails within its deadline, names the file, and leaves nothing in
//! `--out`.

use crate::common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::Server;

const NAME: &str = "app/x";

/// An HTTP proxy in front of `upstream` (host:port) that forwards every request and answers
/// fast, except requests whose request line contains `drip`: their answer goes out one byte per 100 ms.
/// Returns its base URL.
fn dripping_proxy(upstream: String, drip: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let upstream = upstream.clone();
            std::thread::spawn(move || proxy_one(conn, &upstream, drip));
        }
    });
    url
}

/// One request per connection (bodies by Content-Length, as arca's client sends them).
fn proxy_one(mut client: TcpStream, upstream: &str, drip: &str) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let request_line = text.lines().next().unwrap_or_default().to_owned();
    // Each answer on its own connection: the upstream closes after it.
    let headers: String = text
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let length: usize = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    if client.read_exact(&mut body).is_err() {
        return;
    }
    let Ok(mut up) = TcpStream::connect(upstream) else {
        return;
    };
    let _ = write!(up, "{request_line}\r\n{headers}Connection: close\r\n\r\n");
    let _ = up.write_all(&body);
    let mut answer = Vec::new();
    let _ = up.read_to_end(&mut answer);
    if request_line.contains(drip) {
        for b in answer {
            if client.write_all(&[b]).is_err() {
                return; // the client gave up
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    } else {
        let _ = client.write_all(&answer);
    }
}

/// Runs `cmd`, killing it (and failing the test) if it is still running after `limit`:
/// without a deadline in the client, a dripping mirror holds it for hours.
fn output_within(
    mut cmd: std::process::Command,
    limit: Duration,
) -> (std::process::Output, Duration) {
    use std::process::Stdio;
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let finished = common::wait_until(limit, || child.try_wait().unwrap().is_some());
    if !finished {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    let elapsed = started.elapsed();
    assert!(
        finished,
        "still running after {limit:?}: the client has no deadline"
    );
    let output = std::process::Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    (output, elapsed)
}

/// A server with app/x@1.0.0 (200 KB) in dev.
fn server() -> Server {
    let s = Server::start();
    let b = s.builder("builder", "app/*");
    let f = s.file("x-1.0.0.bin", 200_000, 3);
    s.push(&f, NAME, "1.0.0", &b);
    s
}

/// `arca pull` of app/x from dev through `proxy`, with `env`; returns (stderr, elapsed).
fn pull_through(s: &Server, proxy: &str, env: &[(&str, &str)], out: &str) -> (String, Duration) {
    let args = s.pull_args(NAME, "dev", &s.path(out), &s.path(&format!("{out}-state")));
    let mut cmd = s.arca();
    cmd.env("ARCA_SERVER", proxy).args(&args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (o, elapsed) = output_within(cmd, Duration::from_secs(20));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (common::failure_line(&args, &o), elapsed)
}

fn upstream(s: &Server) -> String {
    s.url.trim_start_matches("http://").to_owned()
}

#[test]
fn pull_from_a_mirror_that_drips_the_target_fails_within_the_deadline_and_writes_nothing() {
    let s = server();
    let proxy = dripping_proxy(upstream(&s), "/tuf/dev/targets/");
    // Through the proxy, with everything else fast, the pull works as before...
    let quick = dripping_proxy(upstream(&s), "/never/");
    s.ok(&[
        "pull",
        NAME,
        "--channel",
        "dev",
        "--root",
        s.root_json().to_str().unwrap(),
        "--out",
        s.path("ok").to_str().unwrap(),
        "--metadata-dir",
        s.path("ok-state").to_str().unwrap(),
        "--server",
        &quick,
    ]);
    // ...but a dripped target: 256 KiB head start at 256 KiB/s = 1 s, then a byte per 100 ms
    // is far below the rate.
    let (line, elapsed) = pull_through(&s, &proxy, &[("ARCA_MIN_RATE", "262144")], "out");
    assert!(line.contains("too slow"), "{line}");
    assert!(
        line.contains("x-1.0.0.bin"),
        "the file is not named: {line}"
    );
    assert!(line.contains("ARCA_MIN_RATE"), "{line}");
    assert!(
        elapsed < Duration::from_secs(20),
        "took {elapsed:?}: the deadline did not hold"
    );
    let out = s.path("out");
    assert!(
        !out.exists() || common::list_files(&out).is_empty(),
        "the failed pull left {:?}",
        common::list_files(&out)
    );
}

#[test]
fn a_dripped_timestamp_fails_the_refresh_by_rate_and_by_refresh_deadline() {
    let s = server();
    let proxy = dripping_proxy(upstream(&s), "timestamp.json");
    let (line, elapsed) = pull_through(&s, &proxy, &[("ARCA_MIN_RATE", "262144")], "out1");
    assert!(line.contains("too slow"), "{line}");
    assert!(line.contains("timestamp.json"), "{line}");
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
    // A rate low enough to let the drip through is still bounded by the refresh deadline.
    let (line, elapsed) = pull_through(
        &s,
        &proxy,
        &[("ARCA_MIN_RATE", "1"), ("ARCA_REFRESH_TIMEOUT", "2s")],
        "out2",
    );
    assert!(line.contains("ARCA_REFRESH_TIMEOUT"), "{line}");
    assert!(line.contains("metadata refresh"), "{line}");
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
    for out in ["out1", "out2"] {
        let out = s.path(out);
        assert!(!out.exists() || common::list_files(&out).is_empty());
    }
}

#[test]
fn an_agent_behind_a_dripping_mirror_gives_up_within_the_deadline() {
    let s = server();
    let proxy = dripping_proxy(upstream(&s), "/tuf/dev/targets/");
    let token = s.reporter_token();
    let dir = s.path("agent");
    let mut cmd = s.agent_cmd(&token, "dev", NAME, &dir, "host-1");
    cmd.env("ARCA_SERVER", &proxy)
        .env("ARCA_MIN_RATE", "262144")
        .arg("--once");
    let (o, elapsed) = output_within(cmd, Duration::from_secs(30));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!o.status.success(), "{all}");
    assert!(
        all.contains("too slow") && all.contains("x-1.0.0.bin"),
        "{all}"
    );
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
    assert!(
        !dir.join("current").exists(),
        "the agent switched to something"
    );
}
