//! TLS on the listener: the configured certificate is served over HTTPS, and a certificate
//! replaced on disk is served without a restart. Certificates are made with `openssl`.

mod common;

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
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=arca test CA",
            "-days",
            "2",
        ],
    );
}

/// A certificate for 127.0.0.1 and localhost signed by the CA of `dir`, with `serial`,
/// written as `name.pem` (its key `name.key`, reused if it exists).
fn make_cert(dir: &Path, name: &str, serial: &str) -> (PathBuf, PathBuf) {
    let (key, csr, pem) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.tmp"),
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
        &[
            "req",
            "-new",
            "-key",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n\
         basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n\
         subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            serial,
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
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
        .args(["-sS", "--max-time", "20", "--cacert"])
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
