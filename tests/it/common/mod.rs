//! The integration-test harness: a real `arca serve` on port 0 with a fresh temporary home,
//! driven through the real `arca` binary (and python-tuf, and moto's S3 server, from the venv
//! that `scripts/test-env.sh` installs).
//!
//! Two engines: SQLite (`H/arca.db`, initialised by the first `arca serve`), unless
//! `ARCA_TEST_PG` holds a PostgreSQL admin URL (`postgres://postgres@127.0.0.1:PORT`, from
//! `scripts/pg.sh start`, as `scripts/test.sh` does): then every server gets a fresh database of
//! its own there, initialised with `arca init --database URL`. Tests read and tamper with
//! either through [`db::TestDb`].

#[macro_use]
pub mod db;
pub mod cluster;
pub mod moto;
pub mod prometheus;
pub mod raw;

use db::TestDb;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `arca` binary under test.
/// A path as the `&str` a command-line argument list takes (test paths are UTF-8).
pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

pub fn arca_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_arca"))
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The test venv (python-tuf, moto). Fails loudly when missing: tests never skip silently.
pub fn venv() -> PathBuf {
    let dir = std::env::var_os("ARCA_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".test-env/venv"));
    assert!(
        dir.join("bin/python").exists(),
        "no test venv at {}: run scripts/test-env.sh (scripts/test.sh does it for you)",
        dir.display()
    );
    dir
}

/// `tests/tuf_check.py`: python-tuf's `ngclient` fetching one target, as a third-party client.
pub fn tuf_fetch_check() -> PathBuf {
    let p = repo_root().join("tests/tuf_check.py");
    assert!(p.exists(), "missing {}", p.display());
    p
}

/// The engine the suite runs on: "postgres" when `ARCA_TEST_PG` is set, else "sqlite".
pub fn engine() -> &'static str {
    if pg_admin_url().is_some() {
        "postgres"
    } else {
        "sqlite"
    }
}

/// The PostgreSQL admin URL of the suite's cluster (`ARCA_TEST_PG`), if it runs on PostgreSQL.
pub fn pg_admin_url() -> Option<String> {
    std::env::var("ARCA_TEST_PG")
        .ok()
        .filter(|u| !u.is_empty())
        .map(|u| u.trim_end_matches('/').to_owned())
}

/// A fresh, empty PostgreSQL database of one test's own (`arca_t_<pid>_<n>`) in the suite's
/// cluster. Dropped (best effort, with its connections) on drop.
pub struct PgDatabase {
    admin: String,
    name: String,
    url: String,
}

impl PgDatabase {
    pub fn create(admin: &str) -> PgDatabase {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("arca_t_{}_{n}", std::process::id());
        let mut c = postgres::Client::connect(admin, postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to ARCA_TEST_PG={admin}: {e}"));
        // A database left by an earlier run of the same pid (the cluster is throw-away, but
        // ARCA_TEST_PG may point at a longer-lived one).
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        PgDatabase {
            url: format!("{admin}/{name}"),
            admin: admin.to_owned(),
            name,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// A running server with its own temporary home. Killed on drop.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    pub url: String,
    pub token: String,
    child: Option<Child>,
    extra_env: Vec<(String, String)>,
    /// More arguments of `arca serve`, and the directory it runs in (default: inherited).
    serve_args: Vec<String>,
    serve_dir: Option<PathBuf>,
    /// Set on every `arca` client command of `arca()` (none unless `set_client_env` is called).
    client_env: Vec<(String, String)>,
    /// The server's own PostgreSQL database, when the suite runs on PostgreSQL.
    pg: Option<PgDatabase>,
    /// The URL of the PostgreSQL database the server runs on (None on SQLite).
    db_url: Option<String>,
}

impl Server {
    /// Starts a server on a fresh home (initialised on first start).
    pub fn start() -> Server {
        Self::start_with(None, &[])
    }

    /// Starts a server whose database the test will tamper with behind its back (to play a
    /// malicious server or mirror): metadata is read from the database on every request.
    pub fn start_tamperable() -> Server {
        Self::start_with(Some("[tuf]\nmemory_cache = false\n"), &[])
    }

    /// Starts a server whose home gets `config` as arca.toml before the first start.
    pub fn start_with(config: Option<&str>, env: &[(&str, &str)]) -> Server {
        Self::start_full(config, env, &[], None)
    }

    /// Starts a server with `config`, more `arca serve` arguments, run in directory `cwd`.
    pub fn start_serving(config: Option<&str>, args: &[&str], cwd: Option<&Path>) -> Server {
        Self::start_full(config, &[], args, cwd)
    }

    /// Starts a server on a fresh SQLite home whatever the suite's engine (`arca db copy`
    /// moves such a home to PostgreSQL).
    pub fn start_sqlite() -> Server {
        Self::start_engine(None, &[], &[], None, false)
    }

    fn start_full(
        config: Option<&str>,
        env: &[(&str, &str)],
        args: &[&str],
        cwd: Option<&Path>,
    ) -> Server {
        Self::start_engine(config, env, args, cwd, pg_admin_url().is_some())
    }

    fn start_engine(
        config: Option<&str>,
        env: &[(&str, &str)],
        args: &[&str],
        cwd: Option<&Path>,
        postgres: bool,
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        if let Some(c) = config {
            std::fs::write(home.join("arca.toml"), c).unwrap();
        }
        let mut s = Server {
            dir,
            home,
            url: String::new(),
            token: String::new(),
            child: None,
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            serve_args: args.iter().map(|a| a.to_string()).collect(),
            serve_dir: cwd.map(Path::to_path_buf),
            client_env: Vec::new(),
            pg: None,
            db_url: None,
        };
        if let Some(admin) = pg_admin_url().filter(|_| postgres) {
            // `arca serve` never initialises a PostgreSQL database: `arca init` does, after the
            // test's arca.toml is written (it appends its `[database]` table to it).
            let pg = PgDatabase::create(&admin);
            let url = pg.url().to_owned();
            s.pg = Some(pg);
            s.init_database(&url);
        }
        s.launch();
        s.token = std::fs::read_to_string(s.home.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned();
        s
    }

    /// Starts a server on a fresh home initialised on the PostgreSQL database at `url`, which
    /// the test owns (e.g. in a cluster of its own that it stops and starts).
    pub fn start_on_database(url: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let mut s = Server {
            dir,
            home,
            url: String::new(),
            token: String::new(),
            child: None,
            extra_env: Vec::new(),
            serve_args: Vec::new(),
            serve_dir: None,
            client_env: Vec::new(),
            pg: None,
            db_url: None,
        };
        s.init_database(url);
        s.launch();
        s.token = std::fs::read_to_string(s.home.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned();
        s
    }

    /// `arca init --database URL` on the home, and `URL` in the environment of the server and
    /// of every client command.
    fn init_database(&mut self, url: &str) {
        let out = Command::new(arca_bin())
            .args(["init", "--home"])
            .arg(&self.home)
            .args(["--database", url])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "arca init --database {url} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        self.extra_env
            .push(("ARCA_DATABASE_URL".into(), url.to_owned()));
        self.client_env
            .push(("ARCA_DATABASE_URL".into(), url.to_owned()));
        self.db_url = Some(url.to_owned());
    }

    /// Another server on this server's PostgreSQL database, keys and blobs: its home a copy of
    /// this one's (arca.toml, keys, root.json, admin.token) without the lock, the logs and the
    /// blobs, its store this server's blobs directory (unless arca.toml names a store of its
    /// own, which both then share). Started, with its own address.
    pub fn peer(&self) -> Server {
        assert!(self.db_url.is_some(), "a peer shares a PostgreSQL database");
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        copy_home(&self.home, &home);
        let blobs = format!("file://{}", self.home.join("blobs").display());
        edit_config(&home, |table| {
            let store = table
                .entry("store")
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .unwrap();
            if store
                .get("url")
                .and_then(|u| u.as_str())
                .unwrap_or("")
                .is_empty()
            {
                store.insert("url".into(), toml::Value::String(blobs));
            }
        });
        let mut s = self.sibling(dir, home, self.serve_args.clone());
        s.launch();
        s
    }

    /// A server on this one's database and token with the home `home` (in `dir`), not started.
    fn sibling(&self, dir: tempfile::TempDir, home: PathBuf, serve_args: Vec<String>) -> Server {
        Server {
            dir,
            home,
            url: String::new(),
            token: self.token.clone(),
            child: None,
            extra_env: self.extra_env.clone(),
            serve_args,
            serve_dir: None,
            client_env: self.client_env.clone(),
            pg: None,
            db_url: self.db_url.clone(),
        }
    }

    /// `arca init --join`: the home of a further server on this server's PostgreSQL database
    /// (which must keep its blobs in the object store `store_url`, reached with `options`,
    /// `K=V`), with a copy of this server's master key; started, with its own address.
    pub fn join(&self, store_url: &str, options: &[String]) -> Server {
        self.join_with(store_url, options, "")
    }

    /// [`Server::join`] with `config` appended to the joined home's arca.toml before it starts
    /// (settings that every server of the database should share, like `[tuf]`'s).
    pub fn join_with(&self, store_url: &str, options: &[String], config: &str) -> Server {
        let url = self
            .db_url
            .clone()
            .expect("a joined server shares a PostgreSQL database");
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let mut cmd = Command::new(arca_bin());
        cmd.args(["init", "--join", "--home"])
            .arg(&home)
            .args(["--database", &url, "--store", store_url])
            .arg("--master-key")
            .arg(self.home.join("master.key"))
            .env("RUST_LOG", "warn")
            .env_remove("ARCA_MASTER_KEY_FILE")
            .stdin(Stdio::null());
        for o in options {
            cmd.args(["--store-option", o]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "arca init --join failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        if !config.is_empty() {
            // Merged table by table: the joined home's arca.toml has tables of its own.
            edit_config(&home, |table| {
                for (k, v) in config.parse::<toml::Table>().unwrap() {
                    match (table.get_mut(&k), v) {
                        (Some(toml::Value::Table(have)), toml::Value::Table(add)) => {
                            have.extend(add)
                        }
                        (_, v) => {
                            table.insert(k, v);
                        }
                    }
                }
            });
        }
        let mut s = self.sibling(dir, home, Vec::new());
        s.launch();
        s
    }

    /// (Re)starts the process on the same home and waits for its address.
    pub fn launch(&mut self) {
        let mut cmd = Command::new(arca_bin());
        cmd.args(["serve", "--home"])
            .arg(&self.home)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info,actix_server=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("server.log"))
                    .unwrap(),
            ));
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd.args(&self.serve_args);
        if let Some(d) = &self.serve_dir {
            cmd.current_dir(d);
        }
        let mut child = cmd.spawn().expect("spawn arca serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("arca listening on ") {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("server did not start; log:\n{}", self.log()));
        self.url = url;
        self.child = Some(child);
    }

    /// Runs `arca serve` on this server's home (stopped first) with `env` added, expecting it to
    /// refuse to start: it exits non-zero (within a minute) with one error line, returned.
    pub fn serve_fails(&mut self, env: &[(&str, &str)]) -> String {
        self.kill();
        let mut cmd = Command::new(arca_bin());
        cmd.args(["serve", "--home"])
            .arg(&self.home)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn arca serve");
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("arca serve started (or hung) where it should have refused to start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        failure_line(&["serve"], &out)
    }

    /// SIGKILLs the server (no clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A path inside the test's temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn root_key(&self) -> PathBuf {
        self.home.join("keys/root.key")
    }

    pub fn root_json(&self) -> PathBuf {
        self.home.join("root.json")
    }

    /// Sets `key=value` in the environment of every later client command of `arca()`.
    pub fn set_client_env(&mut self, key: &str, value: &str) {
        self.client_env.push((key.to_owned(), value.to_owned()));
    }

    /// `arca ARGS` with this server and the admin token in the environment.
    pub fn arca(&self) -> Command {
        let mut c = Command::new(arca_bin());
        for (k, v) in &self.client_env {
            c.env(k, v);
        }
        c.env("ARCA_SERVER", &self.url)
            .env("ARCA_TOKEN", &self.token)
            .env("HOME", self.dir.path())
            .env_remove("ARCA_METADATA_DIR")
            .stdin(Stdio::null());
        c
    }

    /// Runs `arca ARGS`, expecting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.arca().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "arca {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `arca ARGS`, expecting failure; returns stderr (which must be one line naming why).
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.arca().args(args).output().unwrap();
        failure_line(args, &out)
    }

    /// Generates an unencrypted key in the test dir and returns its path (`.pub` beside it).
    pub fn key(&self, name: &str) -> PathBuf {
        let p = self.path(&format!("{name}.key"));
        self.ok(&["key", "gen", "--unencrypted", "--out", p.to_str().unwrap()]);
        p
    }

    /// A new builder key with `scope`, added to the trust document with the root key.
    pub fn builder(&self, name: &str, scope: &str) -> PathBuf {
        self.trusted_key(name, "builder", scope)
    }

    /// A new approver key for channel `scope`, added to the trust document with the root key.
    pub fn approver(&self, name: &str, scope: &str) -> PathBuf {
        self.trusted_key(name, "approver", scope)
    }

    fn trusted_key(&self, name: &str, role: &str, scope: &str) -> PathBuf {
        let k = self.key(name);
        self.ok(&[
            "trust",
            "add-key",
            &format!("{}.pub", k.display()),
            "--role",
            role,
            "--scope",
            scope,
            "--sign",
            self.root_key().to_str().unwrap(),
        ]);
        k
    }

    /// Writes `len` pseudo-random bytes to the test dir.
    pub fn file(&self, name: &str, len: usize, seed: u8) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, pseudo_random(len, seed)).unwrap();
        p
    }

    /// Pushes `file` as `name@version` with `key`.
    pub fn push(&self, file: &Path, name: &str, version: &str, key: &Path) -> String {
        self.ok(&[
            "push",
            file.to_str().unwrap(),
            "--name",
            name,
            "--version",
            version,
            "--key",
            key.to_str().unwrap(),
        ])
    }

    /// `arca pull` args for `name` from `channel` into `out` with client state in `state`.
    pub fn pull_args(&self, name: &str, channel: &str, out: &Path, state: &Path) -> Vec<String> {
        vec![
            "pull".into(),
            name.into(),
            "--channel".into(),
            channel.into(),
            "--root".into(),
            self.root_json().display().to_string(),
            "--out".into(),
            out.display().to_string(),
            "--metadata-dir".into(),
            state.display().to_string(),
        ]
    }

    pub fn pull_ok(&self, name: &str, channel: &str, out: &Path, state: &Path) -> String {
        let args = self.pull_args(name, channel, out, state);
        self.ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    pub fn pull_fails(&self, name: &str, channel: &str, out: &Path, state: &Path) -> String {
        let args = self.pull_args(name, channel, out, state);
        self.fails(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// A new `reporter` token for any agent (`--agent *`): what deploy agents hold (it may
    /// only post reports).
    pub fn reporter_token(&self) -> String {
        self.ok(&["token", "create", "--role", "reporter", "--agent", "*"])
            .trim()
            .to_owned()
    }

    /// `arca agent` following `name` in `channel`, with its own `dir` and `id`, holding
    /// `token` (a reporter token). Callers add `--once`, `--health-cmd`, `--interval`...
    pub fn agent_cmd(
        &self,
        token: &str,
        channel: &str,
        name: &str,
        dir: &Path,
        id: &str,
    ) -> Command {
        let mut c = self.arca();
        c.env("ARCA_TOKEN", token)
            .env("RUST_LOG", "warn")
            .args(["agent", "--channel", channel, "--name", name, "--root"])
            .arg(self.root_json())
            .arg("--dir")
            .arg(dir)
            .args(["--id", id]);
        c
    }

    /// Notes that the home now names the PostgreSQL database at `url` in its arca.toml (after
    /// `arca db copy`), for `db()` and `database_url()`.
    pub fn moved_to_database(&mut self, url: &str) {
        self.db_url = Some(url.to_owned());
    }

    /// The URL of the server's PostgreSQL database (None on SQLite).
    pub fn database_url(&self) -> Option<&str> {
        self.db_url.as_deref()
    }

    /// Opens the server's database (for inspecting and, in attack tests, tampering), on
    /// either engine.
    pub fn db(&self) -> TestDb {
        match self.database_url() {
            Some(url) => TestDb::postgres(url),
            None => TestDb::sqlite(&self.home.join("arca.db")),
        }
    }

    /// A fingerprint of everything a refused request must leave untouched: the rows of every
    /// table of the schema, read from the catalogue (`sqlite_master`, or PostgreSQL's
    /// `information_schema.tables`) so that a new table is in it without being listed here,
    /// and every file under blobs/. Left out, as written by refusals by
    /// design: the audit log (`audit`, and `audit_checkpoints`, its signed heads), and
    /// `token_used`, when each token was last used, which a refused request made with a valid
    /// token records as a use (at most once a minute; schema migration 7: "recording a use is
    /// no change to the token"). And each engine's own bookkeeping: SQLite's `sqlite_*`
    /// tables, a schema migrations table on PostgreSQL.
    pub fn state(&self) -> String {
        let c = self.db();
        let tables = c.tables(&["audit", "audit_checkpoints", "token_used"]);
        let mut out = String::new();
        for table in tables {
            let mut rows: Vec<String> = c
                .rows(&format!("SELECT * FROM \"{table}\""), params![])
                .into_iter()
                .map(|r| r.iter().map(|v| format!("{v:?}|")).collect())
                .collect();
            // In a fixed order whatever the table's keys: sorted by their text.
            rows.sort();
            out.push_str(&format!("[{table}]\n"));
            for r in rows {
                out.push_str(&r);
                out.push('\n');
            }
        }
        out.push_str("[blobs/]\n");
        for f in list_files(&self.home.join("blobs")) {
            out.push_str(&format!("{f}\n"));
        }
        out
    }

    /// Number of audit entries with this outcome.
    pub fn audit_count(&self, outcome: &str) -> i64 {
        self.db().one(
            "SELECT COUNT(*) FROM audit WHERE outcome = ?1",
            params![outcome],
        )
    }

    /// Python-tuf's ngclient fetching `target` from `channel`; returns (success, output).
    pub fn python_tuf(
        &self,
        channel: &str,
        target: &str,
        out: &Path,
        extra: &[&str],
    ) -> (bool, String) {
        self.python_tuf_env(channel, target, out, extra, &[])
    }

    /// `python_tuf` with `env` set for python (e.g. `REQUESTS_CA_BUNDLE` for an HTTPS server).
    pub fn python_tuf_env(
        &self,
        channel: &str,
        target: &str,
        out: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> (bool, String) {
        let o = Command::new(venv().join("bin/python"))
            .envs(env.iter().copied())
            .arg(tuf_fetch_check())
            .args([
                "--metadata-url",
                &format!("{}/tuf/{channel}/metadata/", self.url),
            ])
            .args([
                "--targets-url",
                &format!("{}/tuf/{channel}/targets/", self.url),
            ])
            .args(["--root", self.root_json().to_str().unwrap()])
            .args(["--target", target, "--out", out.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap();
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The newest metadata row of `role` in `channel`: (version, body).
/// Rewrites the arca.toml of `home` (an empty table if it has none) through `f`.
fn edit_config(home: &Path, f: impl FnOnce(&mut toml::Table)) {
    let path = home.join("arca.toml");
    let mut table: toml::Table = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .parse()
        .unwrap();
    f(&mut table);
    std::fs::write(&path, toml::to_string(&table).unwrap()).unwrap();
}

pub fn latest_meta(s: &Server, channel: &str, role: &str) -> (u64, Vec<u8>) {
    s.db().one(
        "SELECT version, body FROM tuf_metadata WHERE channel = ?1 AND role = ?2 \
         ORDER BY version DESC LIMIT 1",
        params![channel, role],
    )
}

/// Overwrites one stored metadata file (what the server then serves as-is).
pub fn set_meta_body(s: &Server, channel: &str, role: &str, version: u64, body: &[u8]) {
    let n = s.db().execute(
        "UPDATE tuf_metadata SET body = ?1 WHERE channel = ?2 AND role = ?3 AND version = ?4",
        params![body, channel, role, version],
    );
    assert_eq!(n, 1, "no {channel} {role} v{version} row");
}

/// The forgery of a server whose online key is compromised: takes the newest targets of `channel`,
/// applies `edit` to its `signed`, bumps the version, signs it with the channel's ONLINE key
/// (as a server whose online key is compromised could), stores it and publishes a matching
/// snapshot and timestamp with arca's own publishing code.
pub fn forge_targets_with_online_key(
    s: &Server,
    channel: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) {
    let key = online_key(s, channel);
    let (version, body) = latest_meta(s, channel, "targets");
    let env = arca::tuf::metadata::Envelope::from_slice("targets", &body).unwrap();
    let mut signed = env.signed.clone();
    edit(&mut signed);
    signed["version"] = serde_json::Value::from(version + 1);
    let expires = signed["expires"].as_str().unwrap().to_owned();
    let forged = arca::tuf::metadata::Envelope::sign(&signed, &[&key]).to_bytes();
    let cfg = arca::config::TufConfig::default();
    // Written through arca's own database layer, on whichever engine the server runs.
    let db = arca_db(s);
    db.call_sync(|c| {
        let tx = c.transaction()?;
        arca::db::tuf::insert(
            &tx,
            channel,
            arca::tuf::metadata::TufRole::Targets,
            version + 1,
            &forged,
            &expires,
        )?;
        arca::tuf::repo::publish_snapshot(&tx, channel, &key, &cfg, chrono::Utc::now())?;
        tx.commit()
    })
    .unwrap();
}

/// The online key of `channel` as the server signs with it: its row in the database, unsealed
/// with the home's master key (what a thief of both would hold).
pub fn online_key(s: &Server, channel: &str) -> arca_keys::SigningKey {
    sealed_key(s, &format!("online/{channel}"))
}

/// The server key sealed in the row `name` (`audit`, `online/CH`, `online-next/CH`), unsealed
/// with the home's master key.
pub fn sealed_key(s: &Server, name: &str) -> arca_keys::SigningKey {
    let (key_id, sealed): (String, Vec<u8>) = s.db().one(
        "SELECT key_id, sealed FROM server_keys WHERE name = ?1",
        params![name],
    );
    let master = arca_keys::sealed::MasterKey::read_file(&s.home.join("master.key")).unwrap();
    master.unseal(name, &key_id, &sealed).unwrap()
}

/// The server's database opened with arca's own database layer (behind the server's back).
pub fn arca_db(s: &Server) -> arca::db::Db {
    match s.database_url() {
        Some(url) => arca::db::Db::connect(url, 1).unwrap(),
        None => arca::db::Db::open(&s.home.join("arca.db")).unwrap(),
    }
}

/// What a thread needs to run `arca` against a server (the `Server` itself stays with the
/// thread that kills and restarts it).
#[derive(Clone)]
pub struct Client {
    url: String,
    token: String,
    home: PathBuf,
}

impl Client {
    pub fn of(s: &Server) -> Client {
        Client {
            url: s.url.clone(),
            token: s.token.clone(),
            home: s.dir.path().to_owned(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(arca_bin())
            .env("ARCA_SERVER", &self.url)
            .env("ARCA_TOKEN", &self.token)
            .env("HOME", &self.home)
            .env_remove("ARCA_METADATA_DIR")
            .stdin(Stdio::null())
            .args(args)
            .output()
            .unwrap()
    }
}

/// Asserts a failed run that printed one clear `error:` line; returns that stderr.
pub fn failure_line(args: &[&str], out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "arca {args:?} should have failed; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "expected one error line, got: {stderr}");
    stderr
}

/// Every file under `dir`, relative, sorted.
pub fn list_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Deterministic bytes (xorshift), so a failing test can be re-run with the same data.
pub fn pseudo_random(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ u64::from(seed).wrapping_mul(0x0100_0000_01B3);
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Waits until `f` is true, up to `timeout`.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Copies a home for [`Server::peer`]: everything but the lock, the blobs and logs.
fn copy_home(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name == "serve.lock" || name == "blobs" || name.ends_with(".log") {
            continue;
        }
        let (src, dst) = (e.path(), to.join(&*name));
        if e.file_type().unwrap().is_dir() {
            copy_home(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}
