//! Section 8: Conditional polling of timestamp.json.

use super::*;

#[test]
fn timestamp_etag_answers_304_until_the_channel_changes() {
    let s = Server::start();
    let key = builder(&s);
    let reporter = s.reporter_token();
    release_fully(&s, &key, "1.0.0", 1);
    let path = format!("/tuf/{CH}/metadata/timestamp.json");
    let fetch = |inm: Option<&str>| {
        let headers: Vec<(&str, &str)> = inm.map(|v| ("if-none-match", v)).into_iter().collect();
        let (code, h, body) = get(&s, &path, &headers);
        let etag = h
            .get("etag")
            .unwrap_or_else(|| panic!("no ETag (status {code})"))
            .to_str()
            .unwrap()
            .to_owned();
        (code, etag, body)
    };
    let version_of = |body: &str| -> u64 {
        serde_json::from_str::<Value>(body).unwrap()["signed"]["version"]
            .as_u64()
            .unwrap()
    };
    let (code, etag1, body1) = fetch(None);
    assert_eq!(code, 200);
    assert!(
        etag1.starts_with('"') && etag1.ends_with('"') && etag1.len() > 2,
        "{etag1}"
    );
    let (code, etag, body) = fetch(Some(&etag1));
    assert_eq!((code, body.as_str()), (304, ""), "a matching ETag");
    assert_eq!(etag, etag1);
    let (code, _, body) = fetch(Some(&format!("W/{etag1}")));
    assert_eq!((code, body.as_str()), (304, ""), "a weak form of the ETag");
    let (code, _, body) = fetch(Some("\"0000\""));
    assert_eq!(code, 200, "another ETag");
    assert_eq!(body, body1);

    // A rollout publishes new metadata: the old ETag gets the new timestamp.
    roll_out(
        &s,
        &key,
        "2.0.0",
        2,
        &Plan {
            max_failure_rate: "0",
            min_reports: "1",
            ..SLOW
        },
    );
    let (code, etag2, body2) = fetch(Some(&etag1));
    assert_eq!(code, 200);
    assert_ne!(etag2, etag1);
    assert!(version_of(&body2) > version_of(&body1));
    assert_eq!(fetch(Some(&etag2)).0, 304);

    // So does a halt by a report (not an operator's request).
    let r = report(
        &s,
        &reporter,
        &report_body("e-1", Some("2.0.0"), "failed", Some("1.0.0")),
    );
    assert_eq!(r["halted"], true, "{r}");
    let (code, etag3, body3) = fetch(Some(&etag2));
    assert_eq!(
        code, 200,
        "the halt's metadata is not served to a conditional poll"
    );
    assert_ne!(etag3, etag2);
    assert!(version_of(&body3) > version_of(&body2));
    assert_eq!(fetch(Some(&etag3)).0, 304);
    // And the ETag is the body's: a plain GET gives the same.
    let (code, etag, body) = fetch(None);
    assert_eq!((code, &etag, &body), (200, &etag3, &body3));
}
