//! `arca show NAME@VERSION [--json]`: one release — the artifact, where it stands in each
//! channel, its statements with their signers, its history — the release page for the terminal.

use super::{ClientArgs, Release};
use crate::model::api::ReleaseView;

/// One release: artifact, channels, statements, history.
#[derive(clap::Args)]
pub struct Args {
    /// The release, as NAME@VERSION.
    release: Release,
    /// Print the release as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

pub async fn run(a: Args) -> anyhow::Result<i32> {
    let api = a.client.client()?;
    let v: ReleaseView = api
        .get_json(
            "/api/v1/release",
            &[
                ("name", a.release.name.as_str()),
                ("version", a.release.version.as_str()),
            ],
        )
        .await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    let art = &v.artifact;
    println!("{}@{}", art.name, art.version);
    println!(
        "  file      {} ({} bytes, {})",
        art.file_name, art.size, art.media_type
    );
    println!("  sha256    {}", art.sha256);
    println!("  blake3    {}", art.blake3);
    println!("  pushed    {} by {}", art.created_at, art.uploaded_by);
    println!("channels:");
    for c in &v.channels {
        let standing = if c.current {
            "current".to_owned()
        } else if c.history.is_empty() {
            match &c.current_version {
                Some(cv) => format!("not here (current: {cv})"),
                None => "not here".to_owned(),
            }
        } else {
            match &c.current_version {
                Some(cv) => format!("was here (current: {cv})"),
                None => "was here".to_owned(),
            }
        };
        println!("  {:<12} {standing}", c.channel.as_str());
    }
    println!("statements:");
    if v.statements.is_empty() {
        println!("  (none)");
    }
    for s in &v.statements {
        let signers: Vec<String> = s
            .signers
            .iter()
            .map(|k| match &k.label {
                Some(l) => format!("{} ({l}, {})", short(&k.key_id), k.status),
                None => format!("{} ({})", short(&k.key_id), k.status),
            })
            .collect();
        println!(
            "  {}  {}  signed by {}",
            s.created_at,
            s.predicate_type,
            signers.join(", ")
        );
    }
    println!("history:");
    for c in &v.channels {
        for h in &c.history {
            println!(
                "  {}  {:<10} {:<14} {} {}",
                h.at,
                c.channel.as_str(),
                h.action,
                h.who(),
                h.reason.as_deref().unwrap_or_default()
            );
        }
    }
    Ok(0)
}

/// The first 16 hex digits of a key id: enough to tell keys apart on a terminal.
fn short(id: &str) -> &str {
    id.get(..16).unwrap_or(id)
}
