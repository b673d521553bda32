//! Error answers and HTTP details: every 4xx and 5xx has the JSON error body, HEAD works
//! wherever GET does, Range headers that RFC 9110 lets a server ignore are ignored, an upload
//! announced too large is refused before `100 Continue`, bad tokens are logged without the
//! token, a dry run refuses a bad rollout plan like the promotion, and the database is 0600.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::Server;
use common::raw::{self, block};

fn get(
    s: &Server,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let http = raw::http();
    block(async {
        let mut req = http.get(format!("{}{path}", s.url));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let h = resp.headers().clone();
        (status, h, resp.bytes().await.unwrap().to_vec())
    })
}

/// Asserts the JSON error shape and returns its code.
fn error_code(status: u16, body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("{status}: not JSON: {}", String::from_utf8_lossy(body)));
    let code = v["error"]["code"].as_str().expect("error.code").to_owned();
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    code
}

/// A pushed artifact's TUF target path in dev, and its bytes.
fn pushed_target(s: &Server) -> (String, Vec<u8>) {
    let key = s.builder("builder", "app/*");
    let file = s.file("t.bin", 10_000, 3);
    s.push(&file, "app/t", "1.0.0", &key);
    let bytes = std::fs::read(&file).unwrap();
    (
        format!("/tuf/dev/targets/app/t/{}.t.bin", raw::sha256_hex(&bytes)),
        bytes,
    )
}

#[test]
fn every_error_answer_has_the_json_body() {
    let s = Server::start();
    let http = raw::http();
    // An unknown route (was an empty 404).
    let (st, _, body) = get(&s, "/no/such/thing", &[]);
    assert_eq!((st, error_code(st, &body).as_str()), (404, "no_route"));
    // A bad path parameter (was plain text).
    let (st, _, body) = get(&s, "/api/v1/policies/NOT..A..CHANNEL", &[]);
    assert_eq!((st, error_code(st, &body).as_str()), (400, "bad_path"));
    // A method the route does not take.
    let r = block(async {
        let r = http
            .delete(format!("{}/api/v1/artifacts", s.url))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
    });
    assert!(r.0 == 404 || r.0 == 405, "{}", r.0);
    error_code(r.0, &r.1);
    // An oversize JSON body (was plain text): refused from its Content-Length, unread.
    let addr = s.url.trim_start_matches("http://");
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "POST /api/v1/statements HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Length: {}\r\n\r\n",
        s.token,
        5 << 20
    )
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = c.read(&mut buf).unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    assert_eq!(error_code(413, body.as_bytes()), "too_large", "{answer}");
    // An unsatisfiable range.
    let (target, bytes) = pushed_target(&s);
    let range = format!("bytes={}-", bytes.len());
    let (st, h, body) = get(&s, &target, &[("range", &range)]);
    assert_eq!(
        (st, error_code(st, &body).as_str()),
        (416, "range_not_satisfiable")
    );
    assert_eq!(
        h["content-range"],
        format!("bytes */{}", bytes.len()).as_str()
    );
}

#[test]
fn head_works_wherever_get_does() {
    let s = Server::start();
    let (target, bytes) = pushed_target(&s);
    let http = raw::http();
    for path in [
        "/healthz".to_owned(),
        "/readyz".to_owned(),
        "/tuf/dev/metadata/timestamp.json".to_owned(),
        "/tuf/dev/metadata/1.root.json".to_owned(),
        "/api/v1/artifacts?name=app/t&version=1.0.0".to_owned(),
        target.clone(),
    ] {
        let (get_status, get_headers, get_body) = get(&s, &path, &[]);
        let (status, headers, body) = block(async {
            let r = http.head(format!("{}{path}", s.url)).send().await.unwrap();
            (
                r.status().as_u16(),
                r.headers().clone(),
                r.bytes().await.unwrap(),
            )
        });
        assert_eq!(status, get_status, "HEAD {path}");
        assert_eq!(status, 200, "HEAD {path}");
        assert!(body.is_empty(), "HEAD {path} sent a body");
        assert_eq!(
            headers.get("content-length"),
            get_headers.get("content-length"),
            "HEAD {path}"
        );
        assert!(!get_body.is_empty());
    }
    let (_, headers, _) = get(&s, &target, &[]);
    assert_eq!(headers["content-length"], bytes.len().to_string().as_str());
}

#[test]
fn range_headers_that_may_be_ignored_are_ignored() {
    let s = Server::start();
    let (target, bytes) = pushed_target(&s);
    for ignorable in [
        "items=0-9",
        "bytes=abc",
        "bytes=9-0",
        "bytes=0-1,5-6",
        "bytes",
    ] {
        let (st, _, body) = get(&s, &target, &[("range", ignorable)]);
        assert_eq!(st, 200, "Range: {ignorable}");
        assert!(body == bytes, "Range: {ignorable}: not the whole target");
    }
    let (st, h, body) = get(&s, &target, &[("range", "bytes=10-19")]);
    assert_eq!(st, 206);
    assert_eq!(body, bytes[10..20]);
    assert_eq!(
        h["content-range"],
        format!("bytes 10-19/{}", bytes.len()).as_str()
    );
}

#[test]
fn an_upload_announced_too_large_gets_413_before_100_continue() {
    let s = Server::start_with(Some("[store]\nmax_blob_size = 1000\n"), &[]);
    let key = s.builder("builder", "app/*");
    let signer = raw::key_id(&key);
    let addr = s.url.trim_start_matches("http://");
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "POST /api/v1/uploads?name=app/big&version=1.0.0&signer={signer} HTTP/1.1\r\n\
         Host: {addr}\r\nAuthorization: Bearer {}\r\nContent-Length: 1000000\r\n\
         Expect: 100-continue\r\n\r\n",
        s.token
    )
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = c.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(!head.contains("100 Continue"), "{head}");
    assert!(head.contains("\"too_large\""), "{head}");
}

#[test]
fn bad_tokens_are_logged_with_the_request_id_never_the_token() {
    let s = Server::start();
    let http = raw::http();
    let wrong = format!("arca_{}_{}", "0123456789abcdef", "S".repeat(43));
    let r = block(async {
        http.post(format!("{}/api/v1/tokens", s.url))
            .bearer_auth(&wrong)
            .json(&serde_json::json!({"role": "admin"}))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(r.as_u16(), 401);
    assert!(common::wait_until(Duration::from_secs(5), || s
        .log()
        .contains("wrong token")));
    let log = s.log();
    let line = log.lines().find(|l| l.contains("wrong token")).unwrap();
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("request_id"), "{line}");
    assert!(
        line.contains("0123456789abcdef"),
        "the token id names it: {line}"
    );
    assert!(!log.contains(&"S".repeat(43)), "the secret was logged");
}

#[test]
fn a_dry_run_refuses_a_bad_rollout_plan_like_the_promotion() {
    let s = Server::start();
    let key = s.builder("builder", "app/*");
    let file = s.file("p.bin", 100, 4);
    s.push(&file, "app/p", "1.0.0", &key);
    let http = raw::http();
    let promote = |dry_run: bool| {
        block(async {
            raw::answer(
                http.post(format!("{}/api/v1/promotions", s.url))
                    .bearer_auth(&s.token)
                    .json(&serde_json::json!({
                        "name": "app/p", "version": "1.0.0", "to": "staging", "dry_run": dry_run,
                        "rollout": {"steps": [50, 10], "step_interval": "1m",
                                    "max_failure_rate": 0.1, "min_reports": 1},
                    }))
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        })
    };
    let before = s.state();
    let dry = promote(true);
    assert_eq!(s.state(), before);
    let real = promote(false);
    assert_eq!(s.state(), before);
    assert_eq!(real.status, 400, "{real:?}");
    assert_eq!(
        (dry.status, &dry.code),
        (real.status, &real.code),
        "{dry:?} vs {real:?}"
    );
}

#[test]
fn the_database_and_its_wal_are_owner_only() {
    if common::engine() != "sqlite" {
        eprintln!("SQLite only: checks the modes of the arca.db, -wal and -shm files");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let s = Server::start();
    let key = s.builder("builder", "app/*");
    s.push(&s.file("m.bin", 100, 5), "app/m", "1.0.0", &key);
    for f in ["arca.db", "arca.db-wal", "arca.db-shm"] {
        let mode = std::fs::metadata(s.home.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f} is {:o}", mode & 0o777);
    }
}
