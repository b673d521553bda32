//! `arca push FILE NAME@VERSION --key KEY` (or `--name NAME --version VERSION`)

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use arca_keys::dsse::Envelope;
use arca_keys::intoto::{PAYLOAD_TYPE, Statement, Subject};

use super::ClientArgs;
use crate::model::api::{BUILD_PREDICATE, BuildPredicate, PushQuery, UploadQuery, subject_name};
use crate::model::{ArtifactName, FileName, Version};

/// Upload an artifact and its build signature; it enters the first channel.
#[derive(clap::Args)]
pub struct Args {
    /// The file to upload.
    file: PathBuf,
    /// The release, as NAME@VERSION (or give --name and --version).
    #[arg(value_name = "NAME@VERSION", required_unless_present_all = ["name", "version"],
          conflicts_with_all = ["name", "version"])]
    release: Option<super::Release>,
    /// The artifact's name (with --version; or give NAME@VERSION).
    #[arg(long, requires = "version")]
    name: Option<ArtifactName>,
    /// The version (with --name; or give NAME@VERSION).
    #[arg(long, requires = "name")]
    version: Option<Version>,
    /// The builder's private key, which signs the build statement: a key file or a pkcs11: URI.
    #[arg(long)]
    key: PathBuf,
    #[command(flatten)]
    passphrase: super::passphrase::PassphraseArgs,
    /// Media type recorded with the artifact.
    #[arg(long)]
    media_type: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// BLAKE3, SHA-256 and size of a file, read once in 1 MiB blocks; the two digests are
/// computed on threads of their own.
pub async fn hash_file(path: &Path) -> anyhow::Result<(String, String, u64)> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut f =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let mut hasher = arca_store::ParallelHasher::new();
        loop {
            let mut buf = vec![0u8; 1 << 20];
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            hasher.update_blocking(buf.into());
        }
        let d = hasher.finish_blocking()?;
        Ok((d.blake3.hex(), d.sha256.hex(), d.size))
    })
    .await?
}

/// The (blake3, sha256, size) of a file being read, when it has been read.
type Hashing = tokio::task::JoinHandle<anyhow::Result<(String, String, u64)>>;

/// Reads `path` once, in 1 MiB blocks, for both the upload body and the hashes: a thread reads
/// each block, hands it to the hashers (SHA-256 and BLAKE3 on threads of their own) and to the
/// request body. Resolves to (blake3, sha256, size) once the whole file was read.
fn read_once(
    path: &Path,
    progress: Option<indicatif::ProgressBar>,
) -> anyhow::Result<(reqwest::Body, Hashing)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(8);
    let name = path.display().to_string();
    let reader = tokio::task::spawn_blocking(move || {
        let mut hasher = arca_store::ParallelHasher::new();
        loop {
            let mut buf = vec![0u8; 1 << 20];
            let n = f
                .read(&mut buf)
                .with_context(|| format!("reading {name}"))?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            let block = bytes::Bytes::from(buf);
            hasher.update_blocking(block.clone());
            if tx.blocking_send(Ok(block)).is_err() {
                anyhow::bail!("the upload stopped");
            }
        }
        let d = hasher.finish_blocking()?;
        Ok((d.blake3.hex(), d.sha256.hex(), d.size))
    });
    let body =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let body = futures::StreamExt::inspect(body, move |chunk| {
        if let (Some(p), Ok(c)) = (&progress, chunk) {
            p.inc(c.len() as u64);
        }
    });
    Ok((reqwest::Body::wrap_stream(body), reader))
}

pub async fn run(a: Args) -> anyhow::Result<i32> {
    let key = a.passphrase.read_key(&a.key)?;
    let file_name: FileName = a
        .file
        .file_name()
        .and_then(|n| n.to_str())
        .context("FILE has no file name")?
        .parse()?;
    let size = std::fs::metadata(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?
        .len();
    let api = a.client.client()?;
    let started = std::time::Instant::now();
    let (name, version) = match (&a.release, &a.name, &a.version) {
        (Some(r), _, _) => (r.name.clone(), r.version.clone()),
        (None, Some(n), Some(v)) => (n.clone(), v.clone()),
        _ => bail!("name the release: NAME@VERSION, or --name and --version"),
    };
    let subject = subject_name(&name, &version);

    // A new version is uploaded while the file is hashed (two requests: stage, then push with
    // the statement). An existing one is only hashed: the push then names no bytes, and the
    // server answers "already present" for the same bytes or refuses other bytes.
    let existing = api.artifact(&name, &version).await?;
    let bar = super::progress(size, a.json || existing.is_some());
    if let Some(b) = &bar {
        b.set_message(format!("push {subject}"));
    }
    let (digests, upload) = if existing.is_some() {
        (hash_file(&a.file).await?, None)
    } else {
        let uq = UploadQuery {
            name: name.clone(),
            version: version.clone(),
            signer: key.key_id(),
        };
        let (body, hashed) = read_once(&a.file, bar.clone())?;
        let (digests, staged) = tokio::try_join!(
            async { hashed.await.context("the file reader stopped")? },
            api.upload(body, size, &uq)
        )?;
        let (blake3, sha256, size) = &digests;
        if (&staged.blake3, &staged.sha256, staged.size) != (blake3, sha256, *size) {
            bail!(
                "the server received other bytes (blake3 {}) than {} holds (blake3 {blake3}): did the file change during the upload?",
                staged.blake3,
                a.file.display()
            );
        }
        (digests, Some(staged.upload))
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let (blake3, sha256, size) = digests;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        size,
        "uploaded and hashed"
    );

    let statement = Statement::new(
        Subject {
            name: subject.clone(),
            digest: [
                ("sha256".to_owned(), sha256),
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
    let envelope = Envelope::sign(PAYLOAD_TYPE, &statement.to_bytes(), &[&*key])?;
    let q = PushQuery {
        name: name.clone(),
        version: version.clone(),
        file: file_name,
        media_type: a.media_type.clone(),
        upload,
    };
    let resp = api.push(None, &q, &envelope.to_bytes(), None).await?;
    tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "pushed");
    if resp.artifact.blake3 != blake3 {
        bail!(
            "{subject} exists with blake3 {}, but the file is {blake3}",
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
