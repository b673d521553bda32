//! `arca rollout status|list|advance|pause|resume|abort`, `arca agents --channel CH`,
//! `arca token create --role ROLE`.

use clap::Subcommand;

use super::ClientArgs;
use crate::model::api::{AgentInfo, RolloutAction, RolloutStatus, TokenRequest, TokenResponse};
use crate::model::{ArtifactName, ChannelName};

/// Watch and steer phased rollouts.
#[derive(Subcommand)]
pub enum Command {
    /// The newest rollout of NAME in a channel: step, figures per step, what it waits for.
    Status(Target),
    /// The newest rollout of every name (in one channel, or all).
    List(ListArgs),
    /// Go to the next step now (or complete the rollout at its last step).
    Advance(Target),
    /// Hold the current step: no automatic advance (a halt by the figures still happens).
    Pause(Target),
    /// Continue a paused rollout; its step holds a full interval from now.
    Resume(Target),
    /// Stop the rollout and return the channel to the previous release.
    Abort(Target),
}

#[derive(clap::Args)]
pub struct Target {
    name: ArtifactName,
    #[arg(long)]
    channel: ChannelName,
    /// Why (kept in the audit log).
    #[arg(long)]
    reason: Option<String>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(clap::Args)]
pub struct ListArgs {
    #[arg(long)]
    channel: Option<ChannelName>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// Which agents run what.
#[derive(clap::Args)]
pub struct AgentsArgs {
    #[arg(long)]
    channel: Option<ChannelName>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// API tokens.
#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token (shown once): `reporter` tokens may only post agent reports.
    Create(TokenArgs),
    /// Revoke a token at once, by its id (the 16 hex digits after `arca_`).
    Revoke(RevokeArgs),
}

#[derive(clap::Args)]
pub struct RevokeArgs {
    id: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(clap::Args)]
pub struct TokenArgs {
    #[arg(long, value_parser = ["admin", "reporter"])]
    role: String,
    #[arg(long)]
    description: Option<String>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

fn print_status(r: &RolloutStatus) {
    println!(
        "rollout {} of {}@{} in {}: {} at step {}/{} ({}%)",
        r.id,
        r.name,
        r.version,
        r.channel,
        r.state,
        r.step + 1,
        r.plan.steps.len(),
        r.percent
    );
    println!(
        "  plan: steps {:?}, every {}, halt above {:.1}% failed with at least {} reports",
        r.plan.steps,
        humantime::format_duration(r.plan.step_interval),
        r.plan.max_failure_rate * 100.0,
        r.plan.min_reports
    );
    println!(
        "  previous release: {}",
        r.previous.as_deref().unwrap_or("none")
    );
    println!(
        "  agents: {} ok, {} failed ({:.1}% failed)",
        r.figures.ok,
        r.figures.failed,
        r.failure_rate * 100.0
    );
    for s in &r.steps {
        println!(
            "    step {} ({}%): {} ok, {} failed",
            s.step + 1,
            s.percent,
            s.ok,
            s.failed
        );
    }
    if let Some(reason) = &r.reason {
        println!("  reason: {reason}");
    }
    if let Some(next) = &r.next {
        println!("  next: {next}");
    }
}

pub async fn run(c: Command) -> anyhow::Result<i32> {
    match c {
        Command::Status(t) => {
            let api = t.client.client()?;
            let r: RolloutStatus = api
                .get_json(
                    "/api/v1/rollouts/status",
                    &[("channel", t.channel.as_str()), ("name", t.name.as_str())],
                )
                .await?;
            if t.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print_status(&r);
            }
        }
        Command::List(l) => {
            let api = l.client.client()?;
            let query: Vec<(&str, &str)> =
                l.channel.iter().map(|c| ("channel", c.as_str())).collect();
            let rs: Vec<RolloutStatus> = api.get_json("/api/v1/rollouts", &query).await?;
            if l.json {
                println!("{}", serde_json::to_string_pretty(&rs)?);
            } else if rs.is_empty() {
                println!("no rollouts");
            } else {
                for r in &rs {
                    println!(
                        "{:<10} {:<30} {:<16} {:<10} {:>3}%  {} ok / {} failed",
                        r.channel,
                        r.name,
                        r.version,
                        r.state,
                        r.percent,
                        r.figures.ok,
                        r.figures.failed
                    );
                }
            }
        }
        Command::Advance(t) => return act("advance", t).await,
        Command::Pause(t) => return act("pause", t).await,
        Command::Resume(t) => return act("resume", t).await,
        Command::Abort(t) => return act("abort", t).await,
    }
    Ok(0)
}

async fn act(action: &str, t: Target) -> anyhow::Result<i32> {
    let api = t.client.client()?;
    let req = RolloutAction {
        channel: t.channel.clone(),
        name: t.name.clone(),
        reason: t.reason.clone(),
    };
    let r: RolloutStatus = api
        .post_json(&format!("/api/v1/rollouts/{action}"), &req)
        .await?;
    if t.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print_status(&r);
    }
    Ok(0)
}

pub async fn agents(a: AgentsArgs) -> anyhow::Result<i32> {
    let api = a.client.client()?;
    let query: Vec<(&str, &str)> = a.channel.iter().map(|c| ("channel", c.as_str())).collect();
    let rows: Vec<AgentInfo> = api.get_json_authed("/api/v1/agents", &query).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    if rows.is_empty() {
        println!("no agent has reported");
        return Ok(0);
    }
    println!(
        "{:<24} {:<10} {:<24} {:<12} {:<8} {:<21} message",
        "agent", "channel", "name", "running", "last", "seen"
    );
    for r in &rows {
        println!(
            "{:<24} {:<10} {:<24} {:<12} {:<8} {:<21} {}",
            r.agent,
            r.channel,
            r.name,
            r.current.as_deref().unwrap_or("-"),
            r.outcome,
            r.last_seen,
            r.message
        );
    }
    let mut by_version: std::collections::BTreeMap<(String, String, String), usize> =
        Default::default();
    for r in &rows {
        *by_version
            .entry((
                r.channel.clone(),
                r.name.clone(),
                r.current.clone().unwrap_or_else(|| "-".into()),
            ))
            .or_default() += 1;
    }
    for ((ch, name, v), n) in by_version {
        println!("{ch} {name} {v}: {n} agents");
    }
    Ok(0)
}

pub async fn token(c: TokenCommand) -> anyhow::Result<i32> {
    let t = match c {
        TokenCommand::Create(t) => t,
        TokenCommand::Revoke(r) => {
            if r.id.len() != 16 || !r.id.bytes().all(|b| b.is_ascii_hexdigit()) {
                anyhow::bail!("{:?} is not a token id (16 hex digits)", r.id);
            }
            let api = r.client.client()?;
            let v: serde_json::Value = api.delete_json(&format!("/api/v1/tokens/{}", r.id)).await?;
            println!(
                "revoked {} token {}",
                v["role"].as_str().unwrap_or("?"),
                r.id
            );
            return Ok(0);
        }
    };
    let api = t.client.client()?;
    let r: TokenResponse = api
        .post_json(
            "/api/v1/tokens",
            &TokenRequest {
                role: t.role.clone(),
                description: t.description.clone(),
            },
        )
        .await?;
    if t.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        eprintln!(
            "created {} token {} (shown once; keep it secret):",
            r.role, r.id
        );
        println!("{}", r.token);
    }
    Ok(0)
}
