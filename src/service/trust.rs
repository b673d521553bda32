//! Trust changes: a new version of the trust document, accepted only when it is the exact
//! successor of the current one and carries the root threshold (of the new root keys too, when
//! they change). An admin token alone can do nothing here.

use arca_keys::SignedEnvelope;

use super::{App, Error};
use crate::db;

/// Applies a signed trust document; returns its version.
pub async fn apply(app: &App, actor: &str, body: &[u8]) -> Result<u64, Error> {
    match apply_inner(app, actor, body).await {
        Ok(v) => Ok(v),
        Err(e) => {
            if !matches!(e, Error::Internal(_)) {
                app.audit_refusal(actor, "trust.change", "trust".into(), &e)
                    .await;
            }
            Err(e)
        }
    }
}

async fn apply_inner(app: &App, actor: &str, body: &[u8]) -> Result<u64, Error> {
    let env = SignedEnvelope::from_slice(body)
        .map_err(|e| Error::invalid("bad_trust_document", e.to_string()))?;
    let current = app.trust().await?;
    let next = current.verify_successor(&env).map_err(|e| match e {
        arca_keys::KeyError::ThresholdNotMet { .. } => {
            Error::forbidden("root_threshold", e.to_string())
        }
        arca_keys::KeyError::VersionSkip { .. } => Error::conflict("trust_version", e.to_string()),
        other => Error::invalid("bad_trust_document", other.to_string()),
    })?;
    let (version, bytes, actor) = (next.version, env.to_bytes(), actor.to_owned());
    let summary = summarize(&current, &next);
    let inserted = app
        .db
        .call(move |c| {
            let tx = c.transaction()?;
            // Another change may have landed since we read `current`.
            if db::trust::latest(&tx)?.is_some_and(|(v, _)| v >= version) {
                return Ok(false);
            }
            db::trust::insert(&tx, version, &bytes)?;
            db::audit::append(
                &tx,
                &db::audit::Entry {
                    actor: &actor,
                    action: "trust.change",
                    subject: &format!("trust v{version}"),
                    outcome: "ok",
                    details: serde_json::json!({ "changes": summary }),
                },
            )?;
            tx.commit()?;
            Ok(true)
        })
        .await?;
    if !inserted {
        return Err(Error::conflict(
            "trust_version",
            format!("trust document version {version} was already taken by a concurrent change"),
        ));
    }
    tracing::info!(version, "trust document updated");
    Ok(version)
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
