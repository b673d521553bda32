//! Keys in hardware (docs/key-management.md, "Keys in hardware (PKCS#11)"): every `--key` and
//! `--sign` takes a `pkcs11:` URI; the key is opened on its token and signs there. Tested
//! against SoftHSM 2 (Debian's softhsm2, installed by scripts/test-env.sh), each test with its
//! own token directory and SOFTHSM2_CONF in its temporary directory, never the system's.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Server, failure_line};

const PIN: &str = "246810";
const SO_PIN: &str = "13579";
const LABEL: &str = "arca-test";

use crate::common::p;

/// SoftHSM's PKCS#11 module: where Debian puts it, else wherever `dpkg -L` says. Fails loudly
/// when it is not installed (tests never skip silently).
fn softhsm_module() -> PathBuf {
    let default = PathBuf::from("/usr/lib/softhsm/libsofthsm2.so");
    if default.exists() {
        return default;
    }
    let listed = Command::new("dpkg")
        .args(["-L", "softhsm2", "libsofthsm2"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    listed
        .lines()
        .find(|l| l.ends_with("/libsofthsm2.so"))
        .map(PathBuf::from)
        .expect("SoftHSM is not installed: run scripts/test-env.sh (Debian package softhsm2)")
}

/// A server whose clients see a fresh SoftHSM token `LABEL` (user PIN `PIN`) of their own and
/// the module in ARCA_PKCS11_MODULE.
fn server_with_token() -> Server {
    let mut s = Server::start();
    let dir = s.path("softhsm");
    std::fs::create_dir_all(dir.join("tokens")).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.join("tokens").display()
        ),
    )
    .unwrap();
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args(["--init-token", "--free", "--label", LABEL])
        .args(["--so-pin", SO_PIN, "--pin", PIN])
        .output()
        .expect("softhsm2-util is installed (scripts/test-env.sh)");
    assert!(
        out.status.success(),
        "softhsm2-util --init-token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.set_client_env("SOFTHSM2_CONF", p(&conf));
    s.set_client_env("ARCA_PKCS11_MODULE", p(&softhsm_module()));
    s
}

/// The URI of key `object` on the test token (no PIN in it).
fn uri(object: &str) -> String {
    format!("pkcs11:token={LABEL};object={object}")
}

/// `arca ARGS` with ARCA_PKCS11_PIN set to `pin` (or removed); no terminal.
fn run(s: &Server, pin: Option<&str>, args: &[&str]) -> Output {
    let mut c = s.arca();
    c.env_remove("ARCA_KEY_PASSPHRASE");
    match pin {
        Some(v) => c.env("ARCA_PKCS11_PIN", v),
        None => c.env_remove("ARCA_PKCS11_PIN"),
    };
    c.args(args).output().unwrap()
}

fn ok(s: &Server, pin: Option<&str>, args: &[&str]) -> String {
    let out = run(s, pin, args);
    assert!(
        out.status.success(),
        "arca {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail with exit status `code` and one error line; returns stderr.
fn fails(s: &Server, pin: Option<&str>, code: i32, args: &[&str]) -> String {
    let out = run(s, pin, args);
    let line = failure_line(args, &out);
    assert_eq!(out.status.code(), Some(code), "arca {args:?}: {line}");
    line
}

/// Generates key `object` on the token; returns the path of its public key file.
fn token_key(s: &Server, object: &str) -> PathBuf {
    let public = s.path(&format!("{object}.pub"));
    let out = ok(
        s,
        Some(PIN),
        &["key", "gen", "--out", &uri(object), "--pub", p(&public)],
    );
    let id = out.trim();
    assert_eq!(id.len(), 64, "{out}");
    // The key id printed is the public key file's, and the token's own public key object.
    assert_eq!(ok(s, None, &["key", "id", p(&public)]).trim(), id);
    assert_eq!(ok(s, None, &["key", "id", &uri(object)]).trim(), id);
    public
}

fn add_key(s: &Server, public: &Path, role: &str, scope: &str, sign: &[&str]) {
    let mut args = vec![
        "trust",
        "add-key",
        p(public),
        "--role",
        role,
        "--scope",
        scope,
    ];
    for k in sign {
        args.extend(["--sign", k]);
    }
    ok(s, Some(PIN), &args);
}

fn root_versions(s: &Server, channel: &str) -> Vec<i64> {
    let c = s.db();
    c.all(
        "SELECT version FROM tuf_metadata WHERE channel = ?1 AND role = 'root' ORDER BY version",
        params![channel],
    )
}

/// Every audit entry, whatever its outcome.
fn audit_rows(s: &Server) -> i64 {
    s.db().one("SELECT COUNT(*) FROM audit", params![])
}

/// The current trust document as served: (version, the key ids that signed it).
fn trust(s: &Server) -> (u64, Vec<String>) {
    let v: serde_json::Value =
        serde_json::from_str(&ok(s, None, &["trust", "show", "--json"])).unwrap();
    let mut signers: Vec<String> = v["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["keyid"].as_str().unwrap().to_owned())
        .collect();
    signers.sort();
    (v["signed"]["version"].as_u64().unwrap(), signers)
}

fn trust_version(s: &Server) -> u64 {
    trust(s).0
}

fn key_id(s: &Server, key: &Path) -> String {
    ok(s, None, &["key", "id", p(key)]).trim().to_owned()
}

#[test]
fn root_keys_on_the_token_rotate_the_root_and_sign_later_changes_and_clients_follow() {
    let s = server_with_token();
    let builder = s.builder("builder", "app/*");
    let f1 = s.file("a.bin", 10_000, 1);
    s.push(&f1, "app/a", "1", &builder);
    // Clients pinned to the first root.json, with state from before the rotation.
    let state = s.path("state");
    s.pull_ok("app/a", "dev", &s.path("o1"), &state);
    let py_state = s.path("py-state");
    let (good, log) = s.python_tuf(
        "dev",
        "app/a/a.bin",
        &s.path("py1"),
        &["--metadata-dir", p(&py_state)],
    );
    assert!(good, "{log}");

    // Two root keys made on the token; the development root key (a file) rotates to them,
    // signing with the old key and with the new threshold, on the token.
    let h1 = token_key(&s, "root-1");
    let h2 = token_key(&s, "root-2");
    let root_file = s.root_key();
    let (u1, u2) = (uri("root-1"), uri("root-2"));
    ok(
        &s,
        Some(PIN),
        &[
            "trust",
            "rotate-root",
            "--key",
            p(&h1),
            "--key",
            p(&h2),
            "--threshold",
            "2",
            "--sign",
            p(&root_file),
            "--sign",
            &u1,
            "--sign",
            &u2,
        ],
    );

    // The old root key file signs nothing any more; the token keys alone do.
    let attestor = s.key("attestor");
    let attestor_pub = format!("{}.pub", attestor.display());
    let line = fails(
        &s,
        Some(PIN),
        1,
        &[
            "trust",
            "add-key",
            &attestor_pub,
            "--role",
            "attestor",
            "--sign",
            p(&root_file),
        ],
    );
    assert!(line.contains("root"), "{line}");
    let before = trust_version(&s);
    add_key(
        &s,
        Path::new(&attestor_pub),
        "attestor",
        "app/*",
        &[&u1, &u2],
    );
    let (version, signers) = trust(&s);
    assert_eq!(version, before + 1);
    let mut hsm = vec![key_id(&s, &h1), key_id(&s, &h2)];
    hsm.sort();
    assert_eq!(signers, hsm, "the change is signed by the token keys alone");

    // A second rotation signed only on the token: to a third token key, threshold 1, signed
    // by the old threshold (root-1, root-2) and the new key (root-3).
    let h3 = token_key(&s, "root-3");
    let u3 = uri("root-3");
    ok(
        &s,
        Some(PIN),
        &[
            "trust",
            "rotate-root",
            "--key",
            p(&h3),
            "--threshold",
            "1",
            "--sign",
            &u1,
            "--sign",
            &u2,
            "--sign",
            &u3,
        ],
    );
    // The channel's online key rotates under the token root key too (the TUF root signed on
    // the token).
    ok(
        &s,
        Some(PIN),
        &["trust", "rotate-online", "--channel", "dev", "--sign", &u3],
    );

    let f2 = s.file("b.bin", 12_000, 2);
    s.push(&f2, "app/b", "1", &builder);
    // arca's client follows the chain from its old state and from the pinned root.json alone.
    s.pull_ok("app/b", "dev", &s.path("o2"), &state);
    s.pull_ok("app/b", "dev", &s.path("o3"), &s.path("fresh"));
    assert_eq!(
        std::fs::read(s.path("o3/b.bin")).unwrap(),
        std::fs::read(&f2).unwrap()
    );
    // ... and so does python-tuf, up to the newest root.
    let newest = *root_versions(&s, "dev").last().unwrap();
    assert!(newest >= 4, "dev roots: {:?}", root_versions(&s, "dev"));
    let (good, log) = s.python_tuf(
        "dev",
        "app/b/b.bin",
        &s.path("py2"),
        &["--metadata-dir", p(&py_state)],
    );
    assert!(good && log.contains(&format!("root={newest}")), "{log}");
}

#[test]
fn an_approval_signed_on_the_token_lets_the_promotion_through_and_verifies_on_clients() {
    let s = server_with_token();
    let builder = s.builder("builder", "app/*");
    let approver = token_key(&s, "approver");
    add_key(&s, &approver, "approver", "prod", &[p(&s.root_key())]);
    let f = s.file("hello.txt", 1000, 3);
    s.push(&f, "app/hello", "1.0.0", &builder);
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
    // Without the approval prod refuses it.
    fails(
        &s,
        None,
        1,
        &[
            "promote",
            "app/hello@1.0.0",
            "--to",
            "prod",
            "--reason",
            "t",
        ],
    );
    let out = ok(
        &s,
        Some(PIN),
        &[
            "approve",
            "app/hello@1.0.0",
            "--channel",
            "prod",
            "--key",
            &uri("approver"),
        ],
    );
    let approver_id = ok(&s, None, &["key", "id", p(&approver)]);
    assert!(out.contains(approver_id.trim()), "{out}");
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
    let dir = s.path("out");
    s.pull_ok("app/hello", "prod", &dir, &s.path("state"));
    assert_eq!(
        std::fs::read(dir.join("hello.txt")).unwrap(),
        std::fs::read(&f).unwrap()
    );
    let (good, log) = s.python_tuf(
        "prod",
        "app/hello/hello.txt",
        &s.path("py"),
        &["--metadata-dir", p(&s.path("py-state"))],
    );
    assert!(good, "{log}");
}

#[test]
fn a_build_and_an_attestation_signed_on_the_token_are_verified_by_the_server() {
    let s = server_with_token();
    let builder = token_key(&s, "builder");
    add_key(&s, &builder, "builder", "app/*", &[p(&s.root_key())]);
    let attestor = token_key(&s, "attestor");
    add_key(&s, &attestor, "attestor", "app/*", &[p(&s.root_key())]);

    // The PIN from the URI's pin-source file (no ARCA_PKCS11_PIN).
    let pin_file = s.path("pin");
    std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
    let f = s.file("tool.bin", 5000, 4);
    let key = format!("{}?pin-source={}", uri("builder"), p(&pin_file));
    let out = ok(&s, None, &["push", p(&f), "app/tool@2.0.0", "--key", &key]);
    assert!(out.contains("pushed app/tool@2.0.0"), "{out}");
    let dir = s.path("out");
    s.pull_ok("app/tool", "dev", &dir, &s.path("state"));
    assert_eq!(
        std::fs::read(dir.join("tool.bin")).unwrap(),
        std::fs::read(&f).unwrap()
    );

    // The PIN from --passphrase-file, for an attestation.
    let out = ok(
        &s,
        None,
        &[
            "attest",
            "app/tool@2.0.0",
            "--type",
            "https://example.com/tests/v1",
            "--key",
            &uri("attestor"),
            "--passphrase-file",
            p(&pin_file),
        ],
    );
    let attestor_id = ok(&s, None, &["key", "id", p(&attestor)]);
    assert!(out.contains(attestor_id.trim()), "{out}");
}

#[test]
fn a_key_imported_with_softhsm2_util_is_read_and_signs_as_its_file_did() {
    let s = server_with_token();
    // An ed25519 key arca wrote unencrypted, converted to PEM by openssl and imported.
    let file_key = s.key("imported");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&file_key).unwrap()).unwrap();
    let seed = hex::decode(v["keyval"]["private"].as_str().unwrap()).unwrap();
    // RFC 8410 PrivateKeyInfo: the fixed prefix, then the 32-byte seed.
    let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
    der.extend_from_slice(&seed);
    let der_path = s.path("imported.der");
    std::fs::write(&der_path, &der).unwrap();
    let pem = s.path("imported.pem");
    let o = Command::new("openssl")
        .args([
            "pkey",
            "-inform",
            "DER",
            "-in",
            p(&der_path),
            "-out",
            p(&pem),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let conf = s.path("softhsm/softhsm2.conf");
    let o = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args(["--import", p(&pem), "--token", LABEL, "--label", "imported"])
        .args(["--id", "a1b2", "--pin", PIN])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // `arca key pub` by id (hex, %-escaped) gives the file's own public key.
    let by_id = "pkcs11:token=arca-test;id=%a1%B2";
    let printed = ok(&s, None, &["key", "pub", by_id]);
    let file_pub = std::fs::read_to_string(format!("{}.pub", file_key.display())).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&printed).unwrap(),
        serde_json::from_str::<serde_json::Value>(&file_pub).unwrap()
    );
    let written = s.path("imported-token.pub");
    ok(&s, None, &["key", "pub", by_id, "--out", p(&written)]);
    // Never overwritten.
    let line = fails(&s, None, 1, &["key", "pub", by_id, "--out", p(&written)]);
    assert!(line.contains("never overwritten"), "{line}");

    // Builds signed on the token verify against the key the file added.
    add_key(&s, &written, "builder", "app/*", &[p(&s.root_key())]);
    let f = s.file("x.bin", 3000, 5);
    ok(
        &s,
        Some(PIN),
        &[
            "push",
            p(&f),
            "app/x@1",
            "--key",
            &format!("{by_id};object=imported"),
        ],
    );
    // ... as those signed with the file itself do.
    s.push(&s.file("y.bin", 3000, 6), "app/y", "1", &file_key);
}

#[test]
fn a_wrong_pin_signs_nothing_and_leaves_the_server_unchanged() {
    let s = server_with_token();
    let h = token_key(&s, "root-2");
    let builder_pub = token_key(&s, "builder");
    add_key(&s, &builder_pub, "builder", "app/*", &[p(&s.root_key())]);
    let approver_pub = token_key(&s, "approver");
    add_key(&s, &approver_pub, "approver", "prod", &[p(&s.root_key())]);
    let f = s.file("hello.txt", 1000, 7);
    let state = s.state();
    let audit = audit_rows(&s);
    let version = trust_version(&s);

    // A root rotation signed with the root key file AND a token key: the wrong PIN stops it
    // before the file key signs anything.
    let line = fails(
        &s,
        Some("000000"),
        1,
        &[
            "trust",
            "rotate-root",
            "--key",
            p(&h),
            "--threshold",
            "1",
            "--sign",
            p(&s.root_key()),
            "--sign",
            &uri("root-2"),
        ],
    );
    assert!(
        line.contains(&format!("token \"{LABEL}\" refused the PIN"))
            && line.contains("CKR_PIN_INCORRECT"),
        "{line}"
    );
    // A build, an approval, a policy change: all refused the same way, in one line.
    for args in [
        vec!["push", p(&f), "app/hello@1.0.0", "--key"],
        vec!["approve", "app/hello@1.0.0", "--channel", "prod", "--key"],
    ] {
        let key = if args[0] == "push" {
            uri("builder")
        } else {
            uri("approver")
        };
        let mut args = args.clone();
        args.push(&key);
        let line = fails(&s, Some("000000"), 1, &args);
        assert!(line.contains("CKR_PIN_INCORRECT"), "{line}");
    }
    // The PIN in the URI wins over ARCA_PKCS11_PIN (here: the right one in the environment).
    let wrong_in_uri = format!("{}?pin-value=999999", uri("root-2"));
    let builder_id = ok(&s, None, &["key", "id", p(&builder_pub)]);
    let line = fails(
        &s,
        Some(PIN),
        1,
        &[
            "trust",
            "revoke",
            builder_id.trim(),
            "--sign",
            &wrong_in_uri,
        ],
    );
    assert!(
        line.contains("CKR_PIN_INCORRECT") && !line.contains("999999"),
        "{line}"
    );

    // A change file for others to sign is not written, and one being signed stays as it was.
    let change = s.path("change.json");
    let mut propose = vec![
        "trust",
        "rotate-root",
        "--key",
        p(&h),
        "--threshold",
        "1",
        "--out",
        p(&change),
        "--sign",
    ];
    let u2 = uri("root-2");
    propose.push(&u2);
    fails(&s, Some("000000"), 1, &propose);
    assert!(!change.exists());
    propose.truncate(propose.len() - 2);
    ok(&s, None, &propose);
    let proposed = std::fs::read(&change).unwrap();
    fails(
        &s,
        Some("000000"),
        1,
        &["trust", "sign", p(&change), "--key", &uri("root-2")],
    );
    assert_eq!(std::fs::read(&change).unwrap(), proposed);

    // No PIN at all and no terminal: refused, naming where a PIN can come from.
    let line = fails(
        &s,
        None,
        1,
        &["push", p(&f), "app/hello@1.0.0", "--key", &uri("builder")],
    );
    assert!(
        line.contains("ARCA_PKCS11_PIN")
            && line.contains("--passphrase-file")
            && line.contains("pin-source"),
        "{line}"
    );
    // No module: refused, naming both ways to give one.
    let out = s
        .arca()
        .env("ARCA_PKCS11_PIN", PIN)
        .env_remove("ARCA_PKCS11_MODULE")
        .args(["push", p(&f), "app/hello@1.0.0", "--key", &uri("builder")])
        .output()
        .unwrap();
    let line = failure_line(&["push"], &out);
    assert!(
        line.contains("module-path") && line.contains("ARCA_PKCS11_MODULE"),
        "{line}"
    );
    // An unknown URI attribute is refused by name.
    let line = fails(
        &s,
        Some(PIN),
        1,
        &[
            "push",
            p(&f),
            "app/hello@1.0.0",
            "--key",
            "pkcs11:token=arca-test;objekt=builder",
        ],
    );
    assert!(line.contains("objekt"), "{line}");

    assert_eq!(s.state(), state, "a refused signature changed the server");
    assert_eq!(
        audit_rows(&s),
        audit,
        "a refused signature reached the server"
    );
    assert_eq!(trust_version(&s), version);
    // The right PIN still works afterwards (the token did not lock).
    ok(
        &s,
        Some(PIN),
        &["push", p(&f), "app/hello@1.0.0", "--key", &uri("builder")],
    );
}
