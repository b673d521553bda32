//! Section 7: Concurrent failures: one halt, one rollback (through three servers on one
//! PostgreSQL database and one S3 bucket, on PostgreSQL).

use super::*;

#[test]
fn concurrent_failures_halt_exactly_once() {
    // On PostgreSQL the reports go through three servers: the halt is decided under the
    // database's row locks, not one process's.
    let cluster = common::cluster::Cluster::start(3, "");
    let single = cluster.is_none().then(Server::start);
    let servers: Vec<&Server> = match &cluster {
        Some(c) => c.servers.iter().collect(),
        None => single.iter().collect(),
    };
    let s = servers[0];
    let key = builder(s);
    let reporter = s.reporter_token();
    release_fully(s, &key, "1.0.0", 1);
    let id = roll_out(s, &key, "2.0.0", 2, &SLOW);
    // Another name's rollout in the same channel, which the halt must leave alone.
    push(s, &key, "app/side", "1.0.0", 5);
    promote(s, "app/side", "1.0.0", &[]);
    push(s, &key, "app/side", "2.0.0", 6);
    promote(s, "app/side", "2.0.0", &SLOW.args());
    let side = entries(s, "app/side");
    assert_eq!(side.len(), 2, "{side:#?}");
    let targets_before = targets_count(s);
    let rollbacks_before = history(s)
        .iter()
        .filter(|h| h["action"] == "rollback")
        .count();
    let urls: Vec<&str> = servers.iter().map(|s| s.url.as_str()).collect();
    let n = 20;
    let barrier = std::sync::Barrier::new(n);
    let answers: Vec<raw::Answer> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (url, reporter, barrier) = (urls[i % urls.len()], &reporter, &barrier);
                sc.spawn(move || {
                    let body = serde_json::to_vec(&report_body(
                        &format!("c-{i}"),
                        Some("2.0.0"),
                        "failed",
                        Some("1.0.0"),
                    ))
                    .unwrap();
                    raw::block(async move {
                        let client = raw::http();
                        let req = client
                            .post(format!("{url}/api/v1/reports"))
                            .bearer_auth(reporter)
                            .header("content-type", "application/json")
                            .body(body);
                        barrier.wait();
                        raw::answer(req.send().await.unwrap()).await
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for a in &answers {
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let halted = answers
        .iter()
        .filter(|a| serde_json::from_str::<Value>(&a.body).unwrap()["halted"] == true)
        .count();
    assert_eq!(halted, 1, "reports that say they halted the rollout");
    assert_eq!(audit(s, "rollout-halt").len(), 1);
    let h = history(s);
    let rollbacks: Vec<&Value> = h.iter().filter(|h| h["action"] == "rollback").collect();
    assert_eq!(rollbacks.len(), rollbacks_before + 1, "{h:#?}");
    assert_eq!(rollbacks.last().unwrap()["actor"], format!("rollout:{id}"));
    let st = status(s, NAME);
    assert_eq!(st["state"], "halted");
    // Exactly the three reports up to the halt counted; the rest arrived after it.
    let c = s.db();
    let (all, counted): (i64, i64) =
        c.one("SELECT COUNT(*), COUNT(rollout_id) FROM reports", params![]);
    assert_eq!((all, counted), (n as i64, 3));
    assert_eq!(figures(s), (0, 3));
    assert_plain_entry(s, "1.0.0");
    // One new targets version for the halt, not one per late report.
    assert_eq!(targets_count(s), targets_before + 1);
    // The other name's rollout is untouched, and the audit chain still verifies.
    assert_eq!(entries(s, "app/side"), side);
    let st = status(s, "app/side");
    assert_eq!(st["state"], "running", "{st}");
    assert_eq!(st["figures"], json!({"ok": 0, "failed": 0}), "{st}");
    s.ok(&["audit", "verify"]);
}

/// How many targets versions the channel has published.
fn targets_count(s: &Server) -> i64 {
    s.db().one(
        "SELECT COUNT(*) FROM tuf_metadata WHERE channel = ?1 AND role = 'targets'",
        params![CH],
    )
}
