//! Trust changes: a new version of the trust document, accepted only when it is the exact
//! successor of the current one and carries the root threshold (of the new root keys too, when
//! they change). An admin token alone can do nothing here.

use crate::model::api::ErrorCode;
use crate::tuf::metadata::TufRole;
use arca_keys::SignedEnvelope;

use super::{App, Error};
use crate::audit::AuditAction;
use crate::db;
use crate::model::api::StrandedRelease;

/// A policy file that a trust change brings along: (sha256, body).
pub type NewPolicy = (String, String);

/// What a trust change may bring along and write in its transaction.
#[derive(Default)]
pub struct Extras {
    pub policy: Option<NewPolicy>,
    /// Each channel's next TUF root, when the root keys change.
    pub roots: std::collections::BTreeMap<String, crate::tuf::metadata::Envelope>,
    /// Check the channel's current releases against its policy under the new trust document:
    /// a change that would strand one is refused (409 `stranded_releases`) unless forced.
    pub strand_check: Option<StrandCheck>,
}

/// Which channel's releases a change must not strand, and whether to allow it anyway.
pub struct StrandCheck {
    pub channel: crate::model::ChannelName,
    pub force: bool,
}

/// What an accepted trust change did.
pub struct Applied {
    pub version: u64,
    /// Releases the change strands (only when forced).
    pub stranded: Vec<StrandedRelease>,
}

/// Applies a signed trust document; returns its version.
pub async fn apply(app: &App, actor: &str, body: &[u8]) -> Result<u64, Error> {
    apply_with(
        app,
        actor,
        body,
        AuditAction::TrustChange,
        "trust",
        Extras::default(),
    )
    .await
    .map(|a| a.version)
}

/// Applies a signed trust document, recording it as `action` on `subject`, together with a new
/// policy file if one comes along (written in the same transaction: a refused change leaves
/// no policy behind).
pub async fn apply_with(
    app: &App,
    actor: &str,
    body: &[u8],
    action: AuditAction,
    subject: &str,
    extras: Extras,
) -> Result<Applied, Error> {
    match apply_inner(app, actor, body, action, extras).await {
        Ok(v) => Ok(v),
        Err(e) => {
            if !matches!(e, Error::Internal(_)) {
                app.audit_refusal(actor, action, subject.to_owned(), &e)
                    .await;
            }
            Err(e)
        }
    }
}

async fn apply_inner(
    app: &App,
    actor: &str,
    body: &[u8],
    action: AuditAction,
    extras: Extras,
) -> Result<Applied, Error> {
    let Extras {
        policy,
        roots,
        strand_check,
    } = extras;
    let env = SignedEnvelope::from_slice(body)
        .map_err(|e| Error::invalid(ErrorCode::BadTrustDocument, e.to_string()))?;
    let current = app.trust().await?;
    let next = current.verify_successor(&env).map_err(|e| match e {
        arca_keys::KeyError::ThresholdNotMet { .. } => {
            Error::forbidden(ErrorCode::RootThreshold, e.to_string())
        }
        arca_keys::KeyError::VersionSkip { .. } => {
            Error::conflict(ErrorCode::TrustVersion, e.to_string())
        }
        other => Error::invalid(ErrorCode::BadTrustDocument, other.to_string()),
    })?;
    if let Some(ch) = next
        .policies
        .keys()
        .find(|ch| !app.cfg.pipeline.iter().any(|p| p.as_str() == ch.as_str()))
    {
        return Err(Error::invalid(
            ErrorCode::BadTrustDocument,
            format!("policy for unknown channel {ch}"),
        ));
    }
    let rotation = next.root != current.root;
    if rotation && roots.is_empty() {
        return Err(Error::invalid(
            ErrorCode::RootRotation,
            "this change replaces the root keys: use arca trust rotate-root, which re-signs every channel's TUF root with it",
        ));
    }
    if !rotation && !roots.is_empty() {
        return Err(Error::invalid(
            ErrorCode::RootRotation,
            "channel roots come only with a change of the root keys",
        ));
    }
    if rotation {
        let missing: Vec<&str> = app
            .cfg
            .pipeline
            .iter()
            .map(|c| c.as_str())
            .filter(|c| !roots.contains_key(*c))
            .collect();
        if !missing.is_empty() || roots.len() != app.cfg.pipeline.len() {
            return Err(Error::invalid(
                ErrorCode::RootRotation,
                format!(
                    "a root rotation needs the next root of every channel (missing: {})",
                    missing.join(", ")
                ),
            ));
        }
    }
    let next_doc = next.clone();
    let (version, bytes, actor) = (next.version, env.to_bytes(), actor.to_owned());
    let summary = summarize(&current, &next);
    let pinned: Vec<String> = next.policies.values().cloned().collect();
    let inserted = app
        .db
        .call(move |c| {
            let tx = c.transaction()?;
            db::locks::trust(&tx)?;
            db::locks::all_channels(&tx)?;
            // Another change may have landed since we read `current`.
            if db::trust::latest(&tx)?.is_some_and(|(v, _)| v >= version) {
                return Ok(Err(Error::conflict(
                    ErrorCode::TrustVersion,
                    format!("trust document version {version} was already taken by a concurrent change"),
                )));
            }
            if let Some((sha, body)) = &policy {
                db::policies::insert(&tx, sha, body)?;
            }
            for (channel, env) in &roots {
                let current = crate::tuf::repo::latest_root(&tx, channel)?;
                match crate::tuf::repo::verify_rotated_root(&current, env, &next_doc, chrono::Utc::now()) {
                    Ok(root) => {
                        db::tuf::insert(&tx, channel, TufRole::Root, root.version, &env.to_bytes(), &root.expires)?;
                    }
                    Err(reason) => {
                        return Ok(Err(Error::forbidden(
                            ErrorCode::RootRotation,
                            format!("channel {channel}'s next root refused: {reason}"),
                        )));
                    }
                }
            }
            for sha in &pinned {
                if db::policies::get(&tx, sha)?.is_none() {
                    return Ok(Err(Error::invalid(
                        ErrorCode::UnknownPolicy,
                        format!("the trust document pins policy {sha}, which the server does not have: use arca policy set"),
                    )));
                }
            }
            let mut stranded = Vec::new();
            if let Some(check) = &strand_check {
                let found = match super::policy::stranded(&tx, &next_doc, &check.channel) {
                    Ok(found) => found,
                    Err(e) => return Ok(Err(e)),
                };
                if !found.is_empty() && !check.force {
                    return Ok(Err(Error::conflict(
                        ErrorCode::StrandedReleases,
                        super::policy::stranded_message(&check.channel, &found),
                    )));
                }
                stranded = found;
            }
            db::trust::insert(&tx, version, &bytes)?;
            let mut details = serde_json::json!({ "changes": summary });
            if !stranded.is_empty() {
                details["stranded"] = serde_json::json!(stranded
                    .iter()
                    .map(|r| format!("{}@{}", r.name, r.version))
                    .collect::<Vec<_>>());
            }
            db::audit::append(
                &tx,
                &db::audit::Entry {
                    actor: &actor,
                    action,
                    subject: &format!("trust v{version}"),
                    outcome: if stranded.is_empty() { "ok" } else { "ok (forced)" },
                    details,
                },
            )?;
            tx.commit()?;
            Ok(Ok(stranded))
        })
        .await?;
    let stranded = inserted?;
    tracing::info!(version, stranded = stranded.len(), "trust document updated");
    Ok(Applied { version, stranded })
}

/// A human-readable list of what changed between two versions.
pub fn summarize(old: &arca_keys::TrustDocument, new: &arca_keys::TrustDocument) -> Vec<String> {
    let mut out = Vec::new();
    for (id, e) in &new.keys {
        match old.keys.get(id) {
            None => out.push(format!(
                "add key {id} roles [{}] scope [{}]",
                e.roles
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                e.scope.join(",")
            )),
            Some(o) if o != e => out.push(format!("change key {id}: status {:?}", e.status)),
            _ => {}
        }
    }
    for id in old.keys.keys().filter(|id| !new.keys.contains_key(*id)) {
        out.push(format!("remove key {id}"));
    }
    if old.root != new.root {
        out.push(format!(
            "root keys {} threshold {}",
            new.root
                .keyids
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            new.root.threshold
        ));
    }
    if old.policies != new.policies {
        out.push("policies changed".into());
    }
    out
}
