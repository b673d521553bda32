//! `arca push FILE --name NAME --version VERSION --key KEY`

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use arca_keys::SigningKey;
use arca_keys::dsse::Envelope;
use arca_keys::intoto::{PAYLOAD_TYPE, Statement, Subject};

use super::ClientArgs;
use crate::model::api::{BUILD_PREDICATE, BuildPredicate, PushQuery, subject_name};
use crate::model::{ArtifactName, FileName, Version};

/// Upload an artifact and its build signature; it enters the first channel.
#[derive(clap::Args)]
pub struct Args {
    /// The file to upload.
    file: PathBuf,
    #[arg(long)]
    name: ArtifactName,
    #[arg(long)]
    version: Version,
    /// The builder's private key, which signs the build statement.
    #[arg(long)]
    key: PathBuf,
    /// Media type recorded with the artifact.
    #[arg(long)]
    media_type: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// BLAKE3, SHA-256 and size of a file, read once in 1 MiB blocks on a blocking thread.
pub async fn hash_file(path: &Path) -> anyhow::Result<(String, String, u64)> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut f =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let mut b3 = blake3::Hasher::new();
        let mut sha = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            b3.update(&buf[..n]);
            sha.update(&buf[..n]);
            size += n as u64;
        }
        Ok((
            b3.finalize().to_hex().to_string(),
            hex::encode(sha.finish()),
            size,
        ))
    })
    .await?
}

pub async fn run(a: Args) -> anyhow::Result<i32> {
    let key = SigningKey::read_file(&a.key)?;
    let file_name: FileName = a
        .file
        .file_name()
        .and_then(|n| n.to_str())
        .context("FILE has no file name")?
        .parse()?;
    let (blake3, sha256, size) = hash_file(&a.file).await?;
    let statement = Statement::new(
        Subject {
            name: subject_name(&a.name, &a.version),
            digest: [
                ("sha256".to_owned(), sha256.clone()),
                ("blake3".to_owned(), blake3.clone()),
            ]
            .into(),
        },
        BUILD_PREDICATE,
        serde_json::to_value(BuildPredicate {
            file_name: file_name.clone(),
            size,
        })?,
    );
    let envelope = Envelope::sign(PAYLOAD_TYPE, &statement.to_bytes(), &[&key]);
    let q = PushQuery {
        name: a.name.clone(),
        version: a.version.clone(),
        file: file_name,
        media_type: a.media_type.clone(),
    };
    let bar = super::progress(size, a.json);
    if let Some(b) = &bar {
        b.set_message(format!("push {}", subject_name(&a.name, &a.version)));
    }
    let resp = a
        .client
        .client()?
        .push(&a.file, &q, &envelope.to_bytes(), bar.clone())
        .await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let resp = resp?;
    if resp.artifact.blake3 != blake3 {
        anyhow::bail!(
            "the server stored blake3 {} but the file is {blake3}",
            resp.artifact.blake3
        );
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&resp)?);
    } else {
        let verb = if resp.created {
            "pushed"
        } else {
            "already present:"
        };
        println!(
            "{verb} {}@{} ({} bytes, blake3 {}) into {} (targets v{})",
            resp.artifact.name,
            resp.artifact.version,
            resp.artifact.size,
            resp.artifact.blake3,
            resp.channel,
            resp.targets_version
        );
    }
    Ok(0)
}
