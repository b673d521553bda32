//! Channel policies: declarative TOML, pinned by digest in the root-signed trust document, and
//! evaluated by a pure function — (policy, artifact, statements, trust, channel state, now) in,
//! a decision listing every rule with pass or fail and the reason out. No I/O here.

mod eval;
mod rules;
pub mod signers;

pub use crate::model::api::{Decision, RuleResult};
pub use eval::{Facts, StatementFacts, evaluate};
pub use rules::{ApprovalRule, AttestationRule, BuildRule, FreezeWindow, Policy, PolicyError};

/// Predicate type of an approval statement (`arca approve`).
pub const APPROVAL_PREDICATE: &str = "https://arca.dev/approval/v1";

/// The predicate of an approval: the channel it approves for (so it cannot be replayed for
/// another), and whether it is a break-glass approval that overrides a freeze.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalPredicate {
    pub channel: crate::model::ChannelName,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub break_glass: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
