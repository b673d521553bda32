//! Policy evaluation: a pure function from facts to a decision that lists every rule.

use std::collections::BTreeSet;

use arca_keys::dsse::Envelope;
use arca_keys::{KeyId, KeyStatus, Role, TrustDocument};
use chrono::{DateTime, Utc};

use super::{APPROVAL_PREDICATE, ApprovalPredicate, Policy};
use crate::model::api::{Decision, RuleResult, is_build_predicate, subject_name};
use crate::model::{ArtifactName, ChannelName, Version};

/// One statement about the release, with the keys whose signatures on it verify.
#[derive(Debug, Clone)]
pub struct StatementFacts {
    pub digest: String,
    pub predicate_type: String,
    pub predicate: serde_json::Value,
    /// Keys listed in the trust document (whatever their status) whose signature verifies.
    pub signers: BTreeSet<KeyId>,
}

impl StatementFacts {
    /// Verifies an envelope against every key of `trust` and keeps it only if it is an in-toto
    /// statement about exactly this release (`name@version` with these digests).
    pub fn about(
        env: &Envelope,
        digest: String,
        trust: &TrustDocument,
        name: &ArtifactName,
        version: &Version,
        sha256: &str,
        blake3: &str,
    ) -> Option<StatementFacts> {
        if env.payload_type != arca_keys::intoto::PAYLOAD_TYPE {
            return None;
        }
        let st = arca_keys::intoto::Statement::from_slice(&env.payload_bytes().ok()?).ok()?;
        if !st.covers(&subject_name(name, version), sha256, blake3) {
            return None;
        }
        let keys = trust.all_public_keys().ok()?;
        let signers = env.valid_signers(&keys).ok()?;
        Some(StatementFacts {
            digest,
            predicate_type: st.predicate_type,
            predicate: st.predicate,
            signers,
        })
    }
}

/// Everything a decision depends on.
pub struct Facts<'a> {
    pub channel: &'a ChannelName,
    pub name: &'a ArtifactName,
    pub version: &'a Version,
    pub statements: &'a [StatementFacts],
    pub trust: &'a TrustDocument,
    /// Since when this release has been current in the policy's `from` channel (None: it is not).
    pub current_in_from_since: Option<DateTime<Utc>>,
    /// The version of `name` current in `channel` now, if any.
    pub current_in_channel: Option<&'a Version>,
    pub now: DateTime<Utc>,
}

/// Keys that may count for `role` now: listed, not revoked, holding the role.
fn counts(trust: &TrustDocument, id: &KeyId, role: Role) -> bool {
    trust
        .keys
        .get(id)
        .is_some_and(|e| e.status != KeyStatus::Revoked && e.roles.contains(&role))
}

fn short(id: &KeyId) -> &str {
    &id.as_str()[..12]
}

fn list(ids: &BTreeSet<KeyId>) -> String {
    if ids.is_empty() {
        return "none".into();
    }
    ids.iter().map(short).collect::<Vec<_>>().join(", ")
}

/// Compares versions by semver where both parse; `None` when they cannot be ordered.
pub fn compare_versions(a: &Version, b: &Version) -> Option<std::cmp::Ordering> {
    let pa = semver::Version::parse(a.as_str()).ok()?;
    let pb = semver::Version::parse(b.as_str()).ok()?;
    Some(pa.cmp_precedence(&pb))
}

/// Evaluates every rule of `policy` against `f`.
pub fn evaluate(policy: &Policy, f: &Facts<'_>) -> Decision {
    let mut rules = Vec::new();
    let mut rule = |rule: &str, pass: bool, reason: String| {
        rules.push(RuleResult {
            rule: rule.into(),
            pass,
            reason,
        })
    };

    // Build signatures: builder keys, not revoked, whose scope covers the name.
    let builders: BTreeSet<KeyId> = f
        .statements
        .iter()
        .filter(|s| is_build_predicate(&s.predicate_type))
        .flat_map(|s| s.signers.iter())
        .filter(|id| {
            counts(f.trust, id, Role::Builder) && f.trust.keys[*id].covers_name(f.name.as_str())
        })
        .cloned()
        .collect();
    let need = policy.require_build_signature.threshold;
    rule(
        "require_build_signature",
        builders.len() >= need as usize,
        format!(
            "{} of {need} valid build signature(s) (keys: {})",
            builders.len(),
            list(&builders)
        ),
    );

    if let Some(from) = &policy.from {
        match f.current_in_from_since {
            Some(since) => rule(
                "from",
                true,
                format!("current in {from} since {}", arca_keys::format_time(since)),
            ),
            None => rule(
                "from",
                false,
                format!(
                    "{}@{} is not the current release in {from}",
                    f.name, f.version
                ),
            ),
        }
        if !policy.min_soak.is_zero() {
            let soaked = f.current_in_from_since.map(|s| f.now - s);
            let need = chrono::Duration::from_std(policy.min_soak).unwrap_or(chrono::Duration::MAX);
            let pass = soaked.is_some_and(|d| d >= need);
            let had = soaked.map_or("not current there".to_owned(), |d| {
                humantime::format_duration(d.to_std().unwrap_or_default()).to_string()
            });
            rule(
                "min_soak",
                pass,
                format!(
                    "soaked {had} in {from}, {} required",
                    humantime::format_duration(policy.min_soak)
                ),
            );
        }
    }

    for a in &policy.require_attestations {
        let signers: BTreeSet<KeyId> = f
            .statements
            .iter()
            .filter(|s| s.predicate_type == a.predicate_type)
            .flat_map(|s| s.signers.iter())
            .filter(|id| a.roles.iter().any(|r| counts(f.trust, id, *r)))
            .cloned()
            .collect();
        rule(
            &format!("require_attestations[{}]", a.predicate_type),
            signers.len() >= a.threshold as usize,
            format!(
                "{} of {} signer(s) with role {} (keys: {})",
                signers.len(),
                a.threshold,
                a.roles
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("/"),
                list(&signers)
            ),
        );
    }

    // Approvals for this channel by approver keys whose scope names it; a builder of this
    // release cannot approve it (four eyes).
    let approvals: Vec<(ApprovalPredicate, &StatementFacts)> = f
        .statements
        .iter()
        .filter(|s| s.predicate_type == APPROVAL_PREDICATE)
        .filter_map(|s| {
            Some((
                serde_json::from_value::<ApprovalPredicate>(s.predicate.clone()).ok()?,
                s,
            ))
        })
        .filter(|(p, _)| &p.channel == f.channel)
        .collect();
    let approver_ok = |id: &KeyId| {
        counts(f.trust, id, Role::Approver) && f.trust.keys[id].covers_name(f.channel.as_str())
    };
    let mut self_approvals = BTreeSet::new();
    let approvers: BTreeSet<KeyId> = approvals
        .iter()
        .flat_map(|(_, s)| s.signers.iter())
        .filter(|id| approver_ok(id))
        .filter(|id| {
            let own = builders.contains(*id);
            if own {
                self_approvals.insert((*id).clone());
            }
            !own
        })
        .cloned()
        .collect();
    if let Some(a) = &policy.require_approvals {
        let mut reason = format!(
            "{} of {} approval(s) for {} (keys: {})",
            approvers.len(),
            a.threshold,
            f.channel,
            list(&approvers)
        );
        if !self_approvals.is_empty() {
            reason.push_str(&format!(
                "; not counted, built it themselves: {}",
                list(&self_approvals)
            ));
        }
        rule(
            "require_approvals",
            approvers.len() >= a.threshold as usize,
            reason,
        );
    }

    let mut break_glass = false;
    if let Some(w) = policy
        .freeze
        .iter()
        .find(|w| w.start <= f.now && f.now < w.end)
    {
        let glass: BTreeSet<KeyId> = approvals
            .iter()
            .filter(|(p, _)| p.break_glass)
            .flat_map(|(_, s)| s.signers.iter())
            .filter(|id| approver_ok(id) && !builders.contains(*id))
            .cloned()
            .collect();
        let window = format!(
            "frozen {} .. {}{}",
            arca_keys::format_time(w.start),
            arca_keys::format_time(w.end),
            w.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
        if glass.is_empty() {
            rule(
                "freeze",
                false,
                format!("{window}; no break-glass approval"),
            );
        } else {
            break_glass = true;
            rule(
                "freeze",
                true,
                format!("{window}; BREAK-GLASS approval by {}", list(&glass)),
            );
        }
    }

    if let Some(cur) = f.current_in_channel {
        let order = compare_versions(f.version, cur);
        let down = order == Some(std::cmp::Ordering::Less);
        let reason = match order {
            Some(std::cmp::Ordering::Less) => {
                format!("{} is older than the current {cur}", f.version)
            }
            Some(_) => format!("{} is not older than the current {cur}", f.version),
            None => format!(
                "{} and {cur} are not both semver; order not checked",
                f.version
            ),
        };
        rule("allow_downgrade", !down || policy.allow_downgrade, reason);
    }

    let allowed = rules.iter().all(|r| r.pass);
    Decision {
        allowed,
        rules,
        break_glass,
    }
}
