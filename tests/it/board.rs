//! Who did what, at a glance: key labels (signed in the trust document), `arca ls` (what is
//! current in every channel), `arca show NAME@VERSION` (one release everywhere), and one way
//! to name a release (`NAME@VERSION`) for push, rollback and history.

use crate::common;

use common::Server;

use crate::common::p;

/// A builder key labelled `label`, trusted for `app/*`.
fn labelled_builder(s: &Server, name: &str, label: &str) -> std::path::PathBuf {
    let k = s.key(name);
    s.ok(&[
        "trust",
        "add-key",
        &format!("{}.pub", k.display()),
        "--role",
        "builder",
        "--scope",
        "app/*",
        "--label",
        label,
        "--sign",
        p(&s.root_key()),
    ]);
    k
}

#[test]
fn labels_name_keys_in_trust_show_and_in_a_release() {
    let s = Server::start();
    let b = labelled_builder(&s, "ci", "ci-team-a");
    let id = s.ok(&["key", "id", &format!("{}.pub", b.display())]);
    let shown = s.ok(&["trust", "show"]);
    let line = shown.lines().find(|l| l.starts_with(id.trim())).unwrap();
    assert!(line.ends_with("ci-team-a"), "{shown}");

    let f = s.file("a.bin", 1000, 1);
    s.ok(&["push", p(&f), "app/a@1.0.0", "--key", p(&b)]);
    let v: serde_json::Value =
        serde_json::from_str(&s.ok(&["show", "app/a@1.0.0", "--json"])).unwrap();
    let signer = &v["statements"][0]["signers"][0];
    assert_eq!(signer["label"], "ci-team-a", "{v}");
    assert_eq!(signer["status"], "active", "{v}");
    let text = s.ok(&["show", "app/a@1.0.0"]);
    assert!(text.contains("ci-team-a"), "{text}");

    // A label is signed with the trust document: control characters are refused.
    let k = s.key("bad");
    let err = s.fails(&[
        "trust",
        "add-key",
        &format!("{}.pub", k.display()),
        "--role",
        "builder",
        "--scope",
        "app/*",
        "--label",
        "a\u{7}b",
        "--sign",
        p(&s.root_key()),
    ]);
    assert!(err.contains("label"), "{err}");
}

#[test]
fn ls_shows_what_is_current_in_every_channel() {
    let s = Server::start();
    let b = s.builder("b", "app/*");
    let empty = s.ok(&["ls"]);
    assert!(
        empty.contains("dev:") && empty.contains("(nothing yet)"),
        "{empty}"
    );

    s.ok(&[
        "push",
        p(&s.file("a1", 100, 1)),
        "app/a@1.0.0",
        "--key",
        p(&b),
    ]);
    s.ok(&["promote", "app/a@1.0.0", "--to", "staging"]);
    s.ok(&[
        "push",
        p(&s.file("a2", 100, 2)),
        "app/a@1.1.0",
        "--key",
        p(&b),
    ]);
    s.ok(&[
        "push",
        p(&s.file("c1", 100, 3)),
        "app/c@2.0.0",
        "--key",
        p(&b),
    ]);

    let board: serde_json::Value = serde_json::from_str(&s.ok(&["ls", "--json"])).unwrap();
    let channels: Vec<&str> = board
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["channel"].as_str().unwrap())
        .collect();
    assert_eq!(channels, ["dev", "staging", "prod"]);
    let current = |ch: usize| -> Vec<String> {
        board[ch]["releases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{}@{}",
                    r["name"].as_str().unwrap(),
                    r["version"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(current(0), ["app/a@1.1.0", "app/c@2.0.0"]);
    assert_eq!(current(1), ["app/a@1.0.0"]);
    assert!(current(2).is_empty());
    assert_eq!(board[1]["releases"][0]["action"], "promote");

    let staging = s.ok(&["ls", "--channel", "staging"]);
    assert!(
        staging.contains("app/a") && staging.contains("1.0.0"),
        "{staging}"
    );
    assert!(!staging.contains("dev:"), "{staging}");
    let err = s.fails(&["ls", "--channel", "qa"]);
    assert!(err.contains("no channel named qa"), "{err}");
}

#[test]
fn show_tells_where_a_release_stands_and_names_release_everywhere() {
    let s = Server::start();
    let b = s.builder("b", "app/*");
    s.ok(&[
        "push",
        p(&s.file("a1", 100, 1)),
        "app/a@1.0.0",
        "--key",
        p(&b),
    ]);
    s.ok(&[
        "promote",
        "app/a@1.0.0",
        "--to",
        "staging",
        "--reason",
        "CHG-1",
    ]);
    // The --name/--version form still works.
    s.push(&s.file("a2", 100, 2), "app/a", "2.0.0", &b);
    s.ok(&["promote", "app/a@2.0.0", "--to", "staging"]);

    let v: serde_json::Value =
        serde_json::from_str(&s.ok(&["show", "app/a@1.0.0", "--json"])).unwrap();
    assert_eq!(v["artifact"]["version"], "1.0.0");
    let ch = |i: usize| &v["channels"][i];
    assert_eq!(ch(0)["channel"], "dev");
    assert_eq!(ch(0)["current"], false);
    assert_eq!(ch(0)["current_version"], "2.0.0");
    assert_eq!(ch(1)["current"], false);
    assert_eq!(ch(1)["history"][0]["reason"], "CHG-1");
    assert_eq!(ch(2)["current"], false);
    assert!(ch(2)["history"].as_array().unwrap().is_empty());

    // Roll staging back by NAME@VERSION; history by NAME@VERSION lists that release's changes.
    s.ok(&["rollback", "app/a@1.0.0", "--channel", "staging"]);
    let v: serde_json::Value =
        serde_json::from_str(&s.ok(&["show", "app/a@1.0.0", "--json"])).unwrap();
    assert_eq!(v["channels"][1]["current"], true, "{v}");
    let h: serde_json::Value =
        serde_json::from_str(&s.ok(&["history", "app/a@1.0.0", "--channel", "staging", "--json"]))
            .unwrap();
    let actions: Vec<&str> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["promote", "rollback"], "{h}");
    let err = s.fails(&[
        "rollback",
        "app/a@1.0.0",
        "--channel",
        "staging",
        "--to",
        "2.0.0",
    ]);
    assert!(err.contains("two releases"), "{err}");
    let err = s.fails(&["show", "app/a@9.9.9"]);
    assert!(err.contains("no artifact app/a@9.9.9"), "{err}");
}

#[test]
fn history_and_ls_name_the_token_by_its_label() {
    let s = Server::start();
    let b = s.builder("b", "app/*");
    let ci = s
        .ok(&[
            "token",
            "create",
            "--role",
            "admin",
            "--label",
            "release-bot",
        ])
        .trim()
        .to_owned();
    let mut push = s.arca();
    push.env("ARCA_TOKEN", &ci).args([
        "push",
        p(&s.file("a1", 100, 1)),
        "app/a@1.0.0",
        "--key",
        p(&b),
    ]);
    assert!(push.output().unwrap().status.success());
    s.ok(&["promote", "app/a@1.0.0", "--to", "staging"]);

    let dev = s.ok(&["history", "app/a", "--channel", "dev"]);
    assert!(dev.contains("(release-bot)"), "{dev}");
    let staging: serde_json::Value =
        serde_json::from_str(&s.ok(&["history", "app/a", "--channel", "staging", "--json"]))
            .unwrap();
    assert_eq!(staging[0]["actor_label"], "initial admin", "{staging}");
    let ls = s.ok(&["ls", "--channel", "dev"]);
    assert!(ls.contains("release-bot"), "{ls}");
}
