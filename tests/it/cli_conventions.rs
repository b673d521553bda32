//! The command line's conventions (docs/cli.md): exit statuses by kind of failure, JSON errors
//! under `--json`, server URLs as people type them, `ARCA_ROOT`, a quiet exit on a closed pipe,
//! and one server per home.

use crate::common;

use std::process::{Command, Stdio};

use common::Server;

/// Runs `arca ARGS` on `s` with `env`; returns (exit status, stdout, stderr).
fn run(s: &Server, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = s.arca();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn error_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("error:")).collect()
}

#[test]
fn exit_statuses_tell_refused_not_found_auth_and_server_failures_apart() {
    let s = Server::start();
    let b = s.builder("builder", "app/*");
    let f = s.file("a.bin", 1000, 1);
    s.push(&f, "app/a", "1.0.0", &b);

    // Refused by policy: prod needs staging first (1).
    let (code, _, err) = run(&s, &["promote", "app/a@1.0.0", "--to", "prod"], &[]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(error_lines(&err).len(), 1, "{err}");
    // A conflict: other bytes for a pushed version (1).
    let g = s.file("b.bin", 1000, 2);
    let (code, _, err) = run(
        &s,
        &[
            "push",
            g.to_str().unwrap(),
            "--name",
            "app/a",
            "--version",
            "1.0.0",
            "--key",
        ],
        &[],
    );
    assert_eq!(code, 2, "a missing value is a usage error: {err}");
    let (code, _, err) = run(
        &s,
        &[
            "push",
            g.to_str().unwrap(),
            "--name",
            "app/a",
            "--version",
            "1.0.0",
            "--key",
            b.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("refused (409"), "{err}");

    // Not found (3): an unknown channel, an unknown release.
    let (code, _, err) = run(&s, &["history", "app/a", "--channel", "qa"], &[]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("not found (404"), "{err}");
    let (code, _, err) = run(&s, &["rollback", "app/zzz", "--channel", "dev"], &[]);
    assert!(code == 3 || code == 1, "{err}");

    // Authentication (4): no token, a wrong token, a token whose role may not.
    let mut c = s.arca();
    c.env_remove("ARCA_TOKEN")
        .args(["promote", "app/a@1.0.0", "--to", "staging"]);
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let (code, _, err) = run(
        &s,
        &["promote", "app/a@1.0.0", "--to", "staging"],
        &[("ARCA_TOKEN", "arca_0000000000000000_nope")],
    );
    assert_eq!(code, 4, "{err}");
    let reporter = s.reporter_token();
    let (code, _, err) = run(
        &s,
        &["promote", "app/a@1.0.0", "--to", "staging"],
        &[("ARCA_TOKEN", &reporter)],
    );
    assert_eq!(code, 4, "{err}");

    // Server or network failure (5): nothing listens there. Never called a refusal.
    let (code, _, err) = run(
        &s,
        &["history", "app/a", "--channel", "dev"],
        &[("ARCA_SERVER", "http://127.0.0.1:1")],
    );
    assert_eq!(code, 5, "{err}");
    assert!(!err.starts_with("error: refused"), "{err}");
    assert_eq!(error_lines(&err).len(), 1, "{err}");

    // Nothing was changed by any of it.
    let (code, out, _) = run(&s, &["history", "app/a", "--channel", "staging"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("never been in staging"), "{out}");
}

#[test]
fn errors_are_json_under_json() {
    let s = Server::start();
    let (code, out, err) = run(&s, &["history", "app/a", "--channel", "qa", "--json"], &[]);
    assert_eq!(code, 3, "{err}");
    assert!(out.is_empty(), "{out}");
    let line = err.lines().last().unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {err}"));
    assert_eq!(v["error"]["exit_code"], 3, "{v}");
    assert!(v["error"]["code"].is_string(), "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("qa"),
        "{v}"
    );
}

#[test]
fn server_urls_without_scheme_or_with_trailing_slash_work() {
    let s = Server::start();
    let bare = s.url.trim_start_matches("http://").to_owned();
    for url in [bare.clone(), format!("{}/", s.url), format!("{bare}//")] {
        let (code, out, err) = run(&s, &["trust", "show"], &[("ARCA_SERVER", &url)]);
        assert_eq!(code, 0, "{url}: {err}");
        assert!(out.contains("trust document"), "{url}: {out}");
    }
    let (code, _, err) = run(&s, &["trust", "show"], &[("ARCA_SERVER", "ftp://x")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("ftp://x"), "{err}");
}

#[test]
fn arca_root_stands_for_root() {
    let s = Server::start();
    let b = s.builder("builder", "app/*");
    let f = s.file("a.bin", 1000, 1);
    s.push(&f, "app/a", "1.0.0", &b);
    let out = s.path("out");
    let (code, _, err) = run(
        &s,
        &[
            "pull",
            "app/a",
            "--channel",
            "dev",
            "--out",
            out.to_str().unwrap(),
            "--metadata-dir",
            s.path("state").to_str().unwrap(),
        ],
        &[("ARCA_ROOT", s.root_json().to_str().unwrap())],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.join("a.bin").exists());
}

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let s = Server::start();
    // The reader is gone before the command writes a byte.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = s
        .arca()
        .args(["trust", "status"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(141), "{stderr}");
}

#[test]
fn a_second_server_on_the_same_home_is_refused() {
    let s = Server::start();
    let mut second = Command::new(common::arca_bin())
        .args(["serve", "--home"])
        .arg(&s.home)
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Without the lock it would serve on; it must exit by itself.
    let exited = common::wait_until(std::time::Duration::from_secs(30), || {
        second.try_wait().unwrap().is_some()
    });
    if !exited {
        let _ = second.kill();
    }
    let out = second.wait_with_output().unwrap();
    assert!(exited, "a second server on the same home kept running");
    let err = common::failure_line(&["serve"], &out);
    assert!(err.contains("in use"), "{err}");
    assert!(err.contains(&s.pid().to_string()), "{err}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening"),
        "the second server must not listen"
    );
    // The first one still serves.
    s.ok(&["trust", "show"]);
}

#[test]
fn messages_say_what_to_do_about_another_servers_root_and_an_unknown_channel() {
    let s = Server::start();
    let other = Server::start();
    let b = s.builder("builder", "app/*");
    s.push(&s.file("a.bin", 100, 1), "app/a", "1.0.0", &b);
    let out = s.path("out");
    let err = s.fails(&[
        "pull",
        "app/a",
        "--channel",
        "dev",
        "--root",
        other.root_json().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--metadata-dir",
        s.path("state1").to_str().unwrap(),
    ]);
    assert!(err.contains("another server's root.json"), "{err}");
    let err = s.fails(&[
        "pull",
        "app/a",
        "--channel",
        "qa",
        "--root",
        s.root_json().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--metadata-dir",
        s.path("state2").to_str().unwrap(),
    ]);
    assert!(
        err.contains("has no channel qa (its channels: dev, staging, prod)"),
        "{err}"
    );
    assert!(common::list_files(&out).is_empty());
}

#[test]
fn logs_carry_no_colour_codes_when_not_on_a_terminal() {
    let s = Server::start();
    s.ok(&["trust", "show"]);
    // The server's log is a file; a client's log lines go to a pipe here.
    let out = s
        .arca()
        .env("RUST_LOG", "info")
        .args(["history", "app/a", "--channel", "dev"])
        .output()
        .unwrap();
    assert!(common::wait_until(
        std::time::Duration::from_secs(10),
        || { s.log().contains("home opened") }
    ));
    assert!(!s.log().contains('\u{1b}'), "{}", s.log());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains('\u{1b}'),
        "{out:?}"
    );
}

#[test]
fn agent_logs_read_as_words_not_rust_debug_output() {
    let s = Server::start();
    let b = s.builder("builder", "app/*");
    let token = s.reporter_token();
    let dir = s.path("agent");
    let run = || {
        let out = s
            .agent_cmd(&token, "dev", "app/a", &dir, "host-1")
            .env("RUST_LOG", "info")
            .args(["--once", "--keep", "2"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    s.push(&s.file("a1.bin", 100, 1), "app/a", "1.0.0", &b);
    run();
    s.push(&s.file("a2.bin", 100, 2), "app/a", "2.0.0", &b);
    run();
    s.push(&s.file("a3.bin", 100, 3), "app/a", "3.0.0", &b);
    let (out, log) = run();
    assert!(out.contains("installed 3.0.0 (was 2.0.0)"), "{out}");
    assert!(log.contains("previous=2.0.0"), "{log}");
    assert!(log.contains("pruned old releases removed=1.0.0"), "{log}");
    for debug in ["Some(", "None", "[\"", "\\\""] {
        assert!(!log.contains(debug), "{debug:?} in the agent's log:\n{log}");
    }
}
