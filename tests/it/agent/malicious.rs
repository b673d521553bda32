//! Section 5: A malicious server or store

use super::*;

/// The agent refused `version` (or the metadata naming it): exit 5, still on 1.0.0 with nothing
/// else installed, and an `error` report naming `msg` reached the server.
fn assert_refused(r: &Rig, version: Option<&str>, msg: &str) -> String {
    let out = r.once(&[], 5);
    assert!(out.contains("nothing installed"), "{out}");
    assert!(out.contains(msg), "{out}");
    r.assert_running("1.0.0", &["1.0.0"]);
    assert_eq!(
        leftovers(&r.dir.join("state"), "", ".part"),
        Vec::<String>::new()
    );
    assert_row(&r.s, AGENT, "error", Some("1.0.0"), version, msg);
    out
}

/// Edits the `signed` part of a metadata body WITHOUT re-signing it.
fn tamper_signed(body: &[u8], edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(body).unwrap();
    edit(v.get_mut("signed").unwrap());
    arca_keys::canonical::to_canonical_json(&v).unwrap()
}

/// A tamperable server where the agent runs 1.0.0 and 2.0.0 has just been pushed.
fn v1_running_v2_pushed() -> Rig {
    let r = Rig::tamperable();
    r.push("1.0.0", vec![]);
    r.once(&[], 0);
    r.push("2.0.0", vec![]);
    r
}

#[test]
fn targets_forged_with_the_online_key_to_point_at_other_bytes_are_refused() {
    let r = v1_running_v2_pushed();
    let (_, body) = latest_meta(&r.s, "dev", "targets");
    let env = arca::tuf::metadata::Envelope::from_slice("targets", &body).unwrap();
    let v2 = env.signed["targets"]["app/web/web-2.0.0.tar.gz"].clone();
    assert!(v2.is_object(), "{}", env.signed);

    // (a) The signed length is one byte short: the download is cut off, nothing is unpacked.
    forge_targets_with_online_key(&r.s, "dev", |signed| {
        let t = &mut signed["targets"]["app/web/web-2.0.0.tar.gz"];
        t["length"] = Value::from(t["length"].as_u64().unwrap() - 1);
    });
    assert_refused(&r, Some("2.0.0"), "exceeds its length limit");

    // (b) The entry's digests are those of other bytes (an older blob the server holds): the
    // build statement signs the real digests, so no valid build signature remains.
    let other = r.s.path("web-1.0.0.tar.gz");
    let bytes = std::fs::read(&other).unwrap();
    forge_targets_with_online_key(&r.s, "dev", |signed| {
        let t = &mut signed["targets"]["app/web/web-2.0.0.tar.gz"];
        *t = v2.clone();
        t["length"] = Value::from(bytes.len() as u64);
        t["hashes"]["sha256"] = Value::from(arca::tuf::metadata::sha256_hex(&bytes));
        t["custom"]["blake3"] = Value::from(blake3::hash(&bytes).to_hex().to_string());
    });
    assert_refused(&r, Some("2.0.0"), "no valid build signature");
}

#[test]
fn targets_altered_without_resigning_are_refused() {
    let r = v1_running_v2_pushed();
    let (v, body) = latest_meta(&r.s, "dev", "targets");
    let forged = tamper_signed(&body, |signed| {
        signed["targets"]["app/web/web-2.0.0.tar.gz"]["hashes"]["sha256"] =
            Value::from("0".repeat(64));
    });
    set_meta_body(&r.s, "dev", "targets", v, &forged);
    assert_refused(&r, None, "channel metadata refused");
}

#[test]
fn replayed_older_timestamp_cannot_take_the_agent_back() {
    let r = Rig::tamperable();
    r.push("1.0.0", vec![]);
    r.once(&[], 0);
    let (old_v, old_ts) = latest_meta(&r.s, "dev", "timestamp");
    r.push("2.0.0", vec![]);
    r.once(&[], 0);
    r.assert_running("2.0.0", &["1.0.0", "2.0.0"]);

    // The server replays the older, validly signed timestamp (which leads to 1.0.0).
    let (new_v, _) = latest_meta(&r.s, "dev", "timestamp");
    set_meta_body(&r.s, "dev", "timestamp", new_v, &old_ts);
    let out = r.once(&[], 5);
    let msg =
        format!("timestamp rollback: version {old_v} is older than the trusted version {new_v}");
    assert!(out.contains(&msg), "{out}");
    r.assert_running("2.0.0", &["1.0.0", "2.0.0"]);
    let row = agent_row(&r.s, "dev", AGENT).unwrap();
    assert_eq!(row["outcome"], "error", "{row}");
    assert_eq!(row["current"], "2.0.0", "{row}");
    assert!(row["message"].as_str().unwrap().contains(&msg), "{row}");
}

#[test]
fn altered_blob_in_the_store_is_refused() {
    let r = v1_running_v2_pushed();
    let f = r.s.path("web-2.0.0.tar.gz");
    let blob =
        r.s.home
            .join("blobs/blobs")
            .join(blake3::hash(&std::fs::read(&f).unwrap()).to_hex().as_str());
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let mut perm = std::fs::metadata(&blob).unwrap().permissions();
    perm.set_mode(0o644);
    std::fs::set_permissions(&blob, perm).unwrap();
    std::fs::write(&blob, &bytes).unwrap();
    assert_refused(
        &r,
        Some("2.0.0"),
        "length or hash does not match the signed metadata",
    );
}
