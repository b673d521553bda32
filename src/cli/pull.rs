//! `arca pull NAME --channel CH --root ROOT.json --out DIR`
//!
//! Runs the TUF client workflow from the pinned root, then checks what a generic TUF client
//! cannot: that the channel's root is bound to CH, and that the release carries a build
//! signature by a builder key of the root-signed trust document. The file lands in DIR
//! (temporary file + rename) only after every check passed.

use std::path::PathBuf;

use anyhow::Context;

use super::ClientArgs;
use super::tuf_client::tempfile_in;
use crate::client::release::{ChannelClient, releases_of};
use crate::model::{ArtifactName, ChannelName};

/// Fetch and verify a channel's release of NAME.
#[derive(clap::Args)]
pub struct Args {
    /// The artifact name to fetch.
    name: ArtifactName,
    /// The channel to fetch it from.
    #[arg(long)]
    channel: ChannelName,
    /// The pinned root (`root.json` from the server's home), the client's trust anchor.
    #[arg(long, env = "ARCA_ROOT")]
    root: PathBuf,
    /// Directory to write the verified file into.
    #[arg(long)]
    out: PathBuf,
    /// Where trusted metadata is kept between pulls (rollback protection).
    /// Default: $HOME/.local/state/arca/<server>/<channel>.
    #[arg(long, env = "ARCA_METADATA_DIR")]
    metadata_dir: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

pub async fn run(a: Args) -> anyhow::Result<i32> {
    let root_bytes =
        std::fs::read(&a.root).with_context(|| format!("reading {}", a.root.display()))?;
    let dir = match &a.metadata_dir {
        Some(d) => d.clone(),
        None => super::state_dir(&a.client.server, "--metadata-dir")?.join(a.channel.as_str()),
    };
    let started = std::time::Instant::now();
    let client = ChannelClient::open(a.client.client()?, a.channel.clone(), &root_bytes, dir)?;
    let trusted = client.refresh().await?;

    // The release: the one target whose signed custom data names NAME (during a rollout, the
    // new release; the previous one is what agents outside the rollout keep).
    let release = releases_of(&trusted, &a.name)?
        .0
        .with_context(|| format!("channel {} has no release of {}", a.channel, a.name))?;
    let verified = client.verify(&release).await?;
    let (custom, signer, trust) = (&release.custom, verified.signer, verified.trust);
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "metadata, trust and statements verified"
    );
    // The bytes, length-capped and hash-checked while they stream into a temporary file in DIR.
    let file_name = release.file_name()?;
    let created_out = !a.out.exists();
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let tmp = tempfile_in(&a.out)?;
    let bar = super::progress(release.target.length, a.json);
    let result = async {
        let out =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let got = client
            .download(&trusted, &release, out, bar.clone())
            .await?;
        std::fs::rename(&tmp, a.out.join(file_name.as_str()))?;
        Ok::<_, anyhow::Error>(got)
    }
    .await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let got = match result {
        Ok(g) => g,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            if created_out {
                let _ = std::fs::remove_dir(&a.out);
            }
            return Err(e);
        }
    };
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "downloaded and verified"
    );
    let dest = a.out.join(file_name.as_str());
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "name": custom.name, "version": custom.version, "channel": a.channel,
                "path": dest, "length": got.length, "sha256": got.sha256, "blake3": got.blake3,
                "signer": signer.to_string(), "targets_version": trusted.targets.version,
                "trust_version": trust.version,
            })
        );
    } else {
        println!(
            "verified {}@{} from {} (sha256 {}, blake3 {}, built by key {}) -> {}",
            custom.name,
            custom.version,
            a.channel,
            got.sha256,
            got.blake3,
            signer,
            dest.display()
        );
    }
    Ok(0)
}
