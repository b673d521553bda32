//! Attacks on the client side (docs/security.md guarantee 5 and "What arca's client checks
//! beyond TUF"): a compromised store, server or mirror serves altered blobs, altered or
//! replayed metadata, expired metadata, another repository's or another channel's metadata, or a release without a trusted build signature.
//! `arca pull` must refuse each one with exactly one `error:` line naming the problem and must
//! leave nothing in its `--out` directory. Where it makes sense python-tuf's ngclient is run on
//! the same repository to show that a generic TUF client refuses too — or, for the checks only
//! arca's own client makes (channel binding, build signatures against the trust document), that
//! a generic client does NOT refuse.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Server, forge_targets_with_online_key, latest_meta, set_meta_body};
use serde_json::Value;

/// Where the blob with this BLAKE3 digest lives in the local store.
fn blob_path(s: &Server, blake3: &str) -> PathBuf {
    s.home.join("blobs/blobs").join(blake3)
}

/// The BLAKE3 digest of `file`'s bytes (the store's address of it).
fn blake3_of(file: &Path) -> String {
    blake3::hash(&std::fs::read(file).unwrap())
        .to_hex()
        .to_string()
}

/// Makes a (possibly read-only) blob file writable for tampering.
fn make_writable(p: &Path) {
    let mut perm = std::fs::metadata(p).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(p, perm).unwrap();
}

/// Edits the `signed` part of a metadata body WITHOUT re-signing it (canonical JSON kept, so
/// only the edit differs).
fn tamper_signed(body: &[u8], edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(body).unwrap();
    edit(v.get_mut("signed").unwrap());
    let out = arca_keys::canonical::to_canonical_json(&v).unwrap();
    assert_ne!(out, body, "the edit changed nothing");
    out
}

/// `arca pull NAME --channel CH --root ROOT --out OUT --metadata-dir STATE` against `s`,
/// expecting a refusal (non-zero exit, one `error:` line); returns stderr.
fn pull_fails_with_root(
    s: &Server,
    name: &str,
    channel: &str,
    root: &Path,
    out: &Path,
    state: &Path,
) -> String {
    let args = [
        "pull",
        name,
        "--channel",
        channel,
        "--root",
        root.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--metadata-dir",
        state.to_str().unwrap(),
    ];
    s.fails(&args)
}

/// Asserts that a refused pull left nothing in DIR (which may not exist at all).
fn assert_nothing_in(dir: &Path) {
    let files = common::list_files(dir);
    assert!(
        files.is_empty(),
        "refused pull left files in {dir:?}: {files:?}"
    );
}

/// Runs python-tuf and asserts its expectation (`--expect-fail`, `--expect-error C`, or
/// success) was met; returns its output.
fn python_tuf_expect(
    s: &Server,
    channel: &str,
    target: &str,
    out: &Path,
    extra: &[&str],
) -> String {
    let (ok, log) = s.python_tuf(channel, target, out, extra);
    assert!(ok, "python-tuf {extra:?} on {channel} {target}:\n{log}");
    log
}

/// One pushed release: the server, the builder key, the file and its TUF target path.
struct Release {
    s: Server,
    key: PathBuf,
    file: PathBuf,
    target: String,
}

/// A server with `app/web@1.0.0` (file `web.bin`) in `dev`.
fn release_with(config: Option<&str>) -> Release {
    let s = Server::start_with(config, &[]);
    let key = s.builder("builder", "app/*");
    let file = s.file("web.bin", 150_000, 7);
    s.push(&file, "app/web", "1.0.0", &key);
    Release {
        s,
        key,
        file,
        target: "app/web/web.bin".into(),
    }
}

/// The tests below play a malicious server by editing its database behind its back, so the
/// server reads metadata from the database on every request.
fn release() -> Release {
    release_with(Some("[tuf]\nmemory_cache = false\n"))
}

// 1. A blob altered in the store.

#[test]
fn altered_blob_in_the_store_is_refused() {
    let r = release();
    let s = &r.s;
    let blob = blob_path(s, &blake3_of(&r.file));
    assert!(
        blob.exists(),
        "blob not at {blob:?}: {:?}",
        common::list_files(&s.home.join("blobs"))
    );
    // Same length, different bytes.
    let mut bytes = std::fs::read(&blob).unwrap();
    for b in &mut bytes[1000..1010] {
        *b ^= 0xff;
    }
    make_writable(&blob);
    std::fs::write(&blob, &bytes).unwrap();

    // DIR exists beforehand: the refused download's temporary file must be cleaned up too.
    let dir = s.path("out");
    std::fs::create_dir_all(&dir).unwrap();
    let err = s.pull_fails("app/web", "dev", &dir, &s.path("state"));
    assert!(
        err.contains("length or hash does not match the signed metadata"),
        "{err}"
    );
    assert!(err.contains("web.bin"), "{err}");
    assert_nothing_in(&dir);

    python_tuf_expect(
        s,
        "dev",
        &r.target,
        &s.path("py"),
        &["--expect-error", "LengthOrHashMismatchError"],
    );
}

// 2. Altered metadata (not re-signed).

#[test]
fn altered_targets_metadata_is_refused() {
    let r = release();
    let s = &r.s;
    let (v, body) = latest_meta(s, "dev", "targets");
    let forged = tamper_signed(&body, |signed| {
        let t = &mut signed["targets"]["app/web/web.bin"];
        t["length"] = Value::from(t["length"].as_u64().unwrap() + 1);
    });
    set_meta_body(s, "dev", "targets", v, &forged);

    let dir = s.path("out");
    let err = s.pull_fails("app/web", "dev", &dir, &s.path("state"));
    // The snapshot signs targets.json's length and hash, so the edit is caught there, before
    // the signature is even looked at.
    assert!(err.contains("channel metadata refused"), "{err}");
    assert!(
        err.contains("targets: length or hash does not match the signed metadata"),
        "{err}"
    );
    assert_nothing_in(&dir);
    python_tuf_expect(
        s,
        "dev",
        &r.target,
        &s.path("py"),
        &["--expect-error", "LengthOrHashMismatchError"],
    );
}

#[test]
fn altered_targets_metadata_with_matching_snapshot_hash_fails_its_signature() {
    // The attacker also rewrites what snapshot says about targets.json: then snapshot's own
    // signature breaks. Either way one signature no longer verifies.
    let r = release();
    let s = &r.s;
    let (tv, tbody) = latest_meta(s, "dev", "targets");
    let forged_targets = tamper_signed(&tbody, |signed| {
        signed["targets"]["app/web/web.bin"]["hashes"]["sha256"] = Value::from("0".repeat(64));
    });
    set_meta_body(s, "dev", "targets", tv, &forged_targets);
    let (sv, sbody) = latest_meta(s, "dev", "snapshot");
    let forged_snapshot = tamper_signed(&sbody, |signed| {
        let m = &mut signed["meta"]["targets.json"];
        m["length"] = Value::from(forged_targets.len() as u64);
        m["hashes"]["sha256"] = Value::from(arca::tuf::metadata::sha256_hex(&forged_targets));
    });
    set_meta_body(s, "dev", "snapshot", sv, &forged_snapshot);
    let (tsv, tsbody) = latest_meta(s, "dev", "timestamp");
    let forged_ts = tamper_signed(&tsbody, |signed| {
        let m = &mut signed["meta"]["snapshot.json"];
        m["length"] = Value::from(forged_snapshot.len() as u64);
        m["hashes"]["sha256"] = Value::from(arca::tuf::metadata::sha256_hex(&forged_snapshot));
    });
    set_meta_body(s, "dev", "timestamp", tsv, &forged_ts);

    let dir = s.path("out");
    let err = s.pull_fails("app/web", "dev", &dir, &s.path("state"));
    assert!(
        err.contains("timestamp metadata: 0 valid signature(s), threshold 1"),
        "{err}"
    );
    assert_nothing_in(&dir);
    python_tuf_expect(
        s,
        "dev",
        &r.target,
        &s.path("py"),
        &["--expect-error", "UnsignedMetadataError"],
    );
}

#[test]
fn altered_timestamp_metadata_is_refused() {
    let r = release();
    let s = &r.s;
    let (v, body) = latest_meta(s, "dev", "timestamp");
    // Push the expiry far out: a freeze attacker's dream, but unsigned.
    let forged = tamper_signed(&body, |signed| {
        signed["expires"] = Value::from("2999-01-01T00:00:00Z");
    });
    set_meta_body(s, "dev", "timestamp", v, &forged);

    let dir = s.path("out");
    let err = s.pull_fails("app/web", "dev", &dir, &s.path("state"));
    assert!(
        err.contains("timestamp metadata: 0 valid signature(s), threshold 1"),
        "{err}"
    );
    assert_nothing_in(&dir);
    python_tuf_expect(
        s,
        "dev",
        &r.target,
        &s.path("py"),
        &["--expect-error", "UnsignedMetadataError"],
    );
}

// 3. Replayed older metadata against a client that keeps its state.

#[test]
fn replayed_older_timestamp_is_refused_as_rollback() {
    let r = release();
    let s = &r.s;
    let state = s.path("state");
    let py_state = s.path("py-state");
    s.pull_ok("app/web", "dev", &s.path("out1"), &state);
    python_tuf_expect(
        s,
        "dev",
        &r.target,
        &s.path("py1"),
        &["--metadata-dir", py_state.to_str().unwrap()],
    );
    let (old_v, old_ts) = latest_meta(s, "dev", "timestamp");

    // v2 advances targets, snapshot and timestamp; both clients see it.
    let file2 = s.file("web2.bin", 120_000, 8);
    s.push(&file2, "app/web", "2.0.0", &r.key);
    let msg = s.pull_ok("app/web", "dev", &s.path("out2"), &state);
    assert!(msg.contains("verified app/web@2.0.0"), "{msg}");
    python_tuf_expect(
        s,
        "dev",
        "app/web/web2.bin",
        &s.path("py2"),
        &["--metadata-dir", py_state.to_str().unwrap()],
    );
    let (new_v, _) = latest_meta(s, "dev", "timestamp");
    assert!(new_v > old_v);

    // The server (or a mirror) now replays the older, validly signed and unexpired timestamp.
    set_meta_body(s, "dev", "timestamp", new_v, &old_ts);
    let dir = s.path("out3");
    let err = s.pull_fails("app/web", "dev", &dir, &state);
    assert!(
        err.contains(&format!(
            "timestamp rollback: version {old_v} is older than the trusted version {new_v}"
        )),
        "{err}"
    );
    assert_nothing_in(&dir);
    python_tuf_expect(
        s,
        "dev",
        "app/web/web2.bin",
        &s.path("py3"),
        &[
            "--metadata-dir",
            py_state.to_str().unwrap(),
            "--expect-error",
            "BadVersionNumberError",
        ],
    );
}

// 4. Expired metadata (freeze attack).

#[test]
fn expired_timestamp_is_refused() {
    let r = release_with(Some(
        "[tuf]\ntimestamp_expiry = \"3s\"\nrefresh_interval = \"1h\"\n",
    ));
    let s = &r.s;
    // The server re-signs only at start and then sleeps an hour: the timestamp published by
    // the push expires after 3 s and stays expired.
    std::thread::sleep(Duration::from_secs(4));
    let dir = s.path("out");
    let err = s.pull_fails("app/web", "dev", &dir, &s.path("state"));
    assert!(err.contains("timestamp metadata expired at"), "{err}");
    assert_nothing_in(&dir);
    python_tuf_expect(
        s,
        "dev",
        &r.target,
        &s.path("py"),
        &["--expect-error", "ExpiredMetadataError"],
    );
}

// 5. A target whose served length does not match the signed one.

#[test]
fn truncated_blob_is_refused() {
    let r = release();
    let s = &r.s;
    let b3 = blake3_of(&r.file);
    let blob = blob_path(s, &b3);
    let bytes = std::fs::read(&blob).unwrap();
    let short = bytes.len() - 1000;
    make_writable(&blob);
    std::fs::write(&blob, &bytes[..short]).unwrap();

    // (a) Only the file is short: the server announces the recorded length and the body ends
    // early. arca refuses; python-tuf fails too, though with a transport error
    // (urllib3 ProtocolError) rather than a TUF security error.
    let dir = s.path("out");
    let err = s.pull_fails("app/web", "dev", &dir, &s.path("state"));
    assert!(err.contains("downloading app/web/web.bin"), "{err}");
    assert_nothing_in(&dir);
    let (ok, log) = s.python_tuf("dev", &r.target, &s.path("py"), &[]);
    assert!(
        !ok && log.contains("ERROR"),
        "python-tuf accepted a short body:\n{log}"
    );

    // (b) The store's record shrinks with the file: a complete, well-formed response that is
    // shorter than the signed length.
    let n = s.db().execute(
        "UPDATE blobs SET size = ?1 WHERE blake3 = ?2",
        params![short as i64, b3],
    );
    assert_eq!(n, 1);
    let err = s.pull_fails("app/web", "dev", &dir, &s.path("state"));
    assert!(
        err.contains(&format!("(length {short}, signed {})", bytes.len())),
        "{err}"
    );
    assert!(
        err.contains("length or hash does not match the signed metadata"),
        "{err}"
    );
    assert_nothing_in(&dir);
    python_tuf_expect(
        s,
        "dev",
        &r.target,
        &s.path("py"),
        &["--expect-error", "LengthOrHashMismatchError"],
    );
}

#[test]
fn bytes_appended_to_the_blob_are_never_accepted() {
    let r = release();
    let s = &r.s;
    let blob = blob_path(s, &blake3_of(&r.file));
    make_writable(&blob);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes.extend_from_slice(&[0x41; 4096]);
    std::fs::write(&blob, &bytes).unwrap();

    // The server streams the size its database records, so the extra bytes never leave it:
    // whatever the client gets, it must never install them. Either it refuses and DIR is
    // empty, or it got exactly the signed bytes.
    let dir = s.path("out");
    let args = s.pull_args("app/web", "dev", &dir, &s.path("state"));
    let out = s
        .arca()
        .args(args.iter().map(String::as_str))
        .output()
        .unwrap();
    if out.status.success() {
        assert_eq!(common::list_files(&dir), vec!["web.bin".to_string()]);
        assert_eq!(
            std::fs::read(dir.join("web.bin")).unwrap(),
            std::fs::read(&r.file).unwrap()
        );
    } else {
        common::failure_line(&[], &out);
        assert_nothing_in(&dir);
    }
}

#[test]
fn a_server_sending_more_than_the_signed_length_is_refused() {
    // Endless data: the store's record is changed too, so the server really sends more bytes
    // than targets.json signs. The client must stop at the signed length.
    let r = release();
    let s = &r.s;
    let b3 = blake3_of(&r.file);
    let blob = blob_path(s, &b3);
    make_writable(&blob);
    let mut bytes = std::fs::read(&blob).unwrap();
    let extra = 1 << 20;
    bytes.extend(std::iter::repeat_n(0x41u8, extra));
    std::fs::write(&blob, &bytes).unwrap();
    let n = s.db().execute(
        "UPDATE blobs SET size = ?1 WHERE blake3 = ?2",
        params![bytes.len() as i64, b3],
    );
    assert_eq!(n, 1);

    let dir = s.path("out");
    let err = s.pull_fails("app/web", "dev", &dir, &s.path("state"));
    assert!(
        err.contains("exceeds its length limit of 150000 bytes"),
        "{err}"
    );
    assert_nothing_in(&dir);
    python_tuf_expect(
        s,
        "dev",
        &r.target,
        &s.path("py"),
        &["--expect-error", "DownloadLengthMismatchError"],
    );
}

// 6. The pinned root of another repository.

#[test]
fn another_servers_root_is_refused() {
    let r = release();
    let s = &r.s;
    let other = Server::start();
    let dir = s.path("out");
    let err = pull_fails_with_root(
        s,
        "app/web",
        "dev",
        &other.root_json(),
        &dir,
        &s.path("fresh-state"),
    );
    assert!(
        err.contains("root metadata: 0 valid signature(s), threshold 1"),
        "{err}"
    );
    assert_nothing_in(&dir);
    // `--root` given again: argparse keeps the last one.
    python_tuf_expect(
        s,
        "dev",
        &r.target,
        &s.path("py"),
        &[
            "--root",
            other.root_json().to_str().unwrap(),
            "--expect-error",
            "UnsignedMetadataError",
        ],
    );
}

// 7. Another channel's repository.

#[test]
fn another_channels_metadata_is_refused() {
    let r = release();
    let s = &r.s;
    // A prod client that has already followed prod's chain (prod has no release yet).
    let prod_state = s.path("prod-state");
    let err = s.pull_fails("app/web", "prod", &s.path("out0"), &prod_state);
    assert!(
        err.contains("channel prod has no release of app/web"),
        "{err}"
    );

    // The server answers prod's URLs with dev's repository, and lists dev's release there too
    // so that the targets URL answers as well.
    let c = s.db();
    c.batch(
        "DELETE FROM tuf_metadata WHERE channel = 'prod';
         INSERT INTO tuf_metadata (channel, role, version, body, expires)
             SELECT 'prod', role, version, body, expires FROM tuf_metadata WHERE channel = 'dev';
         INSERT INTO releases (channel, name, artifact_id, action, actor, reason, created_at)
             SELECT 'prod', name, artifact_id, action, actor, reason, created_at
             FROM releases WHERE channel = 'dev';",
    );
    drop(c);

    // A fresh prod client: the shared root v1 leads to dev's root v2, validly signed by the
    // root keys but bound to dev.
    let dir = s.path("out");
    let err = s.pull_fails("app/web", "prod", &dir, &s.path("fresh-state"));
    assert!(
        err.contains("root metadata v2 is bound to channel \"dev\", not prod"),
        "{err}"
    );
    assert_nothing_in(&dir);

    // The prod client with state: dev's timestamp is not signed by prod's online key.
    let err = s.pull_fails("app/web", "prod", &dir, &prod_state);
    assert!(
        err.contains("timestamp metadata: 0 valid signature(s), threshold 1"),
        "{err}"
    );
    assert_nothing_in(&dir);

    // A generic TUF client without state cannot tell: the channel binding is arca's.
    let log = python_tuf_expect(s, "prod", &r.target, &s.path("py"), &[]);
    assert!(log.contains("VERIFIED"), "{log}");
}

// 8. A build statement by a key that is no longer trusted.

#[test]
fn release_built_by_a_revoked_key_is_refused() {
    let r = release();
    let s = &r.s;
    let pub_path = PathBuf::from(format!("{}.pub", r.key.display()));
    let keyid = arca_keys::PublicKey::read_file(&pub_path)
        .unwrap()
        .key_id()
        .to_string();
    s.ok(&[
        "trust",
        "revoke",
        &keyid,
        "--sign",
        s.root_key().to_str().unwrap(),
    ]);

    let dir = s.path("out");
    let err = s.pull_fails("app/web", "dev", &dir, &s.path("state"));
    assert!(
        err.contains("app/web@1.0.0: no valid build signature"),
        "{err}"
    );
    assert!(err.contains(&keyid), "{err}");
    assert!(err.contains("is revoked"), "{err}");
    assert_nothing_in(&dir);

    // What arca's client adds over generic TUF: python-tuf checks only the TUF roles (the
    // channel's online key signed this entry), not who built the artifact, so it still
    // installs a release whose only build signature is by a revoked key.
    let log = python_tuf_expect(s, "dev", &r.target, &s.path("py"), &[]);
    assert!(log.contains("VERIFIED"), "{log}");
}

// 9. A compromised online key.

#[test]
fn online_key_cannot_publish_an_unsigned_release() {
    let r = release();
    let s = &r.s;
    let (_, body) = latest_meta(s, "dev", "targets");
    let env = arca::tuf::metadata::Envelope::from_slice("targets", &body).unwrap();
    let statements = env.signed["targets"]["app/web/web.bin"]["custom"]["statements"].clone();
    assert_eq!(statements.as_array().unwrap().len(), 1, "{statements}");

    // (a) The release's statements are dropped.
    forge_targets_with_online_key(s, "dev", |signed| {
        signed["targets"]["app/web/web.bin"]["custom"]["statements"] = Value::Array(Vec::new());
    });
    // python-tuf accepts: for TUF the online key is the targets role.
    let log = python_tuf_expect(s, "dev", &r.target, &s.path("py1"), &[]);
    assert!(log.contains("VERIFIED"), "{log}");
    let dir = s.path("out");
    let err = s.pull_fails("app/web", "dev", &dir, &s.path("state"));
    assert!(
        err.contains("app/web@1.0.0: no valid build signature"),
        "{err}"
    );
    assert_nothing_in(&dir);

    // (b) The real statement is kept but the entry claims another version: the statement
    // signs name, version and digests, so it does not count for 6.6.6.
    forge_targets_with_online_key(s, "dev", |signed| {
        let custom = &mut signed["targets"]["app/web/web.bin"]["custom"];
        custom["statements"] = statements;
        custom["version"] = Value::from("6.6.6");
    });
    let log = python_tuf_expect(s, "dev", &r.target, &s.path("py2"), &[]);
    assert!(log.contains("VERIFIED"), "{log}");
    let err = s.pull_fails("app/web", "dev", &dir, &s.path("state"));
    assert!(
        err.contains("app/web@6.6.6: no valid build signature"),
        "{err}"
    );
    assert_nothing_in(&dir);
}
