//! What bad input gets (docs/security.md; docs/api.md "Errors"): every refusal names the problem, leaves the store and
//! the database exactly as they were, and (where a use case refused it) appends one `refused`
//! audit entry.

use crate::common;

use arca_keys::dsse::Envelope;
use arca_keys::intoto::{PAYLOAD_TYPE, Statement, Subject};
use arca_keys::{SignedEnvelope, SigningKey, TrustDocument};
use base64::Engine as _;
use common::Server;
use common::raw::*;

/// `POST /api/v1/artifacts` by hand: `query` as given, the statement header, `body` as the bytes.
fn raw_push(
    s: &Server,
    token: Option<&str>,
    query: &[(&str, &str)],
    statement: &[u8],
    body: Vec<u8>,
) -> Answer {
    block(async {
        let mut req = http()
            .post(format!("{}/api/v1/artifacts", s.url))
            .query(query)
            .header(
                "arca-statement",
                base64::engine::general_purpose::STANDARD.encode(statement),
            )
            .header("content-type", "application/octet-stream")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        answer(req.send().await.unwrap()).await
    })
}

/// `POST /api/v1/trust` by hand.
fn raw_trust(s: &Server, token: Option<&str>, body: Vec<u8>) -> Answer {
    block(async {
        let mut req = http()
            .post(format!("{}/api/v1/trust", s.url))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        answer(req.send().await.unwrap()).await
    })
}

/// The current trust document as the server serves it.
fn current_trust(s: &Server) -> TrustDocument {
    let bytes = block(async {
        http()
            .get(format!("{}/api/v1/trust", s.url))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .bytes()
            .await
            .unwrap()
    });
    SignedEnvelope::from_slice(&bytes)
        .unwrap()
        .decode("trust document")
        .unwrap()
}

/// No half-finished upload is left anywhere in the home.
fn assert_no_temp_leftovers(s: &Server) {
    for dir in [s.home.join("blobs/tmp"), s.home.join("tmp")] {
        let left = common::list_files(&dir);
        assert!(left.is_empty(), "leftovers in {}: {left:?}", dir.display());
    }
}

#[test]
fn push_signed_by_a_key_outside_the_trust_document_is_refused() {
    let s = Server::start();
    s.builder("builder", "**");
    let stranger = s.key("stranger");
    let id = key_id(&stranger);
    let file = s.file("a.bin", 4096, 1);
    let before = s.state();
    let refused = s.audit_count("refused");

    let err = s.fails(&push_args(&file, "app/a", "1.0.0", &stranger));
    assert!(err.contains("untrusted_key"), "{err}");
    assert!(
        err.contains(&id),
        "the refusal must name the key {id}: {err}"
    );

    assert_eq!(before, s.state());
    assert_eq!(s.audit_count("refused"), refused + 1);
    let (action, subject, outcome, details) = last_audit(&s);
    assert_eq!(
        (action.as_str(), subject.as_str(), outcome.as_str()),
        ("push", "app/a@1.0.0", "refused")
    );
    assert!(details.contains(&id), "{details}");
}

#[test]
fn push_outside_the_builder_scope_is_refused() {
    let s = Server::start();
    let key = s.builder("builder", "app/*");
    let id = key_id(&key);
    let file = s.file("x.bin", 4096, 2);
    let before = s.state();
    let refused = s.audit_count("refused");

    let err = s.fails(&push_args(&file, "other/x", "1.0.0", &key));
    assert!(err.contains("key_not_allowed"), "{err}");
    assert!(
        err.contains(&id),
        "the refusal must name the key {id}: {err}"
    );
    assert!(
        err.contains("app/*"),
        "the refusal must name the scope: {err}"
    );
    assert!(
        err.contains("other/x"),
        "the refusal must name the name: {err}"
    );

    assert_eq!(before, s.state());
    assert_eq!(s.audit_count("refused"), refused + 1);
}

#[test]
fn statement_digest_that_does_not_match_the_bytes_stores_nothing() {
    let s = Server::start();
    let key_path = s.builder("builder", "app/*");
    let key = SigningKey::read_file(&key_path).unwrap();
    let real = common::pseudo_random(300_000, 3);
    let other = common::pseudo_random(300_000, 4);
    let statement = build_statement(&key, "app/web", "1.0.0", "web.bin", &other);
    let before = s.state();
    let blobs_before = common::list_files(&s.home.join("blobs"));
    let refused = s.audit_count("refused");

    let a = raw_push(
        &s,
        Some(&s.token),
        &[
            ("name", "app/web"),
            ("version", "1.0.0"),
            ("file", "web.bin"),
        ],
        &statement,
        real.clone(),
    );
    assert_eq!(a.status, 400, "{a:?}");
    assert_eq!(a.code, "digest_mismatch", "{a:?}");
    // The message names a digest involved: the claimed or the computed one.
    let (claimed_b3, actual_b3) = (blake3_hex(&other), blake3_hex(&real));
    let (claimed_sha, actual_sha) = (sha256_hex(&other), sha256_hex(&real));
    assert!(
        [&claimed_b3, &actual_b3, &claimed_sha, &actual_sha]
            .iter()
            .any(|d| a.message.contains(d.as_str())),
        "the refusal must name the digest: {a:?}"
    );

    assert_eq!(before, s.state());
    assert_eq!(blobs_before, common::list_files(&s.home.join("blobs")));
    assert_no_temp_leftovers(&s);
    assert_eq!(s.audit_count("refused"), refused + 1);
    // Neither the claimed nor the real bytes became a blob.
    let blobs = common::list_files(&s.home.join("blobs")).join("\n");
    assert!(
        !blobs.contains(&actual_b3) && !blobs.contains(&claimed_b3),
        "{blobs}"
    );

    // The right BLAKE3 with a wrong SHA-256 is refused too: every claimed digest is checked.
    let subject = Subject {
        name: "app/web@1.0.0".into(),
        digest: [
            ("sha256".to_owned(), claimed_sha.clone()),
            ("blake3".to_owned(), actual_b3.clone()),
        ]
        .into(),
    };
    let st = Statement::new(
        subject,
        BUILD_PREDICATE,
        serde_json::json!({ "file_name": "web.bin", "size": real.len() }),
    );
    let half_right = Envelope::sign(PAYLOAD_TYPE, &st.to_bytes(), &[&key])
        .unwrap()
        .to_bytes();
    let b = raw_push(
        &s,
        Some(&s.token),
        &[
            ("name", "app/web"),
            ("version", "1.0.0"),
            ("file", "web.bin"),
        ],
        &half_right,
        real,
    );
    assert_eq!(
        (b.status, b.code.as_str()),
        (400, "digest_mismatch"),
        "{b:?}"
    );
    assert!(b.message.contains("sha256"), "{b:?}");
    assert!(
        b.message.contains(&claimed_sha) && b.message.contains(&actual_sha),
        "{b:?}"
    );
    assert_eq!(before, s.state());
    assert_no_temp_leftovers(&s);
    assert_eq!(s.audit_count("refused"), refused + 2);
}

#[test]
fn other_bytes_under_an_existing_version_are_a_conflict() {
    let s = Server::start();
    let key = s.builder("builder", "app/*");
    let first = s.file("a.bin", 10_000, 5);
    s.push(&first, "app/a", "1.0.0", &key);
    let existing_b3 = blake3_hex(&std::fs::read(&first).unwrap());
    let second = s.file("a2.bin", 10_000, 6);
    let before = s.state();
    let refused = s.audit_count("refused");

    let err = s.fails(&push_args(&second, "app/a", "1.0.0", &key));
    assert!(err.contains("already exists"), "{err}");
    assert!(err.contains("409"), "{err}");
    assert!(
        err.contains(&existing_b3),
        "the refusal must name the existing blake3 {existing_b3}: {err}"
    );

    assert_eq!(before, s.state());
    assert_no_temp_leftovers(&s);
    assert_eq!(s.audit_count("refused"), refused + 1);
}

#[test]
fn trust_change_without_the_root_threshold_is_refused() {
    let s = Server::start();
    let builder = s.builder("builder", "**");
    let newcomer = s.key("newcomer");
    let before = s.state();
    let refused = s.audit_count("refused");

    // Signed by a builder key (a trusted key, but not a root key).
    let err = s.fails(&[
        "trust",
        "add-key",
        &format!("{}.pub", newcomer.display()),
        "--role",
        "builder",
        "--scope",
        "**",
        "--sign",
        path_str(&builder),
    ]);
    assert!(err.contains("root_threshold"), "{err}");
    assert!(err.contains("1 required"), "{err}");

    assert_eq!(before, s.state());
    assert_eq!(s.audit_count("refused"), refused + 1);
    let (action, _, outcome, _) = last_audit(&s);
    assert_eq!(
        (action.as_str(), outcome.as_str()),
        ("trust.change", "refused")
    );
}

#[test]
fn trust_change_that_skips_a_version_is_refused() {
    let s = Server::start();
    s.builder("builder", "**");
    let current = current_trust(&s);
    let mut skip = current.clone();
    skip.version += 2;
    let root = SigningKey::read_file(&s.root_key()).unwrap();
    let env = SignedEnvelope::sign(&skip, &[&root]).unwrap();
    let before = s.state();
    let refused = s.audit_count("refused");

    let a = raw_trust(&s, Some(&s.token), env.to_bytes());
    assert_eq!(a.status, 409, "{a:?}");
    assert_eq!(a.code, "trust_version", "{a:?}");
    assert!(
        a.message.contains(&skip.version.to_string())
            && a.message.contains(&current.version.to_string()),
        "the refusal must name both versions: {a:?}"
    );

    // Replaying the current version (correctly signed) is refused the same way.
    let replay = SignedEnvelope::sign(&current, &[&root]).unwrap();
    let b = raw_trust(&s, Some(&s.token), replay.to_bytes());
    assert_eq!((b.status, b.code.as_str()), (409, "trust_version"), "{b:?}");

    assert_eq!(before, s.state());
    assert_eq!(s.audit_count("refused"), refused + 2);
    assert_eq!(current_trust(&s), current);
}

#[test]
fn push_without_a_token_is_refused_by_the_cli() {
    let s = Server::start();
    let key = s.builder("builder", "app/*");
    let file = s.file("a.bin", 4096, 7);
    let before = s.state();
    let args = push_args(&file, "app/a", "1.0.0", &key);

    let out = s
        .arca()
        .env_remove("ARCA_TOKEN")
        .args(&args)
        .output()
        .unwrap();
    let err = common::failure_line(&args, &out);
    assert!(err.contains("token"), "{err}");
    assert!(err.contains("ARCA_TOKEN"), "{err}");

    assert_eq!(before, s.state());
}

#[test]
fn push_with_a_wrong_or_garbage_token_is_unauthorized() {
    let s = Server::start();
    let key = s.builder("builder", "app/*");
    let file = s.file("a.bin", 4096, 8);
    let args = push_args(&file, "app/a", "1.0.0", &key);
    let before = s.state();

    // Well-formed (16 hex id, 43 base64url secret) but unknown.
    let wrong = format!("arca_0123456789abcdef_{}", "A".repeat(43));
    // Same id as the real token, other secret.
    let real_id = &s.token["arca_".len().."arca_".len() + 16];
    let wrong_secret = format!("arca_{real_id}_{}", "B".repeat(43));
    assert_ne!(wrong_secret, s.token);
    for token in [wrong.as_str(), wrong_secret.as_str(), "garbage", "arca_"] {
        let out = s
            .arca()
            .env("ARCA_TOKEN", token)
            .args(&args)
            .output()
            .unwrap();
        let err = common::failure_line(&args, &out);
        assert!(err.contains("401"), "token {token:?}: {err}");
        assert!(err.contains("invalid token"), "token {token:?}: {err}");
        assert_eq!(before, s.state(), "token {token:?}");
    }
}

#[test]
fn trust_change_without_authorization_is_unauthorized() {
    let s = Server::start();
    let newcomer = SigningKey::generate().unwrap();
    let mut next = current_trust(&s).next();
    next.keys.insert(
        newcomer.key_id(),
        arca_keys::KeyEntry {
            public: newcomer.public().to_tuf(),
            roles: [arca_keys::Role::Builder].into(),
            scope: vec!["**".into()],
            status: arca_keys::KeyStatus::Active,
            not_after: None,
            label: None,
            replaced_by: None,
        },
    );
    // Even a correctly root-signed change needs a token.
    let root = SigningKey::read_file(&s.root_key()).unwrap();
    let env = SignedEnvelope::sign(&next, &[&root]).unwrap();
    let before = s.state();

    let a = raw_trust(&s, None, env.to_bytes());
    assert_eq!(a.status, 401, "{a:?}");
    assert_eq!(a.code, "unauthorized", "{a:?}");
    assert!(a.message.contains("bearer token"), "{a:?}");
    let parsed: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert!(parsed["error"].is_object(), "{a:?}");

    let b = raw_trust(&s, Some("garbage"), env.to_bytes());
    assert_eq!((b.status, b.code.as_str()), (401, "unauthorized"), "{b:?}");
    assert!(b.message.contains("invalid token"), "{b:?}");

    assert_eq!(before, s.state());
}

#[test]
fn invalid_name_is_refused_by_the_cli_before_sending() {
    let s = Server::start();
    let key = s.builder("builder", "**");
    let file = s.file("a.bin", 4096, 9);
    let before = s.state();
    let args = push_args(&file, "../etc", "1.0.0", &key);

    // A server address where nothing listens: had the CLI sent anything, the error would be a
    // connection failure instead of the name rule.
    let out = s
        .arca()
        .env("ARCA_SERVER", "http://127.0.0.1:9")
        .args(&args)
        .output()
        .unwrap();
    let err = common::failure_line(&args, &out);
    assert!(err.contains("invalid artifact name"), "{err}");
    assert!(err.contains("../etc"), "{err}");
    assert!(err.contains("must start with a-z or 0-9"), "{err}");

    assert_eq!(before, s.state());
}

#[test]
fn invalid_name_in_a_raw_push_is_a_400_naming_the_rule() {
    let s = Server::start();
    let key_path = s.builder("builder", "**");
    let key = SigningKey::read_file(&key_path).unwrap();
    let bytes = common::pseudo_random(4096, 10);
    let before = s.state();
    let blobs_before = common::list_files(&s.home.join("blobs"));

    for (name, rule) in [
        ("Bad..Name", "must start with a-z or 0-9"),
        ("app/../etc", "must start with a-z or 0-9"),
        ("app/x..y", "must not contain '..'"),
        ("app//x", "empty path segment"),
    ] {
        let statement = build_statement(&key, name, "1.0.0", "a.bin", &bytes);
        let a = raw_push(
            &s,
            Some(&s.token),
            &[("name", name), ("version", "1.0.0"), ("file", "a.bin")],
            &statement,
            bytes.clone(),
        );
        assert_eq!(a.status, 400, "{name}: {a:?}");
        assert!(!a.code.is_empty(), "{name}: no JSON error body: {a:?}");
        assert!(
            a.message.contains("invalid artifact name") && a.message.contains(rule),
            "{name}: the refusal must name the rule {rule:?}: {a:?}"
        );
    }

    assert_eq!(before, s.state());
    assert_eq!(blobs_before, common::list_files(&s.home.join("blobs")));
    assert_no_temp_leftovers(&s);
}

#[test]
fn push_by_a_revoked_builder_key_is_refused() {
    let s = Server::start();
    let key = s.builder("builder", "app/*");
    let id = key_id(&key);
    let file = s.file("a.bin", 4096, 11);
    // The key works before it is revoked.
    s.push(&file, "app/a", "1.0.0", &key);
    s.ok(&["trust", "revoke", &id, "--sign", path_str(&s.root_key())]);
    let next = s.file("b.bin", 4096, 12);
    let before = s.state();
    let refused = s.audit_count("refused");

    let err = s.fails(&push_args(&next, "app/a", "1.0.1", &key));
    assert!(err.contains("403"), "{err}");
    assert!(
        err.contains(&id),
        "the refusal must name the key {id}: {err}"
    );

    assert_eq!(before, s.state());
    assert_no_temp_leftovers(&s);
    assert_eq!(s.audit_count("refused"), refused + 1);
}

#[test]
// Regression: the refusal once said "no valid signature by a key in trust document".
fn push_by_a_revoked_builder_key_names_the_revocation() {
    let s = Server::start();
    let key = s.builder("builder", "app/*");
    let id = key_id(&key);
    s.ok(&["trust", "revoke", &id, "--sign", path_str(&s.root_key())]);
    let file = s.file("a.bin", 4096, 13);
    let before = s.state();

    let err = s.fails(&push_args(&file, "app/a", "1.0.0", &key));
    assert!(err.contains(&id), "{err}");
    assert!(
        err.contains("revoked"),
        "the refusal must say the key is revoked: {err}"
    );
    assert_eq!(before, s.state());
}

#[test]
fn oversize_upload_is_refused_and_stores_nothing() {
    let s = Server::start_with(Some("[store]\nmax_blob_size = 1000\n"), &[]);
    let key = s.builder("builder", "app/*");
    let file = s.file("big.bin", 5000, 14);
    let before = s.state();
    let refused = s.audit_count("refused");

    let err = s.fails(&push_args(&file, "app/big", "1.0.0", &key));
    assert!(err.contains("413"), "{err}");
    assert!(err.contains("too_large"), "{err}");
    assert!(
        err.contains("1000"),
        "the refusal must name the limit: {err}"
    );

    assert_eq!(before, s.state());
    assert!(
        common::list_files(&s.home.join("blobs")).is_empty(),
        "{:?}",
        common::list_files(&s.home.join("blobs"))
    );
    assert_no_temp_leftovers(&s);
    assert_eq!(s.audit_count("refused"), refused + 1);

    // At the limit exactly, the same server accepts.
    let fits = s.file("fits.bin", 1000, 15);
    s.push(&fits, "app/big", "1.0.0", &key);
}
