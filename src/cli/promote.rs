//! `arca promote NAME@VERSION --to CH [--dry-run] [--reason TEXT]`,
//! `arca rollback NAME[@VERSION] --channel CH [--to VERSION] [--reason TEXT]`,
//! `arca history NAME[@VERSION] --channel CH`.

use anyhow::bail;

use super::ClientArgs;
use super::attest::Release;
use crate::client::Promotion;
use crate::model::api::{HistoryEntry, PromoteRequest, RollbackRequest, RollbackResponse};
use crate::model::{ChannelName, Version};
use crate::policy::Decision;

/// Promote a release into a channel if its policy allows it now.
#[derive(clap::Args)]
pub struct PromoteArgs {
    /// The release, as NAME@VERSION.
    release: Release,
    /// The channel to promote into.
    #[arg(long)]
    to: ChannelName,
    /// Evaluate and print the decision; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Why (e.g. a change ticket), kept in history and the audit log.
    #[arg(long)]
    reason: Option<String>,
    /// Phase the release in: percentages of agents, e.g. `1,10,50,100` (replaces the channel
    /// policy's plan for this promotion).
    #[arg(long, value_name = "STEPS")]
    rollout: Option<String>,
    /// How long each step holds before the next (with --rollout).
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    step_interval: std::time::Duration,
    /// Failed / reporting agents above which the rollout halts and the channel rolls back.
    #[arg(long, default_value_t = 0.05)]
    max_failure_rate: f64,
    /// Reports needed before the failure rate decides (advance or halt).
    #[arg(long, default_value_t = 5)]
    min_reports: u32,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

impl PromoteArgs {
    fn plan(&self) -> anyhow::Result<Option<crate::rollout::Plan>> {
        let Some(steps) = &self.rollout else {
            return Ok(None);
        };
        let plan = crate::rollout::Plan {
            steps: crate::rollout::Plan::parse_steps(steps)?,
            step_interval: self.step_interval,
            max_failure_rate: self.max_failure_rate,
            min_reports: self.min_reports,
        };
        plan.validate()?;
        Ok(Some(plan))
    }
}

/// Return a channel to a release it held before (as a new metadata version).
#[derive(clap::Args)]
pub struct RollbackArgs {
    /// The name, or NAME@VERSION for the release to return to (the same as --to VERSION).
    #[arg(value_name = "NAME[@VERSION]")]
    name: super::NameRef,
    /// The channel to roll back.
    #[arg(long)]
    channel: ChannelName,
    /// The version to return to (default: the release before the current one).
    #[arg(long)]
    to: Option<Version>,
    /// Why (e.g. an incident ticket), kept in history and the audit log.
    #[arg(long)]
    reason: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// Every change of a name in a channel: who, when, why.
#[derive(clap::Args)]
pub struct HistoryArgs {
    /// The name, or NAME@VERSION for the changes that involved that release only.
    #[arg(value_name = "NAME[@VERSION]")]
    name: super::NameRef,
    /// The channel whose changes to list.
    #[arg(long)]
    channel: ChannelName,
    /// Print the changes as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

fn print_decision(d: &Decision) {
    for r in &d.rules {
        println!(
            "  {} {:<40} {}",
            if r.pass { "pass" } else { "FAIL" },
            r.rule,
            r.reason
        );
    }
}

pub async fn promote(a: PromoteArgs) -> anyhow::Result<i32> {
    let api = a.client.client()?;
    let req = PromoteRequest {
        name: a.release.name.clone(),
        version: a.release.version.clone(),
        to: a.to.clone(),
        dry_run: a.dry_run,
        reason: a.reason.clone(),
        rollout: a.plan()?,
    };
    let subject = format!("{}@{} -> {}", req.name, req.version, req.to);
    // A refusal is a 403 whose body carries the decision: show every rule, then fail.
    let r = match api.promote(&req).await? {
        Promotion::Done(r) => r,
        Promotion::Refused { body, decision: d } => {
            if a.json {
                println!("{}", serde_json::to_string_pretty(&body)?);
            } else {
                println!("promotion {subject}: REFUSED");
                print_decision(&d);
            }
            bail!("promotion {subject} refused: {}", d.failures().join("; "));
        }
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        let verdict = if r.already_current && !r.decision.allowed {
            "already current, but the policy now REFUSES it".to_owned()
        } else if r.already_current {
            "already current".to_owned()
        } else if a.dry_run {
            format!(
                "dry run: {}",
                if r.decision.allowed {
                    "would be allowed"
                } else {
                    "would be REFUSED"
                }
            )
        } else if let Some(id) = r.rollout {
            format!(
                "promoted (targets v{}), rollout {id} started: `arca rollout status {} --channel {}`",
                r.targets_version.unwrap_or(0),
                a.release.name,
                a.to
            )
        } else {
            format!("promoted (targets v{})", r.targets_version.unwrap_or(0))
        };
        println!("promotion {subject}: {verdict}");
        print_decision(&r.decision);
    }
    // A dry run that would be refused, and a current release that no longer meets the policy,
    // are failures: scripts must not read them as success.
    if (a.dry_run || r.already_current) && !r.decision.allowed {
        return Ok(1);
    }
    Ok(0)
}

pub async fn rollback(a: RollbackArgs) -> anyhow::Result<i32> {
    let api = a.client.client()?;
    let to = match (&a.name.version, &a.to) {
        (Some(v), Some(t)) if v != t => bail!("{}@{v} and --to {t} name two releases", a.name.name),
        (Some(v), _) => Some(v.clone()),
        (None, t) => t.clone(),
    };
    let req = RollbackRequest {
        name: a.name.name.clone(),
        channel: a.channel.clone(),
        to,
        reason: a.reason.clone(),
    };
    let r: RollbackResponse = api.post_json("/api/v1/rollbacks", &req).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "rolled back {} in {}: {} -> {} (targets v{})",
            a.name.name, a.channel, r.from, r.to, r.targets_version
        );
    }
    Ok(0)
}

pub async fn history(a: HistoryArgs) -> anyhow::Result<i32> {
    let api = a.client.client()?;
    // The server answers a page at a time: ask for the rows after the last one seen.
    const PAGE: usize = 1000;
    let mut rows: Vec<HistoryEntry> = Vec::new();
    loop {
        let after = rows.last().map_or(0, |r| r.seq).to_string();
        let limit = PAGE.to_string();
        let page: Vec<HistoryEntry> = api
            .get_json(
                "/api/v1/history",
                &[
                    ("name", a.name.name.as_str()),
                    ("channel", a.channel.as_str()),
                    ("after", &after),
                    ("limit", &limit),
                ],
            )
            .await?;
        let n = page.len();
        rows.extend(page);
        if n < PAGE {
            break;
        }
    }
    if let Some(v) = &a.name.version {
        rows.retain(|r| r.version == v.as_str());
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    if rows.is_empty() {
        match &a.name.version {
            Some(v) => println!("{}@{v} has never been in {}", a.name.name, a.channel),
            None => println!("{} has never been in {}", a.name.name, a.channel),
        }
    }
    for r in rows {
        println!(
            "{:>5}  {}  {:<14} {:<20} {:<28} {}",
            r.seq,
            r.at,
            r.action,
            r.version,
            r.who(),
            r.reason.as_deref().unwrap_or_default()
        );
    }
    Ok(0)
}
