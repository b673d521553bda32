//! `arca policy set CHANNEL FILE.toml --sign ROOTKEY... [--force]` and `arca policy show CHANNEL`.

use std::path::PathBuf;

use anyhow::Context;
use arca_keys::{SignedEnvelope, Signer, TrustDocument};

use super::ClientArgs;
use crate::model::ChannelName;
use crate::model::api::{PolicyChange, PolicyChangeResponse};
use crate::policy::Policy;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Replace a channel's policy (a new trust version signed by the root keys).
    Set {
        /// The channel whose policy it is.
        channel: ChannelName,
        /// The policy file (TOML; see docs/policy.md).
        file: PathBuf,
        /// A root key (file or pkcs11: URI) to sign the new trust version with (repeat for a
        /// threshold).
        #[arg(long = "sign", required = true)]
        sign: Vec<PathBuf>,
        #[command(flatten)]
        passphrase: super::passphrase::PassphraseArgs,
        /// Set it even though releases current in the channel would no longer meet it
        /// (clients refuse them until they get what they lack); they are listed.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a channel's current policy.
    Show {
        /// The channel whose policy it is.
        channel: ChannelName,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub async fn run(c: Command) -> anyhow::Result<i32> {
    match c {
        Command::Set {
            channel,
            file,
            sign,
            passphrase,
            force,
            client,
        } => {
            let keys = passphrase.read_keys(&sign)?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            Policy::from_toml(&text).with_context(|| format!("{}", file.display()))?;
            let api = client.client()?;
            let current: TrustDocument = api.trust().await?.decode("trust document")?;
            let mut next = current.next();
            next.policies.insert(
                channel.to_string(),
                crate::tuf::metadata::sha256_hex(text.as_bytes()),
            );
            let refs: Vec<&dyn Signer> = keys.iter().map(|k| &**k).collect();
            let trust = SignedEnvelope::sign(&next, &refs)?;
            // Without --force the server refuses a policy that would strand current releases
            // (409 stranded_releases, naming them).
            let r: PolicyChangeResponse = api
                .post_json(
                    &format!("/api/v1/policies/{channel}?force={force}"),
                    &PolicyChange {
                        policy: text,
                        trust,
                    },
                )
                .await?;
            println!(
                "trust v{}: policy of {channel} set from {}",
                r.version,
                file.display()
            );
            for s in &r.stranded {
                println!(
                    "  STRANDED {}@{}: {}",
                    s.name,
                    s.version,
                    s.failures.join("; ")
                );
            }
            if !r.stranded.is_empty() {
                println!(
                    "  clients refuse these releases until they meet the policy (e.g. another `arca approve`)"
                );
            }
        }
        Command::Show { channel, client } => {
            let text = client
                .client()?
                .get_text(&format!("/api/v1/policies/{channel}"))
                .await?;
            println!("{}", text.trim_end());
        }
    }
    Ok(0)
}
