//! The end-to-end path: push through the real binary and server, pull it back verified, and
//! python-tuf's reference client accepting the same channel.

use crate::common;

use common::Server;

#[test]
fn push_then_pull_gives_identical_bytes() {
    let s = Server::start();
    let key = s.builder("builder", "app/*");
    let file = s.file("web-1.0.tar.gz", 3 * 1024 * 1024 + 17, 1);
    let out = s.push(&file, "app/web", "1.0.0", &key);
    assert!(out.contains("pushed app/web@1.0.0"), "{out}");

    let dir = s.path("out");
    let msg = s.pull_ok("app/web", "dev", &dir, &s.path("state"));
    assert!(msg.contains("verified app/web@1.0.0"), "{msg}");
    assert_eq!(
        std::fs::read(dir.join("web-1.0.tar.gz")).unwrap(),
        std::fs::read(&file).unwrap()
    );
    assert_eq!(common::list_files(&dir), vec!["web-1.0.tar.gz".to_string()]);
}

#[test]
fn python_tuf_verifies_and_downloads_the_release() {
    let s = Server::start();
    let key = s.builder("builder", "**");
    let file = s.file("tool.bin", 200_000, 2);
    s.push(&file, "tools/tool", "2.1.0", &key);
    let out = s.path("py");
    let (ok, log) = s.python_tuf("dev", "tools/tool/tool.bin", &out, &[]);
    assert!(ok, "python-tuf refused arca's metadata:\n{log}");
    assert!(log.contains("consistent_snapshot=True"), "{log}");
    let got = std::fs::read(out.join("tools%2Ftool%2Ftool.bin")).unwrap();
    assert_eq!(got, std::fs::read(&file).unwrap());
}

#[test]
fn pushing_the_same_bytes_again_is_a_no_op() {
    let s = Server::start();
    let key = s.builder("builder", "app/*");
    let file = s.file("a.bin", 10_000, 3);
    s.push(&file, "app/a", "1", &key);
    let before = s.state();
    let again = s.push(&file, "app/a", "1", &key);
    assert!(again.contains("already present"), "{again}");
    assert_eq!(before, s.state());
}

/// `arca tuf-client` on `s`'s dev channel with a metadata directory of its own.
struct TufClient<'a> {
    s: &'a Server,
    md: std::path::PathBuf,
    meta_url: String,
}

impl<'a> TufClient<'a> {
    /// Initialised from the server's pinned root.
    fn init(s: &'a Server) -> TufClient<'a> {
        let md = s.path("md");
        s.ok(&[
            "tuf-client",
            "--metadata-dir",
            md.to_str().unwrap(),
            "init",
            s.root_json().to_str().unwrap(),
        ]);
        let meta_url = format!("{}/tuf/dev/metadata/", s.url);
        TufClient { s, md, meta_url }
    }

    /// `arca tuf-client --metadata-url .. --metadata-dir .. ARGS`.
    fn run(&self, args: &[&str]) -> std::process::Output {
        self.s
            .arca()
            .args([
                "tuf-client",
                "--metadata-url",
                &self.meta_url,
                "--metadata-dir",
            ])
            .arg(&self.md)
            .args(args)
            .output()
            .unwrap()
    }

    /// `download` of target `name` from `base` into `dir`.
    fn download(&self, name: &str, base: &str, dir: &std::path::Path) -> std::process::Output {
        let dir = dir.to_str().unwrap();
        self.run(&[
            "--target-name",
            name,
            "--target-base-url",
            base,
            "--target-dir",
            dir,
            "download",
        ])
    }
}

#[test]
fn tuf_client_protocol_init_refresh_download() {
    let s = Server::start();
    let key = s.builder("builder", "**");
    let file = s.file("x.bin", 5000, 4);
    s.push(&file, "x", "1", &key);
    let td = s.path("td");
    let targets_url = format!("{}/tuf/dev/targets/", s.url);
    let client = TufClient::init(&s);
    assert!(client.run(&["refresh"]).status.success());
    let out = client.download("x/x.bin", &targets_url, &td);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read(td.join("x%2Fx.bin")).unwrap(),
        std::fs::read(&file).unwrap()
    );
    // The target is there and verifies: downloading it again fetches nothing, so it succeeds
    // with a target URL where nothing listens; once its bytes changed it must be fetched.
    let nowhere = "http://127.0.0.1:1/";
    let out = client.download("x/x.bin", nowhere, &td);
    assert!(out.status.success(), "{out:?}");
    let mut changed = std::fs::read(&file).unwrap();
    changed[0] ^= 1;
    std::fs::write(td.join("x%2Fx.bin"), &changed).unwrap();
    assert_eq!(
        client.download("x/x.bin", nowhere, &td).status.code(),
        Some(1)
    );
    assert!(
        client
            .download("x/x.bin", &targets_url, &td)
            .status
            .success()
    );
    assert_eq!(
        std::fs::read(td.join("x%2Fx.bin")).unwrap(),
        std::fs::read(&file).unwrap()
    );
    // A target that is not listed fails with exit 1.
    assert_eq!(
        client.download("nope", &targets_url, &td).status.code(),
        Some(1)
    );
}

/// A target is served at both consistent-snapshot paths: the hash before the file name
/// (python-tuf's, `name/HASH.file`) and before the whole target path (tough's,
/// `HASH.name/file`); a hash that is not the target's finds nothing either way.
#[test]
fn a_target_is_served_with_the_hash_before_its_file_name_or_before_its_path() {
    let s = Server::start();
    let key = s.builder("builder", "app/*");
    let file = s.file("t.bin", 3000, 5);
    s.push(&file, "app/t", "1.0.0", &key);
    let bytes = std::fs::read(&file).unwrap();
    let sha = arca::tuf::metadata::sha256_hex(&bytes);
    let base = format!("{}/tuf/dev/targets", s.url);
    for path in [format!("app/t/{sha}.t.bin"), format!("{sha}.app/t/t.bin")] {
        let (code, body) = crate::tuf_repo::get(&format!("{base}/{path}"));
        assert_eq!(code, 200, "{path}: {}", String::from_utf8_lossy(&body));
        assert_eq!(body, bytes, "{path}");
    }
    let other = "0".repeat(64);
    for path in [
        format!("app/t/{other}.t.bin"),
        format!("{other}.app/t/t.bin"),
    ] {
        let (code, body) = crate::tuf_repo::get(&format!("{base}/{path}"));
        assert_eq!(code, 404, "{path}");
        assert!(
            String::from_utf8_lossy(&body).contains("no_target"),
            "{path}"
        );
    }
}

/// What a refresh does when the repository answers a version the client already trusts, as
/// python-tuf's ngclient does (TUF 5.4.3.2, 5.5.3): a timestamp of the same version with other
/// content is discarded, the trusted one kept; a snapshot (or targets) of the version the
/// timestamp names is not fetched again, so what the mirror now holds under that name is
/// never read.
#[test]
fn a_refresh_keeps_the_versions_it_already_trusts() {
    let s = Server::start_tamperable();
    let key = s.builder("builder", "app/*");
    s.push(&s.file("k.bin", 1000, 6), "app/k", "1.0.0", &key);
    let client = TufClient::init(&s);
    let refresh = || client.run(&["refresh"]);
    assert!(refresh().status.success());
    let trusted = |role: &str| std::fs::read(client.md.join(format!("{role}.json"))).unwrap();
    let (timestamp, snapshot) = (trusted("timestamp"), trusted("snapshot"));

    // The same timestamp version, re-signed by the online key with another expiry.
    let (version, body) = common::latest_meta(&s, "dev", "timestamp");
    let env = arca::tuf::metadata::Envelope::from_slice("timestamp", &body).unwrap();
    let mut signed = env.signed.clone();
    signed["expires"] = serde_json::Value::from("2099-01-01T00:00:00Z");
    let online = common::online_key(&s, "dev");
    let other = arca::tuf::metadata::Envelope::sign(&signed, &[&online]).to_bytes();
    common::set_meta_body(&s, "dev", "timestamp", version, &other);
    // The snapshot it names, replaced by bytes that verify nothing.
    let (snap_version, _) = common::latest_meta(&s, "dev", "snapshot");
    common::set_meta_body(
        &s,
        "dev",
        "snapshot",
        snap_version,
        b"{\"signed\": {}, \"signatures\": []}",
    );

    let out = refresh();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        trusted("timestamp"),
        timestamp,
        "the trusted timestamp was replaced"
    );
    assert_eq!(
        trusted("snapshot"),
        snapshot,
        "the trusted snapshot was replaced"
    );
}
