//! The policy file: every rule of docs/policy.md, parsed strictly.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::ChannelName;
use arca_keys::Role;

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid policy: {0}")]
pub struct PolicyError(pub String);

/// A channel's promotion policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The release must be current in this channel first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<ChannelName>,
    /// How long it must have been current in `from`.
    #[serde(default, with = "human", skip_serializing_if = "Duration::is_zero")]
    pub min_soak: Duration,
    /// Distinct valid build signatures required (by active or retired builder keys whose scope
    /// covers the name). Always at least one.
    #[serde(default)]
    pub require_build_signature: BuildRule,
    /// Attestations required, each by predicate type, signer roles and threshold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require_attestations: Vec<AttestationRule>,
    /// Approvals for this channel by distinct approver keys, none of them a builder of the release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_approvals: Option<ApprovalRule>,
    /// Windows in which promotion is refused unless a break-glass approval is given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freeze: Vec<FreezeWindow>,
    /// Whether a lower version than the current one may be promoted.
    #[serde(default)]
    pub allow_downgrade: bool,
    /// Continuous delivery: promote by itself as soon as every rule passes.
    #[serde(default)]
    pub auto: bool,
    /// Phase every release that enters this channel in by this plan (a promotion may give
    /// its own). See docs/rollouts.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<crate::rollout::Plan>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildRule {
    #[serde(default = "one")]
    pub threshold: u32,
}

impl Default for BuildRule {
    fn default() -> Self {
        BuildRule { threshold: 1 }
    }
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationRule {
    /// The predicate type (a URI).
    #[serde(rename = "type")]
    pub predicate_type: String,
    /// Roles whose keys may sign it.
    #[serde(default = "attestor_role")]
    pub roles: Vec<Role>,
    #[serde(default = "one")]
    pub threshold: u32,
}

fn attestor_role() -> Vec<Role> {
    vec![Role::Attestor]
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRule {
    #[serde(default = "one")]
    pub threshold: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeWindow {
    #[serde(with = "time")]
    pub start: DateTime<Utc>,
    #[serde(with = "time")]
    pub end: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A TOML error as a policy author reads it: where (line, column, the line itself) and what,
/// in the file's terms rather than the parser's type names (`expected struct ApprovalRule`
/// becomes `expected a table`).
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let mut what = e.message().trim().to_owned();
    for (rust, human) in [
        ("a sequence", "a list ([...])"),
        ("a boolean", "true or false"),
        ("u32", "a whole number"),
        ("u64", "a whole number"),
        ("usize", "a whole number"),
        ("f64", "a number"),
        (
            "expected number at 0",
            "expected a duration such as 30m, 2h or 7days",
        ),
    ] {
        if let Some(rest) = what.strip_suffix(rust) {
            what = format!("{rest}{human}");
        } else if what == rust {
            what = human.to_owned();
        }
    }
    if let Some(i) = what.find("expected struct ") {
        what.truncate(i);
        what.push_str("expected a table ([section] with its keys)");
    }
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            let source = text.lines().nth(line - 1).unwrap_or_default().trim();
            format!("line {line}, column {column} (`{source}`): {what}")
        }
        None => what,
    }
}

impl Policy {
    /// Parses and checks a policy file.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let p: Policy = toml::from_str(text).map_err(|e| PolicyError(toml_error(text, &e)))?;
        p.validate()?;
        Ok(p)
    }

    /// The rules a client checks from the signed statements alone (build signatures,
    /// attestations, approvals and four eyes): the time and state rules (`from`, `min_soak`,
    /// `freeze`) are the server's to check at promotion.
    pub fn signature_rules(&self) -> Policy {
        Policy {
            from: None,
            min_soak: Duration::ZERO,
            freeze: Vec::new(),
            ..self.clone()
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a policy encodes")
    }

    fn validate(&self) -> Result<(), PolicyError> {
        if self.require_build_signature.threshold == 0 {
            return Err(PolicyError(
                "require_build_signature.threshold must be at least 1".into(),
            ));
        }
        for a in &self.require_attestations {
            if a.threshold == 0 || a.roles.is_empty() || a.predicate_type.is_empty() {
                return Err(PolicyError(format!(
                    "require_attestations {:?}: needs a type, at least one role and a threshold of at least 1",
                    a.predicate_type
                )));
            }
        }
        if self
            .require_approvals
            .as_ref()
            .is_some_and(|a| a.threshold == 0)
        {
            return Err(PolicyError(
                "require_approvals.threshold must be at least 1".into(),
            ));
        }
        if let Some(plan) = &self.rollout {
            plan.validate().map_err(|e| PolicyError(e.to_string()))?;
        }
        if let Some(w) = self.freeze.iter().find(|w| w.end <= w.start) {
            return Err(PolicyError(format!(
                "freeze window {} .. {} ends before it starts",
                w.start, w.end
            )));
        }
        if self.min_soak > Duration::ZERO && self.from.is_none() {
            return Err(PolicyError(
                "min_soak needs `from` (the channel to soak in)".into(),
            ));
        }
        Ok(())
    }

    /// The defaults `init` writes: `dev` takes any validly built artifact, `staging` needs it
    /// current in `dev`, `prod` current in `staging` plus one approval. Other channels of a
    /// custom pipeline need it current in the channel before them.
    pub fn default_for(pipeline: &[ChannelName], index: usize) -> Policy {
        let mut p = Policy {
            from: index.checked_sub(1).map(|i| pipeline[i].clone()),
            min_soak: Duration::ZERO,
            require_build_signature: BuildRule::default(),
            require_attestations: Vec::new(),
            require_approvals: None,
            freeze: Vec::new(),
            allow_downgrade: false,
            auto: false,
            rollout: None,
        };
        if pipeline[index].as_str() == "prod" {
            p.require_approvals = Some(ApprovalRule { threshold: 1 });
        }
        p
    }
}

mod human {
    use super::*;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        humantime::parse_duration(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

mod time {
    use super::*;
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&arca_keys::format_time(*t))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| serde::de::Error::custom(format!("{s:?}: {e} (use YYYY-MM-DDTHH:MM:SSZ)")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_errors_name_the_line_and_no_rust_types() {
        for (text, want) in [
            (
                "require_approvals = 1",
                "line 1, column 21 (`require_approvals = 1`): invalid type: integer `1`, expected a table",
            ),
            (
                "[require_approvals]\nthreshold = -1",
                "line 2, column 13 (`threshold = -1`): invalid value: integer `-1`, expected a whole number",
            ),
            ("freeze = 1", "expected a list"),
            ("min_soak = \"x\"", "expected a duration such as 30m"),
        ] {
            let e = Policy::from_toml(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            for rust in ["struct", "u32", "sequence", "TOML parse error"] {
                assert!(!e.contains(rust), "{text:?}: {e}");
            }
        }
    }

    #[test]
    fn full_policy_round_trips() {
        let text = r#"
from = "staging"
min_soak = "1h"
allow_downgrade = true
auto = true

[require_build_signature]
threshold = 2

[[require_attestations]]
type = "https://example.com/tests/v1"
roles = ["attestor", "builder"]
threshold = 1

[require_approvals]
threshold = 2

[[freeze]]
start = "2026-12-20T00:00:00Z"
end = "2027-01-02T00:00:00Z"
reason = "holidays"
"#;
        let p = Policy::from_toml(text).unwrap();
        assert_eq!(p.require_build_signature.threshold, 2);
        assert_eq!(p.min_soak, Duration::from_secs(3600));
        assert_eq!(Policy::from_toml(&p.to_toml()).unwrap(), p);
    }

    #[test]
    fn strict_parsing() {
        assert!(Policy::from_toml("frm = \"dev\"").is_err());
        assert!(Policy::from_toml("[require_approvals]\nthreshold = 0").is_err());
        assert!(Policy::from_toml("min_soak = \"1h\"").is_err());
        assert!(
            Policy::from_toml(
                "[[freeze]]\nstart = \"2027-01-02T00:00:00Z\"\nend = \"2026-01-02T00:00:00Z\""
            )
            .is_err()
        );
        assert!(Policy::from_toml("[[require_attestations]]\ntype = \"x\"\nroles = []").is_err());
        assert!(Policy::from_toml("").is_ok());
    }

    #[test]
    fn defaults_for_the_standard_pipeline() {
        let pipe: Vec<ChannelName> = ["dev", "staging", "prod"]
            .iter()
            .map(|c| c.parse().unwrap())
            .collect();
        assert_eq!(Policy::default_for(&pipe, 0).from, None);
        assert_eq!(Policy::default_for(&pipe, 1).from.unwrap().as_str(), "dev");
        let prod = Policy::default_for(&pipe, 2);
        assert_eq!(prod.from.unwrap().as_str(), "staging");
        assert_eq!(prod.require_approvals.unwrap().threshold, 1);
    }
}
