//! `arca trust add-key | revoke | show`: each change is a new version of the trust document,
//! built here, signed here with the root keys given, and submitted.

use std::path::PathBuf;

use anyhow::{Context, bail};
use arca_keys::{KeyEntry, KeyId, KeyStatus, PublicKey, Role, TrustDocument};

use super::ClientArgs;
use super::change::{Change, finish, sign_file};
use super::passphrase::PassphraseArgs;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Add a key with a role (and scope) in a new trust version signed by the root keys.
    AddKey(AddKeyArgs),
    /// Revoke a key: it is valid for nothing, including what it signed before.
    Revoke(RevokeArgs),
    /// Replace a builder, approver or attestor key: the new key gets the same roles and scope;
    /// the old one is retired (what it signed stays valid; it signs nothing new), at once or
    /// after an overlap in which both may sign.
    Rotate(RotateArgs),
    /// Rotate the online key (targets, snapshot, timestamp) of a channel, or of every channel:
    /// the server makes a new key, the root keys sign the channel's next TUF root naming it.
    RotateOnline {
        /// Only this channel (default: every channel).
        #[arg(long)]
        channel: Option<crate::model::ChannelName>,
        /// Root private keys, files or pkcs11: URIs (the root threshold).
        #[arg(long = "sign", required = true)]
        sign: Vec<PathBuf>,
        #[command(flatten)]
        passphrase: PassphraseArgs,
        /// Lifetime of the channels' new root metadata.
        #[arg(long, default_value = "365days")]
        expires_in: humantime::Duration,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Replace the root keys and threshold: a new trust version and every channel's next TUF
    /// root, signed by the threshold of the current root keys AND of the new ones.
    RotateRoot(RotateRootArgs),
    /// Write a change to a file for multi-party signing instead of submitting it (the same as
    /// giving the change `--out FILE`).
    #[command(subcommand)]
    Propose(Proposal),
    /// Show a trust change file and add signatures to it.
    Sign {
        /// The trust change file (written by `arca trust propose` or by a change with --out).
        file: PathBuf,
        /// A private key (file or pkcs11: URI) to sign with (repeat for each key held here).
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
    /// Send a trust change file once it carries the thresholds.
    Submit {
        /// The trust change file (written by `arca trust propose` or by a change with --out).
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List every key's and every channel's metadata expiry; warn ahead of time.
    Status {
        /// Warn about anything that expires within this time.
        #[arg(long, default_value = "30days")]
        warn_within: humantime::Duration,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the current trust document.
    Show {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// How a trust change gets its signatures: now, with the keys given, or later, from a file.
#[derive(clap::Args)]
pub struct Signing {
    /// Private key (file or pkcs11: URI) to sign the change with (repeat up to the thresholds).
    #[arg(long = "sign", required_unless_present = "out")]
    sign: Vec<PathBuf>,
    /// Write the change to this file for others to sign (`arca trust sign`, `submit`)
    /// instead of submitting it.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    passphrase: PassphraseArgs,
}

/// The changes that can be proposed (`arca trust propose CHANGE ... --out FILE`).
#[derive(clap::Subcommand)]
pub enum Proposal {
    /// Propose adding a key.
    AddKey(AddKeyArgs),
    /// Propose revoking a key.
    Revoke(RevokeArgs),
    /// Propose rotating a key.
    Rotate(RotateArgs),
    /// Propose new root keys.
    RotateRoot(RotateRootArgs),
}

#[derive(clap::Args)]
pub struct AddKeyArgs {
    /// The public key file (FILE.pub from `arca key gen`).
    public: PathBuf,
    /// root, builder, approver or attestor (repeat for several).
    #[arg(long = "role", required = true)]
    roles: Vec<Role>,
    /// Name globs for builders (`app/*`, `**`), channels for approvers (repeatable).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// The key signs nothing new after this time (YYYY-MM-DDTHH:MM:SSZ).
    #[arg(long)]
    not_after: Option<String>,
    /// Who or what holds the key (e.g. ci-team-a), shown instead of the bare key id.
    #[arg(long)]
    label: Option<String>,
    #[command(flatten)]
    signing: Signing,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(clap::Args)]
pub struct RevokeArgs {
    /// The key's id (64 hex digits, as `arca key id` prints it).
    keyid: KeyId,
    #[command(flatten)]
    signing: Signing,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(clap::Args)]
pub struct RotateArgs {
    /// The key's id (64 hex digits, as `arca key id` prints it).
    keyid: KeyId,
    /// The new public key.
    #[arg(long)]
    new: PathBuf,
    /// How long the old key may still sign new things (e.g. 7days).
    #[arg(long)]
    overlap: Option<humantime::Duration>,
    #[command(flatten)]
    signing: Signing,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(clap::Args)]
pub struct RotateRootArgs {
    /// A new root public key (repeat for each).
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    /// How many of the new root keys must sign from now on.
    #[arg(long)]
    threshold: u32,
    /// Lifetime of the channels' new root metadata.
    #[arg(long, default_value = "365days")]
    expires_in: humantime::Duration,
    #[command(flatten)]
    signing: Signing,
    #[command(flatten)]
    client: ClientArgs,
}

pub async fn run(c: Command) -> anyhow::Result<i32> {
    match c {
        Command::AddKey(AddKeyArgs {
            public,
            roles,
            scopes,
            not_after,
            label,
            signing:
                Signing {
                    sign,
                    out,
                    passphrase,
                },
            client,
        }) => {
            let key = PublicKey::read_file(&public)?;
            let id = key.key_id();
            let api = client.client()?;
            let current: TrustDocument = api.trust().await?.decode("trust document")?;
            if current.keys.contains_key(&id) {
                bail!("key {id} is already in trust document v{}", current.version);
            }
            if let Some(t) = &not_after {
                arca_keys::format_time(
                    chrono::DateTime::parse_from_rfc3339(t)
                        .with_context(|| format!("--not-after {t:?} is not YYYY-MM-DDTHH:MM:SSZ"))?
                        .into(),
                );
            }
            let mut next = current.next();
            next.keys.insert(
                id.clone(),
                KeyEntry {
                    public: key.to_tuf(),
                    roles: roles.iter().copied().collect(),
                    scope: scopes,
                    status: KeyStatus::Active,
                    not_after,
                    label,
                    replaced_by: None,
                },
            );
            next.validate()?;
            let what = format!(
                "add key {id} ({}){}",
                roles
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                next.keys[&id]
                    .scope
                    .iter()
                    .map(|s| format!(" scope {s}"))
                    .collect::<String>()
            );
            let change = Change::new(vec![what.clone()], &next, Default::default())?;
            if let Some(v) = finish(&api, change, &sign, &passphrase, out.as_deref()).await? {
                println!("trust v{v}: {what}");
            }
        }
        Command::Revoke(RevokeArgs {
            keyid,
            signing:
                Signing {
                    sign,
                    out,
                    passphrase,
                },
            client,
        }) => {
            let api = client.client()?;
            let current: TrustDocument = api.trust().await?.decode("trust document")?;
            let mut next = current.next();
            let entry = next.keys.get_mut(&keyid).with_context(|| {
                format!("key {keyid} is not in trust document v{}", current.version)
            })?;
            if entry.status == KeyStatus::Revoked {
                bail!("key {keyid} is already revoked");
            }
            if next.root.keyids.contains(&keyid) {
                bail!(
                    "key {keyid} is a current root key: rotate the root keys instead of revoking it"
                );
            }
            entry.status = KeyStatus::Revoked;
            let change = Change::new(
                vec![format!("revoke key {keyid}")],
                &next,
                Default::default(),
            )?;
            if let Some(v) = finish(&api, change, &sign, &passphrase, out.as_deref()).await? {
                println!("trust v{v}: revoked key {keyid}");
                print_reliant(&api, &keyid).await?;
            }
        }
        Command::RotateRoot(RotateRootArgs {
            keys,
            threshold,
            expires_in,
            signing:
                Signing {
                    sign,
                    out,
                    passphrase,
                },
            client,
        }) => {
            let api = client.client()?;
            let current: TrustDocument = api.trust().await?.decode("trust document")?;
            let new_keys = keys
                .iter()
                .map(|p| PublicKey::read_file(p))
                .collect::<Result<Vec<_>, _>>()?;
            let mut next = current.next();
            for id in &current.root.keyids {
                if let Some(e) = next.keys.get_mut(id)
                    && !new_keys.iter().any(|k| &k.key_id() == id)
                {
                    e.status = KeyStatus::Retired;
                }
            }
            for k in &new_keys {
                let e = next.keys.entry(k.key_id()).or_insert_with(|| KeyEntry {
                    public: k.to_tuf(),
                    roles: Default::default(),
                    scope: Vec::new(),
                    status: KeyStatus::Active,
                    not_after: None,
                    label: None,
                    replaced_by: None,
                });
                e.roles.insert(Role::Root);
                e.status = KeyStatus::Active;
            }
            next.root = arca_keys::RootRole {
                keyids: new_keys.iter().map(PublicKey::key_id).collect(),
                threshold,
            };
            next.validate()?;
            let expires = expiry_in(&expires_in)?;
            let mut roots = std::collections::BTreeMap::new();
            for channel in current.policies.keys() {
                let cur = channel_root(&api, channel.as_str()).await?;
                let root =
                    crate::tuf::repo::rotated_root(&cur, &new_keys, threshold, expires.clone());
                roots.insert(
                    channel.clone(),
                    crate::tuf::metadata::Envelope::sign(&root, &[]),
                );
            }
            let what = format!(
                "rotate the root keys to {threshold} of {}: {}",
                new_keys.len(),
                new_keys
                    .iter()
                    .map(|k| k.key_id().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let change = Change::new(vec![what.clone()], &next, roots)?;
            if let Some(v) = finish(&api, change, &sign, &passphrase, out.as_deref()).await? {
                println!("trust v{v}: {what}; every channel's TUF root re-signed");
            }
        }
        Command::Rotate(RotateArgs {
            keyid,
            new,
            overlap,
            signing:
                Signing {
                    sign,
                    out,
                    passphrase,
                },
            client,
        }) => {
            let api = client.client()?;
            let current: TrustDocument = api.trust().await?.decode("trust document")?;
            let new_key = PublicKey::read_file(&new)?;
            let mut next = current.next();
            if next.root.keyids.contains(&keyid) {
                bail!("key {keyid} is a root key: use arca trust rotate-root");
            }
            if next.keys.contains_key(&new_key.key_id()) {
                bail!(
                    "key {} is already in trust document v{}",
                    new_key.key_id(),
                    current.version
                );
            }
            let old = next.keys.get_mut(&keyid).with_context(|| {
                format!("key {keyid} is not in trust document v{}", current.version)
            })?;
            if old.status != KeyStatus::Active {
                bail!("key {keyid} is not active");
            }
            let mut entry = old.clone();
            let when = match overlap {
                Some(d) => {
                    let until = chrono::Utc::now()
                        + chrono::Duration::from_std(*d).context("--overlap is too long")?;
                    old.not_after = Some(arca_keys::format_time(until));
                    format!("signs nothing new after {}", arca_keys::format_time(until))
                }
                None => {
                    old.status = KeyStatus::Retired;
                    "retired now".to_owned()
                }
            };
            old.replaced_by = Some(new_key.key_id());
            entry.public = new_key.to_tuf();
            entry.not_after = None;
            entry.replaced_by = None;
            next.keys.insert(new_key.key_id(), entry);
            next.validate()?;
            let what = format!(
                "rotate key {keyid} to {} (old key {when})",
                new_key.key_id()
            );
            let change = Change::new(vec![what.clone()], &next, Default::default())?;
            if let Some(v) = finish(&api, change, &sign, &passphrase, out.as_deref()).await? {
                println!("trust v{v}: {what}");
            }
        }
        Command::RotateOnline {
            channel,
            sign,
            passphrase,
            expires_in,
            client,
        } => {
            let keys = passphrase.read_keys(&sign)?;
            let api = client.client()?;
            let channels: Vec<String> = match channel {
                Some(c) => vec![c.to_string()],
                None => {
                    let t: TrustDocument = api.trust().await?.decode("trust document")?;
                    t.policies.keys().cloned().collect()
                }
            };
            let refs: Vec<&dyn arca_keys::Signer> = keys.iter().map(|k| &**k).collect();
            let expires = expiry_in(&expires_in)?;
            for ch in channels {
                let tuf_key: arca_keys::TufKey = api
                    .post_json(&format!("/api/v1/channels/{ch}/online-key"), &())
                    .await?;
                let new = PublicKey::from_tuf(&tuf_key)?;
                let cur = channel_root(&api, ch.as_str()).await?;
                let next = crate::tuf::repo::rotated_online(&cur, &new, expires.clone());
                let env = crate::tuf::metadata::Envelope::sign_with(&next, &refs)?;
                let r: serde_json::Value = api
                    .post_json(&format!("/api/v1/channels/{ch}/root"), &env)
                    .await?;
                println!(
                    "{ch}: online key rotated to {} (root v{}, targets v{})",
                    new.key_id(),
                    next.version,
                    r["targets_version"]
                );
            }
        }
        Command::Status {
            warn_within,
            json,
            client,
        } => {
            let st: crate::model::api::Status =
                client.client()?.get_json("/api/v1/status", &[]).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
                return Ok(0);
            }
            let warn = warn_within.as_secs() as i64;
            let flag = |left: i64, lifetime_hint: i64| {
                if left <= 0 {
                    "EXPIRED"
                } else if left < warn.min(lifetime_hint) {
                    "WARN"
                } else {
                    "ok"
                }
            };
            println!("trust document v{}", st.trust_version);
            for m in &st.metadata {
                // Online roles are re-signed by the server at half their lifetime: only warn
                // about them once they are overdue for that (less than a quarter of a day left).
                let hint = if m.role == crate::tuf::metadata::TufRole::Root.as_str() {
                    i64::MAX
                } else {
                    6 * 3600
                };
                println!(
                    "{:<8} {:<10} v{:<6} expires {} ({}) {}",
                    m.channel,
                    m.role,
                    m.version,
                    m.expires,
                    humantime::format_duration(std::time::Duration::from_secs(
                        m.expires_in.max(0) as u64
                    )),
                    flag(m.expires_in, hint)
                );
            }
            for k in &st.keys {
                let until = match (&k.not_after, k.not_after_in) {
                    (Some(t), Some(left)) => format!("signs until {t} {}", flag(left, i64::MAX)),
                    _ => String::new(),
                };
                println!(
                    "key {} {:<8} {:<16} {until}",
                    k.keyid,
                    k.status,
                    k.roles.join(",")
                );
            }
        }
        Command::Propose(p) => {
            let (out, change) = match p {
                Proposal::AddKey(a) => (a.signing.out.is_some(), Command::AddKey(a)),
                Proposal::Revoke(a) => (a.signing.out.is_some(), Command::Revoke(a)),
                Proposal::Rotate(a) => (a.signing.out.is_some(), Command::Rotate(a)),
                Proposal::RotateRoot(a) => (a.signing.out.is_some(), Command::RotateRoot(a)),
            };
            if !out {
                bail!("a proposal is written to a file: add --out FILE");
            }
            return Box::pin(run(change)).await;
        }
        Command::Sign {
            file,
            keys,
            passphrase,
        } => sign_file(&file, &keys, &passphrase)?,
        Command::Submit { file, client } => {
            let v = Change::read(&file)?.submit(&client.client()?).await?;
            println!("trust v{v}: submitted {}", file.display());
        }
        Command::Show { json, client } => {
            let env = client.client()?.trust().await?;
            let doc: TrustDocument = env.decode("trust document")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&env)?);
            } else {
                print_doc(&doc);
            }
        }
    }
    Ok(0)
}

/// A channel's newest TUF root, as the server publishes it.
async fn channel_root(
    api: &crate::client::ApiClient,
    channel: &str,
) -> anyhow::Result<crate::tuf::metadata::Root> {
    let url = format!("{}/tuf/{channel}/metadata/root.json", api.base());
    let body = api
        .http()
        .get(&url)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    Ok(
        crate::tuf::metadata::Envelope::from_slice(crate::tuf::metadata::TufRole::Root, &body)?
            .decode()?,
    )
}

/// `now + expires_in` as TUF writes times.
fn expiry_in(expires_in: &humantime::Duration) -> anyhow::Result<String> {
    let d = chrono::Duration::from_std(**expires_in).context("--expires-in is too long")?;
    Ok(arca_keys::format_time(chrono::Utc::now() + d))
}

/// Prints the releases that rely on `keyid` for their build signature, channel by channel.
async fn print_reliant(api: &crate::client::ApiClient, keyid: &KeyId) -> anyhow::Result<()> {
    let rows: Vec<crate::model::api::ReliantRelease> = api
        .get_json(&format!("/api/v1/keys/{keyid}/releases"), &[])
        .await?;
    if rows.is_empty() {
        println!("no current release relies on it");
    }
    for r in rows {
        println!(
            "  {} holds {}@{}, built by this key",
            r.channel, r.name, r.version
        );
    }
    Ok(())
}

fn print_doc(doc: &TrustDocument) {
    println!("trust document v{}", doc.version);
    println!(
        "root threshold {} of {}",
        doc.root.threshold,
        doc.root.keyids.len()
    );
    for (id, e) in &doc.keys {
        let roles: Vec<String> = e.roles.iter().map(ToString::to_string).collect();
        let status = match e.status {
            KeyStatus::Active => "active",
            KeyStatus::Retired => "retired",
            KeyStatus::Revoked => "revoked",
        };
        let scope = if e.scope.is_empty() {
            String::new()
        } else {
            format!(" scope [{}]", e.scope.join(", "))
        };
        let until = e
            .not_after
            .as_deref()
            .map(|t| format!(" until {t}"))
            .unwrap_or_default();
        let label = e
            .label
            .as_deref()
            .map(|l| format!("  {l}"))
            .unwrap_or_default();
        let successor = e
            .replaced_by
            .as_ref()
            .map(|n| format!(" replaced by {}", doc.describe_key(n)))
            .unwrap_or_default();
        println!(
            "{id}  {status:<8} {}{scope}{until}{successor}{label}",
            roles.join(",")
        );
    }
}
