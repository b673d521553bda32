//! Statements made by other in-toto tooling: DSSE envelopes whose signatures carry no key id
//! (as several tools write them), SLSA provenance as the build statement, and an attestation
//! uploaded as raw JSON — accepted when their key is trusted, refused when it is not.

use crate::common;

use arca_keys::SigningKey;
use arca_keys::dsse::Envelope;
use arca_keys::intoto::{PAYLOAD_TYPE, Statement, Subject};
use base64::Engine as _;
use common::Server;

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn hex_sha256(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b))
}

/// An envelope signed by `key` with the key id left empty, like other DSSE tooling writes.
fn anonymous_envelope(st: &Statement, key: &SigningKey) -> Vec<u8> {
    let mut env = Envelope::sign(PAYLOAD_TYPE, &st.to_bytes(), &[key]).unwrap();
    for s in &mut env.signatures {
        s.keyid.clear();
    }
    env.to_bytes()
}

fn statement(name: &str, version: &str, bytes: &[u8], predicate_type: &str) -> Statement {
    Statement::new(
        Subject {
            name: format!("{name}@{version}"),
            digest: [
                ("sha256".to_owned(), hex_sha256(bytes)),
                (
                    "blake3".to_owned(),
                    blake3::hash(bytes).to_hex().to_string(),
                ),
            ]
            .into(),
        },
        predicate_type,
        serde_json::json!({"buildDefinition": {"buildType": "https://example.com/ci/v1"}, "runDetails": {}}),
    )
}

/// Pushes in one request with `statement` in the header; returns (status, body).
fn raw_push(
    s: &Server,
    name: &str,
    version: &str,
    file: &str,
    statement: &[u8],
    body: Vec<u8>,
) -> (u16, String) {
    arca::client::install_crypto();
    block(async {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/artifacts", s.url))
            .query(&[("name", name), ("version", version), ("file", file)])
            .bearer_auth(&s.token)
            .header(
                "arca-statement",
                base64::engine::general_purpose::STANDARD.encode(statement),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    })
}

fn post_statement(s: &Server, envelope: Vec<u8>) -> (u16, String) {
    arca::client::install_crypto();
    block(async {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/statements", s.url))
            .bearer_auth(&s.token)
            .body(envelope)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    })
}

#[test]
fn slsa_provenance_without_key_ids_is_a_build_signature_and_pull_accepts_it() {
    let s = Server::start();
    let key_path = s.builder("ci", "svc/*");
    let key = SigningKey::read_file(&key_path).unwrap();
    let bytes = common::pseudo_random(50_000, 41);
    let st = statement("svc/api", "3.1.0", &bytes, "https://slsa.dev/provenance/v1");
    let (status, body) = raw_push(
        &s,
        "svc/api",
        "3.1.0",
        "api.bin",
        &anonymous_envelope(&st, &key),
        bytes.clone(),
    );
    assert_eq!(status, 201, "{body}");
    let out = s.path("out");
    let msg = s.pull_ok("svc/api", "dev", &out, &s.path("state"));
    assert!(
        msg.contains(&key.key_id().to_string()),
        "the signer is identified without a key id: {msg}"
    );
    assert_eq!(std::fs::read(out.join("api.bin")).unwrap(), bytes);
}

#[test]
fn an_attestation_from_other_tooling_counts_only_when_its_key_is_trusted() {
    let s = Server::start();
    let b = s.builder("ci", "svc/*");
    let file = s.file("api.bin", 20_000, 42);
    s.push(&file, "svc/api", "1.0.0", &b);
    let bytes = std::fs::read(&file).unwrap();
    let scan = "https://example.com/scan/v1";
    std::fs::write(
        s.path("staging.toml"),
        format!(
            "from = \"dev\"\n[[require_attestations]]\ntype = \"{scan}\"\nroles = [\"attestor\"]\n"
        ),
    )
    .unwrap();
    s.ok(&[
        "policy",
        "set",
        "staging",
        s.path("staging.toml").to_str().unwrap(),
        "--sign",
        s.root_key().to_str().unwrap(),
    ]);

    // A key the trust document does not list: refused, nothing stored.
    let stranger = SigningKey::generate().unwrap();
    let before = s.state();
    let (status, body) = post_statement(
        &s,
        anonymous_envelope(&statement("svc/api", "1.0.0", &bytes, scan), &stranger),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("untrusted_key"), "{body}");
    assert_eq!(before, s.state());

    // The scanner's key, once trusted as an attestor: accepted, and the promotion passes.
    let scanner = s.key("scanner");
    s.ok(&[
        "trust",
        "add-key",
        &format!("{}.pub", scanner.display()),
        "--role",
        "attestor",
        "--sign",
        s.root_key().to_str().unwrap(),
    ]);
    let err = s.fails(&["promote", "svc/api@1.0.0", "--to", "staging"]);
    assert!(err.contains("require_attestations"), "{err}");
    let scanner_key = SigningKey::read_file(&scanner).unwrap();
    let (status, body) = post_statement(
        &s,
        anonymous_envelope(&statement("svc/api", "1.0.0", &bytes, scan), &scanner_key),
    );
    assert_eq!(status, 201, "{body}");
    assert!(body.contains(&scanner_key.key_id().to_string()), "{body}");
    s.ok(&["promote", "svc/api@1.0.0", "--to", "staging"]);

    // A statement about other bytes under the same name@version is refused.
    let (status, body) = post_statement(
        &s,
        anonymous_envelope(&statement("svc/api", "1.0.0", b"other", scan), &scanner_key),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("digest_mismatch"), "{body}");
}
