//! `/healthz`, `/readyz` and `/metrics`: the counters move with the traffic.

use crate::common;

use common::Server;
use common::prometheus::metrics;

fn get(s: &Server, path: &str) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", &format!("{}{path}", s.url)])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_owned())
}

#[test]
fn health_readiness_and_counters_move_with_traffic() {
    let s = Server::start();
    assert_eq!(get(&s, "/healthz"), (200, "ok\n".into()));
    // Ready names each check; a single server (SQLite: always) leads the background work.
    let (code, body) = get(&s, "/readyz");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (code, ready),
        (
            200,
            serde_json::json!({
                "ready": true, "database": "ok", "store": "ok", "leader": true,
                "engine": common::engine(),
            })
        ),
        "{body}"
    );
    let before = metrics(&s);
    assert_eq!(before["arca_leader"], 1.0, "{before:?}");

    let b = s.builder("builder", "app/*");
    let f = s.file("a.bin", 100_000, 1);
    s.push(&f, "app/a", "1.0.0", &b);
    s.pull_ok("app/a", "dev", &s.path("o"), &s.path("st"));
    s.fails(&["promote", "app/a@1.0.0", "--to", "prod"]);
    assert_eq!(get(&s, "/tuf/dev/metadata/99.root.json").0, 404);

    let after = metrics(&s);
    let delta = |k: &str| after[k] - before.get(k).copied().unwrap_or(0.0);
    assert!(delta("arca_upload_bytes_total") >= 100_000.0, "{after:?}");
    assert!(delta("arca_download_bytes_total") >= 100_000.0, "{after:?}");
    assert_eq!(delta(r#"arca_promotions_total{outcome="refused"}"#), 1.0);
    assert!(delta(r#"arca_http_responses_total{class="2xx"}"#) >= 5.0);
    assert!(delta(r#"arca_http_responses_total{class="4xx"}"#) >= 2.0);
    s.ok(&["promote", "app/a@1.0.0", "--to", "staging"]);
    assert_eq!(
        metrics(&s)[r#"arca_promotions_total{outcome="promoted"}"#],
        after[r#"arca_promotions_total{outcome="promoted"}"#] + 1.0
    );
}
