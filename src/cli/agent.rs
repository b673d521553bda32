//! `arca agent --channel CH --name NAME --root ROOT.json --dir DIR [--health-cmd CMD]
//! [--interval 30s] [--heartbeat 5m] [--once] [--id ID]`

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::ClientArgs;
use crate::agent::{Agent, Config, Pass};
use crate::model::api::AgentId;
use crate::model::{ArtifactName, ChannelName};

/// Follow a channel: install the release meant for this machine, check health, report.
#[derive(clap::Args)]
pub struct Args {
    /// The channel to follow.
    #[arg(long)]
    channel: ChannelName,
    /// The artifact name to install from it.
    #[arg(long)]
    name: ArtifactName,
    /// The pinned root (`root.json` from the server's home), the agent's trust anchor.
    #[arg(long, env = "ARCA_ROOT")]
    root: PathBuf,
    /// The agent's directory: `current` (a symlink), `releases/`, `state/`.
    #[arg(long)]
    dir: PathBuf,
    /// Run through `sh -c` in the new release after each switch; non-zero exit = unhealthy.
    #[arg(long)]
    health_cmd: Option<String>,
    /// Longest the health command may run.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    health_timeout: Duration,
    /// How often to poll the channel (a conditional request when nothing changed).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// One pass, then exit: 0 when the release meant for this machine runs, 6 when it is
    /// unhealthy or unacceptable here (went back, or failed here before), 3 when the channel
    /// does not list the name, 5 when nothing could be verified or fetched.
    #[arg(long)]
    once: bool,
    /// How often to tell the server this agent is alive when nothing else was reported (also
    /// once at start).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// This agent's id, which places it in rollouts (default: the host name).
    #[arg(long, env = "ARCA_AGENT_ID")]
    id: Option<AgentId>,
    /// Releases kept on disk (at least 2: the current and the previous one).
    #[arg(long, default_value_t = 3)]
    keep: usize,
    /// With --once: print the pass as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

fn host_name() -> anyhow::Result<AgentId> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .context("cannot read the host name; pass --id")?;
    name.trim()
        .parse()
        .map_err(|e: String| anyhow::anyhow!("the host name is no agent id ({e}); pass --id"))
}

pub async fn run(a: Args) -> anyhow::Result<i32> {
    let root = std::fs::read(&a.root).with_context(|| format!("reading {}", a.root.display()))?;
    let id = match a.id {
        Some(id) => id,
        None => host_name()?,
    };
    let (cfg_channel, cfg_name) = (a.channel.clone(), a.name.clone());
    let cfg = Config {
        id,
        channel: a.channel,
        name: a.name,
        dir: a.dir,
        health_cmd: a.health_cmd,
        health_timeout: a.health_timeout,
        interval: a.interval,
        heartbeat: a.heartbeat,
        keep: a.keep,
    };
    let mut agent = Agent::open(cfg, a.client.client()?, &root).await?;
    if !a.once {
        agent.run().await?;
        return Ok(0);
    }
    let pass = agent.pass().await;
    if a.json {
        println!("{}", serde_json::to_string(&pass)?);
    } else {
        println!("{}", pass.describe(cfg_channel.as_str(), cfg_name.as_str()));
    }
    if let Pass::Failed { reason } | Pass::Rejected { reason, .. } = &pass {
        eprintln!("arca agent: {reason}");
    }
    Ok(pass.exit_code())
}
