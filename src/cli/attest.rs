//! `arca attest NAME@VERSION --type URI --key KEY [--predicate FILE]` and
//! `arca approve NAME@VERSION --channel CH --key KEY [--break-glass --reason TEXT]`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use arca_keys::Signer;
use arca_keys::dsse::Envelope;
use arca_keys::intoto::{PAYLOAD_TYPE, Statement, Subject};

use super::ClientArgs;
use crate::model::ChannelName;
use crate::model::api::subject_name;
use crate::policy::{APPROVAL_PREDICATE, ApprovalPredicate};

pub use super::Release;

/// Sign a statement about a release and upload it.
#[derive(clap::Args)]
pub struct AttestArgs {
    /// The release, as NAME@VERSION.
    release: Release,
    /// The predicate type (a URI), e.g. https://example.com/tests/v1.
    #[arg(long = "type")]
    predicate_type: String,
    /// The signing key (an attestor or builder key): a key file or a pkcs11: URI.
    #[arg(long)]
    key: PathBuf,
    #[command(flatten)]
    passphrase: super::passphrase::PassphraseArgs,
    /// The predicate, a JSON file (default: {}).
    #[arg(long)]
    predicate: Option<PathBuf>,
    /// Hash this local file and refuse unless it is the release (default: use the digests the
    /// server reports).
    #[arg(long)]
    file: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// Approve a release for a channel.
#[derive(clap::Args)]
pub struct ApproveArgs {
    /// The release, as NAME@VERSION.
    release: Release,
    /// The channel the approval is for (an approval for staging does not count for prod).
    #[arg(long)]
    channel: ChannelName,
    /// The approver's key: a key file or a pkcs11: URI.
    #[arg(long)]
    key: PathBuf,
    #[command(flatten)]
    passphrase: super::passphrase::PassphraseArgs,
    /// A break-glass approval, which also lets the release through a freeze window (recorded as such).
    #[arg(long)]
    break_glass: bool,
    /// Why (recorded in the approval).
    #[arg(long)]
    reason: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// Signs and uploads a statement with `predicate_type` about `release`.
async fn sign_and_send(
    client: &ClientArgs,
    release: &Release,
    key: &dyn Signer,
    predicate_type: &str,
    predicate: serde_json::Value,
    file: Option<&std::path::Path>,
) -> anyhow::Result<crate::model::api::StatementResponse> {
    let api = client.client()?;
    let info = api
        .artifact(&release.name, &release.version)
        .await?
        .with_context(|| format!("no artifact {}@{}", release.name, release.version))?;
    if let Some(f) = file {
        let (blake3, sha256, _) = super::push::hash_file(f).await?;
        if blake3 != info.blake3 || sha256 != info.sha256 {
            bail!(
                "{} is not {}@{} (blake3 {blake3}, the release is {})",
                f.display(),
                release.name,
                release.version,
                info.blake3
            );
        }
    }
    let st = Statement::new(
        Subject {
            name: subject_name(&release.name, &release.version),
            digest: [
                ("sha256".to_owned(), info.sha256),
                ("blake3".to_owned(), info.blake3),
            ]
            .into(),
        },
        predicate_type,
        predicate,
    );
    let env = Envelope::sign(PAYLOAD_TYPE, &st.to_bytes(), &[key])?;
    api.add_statement(&env.to_bytes()).await
}

fn print(
    resp: &crate::model::api::StatementResponse,
    what: &str,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(resp)?);
    } else {
        println!(
            "{what} (statement {}, signed by {})",
            resp.sha256,
            resp.signers.join(", ")
        );
        for ch in &resp.auto_promoted {
            println!("auto-promoted into {ch}");
        }
    }
    Ok(())
}

pub async fn attest(a: AttestArgs) -> anyhow::Result<i32> {
    let key = a.passphrase.read_key(&a.key)?;
    let predicate = match &a.predicate {
        Some(p) => serde_json::from_slice(
            &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("{} is not JSON", p.display()))?,
        None => serde_json::json!({}),
    };
    let resp = sign_and_send(
        &a.client,
        &a.release,
        &*key,
        &a.predicate_type,
        predicate,
        a.file.as_deref(),
    )
    .await?;
    print(
        &resp,
        &format!(
            "attested {}@{}: {}",
            a.release.name, a.release.version, a.predicate_type
        ),
        a.json,
    )?;
    Ok(0)
}

pub async fn approve(a: ApproveArgs) -> anyhow::Result<i32> {
    let key = a.passphrase.read_key(&a.key)?;
    let predicate = serde_json::to_value(ApprovalPredicate {
        channel: a.channel.clone(),
        break_glass: a.break_glass,
        reason: a.reason.clone(),
    })?;
    let resp = sign_and_send(
        &a.client,
        &a.release,
        &*key,
        APPROVAL_PREDICATE,
        predicate,
        None,
    )
    .await?;
    let glass = if a.break_glass { " (BREAK-GLASS)" } else { "" };
    print(
        &resp,
        &format!(
            "approved {}@{} for {}{glass}",
            a.release.name, a.release.version, a.channel
        ),
        a.json,
    )?;
    Ok(0)
}
