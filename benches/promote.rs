//! Promotion latency (p50/p99) as the database grows, and policy evaluation on its own.
//!
//! `cargo bench --bench promote` builds a home, fills its database with 100,000 artifacts
//! (1,000 names x 100 versions, each name's newest version current in dev) and 1,000,000
//! audit entries, then promotes releases into staging through the real use case
//! (`service::promote::promote`: policy evaluation with signature checks, the release row, the
//! re-signed targets/snapshot/timestamp and the audit entry, in one transaction). The same
//! promotions are timed on an empty database first, so the figures show how latency moves
//! with size. It does all of it on both engines in one run: SQLite in the home, and PostgreSQL
//! on a cluster of its own (`scripts/pg.sh` with `PG_DURABLE=1`: fsync and synchronous commit
//! on, as in production). The baseline of each engine, measured in the same run, is one
//! durable commit of one row (SQLite `synchronous=FULL`; PostgreSQL's default commit): the floor
//! of any change that must survive a crash. `ARCA_BENCH_ENGINES=sqlite` runs SQLite alone.
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

/// Where a run keeps its database.
enum Engine {
    Sqlite,
    /// A PostgreSQL cluster of the run's own: its directory and admin URL.
    Postgres {
        dir: tempfile::TempDir,
        admin: String,
    },
}

fn pg_script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg.sh")
}

impl Engine {
    fn name(&self) -> &'static str {
        match self {
            Engine::Sqlite => "SQLite",
            Engine::Postgres { .. } => "PostgreSQL",
        }
    }

    /// A durable PostgreSQL cluster started by the project's script.
    fn start_postgres() -> Engine {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("bash")
            .arg(pg_script())
            .arg("start")
            .arg(dir.path().join("pg"))
            .env("PG_DURABLE", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/pg.sh start failed (ARCA_BENCH_ENGINES=sqlite skips PostgreSQL): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let admin = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Engine::Postgres { dir, admin }
    }

    /// A new empty database URL (PostgreSQL), or none (SQLite in the home).
    fn new_database(&self, n: usize) -> Option<String> {
        let Engine::Postgres { admin, .. } = self else {
            return None;
        };
        let mut c =
            postgres::Client::connect(&format!("{admin}/postgres"), postgres::NoTls).unwrap();
        c.batch_execute(&format!("CREATE DATABASE bench_{n}"))
            .unwrap();
        Some(format!("{admin}/bench_{n}"))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Engine::Postgres { dir, .. } = self {
            let _ = std::process::Command::new("bash")
                .arg(pg_script())
                .arg("stop")
                .arg(dir.path().join("pg"))
                .status();
        }
    }
}

/// A fresh home with a builder key trusted for every name; returns (dir, app, builder key).
fn setup(database: Option<&str>) -> (tempfile::TempDir, arca::service::App, SigningKey) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    arca::home::init(&home, database).unwrap();
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
            // Many rows a statement: one round trip per 200 entries on PostgreSQL.
            const CHUNK: i64 = 200;
            let mut i = 0i64;
            while i < s.audit as i64 {
                let n = CHUNK.min(s.audit as i64 - i);
                let mut rows: Vec<(i64, String, String, String)> = Vec::with_capacity(n as usize);
                for k in 0..n {
                    let seq = start + 1 + i + k;
                    let subject = format!("svc/app{}@1.0.0", (i + k) % 1000);
                    let hash = arca::audit::entry_hash(seq, "2026-01-01T00:00:00Z", "bench", "push", &subject, "ok", "{}", &prev);
                    rows.push((seq, subject, prev.clone(), hash.clone()));
                    prev = hash;
                }
                let values: Vec<String> = (0..n)
                    .map(|k| {
                        let b = 4 * k;
                        format!("(?{}, '2026-01-01T00:00:00Z', 'bench', 'push', ?{}, 'ok', '{{}}', ?{}, ?{})", b + 1, b + 2, b + 3, b + 4)
                    })
                    .collect();
                let mut params: Vec<&dyn arca::db::sql::ToParam> = Vec::with_capacity(4 * n as usize);
                for (seq, subject, prev_hash, hash) in &rows {
                    params.extend([seq as &dyn arca::db::sql::ToParam, subject, prev_hash, hash]);
                }
                tx.execute(
                    &format!(
                        "INSERT INTO audit (seq, at, actor, action, subject, outcome, details, prev_hash, hash) VALUES {}",
                        values.join(", ")
                    ),
                    &params,
                )?;
                i += n;
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
        let r =
            arca::service::promote::promote(app, "bench", req, arca::audit::AuditAction::Promote)
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

/// One durable commit of one row on `database` (PostgreSQL) or SQLite in `dir`.
fn commit_baseline(dir: &std::path::Path, database: Option<&str>, n: usize) -> Vec<Duration> {
    if let Some(url) = database {
        let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
        c.batch_execute("CREATE TABLE baseline (x BIGINT)").unwrap();
        let st = c.prepare("INSERT INTO baseline VALUES ($1)").unwrap();
        let mut out: Vec<Duration> = (0..n as i64)
            .map(|i| {
                let t = Instant::now();
                c.execute(&st, &[&i]).unwrap();
                t.elapsed()
            })
            .collect();
        out.sort();
        return out;
    }
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

    let mut engines = vec![Engine::Sqlite];
    if std::env::var("ARCA_BENCH_ENGINES").as_deref() != Ok("sqlite") {
        engines.push(Engine::start_postgres());
    }
    // (engine, label) -> (p50, p99)
    let mut results: Vec<(&'static str, &'static str, Duration, Duration)> = Vec::new();
    for (n, engine) in engines.iter().enumerate() {
        for (k, (label, sizes)) in [("small", &small), ("large", &large)]
            .into_iter()
            .enumerate()
        {
            let database = engine.new_database(2 * n + k);
            let (dir, app, builder) = setup(database.as_deref());
            let t = Instant::now();
            populate(&app, &builder, sizes);
            let filled = t.elapsed();
            let lat = rt.block_on(promote_all(&app, sizes));
            let base = commit_baseline(dir.path(), database.as_deref(), 200);
            println!(
                "{} {label}: {} artifacts, {} audit entries (filled in {:.1} s); {} promotions into staging",
                engine.name(),
                sizes.names * sizes.versions,
                sizes.audit,
                filled.as_secs_f64(),
                sizes.promotions
            );
            println!(
                "  promotion p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms | durable commit p50 {:.2} ms  p99 {:.2} ms | p50 ratio {:.1}x",
                ms(percentile(&lat, 0.5)),
                ms(percentile(&lat, 0.99)),
                ms(*lat.last().unwrap()),
                ms(percentile(&base, 0.5)),
                ms(percentile(&base, 0.99)),
                ms(percentile(&lat, 0.5)) / ms(percentile(&base, 0.5)).max(1e-6)
            );
            results.push((
                engine.name(),
                label,
                percentile(&lat, 0.5),
                percentile(&lat, 0.99),
            ));
            // The pool's connections close before the cluster stops.
            drop(app);
        }
    }
    let get = |e: &str, l: &str| {
        results
            .iter()
            .find(|r| r.0 == e && r.1 == l)
            .map(|r| (r.2, r.3))
    };
    for e in ["SQLite", "PostgreSQL"] {
        if let (Some((_, small99)), Some((_, large99))) = (get(e, "small"), get(e, "large")) {
            println!(
                "{e}: p99 large / p99 small: {:.2}x (flat is ~1x); target p99 < 20 ms: {}",
                ms(large99) / ms(small99).max(1e-6),
                if large99 < Duration::from_millis(20) {
                    "ok"
                } else {
                    "MISSED"
                }
            );
        }
    }
    if let (Some((sq50, _)), Some((pg50, _))) = (get("SQLite", "large"), get("PostgreSQL", "large"))
    {
        let ratio = ms(pg50) / ms(sq50).max(1e-6);
        println!(
            "PostgreSQL p50 / SQLite p50 (large): {ratio:.2}x; target within 2x: {}",
            if ratio <= 2.0 { "ok" } else { "MISSED" }
        );
    }
}
