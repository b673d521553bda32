//! `arca tuf-client`: the command protocol of TUF's conformance suite, over arca's TUF client.
//!
//! ```text
//! arca tuf-client --metadata-dir D init ROOT
//! arca tuf-client --metadata-url U --metadata-dir D refresh
//! arca tuf-client --metadata-url U --metadata-dir D --target-name P --target-base-url U2 --target-dir D2 download
//! ```
//! Exit 0 on success, 1 on any failure.

use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::tuf::client::{Fetcher, Updater, download_target, is_already, target_url};

/// A generic TUF client.
#[derive(clap::Args)]
pub struct Args {
    /// The client's metadata directory (trusted root and metadata).
    #[arg(long)]
    metadata_dir: PathBuf,
    /// Base URL of the repository's metadata (refresh, download).
    #[arg(long)]
    metadata_url: Option<String>,
    /// The target path to download.
    #[arg(long)]
    target_name: Option<String>,
    /// Base URL of the repository's targets (download).
    #[arg(long)]
    target_base_url: Option<String>,
    /// Directory the downloaded target is written to (its URL-encoded path as the file name).
    #[arg(long)]
    target_dir: Option<PathBuf>,
    /// init ROOT | refresh | download
    #[arg(required = true, num_args = 1..=2)]
    command: Vec<String>,
}

pub async fn run(a: Args) -> anyhow::Result<i32> {
    match a.command.first().map(String::as_str) {
        Some("init") => {
            let root = a
                .command
                .get(1)
                .context("init needs the trusted root file")?;
            let bytes = std::fs::read(root).with_context(|| format!("reading {root}"))?;
            Updater::init(&a.metadata_dir, &bytes)?;
        }
        Some("refresh") => {
            updater(&a)?.refresh().await?;
        }
        Some("download") => {
            let trusted = updater(&a)?.refresh().await?;
            let name = a
                .target_name
                .as_deref()
                .context("download needs --target-name")?;
            let base = a
                .target_base_url
                .as_deref()
                .context("download needs --target-base-url")?;
            let dir = a
                .target_dir
                .as_deref()
                .context("download needs --target-dir")?;
            let updater = updater(&a)?;
            let target = updater
                .find_target(&trusted, name)
                .await?
                .with_context(|| format!("target {name} is not in the repository"))?;
            let target = &target;
            std::fs::create_dir_all(dir)?;
            // The conformance protocol stores a target under its URL-encoded path.
            let file_name: String = name
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            // A file already there that verifies is not fetched again (as ngclient does).
            if is_already(&dir.join(&file_name), target) {
                return Ok(0);
            }
            let fetcher = Fetcher::new(crate::client::http_client()?);
            let tmp = tempfile_in(dir)?;
            let url = target_url(base, &trusted.root, name, target);
            let out = std::fs::File::create(&tmp)?;
            match download_target(&fetcher, &url, target, out, None).await {
                Ok(_) => std::fs::rename(&tmp, dir.join(&file_name))?,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e.into());
                }
            }
        }
        Some(other) => bail!("unknown tuf-client command {other:?} (init, refresh, download)"),
        None => bail!("missing command"),
    }
    Ok(0)
}

fn updater(a: &Args) -> anyhow::Result<Updater> {
    let url = a
        .metadata_url
        .as_deref()
        .context("--metadata-url is required")?;
    Ok(Updater::new(
        url,
        &a.metadata_dir,
        Fetcher::new(crate::client::http_client()?),
    ))
}

/// A fresh, unused temporary path inside `dir`.
pub fn tempfile_in(dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    use ring::rand::SecureRandom;
    let mut r = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut r)
        .map_err(|_| anyhow::anyhow!("random generator failed"))?;
    Ok(dir.join(format!(".arca-partial-{}", hex::encode(r))))
}
