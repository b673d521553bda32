//! Policy changes: the policy file and the next trust document that pins its digest for the
//! channel, root-signed. An admin token alone cannot weaken a gate.

use super::{App, Error};
use crate::model::ChannelName;
use crate::model::api::PolicyChange;
use crate::policy::Policy;
use crate::tuf::metadata::sha256_hex;

/// Applies a policy change; returns the new trust version.
pub async fn set(
    app: &App,
    actor: &str,
    channel: ChannelName,
    change: PolicyChange,
) -> Result<u64, Error> {
    let subject = format!("policy {channel}");
    let result = set_inner(app, actor, &channel, change).await;
    // Refusals after the trust check are audited there; these are the ones before it.
    if let Err(e) = &result
        && matches!(
            e,
            Error::Invalid {
                code: "bad_policy" | "policy_digest" | "bad_trust_document",
                ..
            } | Error::NotFound { .. }
        )
    {
        app.audit_refusal(actor, "policy.change", subject, e).await;
    }
    result
}

async fn set_inner(
    app: &App,
    actor: &str,
    channel: &ChannelName,
    change: PolicyChange,
) -> Result<u64, Error> {
    if !app.cfg.pipeline.contains(channel) {
        return Err(Error::not_found(
            "unknown_channel",
            format!("no channel named {channel}"),
        ));
    }
    Policy::from_toml(&change.policy).map_err(|e| Error::invalid("bad_policy", e.to_string()))?;
    let sha = sha256_hex(change.policy.as_bytes());
    let pinned = change
        .trust
        .decode::<arca_keys::TrustDocument>("trust document")
        .map_err(|e| Error::invalid("bad_trust_document", e.to_string()))?
        .policies
        .get(channel.as_str())
        .cloned();
    if pinned.as_deref() != Some(sha.as_str()) {
        return Err(Error::invalid(
            "policy_digest",
            format!(
                "the trust document pins {} for {channel}, but the policy's sha256 is {sha}",
                pinned.unwrap_or_else(|| "nothing".into())
            ),
        ));
    }
    // The trust change checks the root threshold and writes the policy, the new trust version
    // and the audit entry in one transaction.
    let version = super::trust::apply_with(
        app,
        actor,
        &change.trust.to_bytes(),
        "policy.change",
        &format!("policy {channel}"),
        super::trust::Extras {
            policy: Some((sha, change.policy.clone())),
            ..Default::default()
        },
    )
    .await?;
    super::auto::run(app, None).await;
    Ok(version)
}
