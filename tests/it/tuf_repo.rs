//! The channel repositories themselves: the root chain's end answers 404, and the server
//! re-signs online metadata before it expires, so clients keep working while it runs.

use crate::common;

use std::time::Duration;

use common::Server;

pub(crate) fn get(url: &str) -> (u16, Vec<u8>) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", url])
        .output()
        .expect("curl");
    let mut body = out.stdout;
    let pos = body.iter().rposition(|&b| b == b'\n').unwrap();
    let code: u16 = String::from_utf8_lossy(&body[pos + 1..])
        .trim()
        .parse()
        .unwrap();
    body.truncate(pos);
    (code, body)
}

fn timestamp_version(s: &Server, channel: &str) -> u64 {
    let (code, body) = get(&format!("{}/tuf/{channel}/metadata/timestamp.json", s.url));
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["signed"]["version"].as_u64().unwrap()
}

#[test]
fn root_chain_ends_with_404_and_every_channel_starts_from_the_pinned_root() {
    let s = Server::start();
    let pinned = std::fs::read(s.root_json()).unwrap();
    for ch in ["dev", "staging", "prod"] {
        let (code, one) = get(&format!("{}/tuf/{ch}/metadata/1.root.json", s.url));
        assert_eq!(code, 200);
        assert_eq!(one, pinned, "{ch}'s 1.root.json is the pinned root");
        let (code, two) = get(&format!("{}/tuf/{ch}/metadata/2.root.json", s.url));
        assert_eq!(code, 200);
        let two: serde_json::Value = serde_json::from_slice(&two).unwrap();
        assert_eq!(two["signed"]["x-arca-channel"], ch);
        let (code, body) = get(&format!("{}/tuf/{ch}/metadata/3.root.json", s.url));
        assert_eq!(code, 404, "{}", String::from_utf8_lossy(&body));
        let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(err["error"]["code"], "no_metadata");
    }
    // Each channel has its own online key.
    let key = |ch: &str| {
        let (_, b) = get(&format!("{}/tuf/{ch}/metadata/2.root.json", s.url));
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        v["signed"]["roles"]["timestamp"]["keyids"][0]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_ne!(key("dev"), key("prod"));
    assert_eq!(
        get(&format!("{}/tuf/nope/metadata/timestamp.json", s.url)).0,
        404
    );
}

#[test]
fn server_re_signs_metadata_before_it_expires() {
    let s = Server::start_with(
        Some(
            "[tuf]\ntimestamp_expiry = \"4s\"\nsnapshot_expiry = \"8s\"\nrefresh_interval = \"1s\"\n",
        ),
        &[],
    );
    let key = s.builder("b", "**");
    let file = s.file("f.bin", 1000, 9);
    s.push(&file, "f", "1", &key);
    let first = timestamp_version(&s, "dev");
    // Well past the first timestamp's expiry: a client still verifies, on fresh metadata.
    std::thread::sleep(Duration::from_secs(6));
    let later = timestamp_version(&s, "dev");
    assert!(
        later > first,
        "timestamp was not re-signed ({first} -> {later})"
    );
    s.pull_ok("f", "dev", &s.path("out"), &s.path("state"));
    let (ok, log) = s.python_tuf("dev", "f/f.bin", &s.path("py"), &[]);
    assert!(ok, "{log}");
}
