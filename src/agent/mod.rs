//! The deploy agent: follows one name in one channel, installs the release meant for this
//! machine (by the signed rollout plan), switches to it atomically, checks its health, goes
//! back on failure and reports every outcome.
//!
//! Layout of the agent's directory:
//! ```text
//! DIR/current -> releases/VERSION   the running release (a symlink, swapped atomically)
//! DIR/releases/VERSION/             unpacked releases, complete ones only
//! DIR/state/                        trusted TUF metadata, trust document, agent.json
//! ```
//! A crash at any point leaves `DIR/current` pointing at a complete release: releases are
//! unpacked beside and renamed into place, and the link is replaced by a rename. A switch whose
//! health check did not finish is checked again on the next start.

pub mod install;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::client::release::{ChannelClient, Release, releases_of};
use crate::model::api::{AgentId, Report, ReportOutcome};
use crate::model::{ArtifactName, ChannelName, Version};
use install::ReleaseDir;

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub id: AgentId,
    pub channel: ChannelName,
    pub name: ArtifactName,
    pub dir: PathBuf,
    pub health_cmd: Option<String>,
    pub health_timeout: Duration,
    pub interval: Duration,
    /// How often the agent tells the server it is alive when it has nothing else to say
    /// (also once at start), so `last_seen` stays fresh for healthy idle agents.
    pub heartbeat: Duration,
    /// Releases kept on disk (at least the current and the previous one).
    pub keep: usize,
}

/// What the agent remembers between runs (`DIR/state/agent.json`).
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// The release that ran before the current one: where a failed health check goes back to.
    #[serde(default)]
    previous: Option<String>,
    /// A switch whose health check has not finished (checked again at start).
    #[serde(default)]
    pending: Option<String>,
    /// Versions that failed here: not installed again.
    #[serde(default)]
    failed: BTreeSet<String>,
}

/// What one pass did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Pass {
    /// Metadata unchanged since the last pass (a 304).
    Unchanged,
    /// The right release already runs (or none is meant for this agent).
    UpToDate { current: Option<String> },
    /// Installed, switched and healthy.
    Installed {
        version: String,
        previous: Option<String>,
    },
    /// Installed but unhealthy: went back.
    Reverted {
        version: String,
        to: Option<String>,
        reason: String,
    },
    /// Nothing could be installed (metadata or bytes refused, server unreachable).
    Failed { reason: String },
    /// The channel's signed targets do not list the name (misspelled, or never promoted).
    NotListed { current: Option<String> },
    /// The wanted release failed here before (health or archive) and is not tried again.
    Skipped {
        version: String,
        current: Option<String>,
    },
    /// The wanted release's signed archive is unacceptable (it leaves its directory, or is a
    /// bomb): remembered as failed, reported against the release.
    Rejected { version: String, reason: String },
}

impl Pass {
    /// The pass in words, for logs and the terminal: `installed 1.1.0 (was 1.0.1)`.
    pub fn describe(&self, channel: &str, name: &str) -> String {
        let or = |v: &Option<String>, none: &str| v.as_deref().unwrap_or(none).to_owned();
        match self {
            Pass::Unchanged => "unchanged".to_owned(),
            Pass::UpToDate { current } => format!("up to date: {}", or(current, "no release")),
            Pass::Installed { version, previous } => {
                format!("installed {version} (was {})", or(previous, "none"))
            }
            Pass::Reverted {
                version,
                to,
                reason,
            } => format!(
                "{version} unhealthy ({reason}); back to {}",
                or(to, "no release")
            ),
            Pass::Failed { reason } => format!("nothing installed: {reason}"),
            Pass::NotListed { .. } => format!("{channel} lists no {name}: nothing to install"),
            Pass::Skipped { version, current } => format!(
                "{version} failed here before; still running {}",
                or(current, "no release")
            ),
            Pass::Rejected { version, reason } => format!("{version} refused: {reason}"),
        }
    }

    /// The exit status of `arca agent --once` after this pass (docs/agent.md): 0 only when
    /// the release meant for this agent runs.
    pub fn exit_code(&self) -> i32 {
        match self {
            Pass::Unchanged | Pass::UpToDate { .. } | Pass::Installed { .. } => 0,
            Pass::Reverted { .. } | Pass::Skipped { .. } | Pass::Rejected { .. } => EXIT_UNHEALTHY,
            Pass::NotListed { .. } => EXIT_NOT_LISTED,
            Pass::Failed { .. } => EXIT_REFUSED,
        }
    }
}

// The statuses fit the CLI's (docs/cli.md): 3 is "not found", 4 (a refused token) and 5 (the
// server) come from the same errors as in every command; 6 is the agent's own.

/// `--once`: the channel does not list the name (the CLI's "not found").
pub const EXIT_NOT_LISTED: i32 = 3;
/// `--once`: nothing could be verified or fetched (metadata, signatures, bytes, server).
pub const EXIT_REFUSED: i32 = 5;
/// `--once`: the wanted release is unhealthy or unacceptable here (went back, or skipped).
pub const EXIT_UNHEALTHY: i32 = 6;

/// What the channel means for this agent.
enum Choice {
    /// The targets do not list the name.
    NotListed,
    /// No release (a rollout that has not reached this agent, with no previous release).
    Nothing,
    Release(Box<Release>),
}

pub struct Agent {
    cfg: Config,
    client: ChannelClient,
    releases: ReleaseDir,
    state_path: PathBuf,
    state: State,
    /// Whether the last pass reached the wanted state (then a 304 means nothing to do).
    settled: bool,
    /// Whether the agent has told the server what it runs since it started.
    announced: bool,
    /// A release found unhealthy while finishing an interrupted switch at start.
    recovered: Option<Pass>,
    /// When the server last accepted a report or heartbeat from this agent.
    last_heard: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Agent {
    /// Opens the agent's directory, its client state, and finishes a switch a crash
    /// interrupted.
    pub async fn open(
        cfg: Config,
        api: crate::client::ApiClient,
        root: &[u8],
    ) -> anyhow::Result<Self> {
        let releases = ReleaseDir::open(&cfg.dir)?;
        let state_dir = cfg.dir.join("state");
        std::fs::create_dir_all(&state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        let client = ChannelClient::open(api, cfg.channel.clone(), root, state_dir.join("tuf"))?;
        let state_path = state_dir.join("agent.json");
        let state = match std::fs::read(&state_path) {
            Ok(b) => serde_json::from_slice(&b)
                .with_context(|| format!("reading {}", state_path.display()))?,
            Err(_) => State::default(),
        };
        for leftover in std::fs::read_dir(&state_dir)?.flatten() {
            if leftover.file_name().to_string_lossy().ends_with(".part") {
                let _ = std::fs::remove_file(leftover.path());
            }
        }
        let mut agent = Agent {
            cfg,
            client,
            releases,
            state_path,
            state,
            settled: false,
            announced: false,
            recovered: None,
            last_heard: std::sync::Mutex::new(None),
        };
        agent.recover().await?;
        Ok(agent)
    }

    /// A switch whose health check never finished (the agent died): check it now.
    async fn recover(&mut self) -> anyhow::Result<()> {
        let Some(pending) = self.state.pending.clone() else {
            return Ok(());
        };
        let current = self.releases.current()?;
        if current.as_deref() == Some(pending.as_str()) {
            tracing::warn!(version = %pending, "the last switch was interrupted; checking its health again");
            if let Err(reason) = self.health(&pending).await {
                let to = self.go_back(&pending, &reason).await?;
                self.recovered = Some(Pass::Reverted {
                    version: pending,
                    to,
                    reason,
                });
                return Ok(());
            }
            self.report(ReportOutcome::Ok, Some(&pending), "healthy after a restart")
                .await;
            self.announced = true;
        }
        self.state.pending = None;
        self.save()
    }

    fn save(&self) -> anyhow::Result<()> {
        let tmp = self.state_path.with_extension("json.tmp");
        let f = std::fs::File::create(&tmp)?;
        serde_json::to_writer_pretty(&f, &self.state)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.state_path)?;
        Ok(())
    }

    async fn health(&self, version: &str) -> Result<(), String> {
        match &self.cfg.health_cmd {
            Some(cmd) => {
                install::run_health(cmd, &self.cfg.dir, version, self.cfg.health_timeout).await
            }
            None => Ok(()),
        }
    }

    /// Posts a report; a server that cannot be reached is logged, never fatal.
    async fn report(&self, outcome: ReportOutcome, version: Option<&str>, message: &str) {
        let current = self.releases.current().ok().flatten();
        let report = Report {
            agent: self.cfg.id.clone(),
            channel: self.cfg.channel.clone(),
            name: self.cfg.name.clone(),
            version: version.and_then(|v| v.parse::<Version>().ok()),
            outcome,
            message: truncate(message, 1024),
            current: current.and_then(|v| v.parse().ok()),
            at: arca_keys::format_time(chrono::Utc::now()),
        };
        let r: anyhow::Result<serde_json::Value> = self
            .client
            .api()
            .post_json("/api/v1/reports", &report)
            .await;
        match r {
            Ok(_) => {
                *self.last_heard.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(std::time::Instant::now());
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot post the report"),
        }
    }

    /// A heartbeat when the server has heard nothing from this agent since it started or for
    /// `heartbeat`: it keeps `last_seen` fresh and says what runs here.
    async fn heartbeat_if_due(&self) {
        let due = self
            .last_heard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none_or(|t| t.elapsed() >= self.cfg.heartbeat);
        if due {
            self.report(ReportOutcome::Heartbeat, None, "alive").await;
        }
    }

    /// One pass: look at the channel, install what is meant for this agent, report. The first
    /// pass after a start that went back from an interrupted switch says so, unless it did
    /// something else worth saying.
    pub async fn pass(&mut self) -> Pass {
        self.heartbeat_if_due().await;
        let pass = self.pass_inner().await;
        match (self.recovered.take(), pass) {
            (Some(r), Pass::Unchanged | Pass::UpToDate { .. } | Pass::Skipped { .. }) => r,
            (_, p) => p,
        }
    }

    async fn pass_inner(&mut self) -> Pass {
        match self.try_pass().await {
            Ok(p) => p,
            Err(e) => {
                let reason = format!("{e:#}");
                tracing::error!(%reason, "no release installed");
                self.settled = false;
                self.client.forget_etag();
                self.report(ReportOutcome::Error, None, &reason).await;
                Pass::Failed { reason }
            }
        }
    }

    async fn try_pass(&mut self) -> anyhow::Result<Pass> {
        if self.settled && !self.client.changed().await? {
            return Ok(Pass::Unchanged);
        }
        let trusted = self.client.refresh().await?;
        let want = self.choose(&trusted)?;
        let current = self.releases.current()?;
        let want = match want {
            Choice::Release(r) => *r,
            Choice::NotListed => {
                tracing::warn!(name = %self.cfg.name, channel = %self.cfg.channel, "the channel does not list this name");
                self.settled = true;
                return Ok(Pass::NotListed { current });
            }
            Choice::Nothing => {
                self.settled = true;
                self.announce(current.as_deref()).await;
                return Ok(Pass::UpToDate { current });
            }
        };
        let version = want.custom.version.to_string();
        if current.as_deref() == Some(version.as_str()) {
            self.settled = true;
            self.announce(current.as_deref()).await;
            return Ok(Pass::UpToDate { current });
        }
        if self.state.failed.contains(&version) {
            tracing::debug!(%version, "skipping a release that failed here before");
            self.settled = true;
            return Ok(Pass::Skipped { version, current });
        }
        match self.install(&trusted, &want, current.clone()).await {
            Ok(p) => {
                self.settled = true;
                Ok(p)
            }
            Err(e) if e.downcast_ref::<install::UnpackError>().is_some() => {
                // The signed archive itself is bad (it tries to leave its directory, or is a
                // bomb): no retry will fix it. Remembered as failed, reported against it.
                let reason = format!("{e:#}");
                tracing::error!(%version, %reason, "release refused: its archive is unacceptable");
                self.state.failed.insert(version.clone());
                self.save()?;
                self.settled = true;
                self.report(ReportOutcome::Failed, Some(&version), &reason)
                    .await;
                Ok(Pass::Rejected { version, reason })
            }
            Err(e) => {
                // Refused before the switch: nothing changed; say which release.
                let reason = format!("{e:#}");
                tracing::error!(%version, %reason, "release refused");
                self.settled = false;
                self.client.forget_etag();
                self.report(ReportOutcome::Error, Some(&version), &reason)
                    .await;
                Ok(Pass::Failed { reason })
            }
        }
    }

    async fn announce(&mut self, current: Option<&str>) {
        if !self.announced && current.is_some() {
            self.report(ReportOutcome::Ok, current, "running").await;
            self.announced = true;
        }
    }

    /// The release this agent should run: the channel's release, or, while a rollout has not
    /// reached this agent's bucket, the previous release the rollout keeps listed.
    fn choose(&self, trusted: &crate::tuf::client::Trusted) -> anyhow::Result<Choice> {
        let (main, previous) = releases_of(trusted, &self.cfg.name)?;
        let Some(main) = main else {
            return Ok(Choice::NotListed);
        };
        let Some(rollout) = &main.custom.rollout else {
            return Ok(Choice::Release(Box::new(main)));
        };
        if crate::rollout::selected(
            self.cfg.id.as_str(),
            self.cfg.name.as_str(),
            rollout.percent,
        ) {
            return Ok(Choice::Release(Box::new(main)));
        }
        Ok(match (&rollout.previous, previous) {
            (Some(path), Some(p)) if *path == p.path => Choice::Release(Box::new(p)),
            (Some(path), _) => {
                bail!("the rollout names previous release {path}, which the targets do not list")
            }
            (None, _) => Choice::Nothing,
        })
    }

    /// Verifies, downloads, unpacks, switches, checks health; goes back on failure.
    async fn install(
        &mut self,
        trusted: &crate::tuf::client::Trusted,
        want: &Release,
        current: Option<String>,
    ) -> anyhow::Result<Pass> {
        let version = want.custom.version.to_string();
        let verified = self.client.verify(want).await?;
        if !self.releases.has(&version) {
            let part = self.cfg.dir.join("state").join(format!("{version}.part"));
            let file = std::fs::File::create(&part)
                .with_context(|| format!("creating {}", part.display()))?;
            let got = self.client.download(trusted, want, file, None).await;
            let result = got.and_then(|_| {
                let file_name = want.file_name()?;
                self.releases.install(&version, &part, file_name.as_str())
            });
            let _ = std::fs::remove_file(&part);
            result?;
        }
        tracing::info!(%version, signer = %verified.signer, "verified and unpacked; switching");
        self.state.pending = Some(version.clone());
        self.state.previous = current.clone();
        self.save()?;
        self.releases.switch(&version)?;
        if let Err(reason) = self.health(&version).await {
            let to = self.go_back(&version, &reason).await?;
            return Ok(Pass::Reverted {
                version,
                to,
                reason,
            });
        }
        self.state.pending = None;
        self.save()?;
        let mut protect = vec![version.as_str()];
        if let Some(c) = &current {
            protect.push(c.as_str());
        }
        match self.releases.prune(self.cfg.keep.max(2), &protect) {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(removed = %removed.join(", "), "pruned old releases")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot prune old releases"),
        }
        tracing::info!(
            %version,
            previous = %current.as_deref().unwrap_or("none"),
            "installed and healthy"
        );
        self.report(ReportOutcome::Ok, Some(&version), "installed and healthy")
            .await;
        self.announced = true;
        Ok(Pass::Installed {
            version,
            previous: current,
        })
    }

    /// An unhealthy `version`: back to the previous release (or no current release at all),
    /// remembered as failed, reported.
    async fn go_back(&mut self, version: &str, reason: &str) -> anyhow::Result<Option<String>> {
        let to = self
            .state
            .previous
            .clone()
            .filter(|p| p != version && self.releases.has(p));
        match &to {
            Some(p) => self.releases.switch(p)?,
            None => remove_current(&self.cfg.dir)?,
        }
        tracing::error!(
            %version,
            back_to = %to.as_deref().unwrap_or("no release"),
            %reason,
            "health check failed; went back"
        );
        self.state.failed.insert(version.to_owned());
        self.state.pending = None;
        self.save()?;
        self.report(
            ReportOutcome::Failed,
            Some(version),
            &format!("health check failed: {reason}"),
        )
        .await;
        Ok(to)
    }

    /// Passes every `interval` until stopped.
    pub async fn run(mut self) -> anyhow::Result<()> {
        // systemd stops services with SIGTERM: finish the pass in hand, then stop.
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("installing the SIGTERM handler")?;
        loop {
            let pass = self.pass().await;
            if !matches!(pass, Pass::Unchanged) {
                let what = pass.describe(self.cfg.channel.as_str(), self.cfg.name.as_str());
                tracing::info!("{what}");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.interval) => {}
                _ = tokio::signal::ctrl_c() => {
                    tracing::info!("stopping (interrupt)");
                    return Ok(());
                }
                _ = terminate.recv() => {
                    tracing::info!("stopping (terminate)");
                    return Ok(());
                }
            }
        }
    }
}

/// Removes `DIR/current` (no release is healthy here).
fn remove_current(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(dir.join("current")) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).context("removing the current link"),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}
