//! Fetching and verifying a channel's release, as `arca pull` and `arca agent` both do: the TUF
//! client workflow from the pinned root, the channel binding, then what a generic TUF client
//! cannot check: the release's build signature and the channel policy's signature rules,
//! against the root-signed trust document. Bytes are length-capped and hash-checked as they
//! stream.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use arca_keys::dsse::Envelope as Dsse;
use arca_keys::{KeyId, SignedEnvelope, TrustDocument};

use super::ApiClient;
use crate::model::api::TargetCustom;
use crate::model::{ArtifactName, ChannelName, FileName};
use crate::tuf::client::{
    Downloaded, Fetcher, Trusted, Updater, download_target, persist, target_url,
};
use crate::tuf::metadata::{Envelope, Root, Signed as _, TargetFile, Timestamp, sha256_hex};

/// Most trust versions followed in one refresh.
const MAX_TRUST_STEPS: u64 = 100_000;

/// Default bound of one refresh (and of one release's verification): metadata, trust chain and
/// statements are small, so minutes mean a mirror that holds the client back on purpose.
pub const DEFAULT_REFRESH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// How long a client lets a server or mirror take (TUF's slow-retrieval defence): each file
/// must average `min_rate` bytes per second, each refresh end within `refresh`.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    pub min_rate: u64,
    pub refresh: std::time::Duration,
}

impl Deadlines {
    /// From `ARCA_MIN_RATE` (bytes per second) and `ARCA_REFRESH_TIMEOUT` (a duration).
    pub fn from_env() -> anyhow::Result<Self> {
        let min_rate = match std::env::var("ARCA_MIN_RATE") {
            Ok(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .with_context(|| {
                    format!("ARCA_MIN_RATE={v:?} is not a rate in bytes per second (e.g. 16384)")
                })?,
            Err(_) => crate::tuf::client::DEFAULT_MIN_RATE,
        };
        let refresh = match std::env::var("ARCA_REFRESH_TIMEOUT") {
            Ok(v) => humantime::parse_duration(&v).with_context(|| {
                format!("ARCA_REFRESH_TIMEOUT={v:?} is not a duration (e.g. 5m)")
            })?,
            Err(_) => DEFAULT_REFRESH_TIMEOUT,
        };
        Ok(Deadlines { min_rate, refresh })
    }
}

/// One channel of one server, as a verifying client follows it. Trusted metadata and the
/// trust document persist in `dir`, so versions never go back between runs.
pub struct ChannelClient {
    api: ApiClient,
    fetcher: Fetcher,
    base: String,
    channel: ChannelName,
    dir: PathBuf,
    pinned: Root,
    deadlines: Deadlines,
    /// ETag of the last timestamp this client verified (conditional polling).
    etag: std::sync::Mutex<Option<String>>,
}

/// One release as the channel's signed targets list it.
#[derive(Debug, Clone)]
pub struct Release {
    pub path: String,
    pub target: TargetFile,
    pub custom: TargetCustom,
    pub sha256: String,
}

impl Release {
    /// The file name the release was published under.
    pub fn file_name(&self) -> anyhow::Result<FileName> {
        self.path
            .rsplit('/')
            .next()
            .unwrap_or(&self.path)
            .parse()
            .context("the target's file name is not acceptable")
    }
}

/// What verifying a release established.
#[derive(Debug)]
pub struct Verified {
    pub signer: KeyId,
    pub trust: TrustDocument,
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
            // Written whole or not at all: a crash must not leave a marker that refuses the
            // right root forever.
            persist(dir, "bootstrap.sha256", format!("{digest}\n").as_bytes())?;
            Ok(())
        }
    }
}

impl ChannelClient {
    /// Checks the pinned root (signed by its own root keys) and opens (or starts) the client
    /// state in `dir`.
    pub fn open(
        api: ApiClient,
        channel: ChannelName,
        root_bytes: &[u8],
        dir: PathBuf,
    ) -> anyhow::Result<Self> {
        let pinned_env = Envelope::from_slice(crate::tuf::metadata::TufRole::Root, root_bytes)?;
        let pinned: Root = pinned_env.decode()?;
        pinned_env
            .verify_role(&pinned, crate::tuf::metadata::TufRole::Root)
            .context("the pinned root is not signed by its own root keys")?;
        if !dir.join("root.json").exists() {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            Updater::init(&dir, root_bytes)?;
        }
        check_bootstrap(&dir, root_bytes)?;
        let deadlines = Deadlines::from_env()?;
        let fetcher = Fetcher::with_min_rate(api.http().clone(), deadlines.min_rate);
        let base = format!("{}/tuf/{}", api.base(), channel);
        Ok(ChannelClient {
            api,
            fetcher,
            base,
            channel,
            dir,
            pinned,
            deadlines,
            etag: Default::default(),
        })
    }

    pub fn api(&self) -> &ApiClient {
        &self.api
    }

    /// Runs `fut` within the refresh deadline.
    async fn bounded<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        match tokio::time::timeout(self.deadlines.refresh, fut).await {
            Ok(r) => r,
            Err(_) => bail!(
                "{what} of channel {} from {} took longer than {} (ARCA_REFRESH_TIMEOUT): the server or a mirror is too slow",
                self.channel,
                self.api.base(),
                humantime::format_duration(self.deadlines.refresh)
            ),
        }
    }

    /// Runs the TUF refresh (within the refresh deadline) and checks that the channel's root
    /// is bound to this channel.
    pub async fn refresh(&self) -> anyhow::Result<Trusted> {
        let updater = Updater::new(
            &format!("{}/metadata/", self.base),
            &self.dir,
            self.fetcher.clone(),
        );
        let trusted = self
            .bounded("the metadata refresh", async {
                updater.refresh().await.map_err(anyhow::Error::from)
            })
            .await;
        let trusted = match trusted {
            Ok(t) => t,
            Err(e) => return Err(self.explain(e).await),
        };
        if trusted.root.channel.as_deref() != Some(self.channel.as_str()) {
            bail!(
                "root metadata v{} is bound to channel {:?}, not {}: refusing a wrong-channel repository",
                trusted.root.version,
                trusted.root.channel.as_deref().unwrap_or("none"),
                self.channel
            );
        }
        Ok(trusted)
    }

    /// A refused refresh, with what to do about the two causes people meet first: a channel
    /// this server does not have, and a pinned root from another server.
    async fn explain(&self, e: anyhow::Error) -> anyhow::Error {
        // A hint only: a server (or mirror) too slow to answer within seconds gets none.
        let channels = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            self.api
                .get_json::<Vec<crate::model::api::ChannelBoard>>("/api/v1/channels", &[]),
        )
        .await;
        if let Ok(Ok(list)) = channels
            && !list.iter().any(|c| c.channel == self.channel)
        {
            let names: Vec<&str> = list.iter().map(|c| c.channel.as_str()).collect();
            return anyhow::anyhow!(
                "{} has no channel {} (its channels: {})",
                self.api.base(),
                self.channel,
                names.join(", ")
            );
        }
        let text = format!("{e:#}");
        if text.contains("root metadata") && text.contains("valid signature") {
            return e.context(format!(
                "channel metadata refused: the pinned root (--root) does not sign {}'s {} channel; \
                 is it another server's root.json? Use the root.json of this server's home",
                self.api.base(),
                self.channel
            ));
        }
        e.context("channel metadata refused")
    }

    /// Asks whether the channel's timestamp changed since the last call, with a conditional
    /// request (a 304 costs no body). Unchanged is only believed while the timestamp this client
    /// trusts has not expired: a server that keeps answering 304 cannot freeze it.
    pub async fn changed(&self) -> anyhow::Result<bool> {
        let etag = self.etag.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let url = format!("{}/metadata/timestamp.json", self.base);
        let mut req = self.api.http().get(&url);
        if let Some(e) = &etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, e);
        }
        let resp = self
            .bounded("polling the timestamp", async {
                req.send().await.with_context(|| format!("GET {url}"))
            })
            .await?;
        let new_etag = resp
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if resp.status() == reqwest::StatusCode::NOT_MODIFIED && etag.is_some() {
            let local = std::fs::read(self.dir.join("timestamp.json"))
                .context("no trusted timestamp kept")?;
            let ts: Timestamp =
                Envelope::from_slice(crate::tuf::metadata::TufRole::Timestamp, &local)?.decode()?;
            ts.check_not_expired(chrono::Utc::now())
                .context("the trusted timestamp expired and the server offers no newer one")?;
            return Ok(false);
        }
        *self.etag.lock().unwrap_or_else(|p| p.into_inner()) = new_etag;
        Ok(true)
    }

    /// Forgets the ETag, so that the next [`changed`](Self::changed) answers true.
    pub fn forget_etag(&self) {
        *self.etag.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Verifies a release beyond TUF: the trust chain up to the version it was published
    /// under, a build signature by a builder key of that document, and the channel policy's
    /// signature rules.
    pub async fn verify(&self, release: &Release) -> anyhow::Result<Verified> {
        self.bounded("verifying a release", self.verify_unbounded(release))
            .await
    }

    async fn verify_unbounded(&self, release: &Release) -> anyhow::Result<Verified> {
        let custom = &release.custom;
        let trust = self.trust_chain(custom.trust_version).await?;
        let mut envelopes = Vec::new();
        for digest in &custom.statements {
            let bytes = self.api.statement(digest).await?;
            envelopes.push(Dsse::from_slice(&bytes)?);
        }
        let signer = crate::policy::signers::verify_release_build(
            &trust,
            &envelopes,
            &custom.name,
            &custom.version,
            &release.sha256,
            &custom.blake3,
        )
        .map_err(|reason| {
            anyhow::anyhow!(
                "{}@{}: no valid build signature: {reason}",
                custom.name,
                custom.version
            )
        })?;
        self.check_channel_policy(&trust, custom, &release.sha256, &envelopes)
            .await?;
        Ok(Verified { signer, trust })
    }

    /// Streams the release's bytes into `out`, length-capped and checked against the signed
    /// SHA-256 and BLAKE3.
    pub async fn download(
        &self,
        trusted: &Trusted,
        release: &Release,
        out: std::fs::File,
        bar: Option<indicatif::ProgressBar>,
    ) -> anyhow::Result<Downloaded> {
        let path = &release.path;
        let url = target_url(
            &format!("{}/targets", self.base),
            &trusted.root,
            path,
            &release.target,
        );
        let got = download_target(&self.fetcher, &url, &release.target, out, bar)
            .await
            .with_context(|| format!("downloading {path}"))?;
        if got.blake3 != release.custom.blake3 {
            bail!(
                "{path}: blake3 {} does not match the signed {}",
                got.blake3,
                release.custom.blake3
            );
        }
        Ok(got)
    }

    /// Checks the signature rules of the channel's policy as the newest trust document pins
    /// it: build signatures, attestations and approvals (by distinct approver keys, not the
    /// builder's). The newest policy, not the one current at publication: the online key signs
    /// the targets entry, and must not be able to point a client at an older, weaker policy.
    /// Time and state rules (`from`, `min_soak`, `freeze`, `allow_downgrade`) are the server's
    /// to check.
    async fn check_channel_policy(
        &self,
        trust: &TrustDocument,
        custom: &TargetCustom,
        sha256: &str,
        envelopes: &[Dsse],
    ) -> anyhow::Result<()> {
        let channel = &self.channel;
        let digest = trust
            .policies
            .get(channel.as_str())
            .with_context(|| format!("trust v{} pins no policy for {channel}", trust.version))?;
        let text = self
            .api
            .get_text(&format!("/api/v1/policies/by-digest/{digest}"))
            .await?;
        if sha256_hex(text.as_bytes()) != *digest {
            bail!(
                "the server sent another policy for {channel} than trust v{} pins",
                trust.version
            );
        }
        let policy = crate::policy::Policy::from_toml(&text)?.signature_rules();
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

    /// Walks the trust document chain from the last version this client verified (or from
    /// version 1, checked against the pinned root keys) to the newest; it must reach `at_least`.
    async fn trust_chain(&self, at_least: u64) -> anyhow::Result<TrustDocument> {
        let path = self.dir.join("trust.json");
        let mut doc: TrustDocument = match std::fs::read(&path) {
            Ok(bytes) => SignedEnvelope::from_slice(&bytes)?.decode("trust document")?,
            Err(_) => {
                let bytes = self
                    .api
                    .trust_version(1)
                    .await?
                    .context("the server has no trust document v1")?;
                let env = SignedEnvelope::from_slice(&bytes)?;
                let role = self
                    .pinned
                    .roles
                    .get(crate::tuf::metadata::TufRole::Root.as_str())
                    .context("pinned root has no root role")?;
                let keys = role
                    .keyids
                    .iter()
                    .filter_map(|id| {
                        let k = self.pinned.keys.get(id)?.ed25519()?;
                        Some((k.key_id(), k))
                    })
                    .collect();
                let doc = TrustDocument::verify_genesis(&env, &keys, role.threshold)
                    .context("trust document v1 does not match the pinned root")?;
                persist(&self.dir, "trust.json", &bytes)?;
                doc
            }
        };
        for _ in 0..MAX_TRUST_STEPS {
            let Some(bytes) = self.api.trust_version(doc.version + 1).await? else {
                break;
            };
            let env = SignedEnvelope::from_slice(&bytes)?;
            doc = doc
                .verify_successor(&env)
                .with_context(|| format!("trust document v{} refused", doc.version + 1))?;
            persist(&self.dir, "trust.json", &bytes)?;
        }
        if doc.version < at_least {
            bail!(
                "the release was published under trust document v{at_least}, but the server offers only up to v{}",
                doc.version
            );
        }
        Ok(doc)
    }
}

/// The entries of `name` in a channel's verified targets: the release (the one entry that is
/// not a rollout's previous release) and, while a rollout runs, the previous release.
pub fn releases_of(
    trusted: &Trusted,
    name: &ArtifactName,
) -> anyhow::Result<(Option<Release>, Option<Release>)> {
    let mut main = None;
    let mut previous = None;
    for (path, t) in &trusted.targets.targets {
        let Some(custom) = t
            .custom
            .clone()
            .and_then(|c| serde_json::from_value::<TargetCustom>(c).ok())
        else {
            continue;
        };
        if custom.name != *name {
            continue;
        }
        let sha256 = t
            .hashes
            .get("sha256")
            .with_context(|| format!("target {path} lists no sha256"))?
            .clone();
        let slot = if custom.previous {
            &mut previous
        } else {
            &mut main
        };
        if slot.is_some() {
            bail!("the channel lists {name} twice");
        }
        *slot = Some(Release {
            path: path.clone(),
            target: t.clone(),
            custom,
            sha256,
        });
    }
    Ok((main, previous))
}
