//! What a client without a token (or with one) can make the server hold: stalled downloads
//! keep memory flat, are capped and eventually disconnected; idle uploads are capped or timed
//! out with the thread count bounded and nothing left in the store; free-text fields are
//! capped and media types checked.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;
use common::raw::{self, block};

/// A `Key:` line of `/proc/PID/status` (VmRSS in KiB, Threads).
fn proc_status(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// One request on a fresh connection; the status and body of its answer.
fn request(addr: &str, head: &str) -> (u16, String) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(head.as_bytes()).unwrap();
    read_answer(&mut c)
}

fn read_answer(c: &mut TcpStream) -> (u16, String) {
    let mut buf = vec![0u8; 8192];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = c.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[test]
fn stalled_readers_keep_memory_flat_and_are_disconnected() {
    let s = Server::start_with(
        // The write timeout leaves time to open the 1000 connections on a loaded machine
        // before the first of them is cut off (which would free its slot again): at 30 s a
        // loaded CI machine once took longer than that to accept them all.
        Some("[limits]\nmax_downloads = 1000\nwrite_timeout = \"60s\"\n"),
        &[],
    );
    let key = s.builder("builder", "app/*");
    // Larger than what the socket buffers of both ends take, so a reader that never reads
    // stalls the server's writes.
    let file = s.file("big.bin", 32 << 20, 9);
    s.push(&file, "app/big", "1.0.0", &key);
    let sha = raw::sha256_hex(&std::fs::read(&file).unwrap());
    let addr = s.url.trim_start_matches("http://").to_owned();
    let get =
        format!("GET /tuf/dev/targets/app/big/{sha}.big.bin HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    // A warm-up download, so the baseline includes what any download allocates once.
    let body = block(async {
        raw::http()
            .get(format!("{}/tuf/dev/targets/app/big/{sha}.big.bin", s.url))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    });
    assert_eq!(body.len(), 32 << 20);
    let pid = s.pid();
    let rss_before = proc_status(pid, "VmRSS:");
    let fds_before = open_fds(pid);

    let mut stalled = Vec::new();
    for _ in 0..1000 {
        let mut c = TcpStream::connect(&addr).unwrap();
        c.write_all(get.as_bytes()).unwrap();
        stalled.push(c);
    }
    // Wait until the server holds a slot for each of the 1000 (accepting them all takes a
    // while on a loaded machine); then a download is refused at once with the JSON error.
    let in_flight = common::prometheus::series("arca_transfers_in_flight", &[("kind", "download")]);
    let mut seen = 0.0;
    let full = common::wait_until(Duration::from_secs(60), || {
        seen = common::prometheus::metrics(&s)[&in_flight];
        seen >= 1000.0
    });
    assert!(full, "only {seen} of 1000 stalled downloads hold a slot");
    assert_eq!(
        common::prometheus::metrics(&s)
            [&common::prometheus::series("arca_transfers_max", &[("kind", "download")])],
        1000.0
    );
    let started = Instant::now();
    let (status, last) = request(&addr, &get);
    assert_eq!(status, 503, "{last}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused after {:?}",
        started.elapsed()
    );
    assert!(last.contains("\"too_many_downloads\""), "{last}");
    // Each stalled reader holds about one read chunk: ~90 KiB (it was ~760 KiB).
    let rss_stalled = proc_status(pid, "VmRSS:");
    let grown_mib = rss_stalled.saturating_sub(rss_before) / 1024;
    assert!(
        grown_mib < 160,
        "1000 stalled readers grew the server by {grown_mib} MiB ({rss_before} -> {rss_stalled} KiB)"
    );
    // The stalled connections are closed by the write timeout. On PostgreSQL the pool may
    // have grown meanwhile to its 8 connections, each a socket and its client's own runtime
    // (an epoll and an event fd): up to 4 fds each.
    let slack = if common::engine() == "postgres" {
        20 + 8 * 4
    } else {
        20
    };
    assert!(
        common::wait_until(Duration::from_secs(180), || open_fds(pid)
            < fds_before + slack),
        "{} fds still open (baseline {fds_before})",
        open_fds(pid)
    );
    // And the slots are free again.
    let body = block(async {
        raw::http()
            .get(format!("{}/tuf/dev/targets/app/big/{sha}.big.bin", s.url))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    });
    assert_eq!(body.len(), 32 << 20);
    drop(stalled);
}

#[test]
fn idle_uploads_are_refused_or_timed_out_with_bounded_threads() {
    let s = Server::start_with(
        Some("[limits]\nmax_uploads = 8\nbody_idle_timeout = \"2s\"\n"),
        &[],
    );
    let key = s.builder("builder", "app/*");
    let signer = raw::key_id(&key);
    let addr = s.url.trim_start_matches("http://").to_owned();
    let pid = s.pid();
    let before = s.state();
    let mut idle = Vec::new();
    for i in 0..500 {
        let mut c = TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            c,
            "POST /api/v1/uploads?name=app/idle&version=1.0.{i}&signer={signer} HTTP/1.1\r\n\
             Host: {addr}\r\nAuthorization: Bearer {}\r\nContent-Length: 1000000\r\n\r\nabc",
            s.token
        )
        .unwrap();
        idle.push(c);
    }
    let mut max_threads = 0;
    let mut answers = std::collections::BTreeMap::<(u16, String), usize>::new();
    for c in &mut idle {
        max_threads = max_threads.max(proc_status(pid, "Threads:"));
        let (status, text) = read_answer(c);
        let code = text
            .split("\"code\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default()
            .to_owned();
        *answers.entry((status, code)).or_default() += 1;
    }
    assert!(max_threads < 100, "the server ran {max_threads} threads");
    let refused = answers
        .get(&(503, "too_many_uploads".into()))
        .copied()
        .unwrap_or(0);
    let timed_out = answers
        .get(&(408, "body_timeout".into()))
        .copied()
        .unwrap_or(0);
    assert_eq!(refused + timed_out, 500, "{answers:?}");
    assert!((1..=8).contains(&timed_out), "{answers:?}");
    // Nothing of the idle uploads is left in the store, and a normal push works.
    assert!(
        common::wait_until(Duration::from_secs(10), || common::list_files(
            &s.home.join("blobs")
        )
        .is_empty()),
        "{:?}",
        common::list_files(&s.home.join("blobs"))
    );
    assert_eq!(s.state(), before);
    let file = s.file("ok.bin", 100_000, 1);
    let out = s.push(&file, "app/ok", "1.0.0", &key);
    assert!(out.contains("pushed app/ok@1.0.0"), "{out}");
}

#[test]
fn free_text_fields_are_capped_and_media_types_checked() {
    let s = Server::start();
    let key = s.builder("builder", "app/*");
    s.push(&s.file("f.bin", 100, 2), "app/f", "1.0.0", &key);
    let http = raw::http();
    let post = |path: &str, body: serde_json::Value| {
        block(async {
            raw::answer(
                http.post(format!("{}{path}", s.url))
                    .bearer_auth(&s.token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        })
    };
    let before = s.state();
    let long = "r".repeat(arca::model::limits::MAX_REASON + 1);
    let a = post(
        "/api/v1/promotions",
        serde_json::json!({"name": "app/f", "version": "1.0.0", "to": "staging", "reason": long}),
    );
    assert_eq!((a.status, a.code.as_str()), (400, "bad_reason"), "{a:?}");
    let a = post(
        "/api/v1/promotions",
        serde_json::json!({"name": "app/f", "version": "1.0.0", "to": "staging",
                           "reason": "CHG-1\u{1b}[2J"}),
    );
    assert_eq!((a.status, a.code.as_str()), (400, "bad_reason"), "{a:?}");
    let a = post(
        "/api/v1/rollbacks",
        serde_json::json!({"name": "app/f", "channel": "dev", "reason": long}),
    );
    assert_eq!((a.status, a.code.as_str()), (400, "bad_reason"), "{a:?}");
    let a = post(
        "/api/v1/tokens",
        serde_json::json!({"role": "admin", "description": "d".repeat(4 << 10)}),
    );
    assert_eq!((a.status, a.code.as_str()), (400, "invalid_label"), "{a:?}");
    assert_eq!(s.state(), before);

    // A media type with a control character is refused before a byte is stored.
    let file = s.file("g.bin", 100, 3);
    let bytes = std::fs::read(&file).unwrap();
    let st = raw::build_statement(
        &arca_keys::SigningKey::read_file(&key).unwrap(),
        "app/g",
        "1.0.0",
        "g.bin",
        &bytes,
    );
    use base64::Engine as _;
    let header = base64::engine::general_purpose::STANDARD.encode(st);
    let a = block(async {
        raw::answer(
            http.post(format!("{}/api/v1/artifacts", s.url))
                .query(&[
                    ("name", "app/g"),
                    ("version", "1.0.0"),
                    ("file", "g.bin"),
                    ("media_type", "text/plain\u{7}"),
                ])
                .bearer_auth(&s.token)
                .header("arca-statement", header)
                .body(bytes)
                .send()
                .await
                .unwrap(),
        )
        .await
    });
    assert_eq!(
        (a.status, a.code.as_str()),
        (400, "bad_media_type"),
        "{a:?}"
    );
    assert_eq!(s.state(), before);
    // Within the caps, the same requests pass.
    let a = post(
        "/api/v1/promotions",
        serde_json::json!({"name": "app/f", "version": "1.0.0", "to": "staging", "reason": "CHG-1\nsecond line"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
}
