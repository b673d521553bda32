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
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// Where the newest verified checkpoint is kept between runs, so that a server which
        /// later drops its checkpoints and rewrites the log is still caught.
        /// Default: $HOME/.local/state/arca/<server>/audit-checkpoint.json.
        #[arg(long, env = "ARCA_AUDIT_STATE")]
        state: Option<std::path::PathBuf>,
        /// A checkpoint to hold the log to (JSON, as `arca audit checkpoint --json` prints),
        /// e.g. one kept in a ticket or another system.
        #[arg(long)]
        checkpoint: Option<std::path::PathBuf>,
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
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
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
        Command::Verify {
            json,
            state,
            checkpoint,
            client,
        } => {
            let api = client.client()?;
            // Checkpoints first: the log only grows, so every checkpoint read now is covered
            // by the entries read after it.
            let mut checkpoints: Vec<Checkpoint> = api
                .get_json_authed("/api/v1/audit/checkpoints", &[])
                .await?;
            let entries = fetch_all(&api, 0).await?;
            let state = match state {
                Some(p) => p,
                None => super::state_dir(&client.server, "--state")?.join("audit-checkpoint.json"),
            };
            // The checkpoints this client verified before, and one given by hand, count too:
            // dropping them from the server's database does not make a rewrite pass.
            let pinned: Vec<Checkpoint> = [Some(state.clone()), checkpoint]
                .into_iter()
                .flatten()
                .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
                .map(|(p, b)| {
                    serde_json::from_slice(&b)
                        .with_context(|| format!("{} is not a checkpoint", p.display()))
                })
                .collect::<anyhow::Result<_>>()?;
            checkpoints.extend(pinned);
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
            if let Some(newest) = checkpoints.iter().max_by_key(|c| c.size) {
                if let Some(dir) = state.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(&state, serde_json::to_vec(newest)?)
                    .with_context(|| format!("writing {}", state.display()))?;
            }
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
        Command::Checkpoint { json, client } => {
            let cp: Checkpoint = client
                .client()?
                .post_json("/api/v1/audit/checkpoints", &())
                .await?;
            if json {
                println!("{}", serde_json::to_string(&cp)?);
            } else {
                println!(
                    "checkpoint: size {} head {} at {} signed by {}",
                    cp.size, cp.head, cp.at, cp.keyid
                );
            }
        }
    }
    Ok(0)
}
