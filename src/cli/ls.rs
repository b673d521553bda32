//! `arca ls [--channel CH] [--json]`: what is current in every channel, the board for the
//! terminal.

use super::ClientArgs;
use crate::model::ChannelName;
use crate::model::api::ChannelBoard;

/// What is current in every channel (or one).
#[derive(clap::Args)]
pub struct Args {
    /// Only this channel.
    #[arg(long)]
    channel: Option<ChannelName>,
    /// Print the channels as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

pub async fn run(a: Args) -> anyhow::Result<i32> {
    let api = a.client.client()?;
    let mut board: Vec<ChannelBoard> = api.get_json("/api/v1/channels", &[]).await?;
    if let Some(ch) = &a.channel {
        board.retain(|b| &b.channel == ch);
        if board.is_empty() {
            anyhow::bail!("no channel named {ch} on this server (`arca ls` lists them)");
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&board)?);
        return Ok(0);
    }
    for b in &board {
        println!("{}:", b.channel);
        if b.releases.is_empty() {
            println!("  (nothing yet)");
        }
        let width = b
            .releases
            .iter()
            .map(|r| r.name.as_str().len())
            .max()
            .unwrap_or(0);
        for r in &b.releases {
            println!(
                "  {:<width$}  {:<16} {:<13} since {}  by {}",
                r.name, r.version, r.action, r.since, r.actor
            );
        }
    }
    Ok(0)
}
