//! Policy changes: the policy file and the next trust document that pins its digest for the
//! channel, root-signed. An admin token alone cannot weaken a gate, and a change that would
//! strand the releases current in the channel (clients would refuse them) needs `force`.

use crate::db::Sql;
use crate::model::api::ErrorCode;
use arca_keys::TrustDocument;

use super::{App, Error};
use crate::audit::AuditAction;
use crate::db;
use crate::model::ChannelName;
use crate::model::api::{PolicyChange, PolicyChangeResponse, StrandedRelease};
use crate::policy::{Facts, Policy};
use crate::tuf::metadata::sha256_hex;

/// Most stranded releases a refusal names (the count is always given).
const MAX_NAMED: usize = 20;

/// Applies a policy change (`force`: even if it strands releases); returns the new trust
/// version and what it strands.
pub async fn set(
    app: &App,
    actor: &str,
    channel: ChannelName,
    change: PolicyChange,
    force: bool,
) -> Result<PolicyChangeResponse, Error> {
    let subject = format!("policy {channel}");
    let result = set_inner(app, actor, &channel, change, force).await;
    // Refusals after the trust check are audited there; these are the ones before it.
    if let Err(e) = &result
        && matches!(
            e,
            Error::Invalid {
                code: ErrorCode::BadPolicy | ErrorCode::PolicyDigest | ErrorCode::BadTrustDocument,
                ..
            } | Error::NotFound { .. }
        )
    {
        app.audit_refusal(actor, AuditAction::PolicyChange, subject, e)
            .await;
    }
    result
}

async fn set_inner(
    app: &App,
    actor: &str,
    channel: &ChannelName,
    change: PolicyChange,
    force: bool,
) -> Result<PolicyChangeResponse, Error> {
    if !app.cfg.pipeline.contains(channel) {
        return Err(Error::not_found(
            ErrorCode::UnknownChannel,
            format!("no channel named {channel}"),
        ));
    }
    Policy::from_toml(&change.policy)
        .map_err(|e| Error::invalid(ErrorCode::BadPolicy, e.to_string()))?;
    let sha = sha256_hex(change.policy.as_bytes());
    let pinned = change
        .trust
        .decode::<arca_keys::TrustDocument>("trust document")
        .map_err(|e| Error::invalid(ErrorCode::BadTrustDocument, e.to_string()))?
        .policies
        .get(channel.as_str())
        .cloned();
    if pinned.as_deref() != Some(sha.as_str()) {
        return Err(Error::invalid(
            ErrorCode::PolicyDigest,
            format!(
                "the trust document pins {} for {channel}, but the policy's sha256 is {sha}",
                pinned.unwrap_or_else(|| "nothing".into())
            ),
        ));
    }
    // The trust change checks the root threshold and writes the policy, the new trust version
    // and the audit entry in one transaction.
    let applied = super::trust::apply_with(
        app,
        actor,
        &change.trust.to_bytes(),
        AuditAction::PolicyChange,
        &format!("policy {channel}"),
        super::trust::Extras {
            policy: Some((sha, change.policy.clone())),
            strand_check: Some(super::trust::StrandCheck {
                channel: channel.clone(),
                force,
            }),
            ..Default::default()
        },
    )
    .await?;
    app.auto.sweep(app).await;
    Ok(PolicyChangeResponse {
        version: applied.version,
        stranded: applied.stranded,
    })
}

/// The releases current in `channel` (and, mid-rollout, the previous releases agents keep)
/// that the channel's policy under `trust` refuses by its signature rules: what arca's client
/// re-checks on every pull and install, so clients would refuse them.
pub fn stranded(
    c: &dyn Sql,
    trust: &TrustDocument,
    channel: &ChannelName,
) -> Result<Vec<StrandedRelease>, Error> {
    let policy = super::facts::channel_policy(c, trust, channel)?.signature_rules();
    let mut releases = Vec::new();
    for a in db::channels::current_releases(c, channel.as_str())? {
        let previous = db::rollouts::latest(c, channel.as_str(), &a.name)?
            .filter(|r| r.artifact_id == a.id && r.decides_entry())
            .and_then(|r| r.previous_id);
        if let Some(prev) = previous.map(|id| db::artifacts::by_id(c, id)).transpose()? {
            releases.extend(prev);
        }
        releases.push(a);
    }
    let mut out = Vec::new();
    for a in releases {
        let bad = |e: crate::model::NameError| Error::Internal(e.to_string());
        let (name, version) = (
            a.name.parse().map_err(bad)?,
            a.version.parse().map_err(bad)?,
        );
        let statements = super::facts::statement_facts(c, trust, &a)?;
        let decision = crate::policy::evaluate(
            &policy,
            &Facts {
                channel,
                name: &name,
                version: &version,
                statements: &statements,
                trust,
                current_in_from_since: None,
                current_in_channel: None,
                now: chrono::Utc::now(),
            },
        );
        if !decision.allowed {
            out.push(StrandedRelease {
                name: a.name,
                version: a.version,
                failures: decision.failures(),
            });
        }
    }
    Ok(out)
}

/// The refusal of a change that would strand `found`.
pub fn stranded_message(channel: &ChannelName, found: &[StrandedRelease]) -> String {
    let mut named: Vec<String> = found
        .iter()
        .take(MAX_NAMED)
        .map(|r| format!("{}@{} ({})", r.name, r.version, r.failures.join("; ")))
        .collect();
    if found.len() > MAX_NAMED {
        named.push(format!("and {} more", found.len() - MAX_NAMED));
    }
    format!(
        "the new {channel} policy would strand {} release(s) current in {channel}, which clients would then refuse: {}; give them what they lack first, or pass --force",
        found.len(),
        named.join(", ")
    )
}
