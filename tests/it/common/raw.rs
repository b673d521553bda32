//! Raw HTTP and statement helpers for tests that talk to the API directly (bypassing the CLI).

use std::future::Future;
use std::path::Path;

use arca_keys::SigningKey;
use arca_keys::dsse::Envelope;
use arca_keys::intoto::{PAYLOAD_TYPE, Statement, Subject};

use super::Server;

/// Predicate type of arca's minimal build statement.
pub const BUILD_PREDICATE: &str = "https://arca.dev/build/v1";

/// An HTTP answer: status, and the `{"error": {"code", "message"}}` body when there is one.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub body: String,
}

pub async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    let (code, message) = match serde_json::from_str::<serde_json::Value>(&body) {
        Ok(v) => (
            v["error"]["code"].as_str().unwrap_or_default().to_owned(),
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ),
        Err(_) => (String::new(), String::new()),
    };
    Answer {
        status,
        code,
        message,
        body,
    }
}

pub fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Runs a future to completion on a fresh single-threaded runtime.
pub fn block<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A build statement about `name@version` whose subject claims the digests of `claimed`,
/// signed by `key`, as the bytes of its DSSE envelope.
pub fn build_statement(
    key: &SigningKey,
    name: &str,
    version: &str,
    file: &str,
    claimed: &[u8],
) -> Vec<u8> {
    let st = Statement::new(
        Subject {
            name: format!("{name}@{version}"),
            digest: [
                ("sha256".to_owned(), sha256_hex(claimed)),
                ("blake3".to_owned(), blake3_hex(claimed)),
            ]
            .into(),
        },
        BUILD_PREDICATE,
        serde_json::json!({ "file_name": file, "size": claimed.len() }),
    );
    Envelope::sign(PAYLOAD_TYPE, &st.to_bytes(), &[key])
        .unwrap()
        .to_bytes()
}

pub fn http() -> reqwest::Client {
    arca::client::install_crypto();
    arca::client::http_client().unwrap()
}

pub fn key_id(key: &Path) -> String {
    SigningKey::read_file(key).unwrap().key_id().to_string()
}

/// The newest audit entry: (action, subject, outcome, details).
pub fn last_audit(s: &Server) -> (String, String, String, String) {
    s.db().one(
        "SELECT action, subject, outcome, details FROM audit ORDER BY seq DESC LIMIT 1",
        params![],
    )
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `arca push FILE --name NAME --version VERSION --key KEY` as argument strings.
pub fn push_args<'a>(
    file: &'a Path,
    name: &'a str,
    version: &'a str,
    key: &'a Path,
) -> Vec<&'a str> {
    vec![
        "push",
        path_str(file),
        "--name",
        name,
        "--version",
        version,
        "--key",
        path_str(key),
    ]
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}
