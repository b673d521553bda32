//! Private key files are encrypted with a passphrase by default (encrypted PKCS#8 PEM, as
//! openssl reads and writes them); every command that signs takes the passphrase from
//! ARCA_KEY_PASSPHRASE or --passphrase-file (tests have no terminal); a wrong one signs
//! nothing; today's unencrypted key files keep working; `arca key encrypt` converts them.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Server, failure_line};

const PASS: &str = "correct horse battery staple";

use crate::common::p;

/// `arca ARGS` with ARCA_KEY_PASSPHRASE set to `pass` (or removed), no terminal.
fn run(s: &Server, pass: Option<&str>, args: &[&str]) -> Output {
    let mut c = s.arca();
    match pass {
        Some(v) => c.env("ARCA_KEY_PASSPHRASE", v),
        None => c.env_remove("ARCA_KEY_PASSPHRASE"),
    };
    c.args(args).output().unwrap()
}

fn ok(s: &Server, pass: Option<&str>, args: &[&str]) -> String {
    let out = run(s, pass, args);
    assert!(
        out.status.success(),
        "arca {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(s: &Server, pass: Option<&str>, args: &[&str]) -> String {
    failure_line(args, &run(s, pass, args))
}

/// An encrypted key made by `arca key gen --passphrase-file` (no env var): returns its path.
fn encrypted_key(s: &Server, name: &str, pass: &str) -> PathBuf {
    let pw = s.path(&format!("{name}.pass"));
    std::fs::write(&pw, format!("{pass}\n")).unwrap();
    let k = s.path(&format!("{name}.key"));
    ok(
        s,
        None,
        &["key", "gen", "--out", p(&k), "--passphrase-file", p(&pw)],
    );
    k
}

fn add_key(s: &Server, key: &Path, role: &str, scope: &str, root: &Path, pass: Option<&str>) {
    ok(
        s,
        pass,
        &[
            "trust",
            "add-key",
            &format!("{}.pub", key.display()),
            "--role",
            role,
            "--scope",
            scope,
            "--sign",
            p(root),
        ],
    );
}

fn push_args<'a>(file: &'a Path, release: &'a str, key: &'a Path) -> Vec<&'a str> {
    vec!["push", p(file), release, "--key", p(key)]
}

/// The raw ed25519 public key (hex) of a PEM private key, as openssl computes it.
fn openssl_public_hex(pem: &Path, pass: Option<&str>) -> String {
    let mut decrypt = Command::new("openssl");
    decrypt.args(["pkcs8", "-in", p(pem)]);
    match pass {
        Some(pw) => decrypt.args(["-passin", &format!("pass:{pw}")]),
        None => decrypt.arg("-nocrypt"),
    };
    let plain = decrypt.output().expect("openssl is installed");
    assert!(
        plain.status.success(),
        "openssl pkcs8 could not read {}: {}",
        pem.display(),
        String::from_utf8_lossy(&plain.stderr)
    );
    let text = String::from_utf8(plain.stdout).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{text}");
    let plain_path = pem.with_extension("plain.pem");
    std::fs::write(&plain_path, &text).unwrap();
    let der = Command::new("openssl")
        .args(["pkey", "-in", p(&plain_path), "-pubout", "-outform", "DER"])
        .output()
        .unwrap();
    assert!(der.status.success());
    std::fs::remove_file(&plain_path).unwrap();
    // SubjectPublicKeyInfo for ed25519 ends in the 32-byte key (RFC 8410).
    hex::encode(&der.stdout[der.stdout.len() - 32..])
}

fn pub_hex(key: &Path) -> String {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{}.pub", key.display())).unwrap()).unwrap();
    v["keyval"]["public"].as_str().unwrap().to_owned()
}

#[test]
fn key_gen_with_a_passphrase_file_writes_an_encrypted_pkcs8_pem() {
    let s = Server::start();
    let k = encrypted_key(&s, "builder", PASS);
    let text = std::fs::read_to_string(&k).unwrap();
    assert!(
        text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
            && text
                .trim_end()
                .ends_with("-----END ENCRYPTED PRIVATE KEY-----"),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&k).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // The key id of the encrypted file (given its passphrase) is the .pub's.
    let of_pub = ok(&s, None, &["key", "id", &format!("{}.pub", k.display())]);
    assert_eq!(ok(&s, Some(PASS), &["key", "id", p(&k)]), of_pub);
    // ... and ARCA_KEY_PASSPHRASE writes one too.
    let k2 = s.path("other.key");
    ok(&s, Some(PASS), &["key", "gen", "--out", p(&k2)]);
    assert!(
        std::fs::read_to_string(&k2)
            .unwrap()
            .starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    );
}

#[test]
fn push_approve_and_trust_changes_sign_with_encrypted_keys_given_arca_key_passphrase() {
    let s = Server::start();
    // The development root key, encrypted in place as an operator would before moving it.
    let root = s.root_key();
    ok(&s, Some(PASS), &["key", "encrypt", p(&root)]);
    let builder = encrypted_key(&s, "builder", PASS);
    let approver = encrypted_key(&s, "approver", PASS);
    add_key(&s, &builder, "builder", "app/*", &root, Some(PASS));
    add_key(&s, &approver, "approver", "prod", &root, Some(PASS));

    let f = s.file("hello.txt", 1000, 1);
    ok(&s, Some(PASS), &push_args(&f, "app/hello@1.0.0", &builder));
    ok(
        &s,
        None,
        &[
            "promote",
            "app/hello@1.0.0",
            "--to",
            "staging",
            "--reason",
            "t",
        ],
    );
    ok(
        &s,
        Some(PASS),
        &[
            "approve",
            "app/hello@1.0.0",
            "--channel",
            "prod",
            "--key",
            p(&approver),
        ],
    );
    ok(
        &s,
        None,
        &[
            "promote",
            "app/hello@1.0.0",
            "--to",
            "prod",
            "--reason",
            "t",
        ],
    );
    let out = s.path("out");
    s.pull_ok("app/hello", "prod", &out, &s.path("state"));
    assert_eq!(
        std::fs::read(out.join("hello.txt")).unwrap(),
        std::fs::read(&f).unwrap()
    );
}

#[test]
fn a_wrong_passphrase_is_refused_naming_the_file_and_nothing_is_signed() {
    let s = Server::start();
    let builder = encrypted_key(&s, "builder", PASS);
    add_key(&s, &builder, "builder", "app/*", &s.root_key(), None);
    let f = s.file("hello.txt", 1000, 2);
    let before = s.state();

    let line = fails(
        &s,
        Some("wrong"),
        &push_args(&f, "app/hello@1.0.0", &builder),
    );
    assert!(
        line.contains("wrong passphrase") && line.contains(p(&builder)),
        "{line}"
    );
    // A passphrase file with the wrong passphrase is refused the same way.
    let pw = s.path("wrong.pass");
    std::fs::write(&pw, "also wrong\n").unwrap();
    let mut args = push_args(&f, "app/hello@1.0.0", &builder);
    args.extend(["--passphrase-file", p(&pw)]);
    let line = fails(&s, Some(PASS), &args);
    assert!(line.contains("wrong passphrase"), "{line}");

    // A root key with a wrong passphrase signs no trust change.
    let root = s.root_key();
    ok(&s, Some(PASS), &["key", "encrypt", p(&root)]);
    let other = s.key("other");
    let line = fails(
        &s,
        Some("wrong"),
        &[
            "trust",
            "add-key",
            &format!("{}.pub", other.display()),
            "--role",
            "attestor",
            "--sign",
            p(&root),
        ],
    );
    assert!(
        line.contains("wrong passphrase") && line.contains(p(&root)),
        "{line}"
    );
    assert_eq!(s.state(), before, "a refused signature changed the server");

    // Nor is a change file signed: it stays as it was.
    let change = s.path("change.json");
    ok(
        &s,
        None,
        &[
            "trust",
            "propose",
            "add-key",
            &format!("{}.pub", other.display()),
            "--role",
            "attestor",
            "--out",
            p(&change),
        ],
    );
    let proposed = std::fs::read(&change).unwrap();
    let line = fails(
        &s,
        Some("wrong"),
        &["trust", "sign", p(&change), "--key", p(&root)],
    );
    assert!(line.contains("wrong passphrase"), "{line}");
    assert_eq!(std::fs::read(&change).unwrap(), proposed);
    assert_eq!(s.state(), before);
}

#[test]
fn unencrypted_legacy_key_files_still_sign() {
    let s = Server::start();
    // Today's key file format, written out literally (RFC 8032 test vector 1).
    let legacy = s.path("legacy.key");
    std::fs::write(
        &legacy,
        r#"{
  "keytype": "ed25519",
  "scheme": "ed25519",
  "keyval": {
    "public": "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    "private": "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
  }
}
"#,
    )
    .unwrap();
    std::fs::write(
        s.path("legacy.key.pub"),
        r#"{"keytype":"ed25519","scheme":"ed25519","keyval":{"public":"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"}}"#,
    )
    .unwrap();
    let id = ok(&s, None, &["key", "id", p(&legacy)]);
    assert_eq!(
        id,
        ok(&s, None, &["key", "id", p(&s.path("legacy.key.pub"))])
    );
    // The root key `arca init` wrote is such a file; no passphrase is asked for either.
    add_key(&s, &legacy, "builder", "app/*", &s.root_key(), None);
    let f = s.file("a.bin", 500, 3);
    ok(&s, None, &push_args(&f, "app/a@1.0.0", &legacy));
    // A passphrase in the environment does not get in the way of unencrypted keys.
    ok(&s, Some(PASS), &push_args(&f, "app/a@1.0.1", &legacy));
    // --unencrypted writes today's format.
    let plain = s.path("plain.key");
    ok(
        &s,
        Some(PASS),
        &["key", "gen", "--unencrypted", "--out", p(&plain)],
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&plain).unwrap()).unwrap();
    assert_eq!(v["keytype"], "ed25519");
    assert_eq!(v["keyval"]["private"].as_str().unwrap().len(), 64);
}

#[test]
fn encrypted_keys_round_trip_with_openssl_pkcs8() {
    let s = Server::start();
    // openssl decrypts what arca wrote, and finds the public key of its .pub.
    let k = encrypted_key(&s, "arca-made", PASS);
    assert_eq!(openssl_public_hex(&k, Some(PASS)), pub_hex(&k));

    // arca reads a key that openssl encrypted (PBES2, scrypt, AES-256-CBC), and signs with it.
    let plain = s.path("openssl.pem");
    let genpkey = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out", p(&plain)])
        .output()
        .unwrap();
    assert!(genpkey.status.success());
    let enc = s.path("openssl.key");
    let topk8 = Command::new("openssl")
        .args([
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-scrypt",
            "-in",
            p(&plain),
        ])
        .args(["-out", p(&enc), "-passout", &format!("pass:{PASS}")])
        .output()
        .unwrap();
    assert!(
        topk8.status.success(),
        "{}",
        String::from_utf8_lossy(&topk8.stderr)
    );
    let public = openssl_public_hex(&plain, None);
    std::fs::write(
        format!("{}.pub", enc.display()),
        format!(r#"{{"keytype":"ed25519","scheme":"ed25519","keyval":{{"public":"{public}"}}}}"#),
    )
    .unwrap();
    assert_eq!(
        ok(&s, Some(PASS), &["key", "id", p(&enc)]),
        ok(&s, None, &["key", "id", &format!("{}.pub", enc.display())])
    );
    add_key(&s, &enc, "builder", "app/*", &s.root_key(), None);
    let f = s.file("o.bin", 700, 4);
    ok(&s, Some(PASS), &push_args(&f, "app/o@1.0.0", &enc));
    // The unencrypted PKCS#8 that openssl writes is read as well.
    assert_eq!(
        ok(&s, None, &["key", "id", p(&plain)]),
        ok(&s, Some(PASS), &["key", "id", p(&enc)])
    );
}

#[test]
fn key_encrypt_converts_a_legacy_key_which_then_signs() {
    let s = Server::start();
    let builder = s.builder("builder", "app/*");
    let id = ok(&s, None, &["key", "id", p(&builder)]);
    let pw = s.path("pass");
    std::fs::write(&pw, format!("{PASS}\n")).unwrap();
    let out = ok(
        &s,
        None,
        &["key", "encrypt", p(&builder), "--passphrase-file", p(&pw)],
    );
    assert_eq!(out, id, "key encrypt prints the key id");
    assert!(
        std::fs::read_to_string(&builder)
            .unwrap()
            .starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&builder).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(ok(&s, Some(PASS), &["key", "id", p(&builder)]), id);
    // Nothing is left beside it but the .pub.
    let mut names: Vec<String> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("builder.key"))
        .collect();
    names.sort();
    assert_eq!(names, ["builder.key", "builder.key.pub"]);

    let f = s.file("a.bin", 900, 5);
    let before = s.state();
    let line = fails(&s, None, &push_args(&f, "app/a@1.0.0", &builder));
    assert!(
        line.contains("is encrypted") && line.contains("ARCA_KEY_PASSPHRASE"),
        "{line}"
    );
    assert_eq!(s.state(), before);
    ok(&s, Some(PASS), &push_args(&f, "app/a@1.0.0", &builder));
    // Encrypting it again is refused.
    let line = fails(&s, Some(PASS), &["key", "encrypt", p(&builder)]);
    assert!(line.contains("already encrypted"), "{line}");
}

#[test]
fn key_gen_without_a_terminal_or_a_passphrase_is_refused_in_one_line() {
    let s = Server::start();
    let k = s.path("k.key");
    let line = fails(&s, None, &["key", "gen", "--out", p(&k)]);
    for way in ["--passphrase-file", "ARCA_KEY_PASSPHRASE", "--unencrypted"] {
        assert!(line.contains(way), "{way} not named: {line}");
    }
    assert!(!k.exists() && !s.path("k.key.pub").exists());
    // `arca key encrypt` the same.
    let plain = s.key("plain");
    let before = std::fs::read(&plain).unwrap();
    let line = fails(&s, None, &["key", "encrypt", p(&plain)]);
    assert!(line.contains("ARCA_KEY_PASSPHRASE"), "{line}");
    assert_eq!(std::fs::read(&plain).unwrap(), before);
}
