//! moto's S3 server from the test venv (`moto_server`), on a free port, for tests whose blob
//! store is an S3 bucket.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BUCKET: &str = "arca-test";
pub const PREFIX: &str = "blobs-prefix";

/// A `moto_server` on a free port with one bucket, killed on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Moto {
        let moto = Self::start_empty();
        let (status, body) = moto.http("PUT", &format!("/{BUCKET}"));
        assert_eq!(status, 200, "creating the bucket: {body}");
        moto
    }

    /// A `moto_server` with no bucket at all.
    pub fn start_empty() -> Moto {
        let mut child = Command::new(super::venv().join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn moto_server");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads until the address line, then keeps draining so moto never blocks on a full pipe
        // (it logs every request to stderr).
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut seen = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.is_none() {
                    continue;
                }
                match parse_port(&line) {
                    Some(port) => {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(Ok(port));
                        }
                    }
                    None => seen.push(line),
                }
            }
            if let Some(tx) = tx {
                let _ = tx.send(Err(seen.join("\n")));
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(port)) => port,
            Ok(Err(log)) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("moto_server exited before listening:\n{log}")
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("moto_server did not print its address within 60 s")
            }
        };
        Moto { child, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// arca.toml pointing the blob store at this bucket, plus extra `[store]` lines.
    pub fn config(&self, store_extra: &str) -> String {
        format!(
            "[store]\nurl = \"s3://{BUCKET}/{PREFIX}\"\n{store_extra}\n\
             [store.options]\n\
             aws_endpoint = \"{}\"\n\
             aws_allow_http = \"true\"\n\
             aws_access_key_id = \"testing\"\n\
             aws_secret_access_key = \"testing\"\n\
             aws_region = \"us-east-1\"\n",
            self.endpoint()
        )
    }

    /// The store URL of the bucket.
    pub fn store_url(&self) -> String {
        format!("s3://{BUCKET}/{PREFIX}")
    }

    /// The `[store] options` that reach this server (`K=V`, as `arca init --store-option` takes).
    pub fn store_options(&self) -> Vec<String> {
        vec![
            format!("aws_endpoint={}", self.endpoint()),
            "aws_allow_http=true".into(),
            "aws_access_key_id=testing".into(),
            "aws_secret_access_key=testing".into(),
            "aws_region=us-east-1".into(),
        ]
    }

    /// One unsigned HTTP/1.1 request without a body; returns (status, body).
    pub fn http(&self, method: &str, target: &str) -> (u16, String) {
        let mut conn = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            conn,
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut raw = Vec::new();
        conn.read_to_end(&mut raw).expect("read moto's answer");
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let status = raw
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {raw}"));
        let body = raw
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// Every object in the bucket as (key, size), sorted by key. Moto answers bucket listings
    /// without a signature (object GETs it refuses with 403).
    pub fn objects(&self) -> Vec<(String, u64)> {
        let (status, body) = self.http("GET", &format!("/{BUCKET}?list-type=2"));
        assert_eq!(status, 200, "listing the bucket: {body}");
        assert!(
            body.contains("<IsTruncated>false</IsTruncated>"),
            "listing truncated: {body}"
        );
        let mut out: Vec<(String, u64)> = body
            .split("<Contents>")
            .skip(1)
            .map(|c| {
                let size = tag(c, "Size").parse().expect("object size");
                (tag(c, "Key").to_owned(), size)
            })
            .collect();
        out.sort();
        out
    }

    /// Keys of the multipart uploads that were started and neither completed nor aborted.
    pub fn pending_uploads(&self) -> Vec<String> {
        let (status, body) = self.http("GET", &format!("/{BUCKET}?uploads"));
        assert_eq!(status, 200, "listing multipart uploads: {body}");
        body.split("<Upload>")
            .skip(1)
            .map(|u| tag(u, "Key").to_owned())
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port in werkzeug's ` * Running on http://127.0.0.1:PORT` line.
fn parse_port(line: &str) -> Option<u16> {
    let rest = line.split("Running on http://127.0.0.1:").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The text of the first `<name>...</name>` in `xml` (empty when absent).
pub fn tag<'a>(xml: &'a str, name: &str) -> &'a str {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    xml.split_once(&open)
        .and_then(|(_, rest)| rest.split_once(&close))
        .map_or("", |(v, _)| v)
}
