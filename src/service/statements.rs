//! Statement uploads (`arca attest`, `arca approve`, or any in-toto tooling): a DSSE envelope
//! around an in-toto statement about an existing release, signed by a key that may make that
//! kind of statement now. Accepted statements are stored by digest and may let a release move
//! on by itself (`auto` policies).

use crate::model::api::ErrorCode;
use arca_keys::dsse::Envelope;
use arca_keys::intoto::Statement;
use arca_keys::{KeyId, Role, TrustDocument};
use chrono::{DateTime, Utc};

use super::{App, Error};
use crate::audit::AuditAction;
use crate::db;
use crate::db::Sql;
use crate::model::api::{StatementResponse, is_build_predicate};
use crate::model::{ArtifactName, Version};
use crate::policy::{APPROVAL_PREDICATE, ApprovalPredicate};
use crate::tuf::metadata::sha256_hex;

/// Largest statement accepted (an SBOM predicate can be big; a flood of them cannot).
pub const MAX_STATEMENT: usize = 4 << 20;

/// Splits a subject name `name@version`.
fn split_subject(s: &str) -> Option<(ArtifactName, Version)> {
    let (n, v) = s.rsplit_once('@')?;
    Some((n.parse().ok()?, v.parse().ok()?))
}

/// Who may sign `st` about `name` now: builders (in scope) for build statements, approvers
/// whose scope names the channel for approvals, attestors (in scope, or unscoped) and builders
/// for anything else. Returns the accepted signers, or why there are none.
fn accepted_signers(
    trust: &TrustDocument,
    env: &Envelope,
    st: &Statement,
    name: &ArtifactName,
    pipeline: &[crate::model::ChannelName],
    now: DateTime<Utc>,
) -> Result<Vec<KeyId>, Error> {
    let approval = if st.predicate_type == APPROVAL_PREDICATE {
        let p: ApprovalPredicate = serde_json::from_value(st.predicate.clone()).map_err(|e| {
            Error::invalid(ErrorCode::BadStatement, format!("approval predicate: {e}"))
        })?;
        if !pipeline.contains(&p.channel) {
            return Err(Error::invalid(
                ErrorCode::BadStatement,
                format!("approval names unknown channel {}", p.channel),
            ));
        }
        Some(p)
    } else {
        None
    };
    let keys = trust
        .all_public_keys()
        .map_err(|e| Error::Internal(e.to_string()))?;
    let valid = env
        .valid_signers(&keys)
        .map_err(|e| Error::invalid(ErrorCode::BadStatement, e.to_string()))?;
    let mut ok = Vec::new();
    let mut reasons = Vec::new();
    for id in valid {
        let e = &trust.keys[&id];
        let allowed = if let Some(p) = &approval {
            e.can_sign(Role::Approver, now) && e.covers_name(p.channel.as_str())
        } else if is_build_predicate(&st.predicate_type) {
            e.can_sign(Role::Builder, now) && e.covers_name(name.as_str())
        } else {
            (e.can_sign(Role::Attestor, now)
                && (e.scope.is_empty() || e.covers_name(name.as_str())))
                || (e.can_sign(Role::Builder, now) && e.covers_name(name.as_str()))
        };
        if allowed {
            ok.push(id);
        } else {
            let what = match &approval {
                Some(p) => format!("an active approver key for channel {}", p.channel),
                None if is_build_predicate(&st.predicate_type) => {
                    format!("an active builder key for {name}")
                }
                None => format!("an active attestor or builder key for {name}"),
            };
            let status = if e.status == arca_keys::KeyStatus::Revoked {
                " (revoked)"
            } else {
                ""
            };
            reasons.push(format!("key {id}{status} is not {what}"));
        }
    }
    if ok.is_empty() {
        if reasons.is_empty() {
            return Err(Error::forbidden(
                ErrorCode::UntrustedKey,
                format!(
                    "no valid signature by a key in trust document v{}",
                    trust.version
                ),
            ));
        }
        return Err(Error::forbidden(
            ErrorCode::KeyNotAllowed,
            reasons.join("; "),
        ));
    }
    Ok(ok)
}

/// Whether artifact `id` (of `name`) has a target entry in `channel`: it is the current
/// release, or the previous release a rollout of the current one keeps listed.
fn listed_in(c: &dyn Sql, channel: &str, name: &str, id: i64) -> Result<bool, db::DbError> {
    let Some((current, _)) = db::channels::current(c, channel, name)? else {
        return Ok(false);
    };
    if current.id == id {
        return Ok(true);
    }
    Ok(db::rollouts::latest(c, channel, name)?.is_some_and(|r| {
        r.artifact_id == current.id && r.decides_entry() && r.previous_id == Some(id)
    }))
}

/// Accepts a statement envelope; returns its digest, signers and any auto-promotions.
/// The uploading token must be a publisher for the name (attestations) or a promoter for the
/// name and the approval's channel (approvals): docs/security.md, "Tokens".
pub async fn add(
    app: &App,
    caller: &super::tokens::Caller,
    body: &[u8],
) -> Result<StatementResponse, Error> {
    let actor = caller.actor.as_str();
    let mut subject = String::from("statement");
    let result = add_inner(app, caller, body, &mut subject).await;
    if let Err(e) = &result
        && !matches!(e, Error::Internal(_))
        && !e.is_token_refusal()
    {
        app.audit_refusal(actor, AuditAction::Attest, subject, e)
            .await;
    }
    result
}

async fn add_inner(
    app: &App,
    caller: &super::tokens::Caller,
    body: &[u8],
    subject: &mut String,
) -> Result<StatementResponse, Error> {
    let actor = caller.actor.as_str();
    if body.len() > MAX_STATEMENT {
        return Err(Error::TooLarge(MAX_STATEMENT as u64));
    }
    let env = Envelope::from_slice(body)
        .map_err(|e| Error::invalid(ErrorCode::BadStatement, e.to_string()))?;
    let st = crate::policy::signers::open_statement(&env)?;
    let [s] = st.subject.as_slice() else {
        return Err(Error::invalid(
            ErrorCode::BadStatement,
            "a statement must name exactly one subject (name@version)",
        ));
    };
    let (name, version) = split_subject(&s.name).ok_or_else(|| {
        Error::invalid(
            ErrorCode::BadStatement,
            format!("subject {:?} is not name@version", s.name),
        )
    })?;
    *subject = s.name.clone();
    let approval_channel = (st.predicate_type == APPROVAL_PREDICATE)
        .then(|| serde_json::from_value::<ApprovalPredicate>(st.predicate.clone()))
        .transpose()
        .map_err(|e| Error::invalid(ErrorCode::BadStatement, format!("approval predicate: {e}")))?
        .map(|p| p.channel);
    let action = match &approval_channel {
        Some(channel) => crate::auth::Action::Approve {
            name: name.as_str(),
            channel: channel.as_str(),
        },
        None => crate::auth::Action::Attest {
            name: name.as_str(),
        },
    };
    app.permit(caller, action).await?;
    let (n, v) = (name.to_string(), version.to_string());
    let a = app
        .db
        .call(move |c| db::artifacts::find(c, &n, &v))
        .await?
        .ok_or_else(|| {
            Error::not_found(
                ErrorCode::NoArtifact,
                format!("no artifact {name}@{version}"),
            )
        })?;
    if !st.covers(&s.name, &a.sha256, &a.blake3) {
        return Err(Error::invalid(
            ErrorCode::DigestMismatch,
            format!(
                "statement digests do not match {name}@{version} (sha256 {}, blake3 {})",
                a.sha256, a.blake3
            ),
        ));
    }
    let trust = app.trust().await?;
    let signers = accepted_signers(&trust, &env, &st, &name, &app.cfg.pipeline, Utc::now())?;
    let digest = sha256_hex(body);
    let action = if st.predicate_type == APPROVAL_PREDICATE {
        AuditAction::Approve
    } else {
        AuditAction::Attest
    };
    let (digest2, body2, actor2, id) = (digest.clone(), body.to_vec(), actor.to_owned(), a.id);
    let signer_strings: Vec<String> = signers.iter().map(ToString::to_string).collect();
    let (signers2, ptype, subj) = (
        signer_strings.clone(),
        st.predicate_type.clone(),
        s.name.clone(),
    );
    let break_glass = serde_json::from_value::<ApprovalPredicate>(st.predicate.clone())
        .is_ok_and(|p| p.break_glass);
    let keys: Vec<(String, super::sealed::ChannelSigner)> = app
        .keys
        .signers()
        .into_iter()
        .map(|(c, k)| (c.to_string(), k))
        .collect();
    let (tuf, artifact_name) = (app.cfg.tuf.clone(), name.to_string());
    app.db
        .call(move |c| {
            let tx = c.transaction()?;
            db::locks::trust(&tx)?;
            db::locks::all_channels(&tx)?;
            db::artifacts::insert_statement(&tx, &digest2, id, &ptype, &signers2, &body2)?;
            // Clients check the statements a release's target entry lists: where the release
            // is current (or the previous release of a rollout), the entry is republished so
            // that the new statement counts there at once, e.g. the approval a stricter policy
            // asks for.
            let mut republished = Vec::new();
            for (channel, key) in &keys {
                if listed_in(&tx, channel, &artifact_name, id)? {
                    let v = crate::tuf::repo::publish_release(
                        &tx,
                        channel,
                        &artifact_name,
                        key,
                        &tuf,
                        Utc::now(),
                    )?;
                    republished.push(serde_json::json!({ "channel": channel, "targets_version": v }));
                }
            }
            let mut details = serde_json::json!({ "statement": digest2, "predicate_type": ptype, "signers": signers2 });
            if !republished.is_empty() {
                details["republished"] = serde_json::Value::Array(republished);
            }
            db::audit::append(
                &tx,
                &db::audit::Entry {
                    actor: &actor2,
                    action,
                    subject: &subj,
                    outcome: if break_glass { "ok (break-glass approval)" } else { "ok" },
                    details,
                },
            )?;
            tx.commit()?;
            Ok(())
        })
        .await?;
    let auto_promoted = app.auto.changed(app, &name).await;
    Ok(StatementResponse {
        sha256: digest,
        predicate_type: st.predicate_type,
        signers: signer_strings,
        auto_promoted,
    })
}
