//! Configuration: typed, layered defaults -> `HOME/arca.toml` -> `ARCA_*` environment.
//! A commented example lives in `docs/operations.md`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::ChannelName;

/// The config file's name inside the home directory.
pub const CONFIG_FILE: &str = "arca.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// The server's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: String,
    pub store: StoreConfig,
    pub tuf: TufConfig,
    /// The ordered pipeline of channels; artifacts enter the first.
    pub pipeline: Vec<ChannelName>,
    pub rollout: RolloutConfig,
    pub agents: AgentsConfig,
    pub limits: LimitsConfig,
    /// TLS for the listener. None by default: a fresh home serves plain HTTP on loopback for
    /// development; anything reachable from a network should set `[tls]` (or sit behind a
    /// proxy that terminates TLS), since every request carries a bearer token.
    pub tls: Option<TlsConfig>,
    pub database: DatabaseConfig,
    pub leader: LeaderConfig,
    pub keys: KeysConfig,
}

/// The server's own keys (each channel's online key, the audit key) are sealed in the
/// database with a master key that every server of the database holds a copy of.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// The master key file (relative paths from the home); none: `HOME/master.key`.
    /// `ARCA_MASTER_KEY_FILE` overrides it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_key: Option<std::path::PathBuf>,
}

/// Which server runs the background work (re-signing metadata, rollout ticks, the periodic
/// sweep) when several serve one PostgreSQL database: the one holding the leader lock
/// (`db::leader`). On SQLite the one server always leads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaderConfig {
    /// How often a follower tries to take the lock, and a leader checks that its session still
    /// holds it. Two seconds: a survivor takes over within a few seconds of the leader dying,
    /// for one cheap query per server and interval.
    #[serde(with = "human")]
    pub retry: Duration,
    /// Lead without the lock, whatever other servers do. For tests (two leaders at once must
    /// be harmless) and a single server only: with several, each does all background work.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub always: bool,
}

impl Default for LeaderConfig {
    fn default() -> Self {
        LeaderConfig {
            retry: Duration::from_secs(2),
            always: false,
        }
    }
}

/// The longest `leader.retry`: a follower waits up to this long to take over from a leader
/// that died, so more than a minute would leave metadata unrefreshed and rollouts still.
pub const MAX_LEADER_RETRY: Duration = Duration::from_secs(60);

/// Where the metadata lives: the home's SQLite file by default, or a PostgreSQL database
/// (`url = "postgres://user@host:port/db"`, or `ARCA_DATABASE_URL`) for several servers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// A `postgres://` URL; none means SQLite in the home (`arca.db`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// PostgreSQL connections this server keeps (and database calls it runs at once).
    pub pool: usize,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: None, pool: 8 }
    }
}

/// The server's certificate and key (PEM files). Both are re-read when their files change
/// (and on SIGHUP), without a restart; relative paths are taken from the home directory.
/// `arca serve --tls-cert FILE --tls-key FILE` overrides `cert` and `key`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first.
    pub cert: std::path::PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: std::path::PathBuf,
    /// CA certificates (PEM, one or more) that issue agents' client certificates. When set,
    /// the server asks for a client certificate and verifies a presented one against them; a
    /// verified certificate's agent id lets that agent post reports without a token
    /// (docs/security.md, "Client certificates"). None: no certificate is asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<std::path::PathBuf>,
}

/// Deploy agents: when they count as gone, and how much a reporter token may say.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsConfig {
    /// An agent not heard from (report or heartbeat) for this long is listed as stale and no
    /// longer counts as known for rollouts. Agents send a heartbeat every 5 minutes by
    /// default: three missed heartbeats is a machine that is gone, not a slow one.
    #[serde(with = "human")]
    pub stale_after: Duration,
    /// Reports each reporter token may post per minute (a token bucket holding as many).
    /// An agent reports at start, on every change and at each heartbeat: 600 a minute serves a
    /// fleet of 3,000 agents sharing one token at the default heartbeat, and keeps one stolen
    /// token from flooding the server (it gets 429 with Retry-After).
    pub reports_per_minute: u32,
    /// Reports kept per agent (and name and channel); older ones are deleted as new ones
    /// arrive, except each rollout's latest `ok`/`failed` of the agent, which its figures
    /// count. `arca agents` shows the latest; the audit log keeps every change they caused.
    pub keep_reports: u32,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        AgentsConfig {
            stale_after: Duration::from_secs(15 * 60),
            reports_per_minute: 600,
            keep_reports: 20,
        }
    }
}

/// What one client can hold of the server: concurrent transfers and how long a silent peer
/// keeps its connection. Each limit bounds memory, threads or file handles that anyone who can
/// reach the port could otherwise pin (downloads need no token).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Uploads (staged or single-request pushes) receiving bytes at once. Each holds four
    /// threads (two hashing, a writer and a flusher) and a file; beyond it, `503
    /// too_many_uploads`. 32 is far above the parallelism of a build farm's pushes and keeps
    /// the threads near 130.
    pub max_uploads: usize,
    /// Target downloads streaming at once. A download holds at most one read chunk (64 KiB)
    /// beside the socket's kernel buffers, so 1024 of them stay under ~100 MiB; beyond it,
    /// `503 too_many_downloads`. Metadata requests are not counted.
    pub max_downloads: usize,
    /// An upload body that sends nothing for this long is cut off (`408 body_timeout`) and its
    /// bytes deleted. A minute covers any pause of a live client; an idle one frees its slot.
    #[serde(with = "human")]
    pub body_idle_timeout: Duration,
    /// A connection whose peer acknowledges none of the bytes sent to it for this long is
    /// closed by the kernel (`TCP_USER_TIMEOUT`), so a client that stops reading a download
    /// gives its slot and buffers back. A minute outlasts real network stalls.
    #[serde(with = "human")]
    pub write_timeout: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_uploads: 32,
            max_downloads: 1024,
            body_idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
        }
    }
}

/// Phased rollouts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutConfig {
    /// How often the server looks at running rollouts to advance or complete them (a halt
    /// happens at once, when the report that crosses the failure ceiling arrives).
    #[serde(with = "human")]
    pub tick: Duration,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        RolloutConfig {
            tick: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// object_store URL of the blob store; empty means `blobs/` under the home directory.
    /// Examples: `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`.
    pub url: String,
    /// Largest artifact accepted, in bytes. Uploads are cut off as soon as they pass it, so a
    /// client cannot fill the disk; 16 GiB covers VM images and large containers.
    pub max_blob_size: u64,
    /// object_store options (e.g. `aws_endpoint`, `aws_allow_http`); credentials are better
    /// given by the backend's own environment variables (`AWS_ACCESS_KEY_ID`, ...).
    pub options: BTreeMap<String, String>,
    /// How often temporary uploads left by a crash (or an abandoned upload) are looked for
    /// while the server runs (it also sweeps at start). Ten minutes keeps the cost of listing
    /// `tmp/` negligible.
    #[serde(with = "human")]
    pub sweep_interval: Duration,
    /// A temporary upload that no upload of this server owns (a crash's leftover) is removed
    /// once it is this old. This server's own uploads in flight, and every staged upload that
    /// the database names (whichever server staged it), are never swept, whatever their age;
    /// the age protects the uploads still streaming into another process sharing the store,
    /// so it must be well above the longest upload: an hour.
    #[serde(with = "human")]
    pub temp_max_age: Duration,
    /// How long a staged upload (`POST /api/v1/uploads`) waits for the push that names it
    /// before its row and bytes are removed. Far above the gap between the two requests of
    /// one `arca push`, short enough that abandoned uploads do not pile up: an hour.
    #[serde(with = "human")]
    pub upload_ttl: Duration,
}

/// Lifetimes of each channel's TUF metadata. Online roles are re-signed by the server when
/// less than half of their lifetime is left, so clients never see them expire while it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TufConfig {
    #[serde(with = "human")]
    pub root_expiry: Duration,
    #[serde(with = "human")]
    pub targets_expiry: Duration,
    #[serde(with = "human")]
    pub snapshot_expiry: Duration,
    #[serde(with = "human")]
    pub timestamp_expiry: Duration,
    /// How often the background task looks for metadata to re-sign.
    #[serde(with = "human")]
    pub refresh_interval: Duration,
    /// Serve each role's newest file from memory until this server writes metadata again.
    /// Turn it off only if something other than this process writes the database.
    pub memory_cache: bool,
    /// The most the wall clock may move against the monotonic clock between two checks, or
    /// stand behind the last signing, before the server refuses to sign metadata (a clock
    /// fault: alert on `arca_clock_fault`). One minute: NTP slews far less than that, while a
    /// clock set by hand, a bad NTP source or a VM restored from a snapshot moves by more.
    #[serde(with = "human")]
    pub max_clock_step: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8480".into(),
            store: StoreConfig::default(),
            tuf: TufConfig::default(),
            pipeline: ["dev", "staging", "prod"]
                .iter()
                .map(|c| c.parse().expect("valid channel"))
                .collect(),
            rollout: RolloutConfig::default(),
            agents: AgentsConfig::default(),
            limits: LimitsConfig::default(),
            tls: None,
            database: DatabaseConfig::default(),
            keys: KeysConfig::default(),
            leader: LeaderConfig::default(),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: String::new(),
            max_blob_size: 16 << 30,
            options: BTreeMap::new(),
            sweep_interval: Duration::from_secs(600),
            temp_max_age: Duration::from_secs(3600),
            upload_ttl: Duration::from_secs(3600),
        }
    }
}

const DAY: u64 = 86_400;

impl Default for TufConfig {
    fn default() -> Self {
        TufConfig {
            root_expiry: Duration::from_secs(365 * DAY),
            targets_expiry: Duration::from_secs(30 * DAY),
            snapshot_expiry: Duration::from_secs(7 * DAY),
            timestamp_expiry: Duration::from_secs(DAY),
            refresh_interval: Duration::from_secs(300),
            memory_cache: true,
            max_clock_step: Duration::from_secs(60),
        }
    }
}

impl Config {
    /// Loads `HOME/arca.toml` (defaults when absent), then applies `ARCA_LISTEN`,
    /// `ARCA_STORE_URL`, `ARCA_MAX_BLOB_SIZE` and `ARCA_DATABASE_URL` from the environment.
    pub fn load(home: &Path) -> Result<Self, ConfigError> {
        let path = home.join(CONFIG_FILE);
        let mut cfg = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| ConfigError::Invalid {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        if let Ok(v) = std::env::var("ARCA_LISTEN") {
            cfg.listen = v;
        }
        if let Ok(v) = std::env::var("ARCA_STORE_URL") {
            cfg.store.url = v;
        }
        if let Ok(v) = std::env::var("ARCA_DATABASE_URL") {
            cfg.database.url = Some(v);
        }
        if let Ok(v) = std::env::var("ARCA_MAX_BLOB_SIZE") {
            cfg.store.max_blob_size = v.parse().map_err(|_| ConfigError::Invalid {
                path: "ARCA_MAX_BLOB_SIZE".into(),
                reason: format!("{v:?} is not a number of bytes"),
            })?;
        }
        cfg.validate().map_err(|reason| ConfigError::Invalid {
            path: path.display().to_string(),
            reason,
        })?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.database.url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(format!(
                "database.url must be a postgres:// URL (SQLite needs none: it is the home's arca.db), not {url:?}"
            ));
        }
        if self.database.pool == 0 {
            return Err("database.pool must be positive".into());
        }
        if self.pipeline.is_empty() {
            return Err("pipeline must name at least one channel".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = self.pipeline.iter().find(|c| !seen.insert(*c)) {
            return Err(format!("channel {dup} appears twice in the pipeline"));
        }
        if self.agents.reports_per_minute == 0 || self.agents.keep_reports == 0 {
            return Err(
                "agents.reports_per_minute and agents.keep_reports must be positive".into(),
            );
        }
        let t = &self.tuf;
        if t.timestamp_expiry.is_zero() || t.snapshot_expiry.is_zero() || t.targets_expiry.is_zero()
        {
            return Err("metadata lifetimes must be positive".into());
        }
        let l = &self.limits;
        if l.max_uploads == 0 || l.max_downloads == 0 {
            return Err("limits.max_uploads and limits.max_downloads must be positive".into());
        }
        if l.body_idle_timeout.is_zero() || l.write_timeout.is_zero() {
            return Err(
                "limits.body_idle_timeout and limits.write_timeout must be positive".into(),
            );
        }
        if l.write_timeout.as_millis() > u128::from(u32::MAX) {
            return Err("limits.write_timeout is too long".into());
        }
        if self.store.sweep_interval.is_zero() {
            return Err("store.sweep_interval must be positive".into());
        }
        if self.store.upload_ttl.is_zero() {
            return Err("store.upload_ttl must be positive".into());
        }
        if chrono::Duration::from_std(self.store.upload_ttl).is_err() {
            return Err("store.upload_ttl is too long".into());
        }
        if self.leader.retry.is_zero() || self.leader.retry > MAX_LEADER_RETRY {
            return Err(format!(
                "leader.retry must be positive and at most {}, not {}",
                humantime::format_duration(MAX_LEADER_RETRY),
                humantime::format_duration(self.leader.retry)
            ));
        }
        Ok(())
    }

    /// The channel every push enters.
    pub fn first_channel(&self) -> &ChannelName {
        &self.pipeline[0]
    }

    /// The config file `init` writes: the defaults, commented.
    pub fn initial_file(&self) -> String {
        format!(
            "# arca server configuration (see docs/operations.md for every field).\n{}",
            toml::to_string_pretty(self).expect("config encodes")
        )
    }
}

/// Durations as humantime strings (`"24h"`, `"7days"`).
pub mod human {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_file_round_trips_and_unknown_fields_fail() {
        let text = Config::default().initial_file();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back.tuf.timestamp_expiry, Duration::from_secs(DAY));
        assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
        assert!(toml::from_str::<Config>("[tuf]\ntimestamp_expiry = \"soon\"").is_err());
    }

    #[test]
    fn upload_ttl_defaults_to_an_hour_and_must_be_positive() {
        assert_eq!(
            Config::default().store.upload_ttl,
            Duration::from_secs(3600)
        );
        let cfg: Config = toml::from_str("[store]\nupload_ttl = \"2s\"").unwrap();
        assert_eq!(cfg.store.upload_ttl, Duration::from_secs(2));
        assert!(cfg.validate().is_ok());
        let zero: Config = toml::from_str("[store]\nupload_ttl = \"0s\"").unwrap();
        let e = zero.validate().unwrap_err();
        assert!(e.contains("store.upload_ttl"), "{e}");
    }

    #[test]
    fn leader_retry_is_bounded_and_always_stays_out_of_new_files() {
        let mut c = Config::default();
        assert!(c.validate().is_ok());
        c.leader.retry = Duration::ZERO;
        assert!(c.validate().unwrap_err().contains("leader.retry"));
        c.leader.retry = MAX_LEADER_RETRY + Duration::from_secs(1);
        assert!(c.validate().unwrap_err().contains("leader.retry"));
        let text = Config::default().initial_file();
        assert!(
            text.contains("[leader]") && !text.contains("always"),
            "{text}"
        );
        let c: Config = toml::from_str("[leader]\nretry = \"500ms\"\nalways = true").unwrap();
        assert_eq!(
            (c.leader.retry, c.leader.always),
            (Duration::from_millis(500), true)
        );
    }
}
