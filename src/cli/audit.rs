//! `arca audit verify`, `arca audit export`, `arca audit checkpoint`.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context;
use arca_keys::{KeyStatus, Role, TrustDocument};

use super::ClientArgs;
use crate::audit::{Checkpoint, Entry};
use crate::client::ApiClient;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Recompute the hash chain and check every signed checkpoint; name the first bad entry.
    Verify {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Write the log as JSON lines (for a SIEM).
    Export {
        /// Only entries after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Ask the server to sign a checkpoint of the log now.
    Checkpoint {
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Page size when reading the log.
const PAGE: i64 = 5000;

async fn fetch_all(api: &ApiClient, after: i64) -> anyhow::Result<Vec<Entry>> {
    let mut out: Vec<Entry> = Vec::new();
    let mut cursor = after;
    loop {
        let page: Vec<Entry> = api
            .get_json_authed(
                "/api/v1/audit",
                &[("after", &cursor.to_string()), ("limit", &PAGE.to_string())],
            )
            .await?;
        let Some(last) = page.last() else { break };
        cursor = last.seq;
        let done = (page.len() as i64) < PAGE;
        out.extend(page);
        if done {
            break;
        }
    }
    Ok(out)
}

pub async fn run(c: Command) -> anyhow::Result<i32> {
    match c {
        Command::Verify { json, client } => {
            let api = client.client()?;
            let entries = fetch_all(&api, 0).await?;
            let checkpoints: Vec<Checkpoint> = api
                .get_json_authed("/api/v1/audit/checkpoints", &[])
                .await?;
            let trust: TrustDocument = api.trust().await?.decode("trust document")?;
            let keys: BTreeMap<_, _> = trust
                .keys
                .iter()
                .filter(|(_, e)| e.roles.contains(&Role::Audit) && e.status != KeyStatus::Revoked)
                .filter_map(|(id, e)| {
                    Some((id.clone(), arca_keys::PublicKey::from_tuf(&e.public).ok()?))
                })
                .collect();
            let report = crate::audit::verify(&entries, &checkpoints, &keys)
                .context("audit log verification failed")?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "audit log verified: {} entries, head {}, {} checkpoint(s), the newest covering {} entries",
                    report.entries, report.head, report.checkpoints, report.checkpointed
                );
            }
        }
        Command::Export { after, client } => {
            let api = client.client()?;
            let mut out = std::io::stdout().lock();
            for e in fetch_all(&api, after).await? {
                serde_json::to_writer(&mut out, &e)?;
                out.write_all(b"\n")?;
            }
        }
        Command::Checkpoint { client } => {
            let cp: Checkpoint = client
                .client()?
                .post_json("/api/v1/audit/checkpoints", &())
                .await?;
            println!(
                "checkpoint: size {} head {} at {} signed by {}",
                cp.size, cp.head, cp.at, cp.keyid
            );
        }
    }
    Ok(0)
}
