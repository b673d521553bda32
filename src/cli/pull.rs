//! `arca pull NAME --channel CH --root ROOT.json --out DIR`
//!
//! Runs the TUF client workflow from the pinned root, then checks what a generic TUF client
//! cannot: that the channel's root is bound to CH, and that the release carries a build
//! signature by a builder key of the root-signed trust document. The file lands in DIR
//! (temporary file + rename) only after every check passed.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use arca_keys::dsse::Envelope as Dsse;
use arca_keys::{SignedEnvelope, TrustDocument};

use super::ClientArgs;
use super::tuf_client::tempfile_in;
use crate::client::ApiClient;
use crate::model::api::TargetCustom;
use crate::model::{ArtifactName, ChannelName, FileName};
use crate::tuf::client::{Fetcher, Updater, download_target, target_url};
use crate::tuf::metadata::{Envelope, Root, sha256_hex};

/// Most trust versions followed in one pull.
const MAX_TRUST_STEPS: u64 = 100_000;

/// Fetch and verify a channel's release of NAME.
#[derive(clap::Args)]
pub struct Args {
    name: ArtifactName,
    #[arg(long)]
    channel: ChannelName,
    /// The pinned root (`root.json` from the server's home), the client's trust anchor.
    #[arg(long)]
    root: PathBuf,
    /// Directory to write the verified file into.
    #[arg(long)]
    out: PathBuf,
    /// Where trusted metadata is kept between pulls (rollback protection).
    /// Default: $HOME/.local/state/arca/<server>/<channel>.
    #[arg(long, env = "ARCA_METADATA_DIR")]
    metadata_dir: Option<PathBuf>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// Binds a state directory to the pinned root it was started from.
fn check_bootstrap(dir: &Path, root_bytes: &[u8]) -> anyhow::Result<()> {
    let marker = dir.join("bootstrap.sha256");
    let digest = sha256_hex(root_bytes);
    match std::fs::read_to_string(&marker) {
        Ok(s) if s.trim() == digest => Ok(()),
        Ok(_) => bail!(
            "--root differs from the root that client state {} was started with; use another --metadata-dir",
            dir.display()
        ),
        Err(_) => {
            std::fs::create_dir_all(dir)?;
            std::fs::write(&marker, format!("{digest}\n"))?;
            Ok(())
        }
    }
}

pub async fn run(a: Args) -> anyhow::Result<i32> {
    let root_bytes =
        std::fs::read(&a.root).with_context(|| format!("reading {}", a.root.display()))?;
    let pinned_env = Envelope::from_slice("root", &root_bytes)?;
    let pinned: Root = pinned_env.decode()?;
    pinned_env
        .verify_role(&pinned, "root")
        .context("the pinned root is not signed by its own root keys")?;
    let dir = match &a.metadata_dir {
        Some(d) => d.clone(),
        None => super::state_dir(&a.client.server, "--metadata-dir")?.join(a.channel.as_str()),
    };
    let fresh_state = !dir.join("root.json").exists();
    if fresh_state {
        std::fs::create_dir_all(&dir)?;
        Updater::init(&dir, &root_bytes)?;
    }
    check_bootstrap(&dir, &root_bytes)?;

    let started = std::time::Instant::now();
    let api = a.client.client()?;
    let fetcher = Fetcher::new(api.http().clone());
    let base = format!("{}/tuf/{}", api.base(), a.channel);
    let trusted = Updater::new(&format!("{base}/metadata/"), &dir, fetcher.clone())
        .refresh()
        .await
        .context("channel metadata refused")?;
    if trusted.root.channel.as_deref() != Some(a.channel.as_str()) {
        bail!(
            "root metadata v{} is bound to channel {:?}, not {}: refusing a wrong-channel repository",
            trusted.root.version,
            trusted.root.channel.as_deref().unwrap_or("none"),
            a.channel
        );
    }

    // The release: the one target whose signed custom data names NAME.
    let mut found = trusted.targets.targets.iter().filter_map(|(path, t)| {
        let custom: TargetCustom = serde_json::from_value(t.custom.clone()?).ok()?;
        (custom.name == a.name).then_some((path, t, custom))
    });
    let (path, target, custom) = found
        .next()
        .with_context(|| format!("channel {} has no release of {}", a.channel, a.name))?;
    if found.next().is_some() {
        bail!("channel {} lists {} twice", a.channel, a.name);
    }
    let sha256 = target
        .hashes
        .get("sha256")
        .context("the target lists no sha256")?
        .clone();

    // arca's own checks: the build signature, against the root-signed trust document.
    let trust = trust_chain(&api, &dir, &pinned, custom.trust_version).await?;
    let mut envelopes = Vec::new();
    for digest in &custom.statements {
        let bytes = api.statement(digest).await?;
        envelopes.push(Dsse::from_slice(&bytes)?);
    }
    let signer = crate::statements::verify_release_build(
        &trust,
        &envelopes,
        &custom.name,
        &custom.version,
        &sha256,
        &custom.blake3,
    )
    .map_err(|reason| {
        anyhow::anyhow!(
            "{}@{}: no valid build signature: {reason}",
            custom.name,
            custom.version
        )
    })?;
    check_channel_policy(&api, &trust, &a.channel, &custom, &sha256, &envelopes).await?;

    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "metadata, trust and statements verified"
    );
    // The bytes, length-capped and hash-checked while they stream into a temporary file in DIR.
    let file_name: FileName = path
        .rsplit('/')
        .next()
        .unwrap_or(path)
        .parse()
        .context("the target's file name is not acceptable")?;
    let created_out = !a.out.exists();
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let tmp = tempfile_in(&a.out)?;
    let bar = super::progress(target.length, a.json);
    let result = async {
        let out =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let url = target_url(&format!("{base}/targets"), &trusted.root, path, target);
        let got = download_target(&fetcher, &url, target, out, bar.clone())
            .await
            .with_context(|| format!("downloading {path}"))?;
        if got.blake3 != custom.blake3 {
            bail!(
                "{path}: blake3 {} does not match the signed {}",
                got.blake3,
                custom.blake3
            );
        }
        std::fs::rename(&tmp, a.out.join(file_name.as_str()))?;
        Ok(got)
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

/// Checks the signature rules of the channel's policy as the newest trust document pins it:
/// build signatures, attestations and approvals (by distinct approver keys, not the builder's).
/// The newest policy, not the one current at publication: the online key signs the targets
/// entry, and must not be able to point a client at an older, weaker policy. Time and state
/// rules (`from`, `min_soak`, `freeze`, `allow_downgrade`) are the server's to check.
async fn check_channel_policy(
    api: &ApiClient,
    trust: &TrustDocument,
    channel: &ChannelName,
    custom: &TargetCustom,
    sha256: &str,
    envelopes: &[Dsse],
) -> anyhow::Result<()> {
    let digest = trust
        .policies
        .get(channel.as_str())
        .with_context(|| format!("trust v{} pins no policy for {channel}", trust.version))?;
    let text = api
        .get_text(&format!("/api/v1/policies/by-digest/{digest}"))
        .await?;
    if sha256_hex(text.as_bytes()) != *digest {
        bail!(
            "the server sent another policy for {channel} than trust v{} pins",
            trust.version
        );
    }
    let mut policy = crate::policy::Policy::from_toml(&text)?;
    policy.from = None;
    policy.min_soak = std::time::Duration::ZERO;
    policy.freeze.clear();
    let facts: Vec<crate::policy::StatementFacts> = envelopes
        .iter()
        .zip(&custom.statements)
        .filter_map(|(env, d)| {
            crate::policy::StatementFacts::about(
                env,
                d.clone(),
                trust,
                &custom.name,
                &custom.version,
                sha256,
                &custom.blake3,
            )
        })
        .collect();
    let decision = crate::policy::evaluate(
        &policy,
        &crate::policy::Facts {
            channel,
            name: &custom.name,
            version: &custom.version,
            statements: &facts,
            trust,
            current_in_from_since: None,
            current_in_channel: None,
            now: chrono::Utc::now(),
        },
    );
    if !decision.allowed {
        bail!(
            "{}@{} does not meet the {channel} policy: {}",
            custom.name,
            custom.version,
            decision.failures().join("; ")
        );
    }
    Ok(())
}

/// Walks the trust document chain from the last version this client verified (or from version
/// 1, checked against the pinned root keys) to the newest; it must reach `at_least`.
async fn trust_chain(
    api: &ApiClient,
    dir: &Path,
    pinned: &Root,
    at_least: u64,
) -> anyhow::Result<TrustDocument> {
    let path = dir.join("trust.json");
    let mut doc: TrustDocument = match std::fs::read(&path) {
        Ok(bytes) => SignedEnvelope::from_slice(&bytes)?.decode("trust document")?,
        Err(_) => {
            let bytes = api
                .trust_version(1)
                .await?
                .context("the server has no trust document v1")?;
            let env = SignedEnvelope::from_slice(&bytes)?;
            let role = pinned
                .roles
                .get("root")
                .context("pinned root has no root role")?;
            let keys = role
                .keyids
                .iter()
                .filter_map(|id| {
                    let k = pinned.keys.get(id)?.ed25519()?;
                    Some((k.key_id(), k))
                })
                .collect();
            let doc = TrustDocument::verify_genesis(&env, &keys, role.threshold)
                .context("trust document v1 does not match the pinned root")?;
            std::fs::write(&path, &bytes)?;
            doc
        }
    };
    for _ in 0..MAX_TRUST_STEPS {
        let Some(bytes) = api.trust_version(doc.version + 1).await? else {
            break;
        };
        let env = SignedEnvelope::from_slice(&bytes)?;
        doc = doc
            .verify_successor(&env)
            .with_context(|| format!("trust document v{} refused", doc.version + 1))?;
        std::fs::write(&path, &bytes)?;
    }
    if doc.version < at_least {
        bail!(
            "the release was published under trust document v{at_least}, but the server offers only up to v{}",
            doc.version
        );
    }
    Ok(doc)
}
