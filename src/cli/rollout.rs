//! `arca rollout status|list|advance|pause|resume|abort`, `arca agents [--channel CH]`,
//! `arca agents forget ID --channel CH`, `arca token create|list|revoke`.

use clap::Subcommand;

use super::ClientArgs;
use crate::model::api::{
    AgentId, AgentInfo, RolloutAction, RolloutStatus, RolloutVerb, TokenInfo, TokenRequest,
    TokenResponse,
};
use crate::model::{ArtifactName, ChannelName};

/// Watch and steer phased rollouts.
#[derive(Subcommand)]
pub enum Command {
    /// The newest rollout of NAME in a channel: step, figures per step, what it waits for.
    Status(StatusArgs),
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

/// A rollout to look at.
#[derive(clap::Args)]
pub struct StatusArgs {
    /// The artifact name.
    name: ArtifactName,
    /// The channel it rolls out in.
    #[arg(long)]
    channel: ChannelName,
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// A rollout to move.
#[derive(clap::Args)]
pub struct Target {
    /// The artifact name.
    name: ArtifactName,
    /// The channel it rolls out in.
    #[arg(long)]
    channel: ChannelName,
    /// Why (kept in the audit log).
    #[arg(long)]
    reason: Option<String>,
    /// Print the rollout's status afterwards as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// Only this channel's rollouts.
    #[arg(long)]
    channel: Option<ChannelName>,
    /// Print the list as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// Which agents run what; `arca agents forget` drops a decommissioned one.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentsArgs {
    #[command(subcommand)]
    command: Option<AgentsCommand>,
    /// Only this channel's agents.
    #[arg(long)]
    channel: Option<ChannelName>,
    /// Print the list as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand)]
pub enum AgentsCommand {
    /// Forget a decommissioned agent in a channel: its row and its reports (admin, audited).
    Forget(ForgetArgs),
}

#[derive(clap::Args)]
pub struct ForgetArgs {
    /// The agent's id.
    id: AgentId,
    /// The channel it reported on.
    #[arg(long)]
    channel: ChannelName,
    /// Only for this name (default: every name it reported on in the channel).
    #[arg(long)]
    name: Option<ArtifactName>,
    #[command(flatten)]
    client: ClientArgs,
}

/// API tokens.
#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token (shown once on stdout): `admin`, `publisher` (push, attest; scoped to
    /// names), `promoter` (promote, roll back, rollouts, approvals; scoped to channels and
    /// names), `reporter` (agent reports, as the agents it is bound to) or `viewer` (reads).
    Create(TokenArgs),
    /// List every token: id, role, label, scope, created, expires, last used, revoked (never
    /// a secret).
    List(TokenListArgs),
    /// Revoke a token at once, by its id (the 16 hex digits after `arca_`).
    Revoke(RevokeArgs),
}

#[derive(clap::Args)]
pub struct RevokeArgs {
    /// The token's id.
    id: String,
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(clap::Args)]
pub struct TokenListArgs {
    /// Print the list as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(clap::Args)]
pub struct TokenArgs {
    /// `admin` (everything), `publisher` (push, attest), `promoter` (promote, roll back,
    /// rollout actions, approvals), `reporter` (agents: post reports, list agents) or `viewer`
    /// (read the audit log, agents and tokens).
    #[arg(long, value_parser = crate::auth::ROLES)]
    role: String,
    /// Who holds the token, shown in listings and the audit log (`--description` is its old
    /// name).
    #[arg(long, alias = "description")]
    label: Option<String>,
    /// Reporter tokens (required): an agent id it may report as, a prefix such as `web-*`
    /// for a fleet sharing the token, or `*` for any agent. Repeat for several.
    #[arg(long = "agent", value_name = "ID")]
    agents: Vec<String>,
    /// Reporter tokens: a channel it may report on (repeat; default every channel). Promoter
    /// tokens (required): a channel it may promote to, roll back and act on rollouts in.
    #[arg(long = "channel", value_name = "CH")]
    channels: Vec<ChannelName>,
    /// Publisher tokens (required) and promoter tokens (default every name): an artifact name
    /// glob it may act on, e.g. `team-a/*` (`**` for every name). Repeat for several.
    #[arg(long = "scope", value_name = "GLOB")]
    names: Vec<String>,
    /// Expire the token after this long (`90d`, `12h`, `30m`; default never).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    expires: Option<std::time::Duration>,
    /// Print the token and its bindings as JSON.
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
        "  plan: steps {}, every {}, halt above {:.1}% failed with at least {} report(s)",
        r.plan
            .steps
            .iter()
            .map(|p| format!("{p}%"))
            .collect::<Vec<_>>()
            .join(", "),
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
    println!("  known agents: {}", r.known_agents);
    for s in &r.reach {
        let raised = if s.percent != s.planned {
            format!(" (planned {}%)", s.planned)
        } else {
            String::new()
        };
        println!(
            "    step {} at {}%{raised} holds {} known agent(s)",
            s.step + 1,
            s.percent,
            s.agents
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
        Command::Advance(t) => return act(RolloutVerb::Advance, t).await,
        Command::Pause(t) => return act(RolloutVerb::Pause, t).await,
        Command::Resume(t) => return act(RolloutVerb::Resume, t).await,
        Command::Abort(t) => return act(RolloutVerb::Abort, t).await,
    }
    Ok(0)
}

async fn act(verb: RolloutVerb, t: Target) -> anyhow::Result<i32> {
    let api = t.client.client()?;
    let req = RolloutAction {
        channel: t.channel.clone(),
        name: t.name.clone(),
        reason: t.reason.clone(),
    };
    let r: RolloutStatus = api
        .post_json(&format!("/api/v1/rollouts/{}", verb.as_str()), &req)
        .await?;
    if t.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print_status(&r);
    }
    Ok(0)
}

/// Agents fetched per request (the server's page size).
const AGENTS_PAGE: usize = 1000;

pub async fn agents(a: AgentsArgs) -> anyhow::Result<i32> {
    if let Some(AgentsCommand::Forget(f)) = a.command {
        let api = f.client.client()?;
        let mut path = format!("/api/v1/agents/{}?channel={}", f.id, f.channel);
        if let Some(n) = &f.name {
            path.push_str(&format!("&name={n}"));
        }
        let v: serde_json::Value = api.delete_json(&path).await?;
        let names: Vec<&str> = v["names"]
            .as_array()
            .map(|a| a.iter().filter_map(|n| n.as_str()).collect())
            .unwrap_or_default();
        println!(
            "forgot agent {} in {} ({})",
            f.id,
            f.channel,
            names.join(", ")
        );
        return Ok(0);
    }
    let api = a.client.client()?;
    let mut rows: Vec<AgentInfo> = Vec::new();
    loop {
        let offset = rows.len().to_string();
        let page_size = AGENTS_PAGE.to_string();
        let mut query: Vec<(&str, &str)> =
            a.channel.iter().map(|c| ("channel", c.as_str())).collect();
        query.push(("limit", &page_size));
        query.push(("offset", &offset));
        let page: Vec<AgentInfo> = api.get_json_authed("/api/v1/agents", &query).await?;
        let n = page.len();
        rows.extend(page);
        if n < AGENTS_PAGE {
            break;
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    if rows.is_empty() {
        println!("no agent has reported");
        return Ok(0);
    }
    println!(
        "{:<24} {:<10} {:<24} {:<12} {:<12} {:<9} {:<8} {:<21} {:<20} message",
        "agent", "channel", "name", "running", "wanted", "state", "last", "seen", "token"
    );
    for r in &rows {
        let state = match (r.off_release, r.stale) {
            (true, true) => "OFF,STALE",
            (true, false) => "OFF",
            (false, true) => "STALE",
            (false, false) => "ok",
        };
        let token = r
            .token_label
            .clone()
            .or_else(|| r.token.clone())
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<24} {:<10} {:<24} {:<12} {:<12} {:<9} {:<8} {:<21} {:<20} {}",
            r.agent,
            r.channel,
            r.name,
            r.current.as_deref().unwrap_or("-"),
            r.wanted.as_deref().unwrap_or("-"),
            state,
            r.outcome,
            r.last_seen,
            token,
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
        println!("{ch} {name} {v}: {n} agent(s)");
    }
    let off = rows.iter().filter(|r| r.off_release).count();
    let stale = rows.iter().filter(|r| r.stale).count();
    if off > 0 {
        println!(
            "warning: {off} agents run something other than the release their channel means for them (OFF)"
        );
    }
    if stale > 0 {
        println!(
            "warning: {stale} agents have not been heard from lately (STALE); `arca agents forget` drops decommissioned ones"
        );
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
            if r.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(0);
            }
            println!(
                "revoked {} token {}",
                v["role"].as_str().unwrap_or("?"),
                r.id
            );
            return Ok(0);
        }
        TokenCommand::List(l) => {
            let api = l.client.client()?;
            let rows: Vec<TokenInfo> = api.get_json_authed("/api/v1/tokens", &[]).await?;
            if l.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(0);
            }
            println!(
                "{:<16} {:<9} {:<20} {:<28} {:<20} {:<20} {:<20} revoked",
                "id", "role", "label", "scope", "created", "expires", "last used"
            );
            for t in rows {
                let scope = crate::auth::Scope {
                    agents: t.agents,
                    channels: t.channels,
                    names: t.names,
                };
                println!(
                    "{:<16} {:<9} {:<20} {:<28} {:<20} {:<20} {:<20} {}",
                    t.id,
                    t.role,
                    t.label.as_deref().unwrap_or("-"),
                    match t.role.parse::<crate::auth::TokenRole>() {
                        Ok(crate::auth::TokenRole::Admin | crate::auth::TokenRole::Viewer)
                        | Err(()) => {
                            "-".to_owned()
                        }
                        Ok(role) => scope.describe_for(role),
                    },
                    t.created_at,
                    t.expires_at.as_deref().unwrap_or("never"),
                    t.last_used_at.as_deref().unwrap_or("never"),
                    t.revoked_at.as_deref().unwrap_or("-")
                );
            }
            return Ok(0);
        }
    };
    let api = t.client.client()?;
    let r: TokenResponse = api
        .post_json(
            "/api/v1/tokens",
            &TokenRequest {
                role: t.role.clone(),
                label: t.label.clone(),
                agents: t.agents.clone(),
                channels: t.channels.iter().map(|c| c.to_string()).collect(),
                names: t.names.clone(),
                expires_in: t.expires.map(|d| d.as_secs().max(1)),
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
