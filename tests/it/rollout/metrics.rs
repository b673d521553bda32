//! Section 9: /metrics: valid Prometheus text, and the rollout gauges follow the traffic.

use super::*;
use crate::common::prometheus::{metrics, parse_prometheus, series};

#[test]
fn the_parser_refuses_what_prometheus_refuses() {
    for bad in [
        "x 1\n",
        "# TYPE x gauge\nx{a=\"1\"} 1\nx{a=\"1\"} 2\n",
        "# TYPE x gauge\nx{a=1} 1\n",
        "# TYPE x gauge\nx{a=\"\\q\"} 1\n",
        "# TYPE x gauge\nx one\n",
        "# TYPE x gauge\n# TYPE y gauge\ny 1\nx 1\n# TYPE x gauge\n",
        "# TYPE x gauge\nx 1\n# TYPE y gauge\ny 1\nx 2\n",
        "# TYPE x counter\nx -1\n",
        "# TYPE 1x gauge\n1x 1\n",
        "# TYPE x gauge\nx 1",
    ] {
        let r = std::panic::catch_unwind(|| parse_prometheus(bad));
        assert!(r.is_err(), "accepted: {bad:?}");
    }
    let ok = parse_prometheus(
        "# HELP x a \\\\ b\n# TYPE x gauge\nx{b=\"q\\\"\",a=\"\"} 1.5e3\nx 2 1700000000\n",
    );
    assert_eq!(ok[&series("x", &[("a", ""), ("b", "q\"")])], 1500.0);
}

#[test]
fn metrics_are_valid_prometheus_and_follow_the_rollout() {
    let s = Server::start();
    let key = builder(&s);
    let reporter = s.reporter_token();
    release_fully(&s, &key, "1.0.0", 1);
    let m0 = metrics(&s);
    assert!(
        !m0.keys().any(|k| k.starts_with("arca_rollout_percent{")),
        "{m0:#?}"
    );
    roll_out(
        &s,
        &key,
        "2.0.0",
        2,
        &Plan {
            max_failure_rate: "0.5",
            min_reports: "10",
            ..SLOW
        },
    );
    let ids = [("channel", CH), ("name", NAME), ("version", "2.0.0")];
    let with = |extra: (&'static str, &'static str)| {
        let mut l = ids.to_vec();
        l.push(extra);
        l
    };
    let percent = |st: &'static str| series("arca_rollout_percent", &with(("state", st)));
    let rate = series("arca_rollout_failure_rate", &ids);
    let ok = series("arca_rollout_reporting_agents", &with(("outcome", "ok")));
    let failed = series(
        "arca_rollout_reporting_agents",
        &with(("outcome", "failed")),
    );
    let agents_on = |v: &str| {
        series(
            "arca_agents",
            &[("channel", CH), ("name", NAME), ("version", v)],
        )
    };
    let reports = "arca_reports_total".to_owned();

    let m = metrics(&s);
    assert_eq!(m.get(&percent("running")), Some(&10.0), "{m:#?}");
    assert_eq!(m.get(&rate), Some(&0.0));
    assert_eq!((m.get(&ok), m.get(&failed)), (Some(&0.0), Some(&0.0)));
    assert_eq!(m.get(&agents_on("2.0.0")), None);
    let r0 = m[&reports];

    report(
        &s,
        &reporter,
        &report_body("m-1", Some("2.0.0"), "ok", Some("2.0.0")),
    );
    let m = metrics(&s);
    assert_eq!((m.get(&ok), m.get(&failed)), (Some(&1.0), Some(&0.0)));
    assert_eq!(m.get(&agents_on("2.0.0")), Some(&1.0), "{m:#?}");
    assert_eq!(m[&reports], r0 + 1.0);

    report(
        &s,
        &reporter,
        &report_body("m-2", Some("2.0.0"), "failed", Some("1.0.0")),
    );
    report(
        &s,
        &reporter,
        &report_body("m-3", None, "error", Some("1.0.0")),
    );
    // A refused report is no report.
    let a = post_report(
        &s,
        &reporter,
        &report_body("m-4", Some("2.0.0"), "bogus", None),
    );
    assert_eq!(a.status, 400);
    let m = metrics(&s);
    assert_eq!(m.get(&rate), Some(&0.5), "{m:#?}");
    assert_eq!((m.get(&ok), m.get(&failed)), (Some(&1.0), Some(&1.0)));
    assert_eq!(m.get(&agents_on("1.0.0")), Some(&2.0), "{m:#?}");
    assert_eq!(m.get(&agents_on("2.0.0")), Some(&1.0));
    assert_eq!(m[&reports], r0 + 3.0);
    // An agent that moved on is counted once, at its new version.
    report(
        &s,
        &reporter,
        &report_body("m-2", Some("2.0.0"), "ok", Some("2.0.0")),
    );
    let m = metrics(&s);
    assert_eq!(m.get(&agents_on("1.0.0")), Some(&1.0), "{m:#?}");
    assert_eq!(m.get(&agents_on("2.0.0")), Some(&2.0));
    assert_eq!(m.get(&rate), Some(&0.0));

    act(&s, "advance", &[]);
    act(&s, "pause", &[]);
    let m = metrics(&s);
    assert_eq!(m.get(&percent("paused")), Some(&100.0), "{m:#?}");
    assert_eq!(m.get(&percent("running")), None, "{m:#?}");

    act(&s, "abort", &[]);
    let m = metrics(&s);
    assert!(
        !m.keys().any(|k| k.starts_with("arca_rollout_percent{")
            || k.starts_with("arca_rollout_failure_rate{")
            || k.starts_with("arca_rollout_reporting_agents{")),
        "an aborted rollout still has gauges: {m:#?}"
    );
    assert_eq!(m.get(&series("arca_rollout_halted", &ids)), Some(&0.0));

    // A halt by the figures shows as 1 (another name, so both are listed).
    push(&s, &key, "app/other", "1.0.0", 3);
    let plan = Plan {
        steps: "50,100",
        max_failure_rate: "0",
        min_reports: "1",
        ..SLOW
    };
    promote(&s, "app/other", "1.0.0", &plan.args());
    let mut b = report_body("m-5", Some("1.0.0"), "failed", None);
    b["name"] = json!("app/other");
    assert_eq!(report(&s, &reporter, &b)["halted"], true);
    let m = metrics(&s);
    let other = [("channel", CH), ("name", "app/other"), ("version", "1.0.0")];
    assert_eq!(
        m.get(&series("arca_rollout_halted", &other)),
        Some(&1.0),
        "{m:#?}"
    );
    assert_eq!(m.get(&series("arca_rollout_halted", &ids)), Some(&0.0));
}
