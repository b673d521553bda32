//! Section 8: The wrong trust anchor or the wrong channel

use super::*;

/// `arca agent --once` with `root` as the pinned root.
fn agent_with_root(r: &Rig, channel: &str, root: &Path) -> Output {
    r.s.arca()
        .env("ARCA_TOKEN", &r.token)
        .env("RUST_LOG", "warn")
        .args(["agent", "--once", "--channel", channel, "--name", NAME])
        .arg("--root")
        .arg(root)
        .arg("--dir")
        .arg(&r.dir)
        .args(["--id", AGENT])
        .output()
        .unwrap()
}

#[test]
fn another_servers_root_is_refused() {
    let r = Rig::new();
    r.push("1.0.0", vec![]);
    let other = Server::start();
    let out = agent_with_root(&r, "dev", &other.root_json());
    let text = expect_exit(&out, 5);
    assert!(
        text.contains("root metadata: 0 valid signature(s)"),
        "{text}"
    );
    assert_eq!(r.current(), None);
    assert_eq!(release_dirs(&r.dir), Vec::<String>::new());
    let row = agent_row(&r.s, "dev", AGENT).expect("the refusal was reported");
    assert_eq!(row["outcome"], "error", "{row}");

    // Its state is bound to that root: the right root cannot be slipped in later either.
    let out = agent_with_root(&r, "dev", &r.s.root_json());
    let text = expect_exit(&out, 1);
    assert!(text.contains("--root differs"), "{text}");
    assert_eq!(r.current(), None);
}

#[test]
fn another_channels_repository_is_refused() {
    let r = Rig::tamperable();
    r.push("1.0.0", vec![]);
    // The server answers prod's URLs with dev's repository.
    r.s.db()
        .batch("DELETE FROM tuf_metadata WHERE channel = 'prod';
             INSERT INTO tuf_metadata (channel, role, version, body, expires)
                 SELECT 'prod', role, version, body, expires FROM tuf_metadata WHERE channel = 'dev';
             INSERT INTO releases (channel, name, artifact_id, action, actor, reason, created_at)
                 SELECT 'prod', name, artifact_id, action, actor, reason, created_at
                 FROM releases WHERE channel = 'dev';");
    let out = agent_with_root(&r, "prod", &r.s.root_json());
    let text = expect_exit(&out, 5);
    assert!(
        text.contains("root metadata v2 is bound to channel \"dev\", not prod"),
        "{text}"
    );
    assert_eq!(r.current(), None);
    assert_eq!(release_dirs(&r.dir), Vec::<String>::new());
}
