//! TLS on the listener: the configured certificate is served over HTTPS, and a certificate
//! replaced on disk is served without a restart. Certificates are made with `openssl`.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Server, wait_until};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA (`ca.pem`, `ca.key`) in `dir`.
fn make_ca(dir: &Path) {
    make_named_ca(dir, "ca", "arca test CA");
}

/// A test CA `name.pem` (key `name.key`) in `dir`, with common name `cn`.
fn make_named_ca(dir: &Path, name: &str, cn: &str) {
    let (key, pem, subj) = (
        format!("{name}.key"),
        format!("{name}.pem"),
        format!("/CN={cn}"),
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &pem,
            "-subj",
            &subj,
            "-days",
            "2",
        ],
    );
}

/// A certificate for 127.0.0.1 and localhost signed by the CA of `dir`, with `serial`,
/// written as `name.pem` (its key `name.key`, reused if it exists).
fn make_cert(dir: &Path, name: &str, serial: &str) -> (PathBuf, PathBuf) {
    make_signed(
        dir,
        "ca",
        name,
        serial,
        "/CN=localhost",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
}

/// An agent's client certificate signed by CA `ca` of `dir`, written as `name.pem` (key
/// `name.key`): subject `subj`, and `san` (e.g. `DNS:web-1`) unless empty.
fn make_client_cert(dir: &Path, ca: &str, name: &str, subj: &str, san: &str) -> (PathBuf, PathBuf) {
    let san = if san.is_empty() {
        String::new()
    } else {
        format!("subjectAltName={san}\n")
    };
    make_signed(
        dir,
        ca,
        name,
        "0x2001",
        subj,
        &format!("{san}extendedKeyUsage=clientAuth\n"),
    )
}

/// A leaf certificate `name.pem` (key `name.key`, reused if it exists) signed by CA `ca` of
/// `dir`, with `serial`, subject `subj` and the extensions `ext` (lines of an openssl
/// extension file) beside those of every end-entity certificate.
fn make_signed(
    dir: &Path,
    ca: &str,
    name: &str,
    serial: &str,
    subj: &str,
    ext: &str,
) -> (PathBuf, PathBuf) {
    let (key, csr, pem, cnf) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.tmp"),
        format!("{name}.cnf"),
    );
    if !dir.join(&key).exists() {
        openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &key,
            ],
        );
    }
    openssl(
        dir,
        &["req", "-new", "-key", &key, "-out", &csr, "-subj", subj],
    );
    std::fs::write(
        dir.join(&cnf),
        format!(
            "{ext}basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n\
             subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
        ),
    )
    .unwrap();
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-set_serial",
            serial,
            "-days",
            "2",
            "-extfile",
            &cnf,
            "-out",
            &pem,
        ],
    );
    // Swapped in whole, as a renewal would.
    std::fs::rename(dir.join(&pem), dir.join(format!("{name}.pem"))).unwrap();
    (dir.join(format!("{name}.pem")), dir.join(key))
}

fn tls_config(cert: &Path, key: &Path) -> String {
    format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    )
}

/// `curl URL` trusting `ca` (or the system roots): its exit status and body.
fn curl(url: &str, ca: Option<&Path>) -> (i32, String) {
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "10"]);
    if let Some(ca) = ca {
        c.arg("--cacert").arg(ca);
    }
    let out = c.arg(url).output().expect("run curl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The serial number (hex, as openssl prints it) of the certificate the server presents.
fn served_serial(url: &str) -> String {
    let addr = url.trim_start_matches("https://");
    let out = Command::new("openssl")
        .args(["s_client", "-connect", addr, "-showcerts"])
        .stdin(Stdio::null())
        .output()
        .expect("run openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let Some(start) = text.find("-----BEGIN CERTIFICATE-----") else {
        return String::new();
    };
    let end = text[start..].find("-----END CERTIFICATE-----").unwrap() + start + 25;
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    x509.stdin
        .take()
        .unwrap()
        .write_all(&text.as_bytes()[start..end])
        .unwrap();
    let out = x509.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_owned()
}

#[test]
fn the_server_speaks_https_with_the_configured_certificate() {
    let certs = tempfile::tempdir().unwrap();
    make_ca(certs.path());
    let (cert, key) = make_cert(certs.path(), "server", "0x1001");
    let s = Server::start_with(Some(&tls_config(&cert, &key)), &[]);
    assert!(s.url.starts_with("https://127.0.0.1:"), "{}", s.url);

    let ca = certs.path().join("ca.pem");
    let (code, body) = curl(&format!("{}/healthz", s.url), Some(&ca));
    assert_eq!(code, 0, "curl trusting the CA: {body}");
    assert!(body.contains("ok"), "{body}");
    // Without the CA the certificate is not trusted (curl: 60, peer certificate problem).
    let (code, _) = curl(&format!("{}/healthz", s.url), None);
    assert_eq!(code, 60);
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = s.url.replacen("https://", "http://", 1);
    let (code, body) = curl(&format!("{plain}/healthz"), None);
    assert_ne!(code, 0, "plain HTTP was answered: {body}");
    assert_eq!(served_serial(&s.url), "1001");
}

#[test]
fn a_certificate_replaced_on_disk_is_served_without_a_restart() {
    let certs = tempfile::tempdir().unwrap();
    make_ca(certs.path());
    let (cert, key) = make_cert(certs.path(), "server", "0x1001");
    let s = Server::start_with(Some(&tls_config(&cert, &key)), &[]);
    assert_eq!(served_serial(&s.url), "1001");

    // A file that does not parse: the previous certificate stays in service.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || {
            served_serial(&s.url) == "1001"
                && s.log().contains("keeping the previous TLS certificate")
        }),
        "log:\n{}",
        s.log()
    );

    // A renewed certificate (same CA, new serial) is picked up by the next handshakes.
    make_cert(certs.path(), "server", "0x1002");
    assert!(
        wait_until(Duration::from_secs(20), || served_serial(&s.url) == "1002"),
        "still serving {}; log:\n{}",
        served_serial(&s.url),
        s.log()
    );
    let (code, body) = curl(
        &format!("{}/healthz", s.url),
        Some(&certs.path().join("ca.pem")),
    );
    assert_eq!(code, 0, "{body}");
}

#[test]
fn clients_trusting_the_ca_push_pull_and_deploy_over_https_and_others_refuse() {
    let certs = tempfile::tempdir().unwrap();
    make_ca(certs.path());
    let (cert, key) = make_cert(certs.path(), "server", "0x1001");
    let mut s = Server::start_with(Some(&tls_config(&cert, &key)), &[]);
    let ca = certs.path().join("ca.pem");

    // Without the CA: one error line naming the certificate problem, nothing changed.
    let before = s.state();
    let file = s.file("web-1.0.bin", 64 * 1024 + 3, 1);
    let err = s.fails(&["ls", "--channel", "dev"]);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert_eq!(s.state(), before);

    s.set_client_env("ARCA_CA_CERT", ca.to_str().unwrap());
    let key = s.builder("builder", "app/*");
    let out = s.push(&file, "app/web", "1.0.0", &key);
    assert!(out.contains("pushed app/web@1.0.0"), "{out}");
    let dir = s.path("out");
    let msg = s.pull_ok("app/web", "dev", &dir, &s.path("state"));
    assert!(msg.contains("verified app/web@1.0.0"), "{msg}");
    assert_eq!(
        std::fs::read(dir.join("web-1.0.bin")).unwrap(),
        std::fs::read(&file).unwrap()
    );

    // The agent reads ARCA_CA_CERT too (its TUF client and its reports).
    let token = s.reporter_token();
    let adir = s.path("agent");
    let out = s
        .agent_cmd(&token, "dev", "app/web", &adir, "web-1")
        .arg("--once")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        s.ok(&["agents", "--json"]).contains("web-1"),
        "the agent's report did not arrive"
    );

    // --ca-cert works as the flag too; without it (and the variable) a pull refuses.
    let mut plain = s.arca();
    plain
        .env_remove("ARCA_CA_CERT")
        .args(["ls", "--channel", "dev"]);
    let out = plain.output().unwrap();
    assert!(!out.status.success());
    // One line, naming the reason and what to do about it.
    let err = common::failure_line(&["ls"], &out);
    assert!(
        err.contains("not trusted") && err.contains("--ca-cert"),
        "{err}"
    );
    let mut flag = s.arca();
    flag.env_remove("ARCA_CA_CERT")
        .args(["ls", "--channel", "dev", "--ca-cert"])
        .arg(&ca);
    let out = flag.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("app/web"));
}

#[test]
fn python_tuf_verifies_and_downloads_over_https_trusting_the_ca() {
    let certs = tempfile::tempdir().unwrap();
    make_ca(certs.path());
    let (cert, key) = make_cert(certs.path(), "server", "0x1001");
    let mut s = Server::start_with(Some(&tls_config(&cert, &key)), &[]);
    let ca = certs.path().join("ca.pem");
    s.set_client_env("ARCA_CA_CERT", ca.to_str().unwrap());
    let key = s.builder("builder", "**");
    let file = s.file("tool.bin", 200_000, 2);
    s.push(&file, "tools/tool", "2.1.0", &key);

    // Not trusting the CA, python-tuf refuses the server.
    let (ok, log) = s.python_tuf("dev", "tools/tool/tool.bin", &s.path("py0"), &[]);
    assert!(!ok, "python-tuf trusted an unknown CA:\n{log}");
    assert!(log.contains("DownloadError"), "{log}");

    let out = s.path("py");
    // python-tuf 7 fetches with urllib3 and the default SSL context, which reads
    // SSL_CERT_FILE; older ones used requests, which reads REQUESTS_CA_BUNDLE.
    let ca_path = ca.to_str().unwrap();
    let bundle = [("SSL_CERT_FILE", ca_path), ("REQUESTS_CA_BUNDLE", ca_path)];
    let (ok, log) = s.python_tuf_env("dev", "tools/tool/tool.bin", &out, &[], &bundle);
    assert!(ok, "python-tuf over HTTPS:\n{log}");
    let got = std::fs::read(out.join("tools%2Ftool%2Ftool.bin")).unwrap();
    assert_eq!(got, std::fs::read(&file).unwrap());
}

#[test]
fn an_upload_announced_too_large_gets_413_before_100_continue_over_tls() {
    let certs = tempfile::tempdir().unwrap();
    make_ca(certs.path());
    let (cert, key) = make_cert(certs.path(), "server", "0x1001");
    let config = format!("{}[store]\nmax_blob_size = 1000\n", tls_config(&cert, &key));
    let mut s = Server::start_with(Some(&config), &[]);
    let ca = certs.path().join("ca.pem");
    s.set_client_env("ARCA_CA_CERT", ca.to_str().unwrap());
    let signer = common::raw::key_id(&s.builder("builder", "app/*"));
    let body = s.file("big.bin", 1_000_000, 4);
    let out = Command::new("curl")
        // `Expect: 100-continue` is HTTP/1.1's (HTTP/2 is the next test's).
        .args(["-sS", "--http1.1", "--max-time", "20", "--cacert"])
        .arg(&ca)
        .args(["-H", "Expect: 100-continue", "-H"])
        .arg(format!("Authorization: Bearer {}", s.token))
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .args(["-w", "\n%{http_code} %{size_upload}"])
        .arg(format!(
            "{}/api/v1/uploads?name=app/big&version=1.0.0&signer={signer}",
            s.url
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("\"too_large\""), "{text}");
    // Refused from the head alone: 413, and the body was never sent.
    assert!(text.trim_end().ends_with("413 0"), "{text}");
}

#[test]
fn init_tls_writes_a_development_certificate_that_clients_trust_with_ca_cert() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let out = Command::new(common::arca_bin())
        .args(["init", "--tls", "--home"])
        .arg(&home)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cert = home.join("tls/cert.pem");
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        printed.contains(&format!("--ca-cert {}", cert.display())),
        "{printed}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(home.join("tls/key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let toml = std::fs::read_to_string(home.join("arca.toml")).unwrap();
    assert!(toml.contains("[tls]"), "{toml}");

    // Served from that home, the certificate is trusted with --ca-cert alone.
    let mut serve = Command::new(common::arca_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--home"])
        .arg(&home)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    use std::io::BufRead as _;
    std::io::BufReader::new(serve.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("arca listening on ")
        .unwrap_or_default()
        .to_owned();
    let ls = |ca: Option<&Path>| {
        let mut c = Command::new(common::arca_bin());
        c.env_remove("ARCA_CA_CERT")
            .env("HOME", tmp.path())
            .args(["ls", "--server", &url]);
        if let Some(ca) = ca {
            c.arg("--ca-cert").arg(ca);
        }
        c.output().unwrap()
    };
    let trusted = ls(Some(&cert));
    let untrusted = ls(None);
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(url.starts_with("https://127.0.0.1:"), "{line}");
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    assert!(String::from_utf8_lossy(&trusted.stdout).contains("dev"));
    assert!(!untrusted.status.success());
    let err = String::from_utf8_lossy(&untrusted.stderr).into_owned();
    assert!(
        err.starts_with("error: ") && err.contains("certificate"),
        "{err}"
    );
}

/// `curl -sS ARGS URL`: its exit status and stdout.
fn curl_with(args: &[&str], url: &str) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A reqwest client trusting `ca` (offering h2 and http/1.1 by ALPN, as arca's own).
fn client_trusting(ca: &Path) -> reqwest::Client {
    arca::client::install_crypto();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap()
}

#[test]
fn http2_is_negotiated_over_tls_http1_is_still_served_and_plain_http_stays_http1() {
    let certs = tempfile::tempdir().unwrap();
    make_ca(certs.path());
    let (cert, key) = make_cert(certs.path(), "server", "0x1001");
    let mut s = Server::start_with(Some(&tls_config(&cert, &key)), &[]);
    let ca = certs.path().join("ca.pem");
    let ca_s = ca.to_str().unwrap();
    let health = format!("{}/healthz", s.url);
    let (code, out) = curl_with(
        &["--cacert", ca_s, "--http2", "-w", "\n%{http_version}"],
        &health,
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "ok\n\n2", "curl --http2 did not get HTTP/2");
    // A client that offers only http/1.1 by ALPN is served HTTP/1.1.
    let (code, out) = curl_with(
        &["--cacert", ca_s, "--http1.1", "-w", "\n%{http_version}"],
        &health,
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "ok\n\n1.1");

    // Push over TLS (the CLI negotiates h2), then downloads with Range and a 304 over h2,
    // from the HTTP client that arca's commands use.
    s.set_client_env("ARCA_CA_CERT", ca_s);
    let signer = s.builder("builder", "app/*");
    let file = s.file("t.bin", 10_000, 3);
    assert!(
        s.push(&file, "app/t", "1.0.0", &signer)
            .contains("pushed app/t@1.0.0")
    );
    let bytes = std::fs::read(&file).unwrap();
    let target = format!(
        "{}/tuf/dev/targets/app/t/{}.t.bin",
        s.url,
        common::raw::sha256_hex(&bytes)
    );
    let timestamp = format!("{}/tuf/dev/metadata/timestamp.json", s.url);
    // A client of its own that trusts the test CA. Not `arca::client::trust_ca`: that CA is
    // process-wide (first call wins), and all integration tests share one process, so every
    // later `raw::http()` of every test would read this test's deleted `ca.pem`. The CLI
    // commands above and below build arca's own client (from ARCA_CA_CERT, in the child).
    arca::client::install_crypto();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .build()
        .unwrap();
    common::raw::block(async {
        let r = http
            .get(&target)
            .header("range", "bytes=10-19")
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status().as_u16(), 206);
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes 10-19/{}", bytes.len()).as_str()
        );
        assert_eq!(r.bytes().await.unwrap(), bytes[10..20]);
        let r = http.get(&target).send().await.unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.bytes().await.unwrap(), bytes);
        let r = http.get(&timestamp).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let etag = r.headers()["etag"].clone();
        let r = http
            .get(&timestamp)
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status().as_u16(), 304);
        assert!(r.bytes().await.unwrap().is_empty());
    });
    let dir = s.path("out");
    let msg = s.pull_ok("app/t", "dev", &dir, &s.path("state"));
    assert!(msg.contains("verified app/t@1.0.0"), "{msg}");

    // Plain HTTP is HTTP/1.1 only: an h2c upgrade is answered in HTTP/1.1, and HTTP/2 with
    // prior knowledge is not served.
    let plain = Server::start();
    let health = format!("{}/healthz", plain.url);
    let (code, out) = curl_with(&["--http2", "-w", "\n%{http_version}"], &health);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "ok\n\n1.1");
    let (code, out) = curl_with(&["--http2-prior-knowledge"], &health);
    assert_ne!(code, 0, "h2c was served: {out}");
}

/// An upload body of `len` bytes in chunks of up to 64 KiB, counting into `sent` what was
/// taken.
fn counted_body(len: usize, sent: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> reqwest::Body {
    const CHUNK: usize = 64 << 10;
    let stream = futures::stream::iter((0..len.div_ceil(CHUNK)).map(move |i| {
        let n = CHUNK.min(len - i * CHUNK);
        sent.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
        Ok::<_, std::io::Error>(bytes::Bytes::from(vec![7u8; n]))
    }));
    reqwest::Body::wrap_stream(stream)
}

#[test]
fn over_http2_an_upload_announced_too_large_is_refused_from_its_head_unread() {
    // actix-http calls the `Expect: 100-continue` check on HTTP/1.1 only: over HTTP/2 the
    // server makes the same check of every request's head.
    let certs = tempfile::tempdir().unwrap();
    make_ca(certs.path());
    let (cert, key) = make_cert(certs.path(), "server", "0x1001");
    let config = format!("{}[store]\nmax_blob_size = 1000\n", tls_config(&cert, &key));
    let mut s = Server::start_with(Some(&config), &[]);
    let ca = certs.path().join("ca.pem");
    s.set_client_env("ARCA_CA_CERT", ca.to_str().unwrap());
    let signer = common::raw::key_id(&s.builder("builder", "app/*"));
    let before = s.state();
    let http = client_trusting(&certs.path().join("ca.pem"));
    let len = 16 << 20;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = format!(
        "{}/api/v1/uploads?name=app/big&version=1.0.0&signer={signer}",
        s.url
    );
    let (version, answer) = common::raw::block(async {
        let r = http
            .post(&url)
            .bearer_auth(&s.token)
            .header("content-length", len)
            .header("content-type", "application/octet-stream")
            .body(counted_body(len, sent.clone()))
            .send()
            .await
            .unwrap();
        (r.version(), common::raw::answer(r).await)
    });
    assert_eq!(version, reqwest::Version::HTTP_2);
    assert_eq!(
        (answer.status, answer.code.as_str()),
        (413, "too_large"),
        "{answer:?}"
    );
    // The stream was reset once refused: the client sent at most about a flow-control window
    // (1 MiB) of the 16 MiB, and the server stored none of it.
    let sent = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        sent <= 4 << 20,
        "the client sent {sent} bytes of a refused body"
    );
    assert_eq!(s.state(), before);

    // From the head alone, before anything else (the token, the query), as the
    // `Expect: 100-continue` check on HTTP/1.1: a JSON body over its 4 MiB too.
    for (path, len) in [
        (url.as_str(), 2000u64),
        (&*format!("{}/api/v1/trust", s.url), 5 << 20),
    ] {
        let answer = common::raw::block(async {
            let r = http
                .post(path)
                .bearer_auth("arca_0000000000000000_not-a-token")
                .header("content-length", len)
                .body(counted_body(len as usize, Default::default()))
                .send()
                .await
                .unwrap();
            common::raw::answer(r).await
        });
        assert_eq!(
            (answer.status, answer.code.as_str()),
            (413, "too_large"),
            "{path}"
        );
    }
    assert_eq!(s.state(), before);
    assert!(common::list_files(&s.home.join("blobs")).is_empty());
}

#[test]
fn over_http2_an_upload_body_that_goes_silent_is_cut_off() {
    let certs = tempfile::tempdir().unwrap();
    make_ca(certs.path());
    let (cert, key) = make_cert(certs.path(), "server", "0x1001");
    let config = format!(
        "{}[limits]\nbody_idle_timeout = \"1s\"\n",
        tls_config(&cert, &key)
    );
    let mut s = Server::start_with(Some(&config), &[]);
    let ca = certs.path().join("ca.pem");
    s.set_client_env("ARCA_CA_CERT", ca.to_str().unwrap());
    let signer = common::raw::key_id(&s.builder("builder", "app/*"));
    let before = s.state();
    let http = client_trusting(&certs.path().join("ca.pem"));
    let url = format!(
        "{}/api/v1/uploads?name=app/slow&version=1.0.0&signer={signer}",
        s.url
    );
    // 100 bytes of the 1000 announced, then nothing.
    let stream = futures::StreamExt::chain(
        futures::stream::once(async {
            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![1u8; 100]))
        }),
        futures::stream::pending(),
    );
    let (version, answer) = common::raw::block(async {
        let r = http
            .post(&url)
            .bearer_auth(&s.token)
            .header("content-length", 1000)
            .header("content-type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(stream))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap();
        (r.version(), common::raw::answer(r).await)
    });
    assert_eq!(version, reqwest::Version::HTTP_2);
    assert_eq!(
        (answer.status, answer.code.as_str()),
        (408, "body_timeout"),
        "{answer:?}"
    );
    assert!(
        wait_until(Duration::from_secs(10), || s.state() == before
            && common::list_files(&s.home.join("blobs")).is_empty()),
        "the silent upload left something behind"
    );
}

/// Pads the PEM file at `path` with newlines to `size` bytes and sets its modification time
/// to `mtime`: a change the once-a-second look at the files cannot see (only SIGHUP can).
fn disguise(path: &Path, size: usize, mtime: std::time::SystemTime) {
    let mut text = std::fs::read(path).unwrap();
    assert!(
        text.len() <= size,
        "{} is longer than {size}",
        path.display()
    );
    text.resize(size, b'\n');
    std::fs::write(path, &text).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

fn sighup(pid: u32) {
    let st = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn serve_tls_flags_override_the_config_and_sighup_reloads_the_certificate_at_once() {
    let certs = tempfile::tempdir().unwrap();
    make_ca(certs.path());
    let (cert, _) = make_cert(certs.path(), "server", "0x1001");
    let size = 4096;
    let mtime = std::fs::metadata(&cert).unwrap().modified().unwrap();
    disguise(&cert, size, mtime);
    // arca.toml names files that do not exist: the flags (relative to the current
    // directory) win over it.
    let config = "[tls]\ncert = \"missing.pem\"\nkey = \"missing.key\"\n";
    let s = Server::start_serving(
        Some(config),
        &["--tls-cert", "server.pem", "--tls-key", "server.key"],
        Some(certs.path()),
    );
    assert!(s.url.starts_with("https://"), "{}", s.url);
    assert_eq!(served_serial(&s.url), "1001");

    // A renewal whose files look unchanged (same size, same mtime): served once SIGHUP says so.
    make_cert(certs.path(), "server", "0x1002");
    disguise(&cert, size, mtime);
    assert_eq!(served_serial(&s.url), "1001", "reloaded without SIGHUP");
    sighup(s.pid());
    assert!(
        wait_until(Duration::from_secs(20), || served_serial(&s.url) == "1002"),
        "still serving {}; log:\n{}",
        served_serial(&s.url),
        s.log()
    );

    // A reload that fails keeps the certificate, and the log names the file.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    disguise(&cert, size, mtime);
    sighup(s.pid());
    let named = format!("{}", cert.display());
    assert!(
        wait_until(Duration::from_secs(20), || {
            s.log().lines().any(|l| {
                l.contains("ERROR")
                    && l.contains("keeping the previous TLS certificate")
                    && l.contains(&named)
            })
        }),
        "log:\n{}",
        s.log()
    );
    assert_eq!(served_serial(&s.url), "1002");
    let (code, body) = curl(
        &format!("{}/healthz", s.url),
        Some(&certs.path().join("ca.pem")),
    );
    assert_eq!(code, 0, "{body}");

    // Both flags or neither.
    let out = Command::new(common::arca_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "server.pem",
            "--home",
        ])
        .arg(certs.path().join("home2"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"));
}

#[test]
fn sighup_without_tls_is_logged_and_the_server_serves_on() {
    let s = Server::start();
    sighup(s.pid());
    assert!(
        wait_until(Duration::from_secs(20), || s
            .log()
            .contains("SIGHUP ignored: no TLS certificate to reload")),
        "log:\n{}",
        s.log()
    );
    let (code, body) = curl(&format!("{}/healthz", s.url), None);
    assert_eq!((code, body.as_str()), (0, "ok\n"));
}

/// Certificates for a TLS server whose agents have client certificates: the server's CA and
/// certificate, an agents' CA `agents.pem`, and `web1.pem` (DNS name web-1) signed by it.
struct ClientCerts {
    dir: tempfile::TempDir,
}

impl ClientCerts {
    fn new() -> ClientCerts {
        let dir = tempfile::tempdir().unwrap();
        make_ca(dir.path());
        make_cert(dir.path(), "server", "0x1001");
        make_named_ca(dir.path(), "agents", "arca agents CA");
        make_client_cert(dir.path(), "agents", "web1", "/CN=ignored-cn", "DNS:web-1");
        ClientCerts { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `[tls]` with the agents' CA as `client_ca` (or without it).
    fn config(&self, client_ca: bool) -> String {
        let mut c = tls_config(&self.path("server.pem"), &self.path("server.key"));
        if client_ca {
            c.push_str(&format!(
                "client_ca = {:?}\n",
                self.path("agents.pem").display().to_string()
            ));
        }
        c
    }
}

/// `POST /api/v1/reports` for `agent` with curl, presenting `cert` (name in the certs dir)
/// and `token` if given: (curl exit status, HTTP status, body).
fn curl_report(
    s: &Server,
    certs: &ClientCerts,
    cert: Option<&str>,
    token: Option<&str>,
    agent: &str,
) -> (i32, u16, String) {
    let body = serde_json::json!({
        "agent": agent, "channel": "dev", "name": "app/web", "version": "1.0.0",
        "outcome": "ok", "message": "fine", "current": "1.0.0",
        "at": arca_keys::format_time(chrono::Utc::now()),
    })
    .to_string();
    let ca = certs.path("ca.pem");
    let (cert_pem, key_pem) = cert
        .map(|c| {
            (
                certs.path(&format!("{c}.pem")),
                certs.path(&format!("{c}.key")),
            )
        })
        .unzip();
    // HTTP/1.1: a refusal answered before the body is read ends the HTTP/2 stream with
    // RST_STREAM NO_ERROR, which curl 7.88 reports as an error (92) instead of the answer
    // when it had not sent the whole body yet. arca's own client (the agent above) speaks h2.
    let mut args: Vec<String> = vec![
        "--http1.1".into(),
        "--cacert".into(),
        ca.display().to_string(),
    ];
    if let (Some(c), Some(k)) = (cert_pem, key_pem) {
        args.extend([
            "--cert".into(),
            c.display().to_string(),
            "--key".into(),
            k.display().to_string(),
        ]);
    }
    if let Some(t) = token {
        args.extend(["-H".into(), format!("Authorization: Bearer {t}")]);
    }
    args.extend([
        "-H".into(),
        "content-type: application/json".into(),
        "-d".into(),
        body,
        "-w".into(),
        "\n%{http_code}".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = curl_with(&args, &format!("{}/api/v1/reports", s.url));
    let (text, status) = out.rsplit_once('\n').unwrap_or(("", "0"));
    (code, status.trim().parse().unwrap_or(0), text.to_owned())
}

fn agents_json(s: &Server) -> Vec<serde_json::Value> {
    serde_json::from_str(&s.ok(&["agents", "--json"])).unwrap()
}

#[test]
fn an_agent_with_a_client_certificate_reports_without_a_token_as_its_own_id_only() {
    let certs = ClientCerts::new();
    let mut s = Server::start_with(Some(&certs.config(true)), &[]);
    s.set_client_env("ARCA_CA_CERT", certs.path("ca.pem").to_str().unwrap());
    let key = s.builder("builder", "app/*");
    let file = s.file("web-1.0.bin", 4096, 1);
    s.push(&file, "app/web", "1.0.0", &key);

    // The agent presents its certificate and holds no token: its reports are web-1's.
    let adir = s.path("agent1");
    let out = s
        .agent_cmd("", "dev", "app/web", &adir, "web-1")
        .env_remove("ARCA_TOKEN")
        .env("ARCA_CLIENT_CERT", certs.path("web1.pem"))
        .env("ARCA_CLIENT_KEY", certs.path("web1.key"))
        .arg("--once")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("cannot post the report"), "{stderr}");
    let agents = agents_json(&s);
    let web1 = agents
        .iter()
        .find(|a| a["agent"] == "web-1")
        .unwrap_or_else(|| panic!("web-1 is not listed: {agents:?}"));
    assert_eq!(web1["token"], "cert:web-1", "{web1}");
    assert_eq!(web1["current"], "1.0.0", "{web1}");
    let reports: i64 = s.db().one(
        "SELECT COUNT(*) FROM reports WHERE agent = 'web-1' AND actor = 'cert:web-1'",
        params![],
    );
    assert!(reports >= 1);

    // The same certificate claiming web-2 (the flags this time): refused, nothing recorded.
    let before = s.state();
    let refused_before = s.audit_count("refused");
    let out = s
        .agent_cmd("", "dev", "app/web", &s.path("agent2"), "web-2")
        .env_remove("ARCA_TOKEN")
        .arg("--client-cert")
        .arg(certs.path("web1.pem"))
        .arg("--client-key")
        .arg(certs.path("web1.key"))
        .arg("--once")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stderr.contains("agent_identity"), "{stderr}");
    assert!(!agents_json(&s).iter().any(|a| a["agent"] == "web-2"));
    assert_eq!(s.state(), before);
    assert!(s.audit_count("refused") > refused_before);

    // The 403 names both ids; the audit log keeps it as the certificate's.
    let (code, status, body) = curl_report(&s, &certs, Some("web1"), None, "web-2");
    assert_eq!((code, status), (0, 403), "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "agent_identity", "{body}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("web-1") && message.contains("web-2"),
        "{message}"
    );
    let (action, subject, outcome, details) = common::raw::last_audit(&s);
    assert_eq!((action.as_str(), outcome.as_str()), ("report", "refused"));
    assert!(
        subject.contains("web-2") && details.contains("agent_identity"),
        "{details}"
    );
    let actor: String = s.db().one(
        "SELECT actor FROM audit ORDER BY seq DESC LIMIT 1",
        params![],
    );
    assert_eq!(actor, "cert:web-1");
    assert_eq!(s.state(), before);

    // With a token too, both must allow it.
    let for_web2 = s
        .ok(&["token", "create", "--role", "reporter", "--agent", "web-2"])
        .trim()
        .to_owned();
    let for_web1 = s
        .ok(&["token", "create", "--role", "reporter", "--agent", "web-1"])
        .trim()
        .to_owned();
    let before = s.state();
    let (_, status, body) = curl_report(&s, &certs, Some("web1"), Some(&for_web2), "web-1");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("token_scope"), "{body}");
    let (_, status, body) = curl_report(&s, &certs, Some("web1"), Some(&for_web2), "web-2");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("agent_identity"), "{body}");
    let (_, status, body) = curl_report(&s, &certs, Some("web1"), Some(&s.token), "web-2");
    assert_eq!(
        status, 403,
        "an admin token does not lift the certificate's id: {body}"
    );
    assert_eq!(s.state(), before);
    let (_, status, body) = curl_report(&s, &certs, Some("web1"), Some(&for_web1), "web-1");
    assert_eq!(status, 200, "{body}");

    // Neither a token nor a certificate: 401; a certificate gives no other right.
    let (_, status, body) = curl_report(&s, &certs, None, None, "web-1");
    assert_eq!(status, 401, "{body}");
    let (code, out) = curl_with(
        &[
            "--cacert",
            certs.path("ca.pem").to_str().unwrap(),
            "--cert",
            certs.path("web1.pem").to_str().unwrap(),
            "--key",
            certs.path("web1.key").to_str().unwrap(),
            "-w",
            "\n%{http_code}",
        ],
        &format!("{}/api/v1/agents", s.url),
    );
    assert_eq!(code, 0);
    assert!(out.ends_with("\n401"), "{out}");
}

#[test]
fn a_client_certificate_from_another_ca_fails_the_handshake_and_others_are_served() {
    let certs = ClientCerts::new();
    make_named_ca(certs.dir.path(), "other", "some other CA");
    make_client_cert(certs.dir.path(), "other", "rogue", "/CN=web-1", "DNS:web-1");
    // A certificate with no DNS name: its common name is the agent id.
    make_client_cert(certs.dir.path(), "agents", "cn", "/CN=web-3", "");
    let mut s = Server::start_with(Some(&certs.config(true)), &[]);
    s.set_client_env("ARCA_CA_CERT", certs.path("ca.pem").to_str().unwrap());
    let key = s.builder("builder", "app/*");
    let file = s.file("web-1.0.bin", 4096, 1);
    s.push(&file, "app/web", "1.0.0", &key);
    let before = s.state();

    let (code, status, body) = curl_report(&s, &certs, Some("rogue"), None, "web-1");
    assert_ne!(
        code, 0,
        "a certificate of another CA was accepted: {status} {body}"
    );
    let mut ls = s.arca();
    ls.args(["ls", "--client-cert"])
        .arg(certs.path("rogue.pem"))
        .arg("--client-key")
        .arg(certs.path("rogue.key"));
    let err = common::failure_line(&["ls"], &ls.output().unwrap());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(s.state(), before);

    // The server serves on: without a certificate, and with one of the agents' CA.
    assert!(s.ok(&["ls"]).contains("app/web"));
    let (code, status, body) = curl_report(&s, &certs, Some("web1"), None, "web-1");
    assert_eq!((code, status), (0, 200), "{body}");
    let (_, status, body) = curl_report(&s, &certs, Some("cn"), None, "web-3");
    assert_eq!(status, 200, "{body}");
    let (_, status, body) = curl_report(&s, &certs, Some("cn"), None, "web-1");
    assert_eq!(status, 403, "{body}");

    // A certificate file that is not one: one error line naming it.
    let mut bad = s.arca();
    bad.args(["ls", "--client-cert"])
        .arg(certs.path("ca.key"))
        .arg("--client-key")
        .arg(certs.path("web1.key"));
    let err = common::failure_line(&["ls"], &bad.output().unwrap());
    assert!(err.contains("ca.key"), "{err}");
}

#[test]
fn without_client_ca_no_client_certificate_is_asked_for() {
    let certs = ClientCerts::new();
    let s_client = |url: &str| {
        let out = Command::new("openssl")
            .args(["s_client", "-connect", url.trim_start_matches("https://")])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let with = Server::start_with(Some(&certs.config(true)), &[]);
    assert!(s_client(&with.url).contains("Acceptable client certificate CA names"));
    drop(with);

    let mut s = Server::start_with(Some(&certs.config(false)), &[]);
    let text = s_client(&s.url);
    assert!(
        text.contains("No client certificate CA names sent"),
        "{text}"
    );
    s.set_client_env("ARCA_CA_CERT", certs.path("ca.pem").to_str().unwrap());
    let key = s.builder("builder", "app/*");
    let file = s.file("web-1.0.bin", 4096, 1);
    s.push(&file, "app/web", "1.0.0", &key);
    // A certificate the server did not ask for is never sent, so it proves nothing: 401.
    let (code, status, body) = curl_report(&s, &certs, Some("web1"), None, "web-1");
    assert_eq!((code, status), (0, 401), "{body}");
}

#[test]
fn a_scheme_that_does_not_match_the_server_is_named_in_the_error() {
    let certs = tempfile::tempdir().unwrap();
    make_ca(certs.path());
    let (cert, key) = make_cert(certs.path(), "server", "0x3001");
    let tls = Server::start_with(Some(&tls_config(&cert, &key)), &[]);
    let plain = Server::start();
    // http:// to the TLS server, https:// to the plain one.
    let wrong_scheme = [
        (
            tls.url.replacen("https://", "http://", 1),
            &tls,
            "if it speaks TLS",
        ),
        (
            plain.url.replacen("http://", "https://", 1),
            &plain,
            "does not speak TLS",
        ),
    ];
    for (url, s, hint) in wrong_scheme {
        let mut ls = s.arca();
        ls.env("ARCA_SERVER", &url).arg("ls");
        let out = ls.output().unwrap();
        assert_eq!(out.status.code(), Some(5), "{url}");
        let err = common::failure_line(&["ls"], &out);
        assert!(err.contains(hint), "{url}: {err}");
    }
    // Nothing listening: the hint names --server.
    let gone = plain.url.clone();
    let mut ls = tls.arca();
    drop(plain);
    ls.env("ARCA_SERVER", &gone).arg("ls");
    let err = common::failure_line(&["ls"], &ls.output().unwrap());
    assert!(err.contains("is the server running"), "{err}");
}
