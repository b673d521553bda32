//! Promotion latency (p50/p99) as the database grows, and policy evaluation on its own.
//!
//! `cargo bench --bench promote` builds a home, fills its database with 100,000 artifacts
//! (1,000 names x 100 versions, each name's newest version current in dev) and 1,000,000
//! audit entries, then promotes releases into staging through the real use case
//! (`service::promote::promote`: policy evaluation with signature checks, the release row, the
//! re-signed targets/snapshot/timestamp and the audit entry, in one SQLite transaction). The
//! same promotions are timed on an empty database first, so the figures show how latency moves
//! with size. The baseline, measured in the same run, is one durable SQLite commit (an INSERT
//! with `synchronous=FULL`): the floor of any change that must survive a crash.
//!
//! Run by `cargo test` (no `--bench` argument) it does a small smoke run instead, so CI proves
//! the benchmark still works without spending minutes on it.

use std::time::{Duration, Instant};

use arca::db::Sql;
use arca::model::api::{BUILD_PREDICATE, PromoteRequest, subject_name};
use arca::params;
use arca::policy::{Facts, Policy, StatementFacts};
use arca_keys::dsse::Envelope;
use arca_keys::intoto::{PAYLOAD_TYPE, Statement, Subject};
use arca_keys::{SignedEnvelope, SigningKey, TrustDocument};

struct Sizes {
    names: usize,
    versions: usize,
    audit: usize,
    promotions: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A trust entry for a builder key allowed to sign any name.
fn any_name_builder(builder: &SigningKey) -> arca_keys::KeyEntry {
    arca_keys::KeyEntry {
        public: builder.public().to_tuf(),
        roles: [arca_keys::Role::Builder].into(),
        scope: vec!["**".into()],
        status: arca_keys::KeyStatus::Active,
        not_after: None,
        label: None,
        replaced_by: None,
    }
}

/// A fresh home with a builder key trusted for every name; returns (dir, app, builder key).
fn setup() -> (tempfile::TempDir, arca::service::App, SigningKey) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    arca::home::init(&home, None).unwrap();
    let cfg = arca::config::Config::load(&home).unwrap();
    let app = arca::startup::open(&home, cfg).unwrap();
    let root = SigningKey::read_file(&home.join("keys/root.key")).unwrap();
    let builder = SigningKey::generate().unwrap();
    app.db
        .call_sync(|c| {
            let (_, bytes) = arca::db::trust::latest(c)?.unwrap();
            let cur: TrustDocument = SignedEnvelope::from_slice(&bytes)
                .unwrap()
                .decode("trust")
                .unwrap();
            let mut next = cur.next();
            next.keys
                .insert(builder.key_id(), any_name_builder(&builder));
            let env = SignedEnvelope::sign(&next, &[&root]).unwrap();
            arca::db::trust::insert(c, next.version, &env.to_bytes())
        })
        .unwrap();
    (dir, app, builder)
}

/// Fills the database directly: artifacts with signed build statements, dev releases, audit entries.
fn populate(app: &arca::service::App, builder: &SigningKey, s: &Sizes) {
    app.db
        .call_sync(|c| {
            let tx = c.transaction()?;
            for n in 0..s.names {
                let name = format!("svc/app{n}");
                for v in 0..s.versions {
                    let version = format!("1.0.{v}");
                    let (blake3, sha256) = (format!("{:064x}", n * 1000 + v), format!("{:064x}", (n * 1000 + v) << 1));
                    tx.execute(
                        "INSERT INTO blobs (blake3, sha256, size, created_at) VALUES (?1, ?2, 100, '2026-01-01T00:00:00Z')",
                        params![blake3, sha256],
                    )?;
                    let id: i64 = tx
                        .query_one(
                            "INSERT INTO artifacts (name, version, file_name, blake3, media_type, uploaded_by, created_at) \
                             VALUES (?1, ?2, 'app.bin', ?3, 'application/octet-stream', 'bench', '2026-01-01T00:00:00Z') RETURNING id",
                            params![name, version, blake3],
                        )?
                        .get(0)?;
                    let st = Statement::new(
                        Subject {
                            name: subject_name(&name.parse().unwrap(), &version.parse().unwrap()),
                            digest: [("sha256".into(), sha256.clone()), ("blake3".into(), blake3.clone())].into(),
                        },
                        BUILD_PREDICATE,
                        serde_json::json!({"file_name": "app.bin", "size": 100}),
                    );
                    // Only the newest version gets promoted: sign just those, to keep set-up short.
                    if v + 1 == s.versions {
                        let env = Envelope::sign(PAYLOAD_TYPE, &st.to_bytes(), &[builder])
                            .unwrap()
                            .to_bytes();
                        let sha = arca::tuf::metadata::sha256_hex(&env);
                        arca::db::artifacts::insert_statement(&tx, &sha, id, BUILD_PREDICATE, &[], &env)?;
                        arca::db::channels::record_release(&tx, "dev", &name, id, "push", "bench", None)?;
                    }
                }
            }
            let mut prev = arca::audit::GENESIS_HASH.to_owned();
            let start: i64 = tx.query_one("SELECT COALESCE(MAX(seq), 0) FROM audit", params![])?.get(0)?;
            if start > 0 {
                prev = tx.query_one("SELECT hash FROM audit WHERE seq = ?1", params![start])?.get(0)?;
            }
            for i in 0..s.audit as i64 {
                let seq = start + 1 + i;
                let subject = format!("svc/app{}@1.0.0", i % 1000);
                let hash = arca::audit::entry_hash(seq, "2026-01-01T00:00:00Z", "bench", "push", &subject, "ok", "{}", &prev);
                tx.execute(
                    "INSERT INTO audit (seq, at, actor, action, subject, outcome, details, prev_hash, hash) \
                     VALUES (?1, '2026-01-01T00:00:00Z', 'bench', 'push', ?2, 'ok', '{}', ?3, ?4)",
                    params![seq, subject, prev, hash],
                )?;
                prev = hash;
            }
            tx.commit()
        })
        .unwrap();
}

/// Promotes the newest version of `count` names into staging; returns each latency.
async fn promote_all(app: &arca::service::App, s: &Sizes) -> Vec<Duration> {
    let mut out = Vec::with_capacity(s.promotions);
    for n in 0..s.promotions {
        let req = PromoteRequest {
            name: format!("svc/app{}", n % s.names).parse().unwrap(),
            version: format!("1.0.{}", s.versions - 1).parse().unwrap(),
            to: "staging".parse().unwrap(),
            dry_run: false,
            reason: None,
            rollout: None,
        };
        let t = Instant::now();
        let r = arca::service::promote::promote(app, "bench", req, "promote")
            .await
            .unwrap();
        out.push(t.elapsed());
        assert!(
            r.promoted || r.already_current,
            "{:?}",
            r.decision.failures()
        );
    }
    out.sort();
    out
}

/// One durable SQLite commit, the floor of a change that must survive a crash.
fn commit_baseline(dir: &std::path::Path, n: usize) -> Vec<Duration> {
    let c = rusqlite::Connection::open(dir.join("baseline.db")).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.pragma_update(None, "synchronous", "FULL").unwrap();
    c.execute("CREATE TABLE t (x INTEGER)", []).unwrap();
    let mut out: Vec<Duration> = (0..n)
        .map(|i| {
            let t = Instant::now();
            c.execute("INSERT INTO t VALUES (?1)", [i as i64]).unwrap();
            t.elapsed()
        })
        .collect();
    out.sort();
    out
}

/// Policy evaluation alone (prod's default: from, build signature, approvals), per call.
fn evaluation_cost(iterations: usize) -> Duration {
    let root = SigningKey::generate().unwrap();
    let builder = SigningKey::generate().unwrap();
    let mut trust = TrustDocument::genesis(&[root.public()], 1);
    trust
        .keys
        .insert(builder.key_id(), any_name_builder(&builder));
    let (name, version) = ("svc/app".parse().unwrap(), "1.0.0".parse().unwrap());
    let (sha, b3) = ("a".repeat(64), "b".repeat(64));
    let st = Statement::new(
        Subject {
            name: subject_name(&name, &version),
            digest: [
                ("sha256".into(), sha.clone()),
                ("blake3".into(), b3.clone()),
            ]
            .into(),
        },
        BUILD_PREDICATE,
        serde_json::json!({}),
    );
    let env = Envelope::sign(PAYLOAD_TYPE, &st.to_bytes(), &[&builder]).unwrap();
    let policy = Policy::from_toml("from = \"dev\"\n[require_approvals]\nthreshold = 1\n").unwrap();
    let channel = "prod".parse().unwrap();
    let t = Instant::now();
    for _ in 0..iterations {
        // What a promotion does per statement (verify the signature) plus the rules.
        let facts = vec![
            StatementFacts::about(&env, "d".into(), &trust, &name, &version, &sha, &b3).unwrap(),
        ];
        let d = arca::policy::evaluate(
            &policy,
            &Facts {
                channel: &channel,
                name: &name,
                version: &version,
                statements: &facts,
                trust: &trust,
                current_in_from_since: Some(chrono::Utc::now()),
                current_in_channel: None,
                now: chrono::Utc::now(),
            },
        );
        std::hint::black_box(d);
    }
    t.elapsed() / iterations as u32
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (small, large, eval_iters) = if full {
        (
            Sizes {
                names: 1000,
                versions: 1,
                audit: 0,
                promotions: 500,
            },
            Sizes {
                names: 1000,
                versions: 100,
                audit: 1_000_000,
                promotions: 500,
            },
            20_000,
        )
    } else {
        (
            Sizes {
                names: 20,
                versions: 1,
                audit: 0,
                promotions: 10,
            },
            Sizes {
                names: 20,
                versions: 5,
                audit: 1000,
                promotions: 10,
            },
            100,
        )
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let eval = evaluation_cost(eval_iters);
    println!(
        "policy evaluation (1 signature check + rules): {:.1} us/call",
        eval.as_secs_f64() * 1e6
    );

    let mut results = Vec::new();
    for (label, sizes) in [("small", &small), ("large", &large)] {
        let (dir, app, builder) = setup();
        let t = Instant::now();
        populate(&app, &builder, sizes);
        let filled = t.elapsed();
        let lat = rt.block_on(promote_all(&app, sizes));
        let base = commit_baseline(dir.path(), 200);
        println!(
            "{label}: {} artifacts, {} audit entries (filled in {:.1} s); {} promotions into staging",
            sizes.names * sizes.versions,
            sizes.audit,
            filled.as_secs_f64(),
            sizes.promotions
        );
        println!(
            "  promotion p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms | durable SQLite commit p50 {:.2} ms  p99 {:.2} ms | p50 ratio {:.1}x",
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99)),
            ms(*lat.last().unwrap()),
            ms(percentile(&base, 0.5)),
            ms(percentile(&base, 0.99)),
            ms(percentile(&lat, 0.5)) / ms(percentile(&base, 0.5)).max(1e-6)
        );
        results.push(percentile(&lat, 0.99));
    }
    println!(
        "p99 large / p99 small: {:.2}x (flat is ~1x); target p99 < 20 ms: {}",
        ms(results[1]) / ms(results[0]).max(1e-6),
        if results[1] < Duration::from_millis(20) {
            "ok"
        } else {
            "MISSED"
        }
    );
}
