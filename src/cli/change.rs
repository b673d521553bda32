//! Trust changes as files, for multi-party offline signing: any `arca trust` change written
//! with `--out change.json` instead of being submitted, signed by each key holder on their own
//! machine with `arca trust sign change.json --key K` (which shows what they sign), and sent
//! with `arca trust submit change.json` once the thresholds are met.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use arca_keys::{SignedEnvelope, Signer, TrustDocument};
use serde::{Deserialize, Serialize};

use super::passphrase::PassphraseArgs;
use crate::client::ApiClient;
use crate::tuf::metadata::{Envelope, MetaSignature};

/// A proposed trust change.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// What the change does, in words (shown before anyone signs).
    pub summary: Vec<String>,
    /// The next trust document, with the signatures gathered so far.
    pub trust: SignedEnvelope,
    /// For a root rotation: each channel's next TUF root, with its signatures.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roots: BTreeMap<String, Envelope>,
}

impl Change {
    pub fn new(
        summary: Vec<String>,
        next: &TrustDocument,
        roots: BTreeMap<String, Envelope>,
    ) -> anyhow::Result<Self> {
        Ok(Change {
            summary,
            trust: SignedEnvelope::sign(next, &[])?,
            roots,
        })
    }

    /// Adds `key`'s signature to the trust document and to every channel root. Every
    /// signature is made before any is added, so a key that fails to sign (a token removed)
    /// leaves the change as it was.
    pub fn sign(&mut self, key: &dyn Signer) -> anyhow::Result<()> {
        let mut trust = self.trust.clone();
        trust.add_signature(key)?;
        let keyid = key.key_id().to_string();
        let mut roots = Vec::new();
        for (channel, env) in &self.roots {
            let msg = arca_keys::canonical::to_canonical_json(&env.signed)?;
            roots.push((channel.clone(), hex::encode(key.sign(&msg)?)));
        }
        self.trust = trust;
        for (channel, sig) in roots {
            let env = self
                .roots
                .get_mut(&channel)
                .expect("a channel of this change");
            env.signatures.retain(|s| s.keyid != keyid);
            env.signatures.push(MetaSignature {
                keyid: keyid.clone(),
                sig,
            });
        }
        Ok(())
    }

    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a trust change", path.display()))
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    fn signers(&self) -> Vec<String> {
        self.trust
            .signatures
            .iter()
            .map(|s| s.keyid.to_string())
            .collect()
    }

    /// Sends the change to the server.
    pub async fn submit(&self, api: &ApiClient) -> anyhow::Result<u64> {
        if self.roots.is_empty() {
            Ok(api.submit_trust(&self.trust).await?.version)
        } else {
            let r: crate::model::api::TrustChangeResponse = api
                .post_json(
                    "/api/v1/trust/rotation",
                    &crate::model::api::RootRotation {
                        trust: self.trust.clone(),
                        roots: self.roots.clone(),
                    },
                )
                .await?;
            Ok(r.version)
        }
    }
}

/// Signs `change` with the keys `sign` (encrypted ones with their passphrase, all read before
/// the first signature) and submits it, or writes it to `out` for others to sign. Returns the
/// new trust version when it was submitted.
pub async fn finish(
    api: &ApiClient,
    mut change: Change,
    sign: &[PathBuf],
    passphrase: &PassphraseArgs,
    out: Option<&Path>,
) -> anyhow::Result<Option<u64>> {
    for key in passphrase.read_keys(sign)? {
        change.sign(&*key)?;
    }
    match out {
        Some(path) => {
            change.write(path)?;
            println!(
                "wrote {} ({} signature(s) so far); next: arca trust sign {0} --key K, then arca trust submit {0}",
                path.display(),
                change.trust.signatures.len()
            );
            Ok(None)
        }
        None => Ok(Some(change.submit(api).await?)),
    }
}

/// `arca trust sign FILE --key K...`: shows the change, then adds the signatures.
pub fn sign_file(path: &Path, keys: &[PathBuf], passphrase: &PassphraseArgs) -> anyhow::Result<()> {
    let mut change = Change::read(path)?;
    let doc: TrustDocument = change.trust.decode("trust document")?;
    println!("trust change to version {}:", doc.version);
    for line in &change.summary {
        println!("  - {line}");
    }
    if !change.roots.is_empty() {
        println!(
            "  - with the next TUF root of: {}",
            change.roots.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    if keys.is_empty() {
        bail!("no --key given");
    }
    for key in passphrase.read_keys(keys)? {
        change.sign(&*key)?;
        println!("signed by {}", key.key_id());
    }
    change.write(path)?;
    println!(
        "{} now carries {} signature(s): {}",
        path.display(),
        change.trust.signatures.len(),
        change.signers().join(", ")
    );
    Ok(())
}
