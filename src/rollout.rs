//! Phased rollouts, the pure rules: the plan, which agents a step reaches, and what the server
//! does next given the reports so far. No I/O: the service layer feeds in the figures and
//! carries out the decision.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Buckets an agent can fall in: percentages resolve to a hundredth of a percent.
pub const BUCKETS: u32 = 10_000;

/// How a release goes out in a channel: steps of a percentage of agents, each held for
/// `step_interval`, halted when more than `max_failure_rate` of the reporting agents fail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Percentages of agents, strictly increasing, each in 1..=100; the last is 100.
    pub steps: Vec<u32>,
    /// How long each step lasts before the next one, when the figures allow.
    #[serde(with = "crate::config::human")]
    pub step_interval: Duration,
    /// Failed agents / reporting agents above which the rollout halts and the channel returns
    /// to the previous release.
    pub max_failure_rate: f64,
    /// Reports needed before the failure rate decides anything (advance or halt).
    pub min_reports: u32,
}

/// Why a plan was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid rollout plan: {0}")]
pub struct PlanError(pub String);

impl Plan {
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.steps.is_empty() {
            return Err(PlanError("it has no steps".into()));
        }
        if let Some(s) = self.steps.iter().find(|s| **s == 0 || **s > 100) {
            return Err(PlanError(format!("step {s}% is not in 1..=100")));
        }
        if self.steps.windows(2).any(|w| w[0] >= w[1]) {
            return Err(PlanError(format!(
                "steps {:?} do not strictly increase",
                self.steps
            )));
        }
        if self.steps.last() != Some(&100) {
            return Err(PlanError(format!(
                "the last step is {}%, not 100%",
                self.steps.last().copied().unwrap_or(0)
            )));
        }
        if !(0.0..=1.0).contains(&self.max_failure_rate) {
            return Err(PlanError(format!(
                "max_failure_rate {} is not in 0..=1",
                self.max_failure_rate
            )));
        }
        Ok(())
    }

    /// Parses `--rollout 1,10,50,100`.
    pub fn parse_steps(s: &str) -> Result<Vec<u32>, PlanError> {
        s.split(',')
            .map(|p| {
                p.trim()
                    .trim_end_matches('%')
                    .parse::<u32>()
                    .map_err(|_| PlanError(format!("step {p:?} is not a whole percentage")))
            })
            .collect()
    }
}

/// The bucket of an agent for a name, in `0..BUCKETS`: the first 8 bytes of
/// SHA-256("arca-rollout\0" name "\0" agent id), modulo the bucket count. It depends on
/// nothing else, so the same agents go first in every rollout of a name, and an agent's place
/// never changes while the percentage only grows.
pub fn bucket(agent_id: &str, name: &str) -> u32 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"arca-rollout\0");
    ctx.update(name.as_bytes());
    ctx.update(b"\0");
    ctx.update(agent_id.as_bytes());
    let d = ctx.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d.as_ref()[..8]);
    (u64::from_be_bytes(first) % u64::from(BUCKETS)) as u32
}

/// Whether an agent takes the new release at `percent`.
pub fn selected(agent_id: &str, name: &str, percent: u32) -> bool {
    bucket(agent_id, name) < percent.min(100) * (BUCKETS / 100)
}

/// The percentage a step publishes, from its planned one: never below `floor` (what the
/// rollout already reaches), and, when none of the `known` agents' buckets falls inside it,
/// raised to the smallest percentage that reaches one of them. A small fleet's first step so
/// always holds an agent (5 agents and a 20% step: perhaps none of them is in the 20% bucket),
/// and agents still choose by nothing but the signed percentage. With no agent known, the
/// planned percentage.
pub fn reach(planned: u32, floor: u32, known: &[u32]) -> u32 {
    let per = BUCKETS / 100;
    let p = planned.max(floor).min(100);
    match known.iter().min() {
        Some(&lowest) if lowest >= p * per => (lowest / per + 1).min(100),
        _ => p,
    }
}

/// How many of the `known` buckets `percent` reaches.
pub fn holds(percent: u32, known: &[u32]) -> u64 {
    let limit = percent.min(100) * (BUCKETS / 100);
    known.iter().filter(|b| **b < limit).count() as u64
}

/// Reports a step needs, once its interval has passed, before its figures decide:
/// `min_reports`, but never more than the known agents the step holds (a step cannot get more
/// reports than it has agents, and must not wait for them forever). With no agent known at
/// all, `min_reports`: the rollout waits for the first agent to appear.
pub fn needed(plan: &Plan, holds: u64) -> u64 {
    let min = u64::from(plan.min_reports);
    if holds == 0 { min } else { min.min(holds) }
}

/// A rollout's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Running,
    Paused,
    /// Reached its last step and held it for an interval: the release is plainly current.
    Completed,
    /// Stopped by the figures; the channel returned to the previous release.
    Halted,
    /// Stopped by an operator; the channel returned to the previous release.
    Aborted,
    /// Another promotion or a rollback of the name replaced it.
    Superseded,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Paused => "paused",
            State::Completed => "completed",
            State::Halted => "halted",
            State::Aborted => "aborted",
            State::Superseded => "superseded",
        }
    }

    /// Running and paused rollouts still decide what agents install.
    pub fn is_active(self) -> bool {
        matches!(self, State::Running | State::Paused)
    }
}

impl std::str::FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [
            State::Running,
            State::Paused,
            State::Completed,
            State::Halted,
            State::Aborted,
            State::Superseded,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
        .ok_or_else(|| format!("unknown rollout state {s:?}"))
    }
}

/// Reports about the new release so far: distinct agents by their latest outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub ok: u64,
    pub failed: u64,
}

impl Figures {
    pub fn reporting(&self) -> u64 {
        self.ok + self.failed
    }

    pub fn failure_rate(&self) -> f64 {
        match self.reporting() {
            0 => 0.0,
            n => self.failed as f64 / n as f64,
        }
    }
}

/// What the server does next with a running rollout.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Nothing yet; the reason says what it waits for.
    Wait(String),
    /// Go to the next step.
    Advance,
    /// The last step held for its interval with good figures.
    Complete,
    /// Too many failures: stop and return the channel to the previous release.
    Halt(String),
}

/// Decides a running rollout's next move at `now`. Failures halt as soon as there are
/// `min_reports` reports; advancing needs the step's interval to have passed. Once it has,
/// `needed` reports (see [`needed`]: no more than the known agents the step holds) decide
/// both, so a step with fewer agents than `min_reports` neither waits for ever nor hides its
/// failures.
pub fn assess(
    plan: &Plan,
    step: usize,
    step_started: DateTime<Utc>,
    figures: Figures,
    needed: u64,
    now: DateTime<Utc>,
) -> Next {
    let interval = chrono::Duration::from_std(plan.step_interval).unwrap_or(chrono::Duration::MAX);
    let due = step_started.checked_add_signed(interval);
    let held = due.is_some_and(|d| now >= d);
    let needed = if held {
        needed.min(u64::from(plan.min_reports))
    } else {
        u64::from(plan.min_reports)
    };
    let enough = figures.reporting() >= needed;
    let rate = figures.failure_rate();
    if enough && rate > plan.max_failure_rate {
        return Next::Halt(format!(
            "{} of {} reporting agents failed ({:.1}% > {:.1}%)",
            figures.failed,
            figures.reporting(),
            rate * 100.0,
            plan.max_failure_rate * 100.0
        ));
    }
    if !held {
        return Next::Wait(format!(
            "step {}% holds until {}",
            plan.steps[step.min(plan.steps.len() - 1)],
            due.map_or_else(|| "forever".into(), arca_keys::format_time)
        ));
    }
    if !enough {
        return Next::Wait(format!(
            "{} of {needed} reports needed",
            figures.reporting()
        ));
    }
    if step + 1 >= plan.steps.len() {
        Next::Complete
    } else {
        Next::Advance
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            steps: vec![1, 10, 50, 100],
            step_interval: Duration::from_secs(60),
            max_failure_rate: 0.2,
            min_reports: 5,
        }
    }

    #[test]
    fn plans_are_checked() {
        assert!(plan().validate().is_ok());
        for steps in [
            vec![],
            vec![0, 100],
            vec![10, 10, 100],
            vec![50, 10, 100],
            vec![10, 50],
        ] {
            let p = Plan { steps, ..plan() };
            assert!(p.validate().is_err(), "{:?}", p.steps);
        }
        let p = Plan {
            max_failure_rate: 1.5,
            ..plan()
        };
        assert!(p.validate().is_err());
        assert_eq!(
            Plan::parse_steps("1, 10,50%,100").unwrap(),
            [1, 10, 50, 100]
        );
        assert!(Plan::parse_steps("1,x").is_err());
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        assert_eq!(bucket("agent-1", "app"), bucket("agent-1", "app"));
        let n = 10_000;
        let picked = (0..n)
            .filter(|i| selected(&format!("host-{i}"), "app", 10))
            .count();
        assert!((900..=1100).contains(&picked), "{picked} of {n} at 10%");
        // Growing the percentage only adds agents.
        for i in 0..1000 {
            let id = format!("host-{i}");
            if selected(&id, "app", 10) {
                assert!(selected(&id, "app", 50));
            }
        }
        assert!((0..1000).all(|i| selected(&format!("h{i}"), "app", 100)));
        // Another name orders agents differently.
        let same = (0..1000)
            .filter(|i| selected(&format!("h{i}"), "a", 10) == selected(&format!("h{i}"), "b", 10))
            .count();
        assert!(same < 1000);
    }

    #[test]
    fn assessment() {
        let t0 = Utc::now();
        let later = t0 + chrono::Duration::seconds(61);
        let f = |ok, failed| Figures { ok, failed };
        let p = plan();
        let n = needed(&p, 0);
        assert!(matches!(
            assess(&p, 0, t0, f(1, 0), n, later),
            Next::Wait(_)
        ));
        assert!(matches!(assess(&p, 0, t0, f(10, 0), n, t0), Next::Wait(_)));
        assert_eq!(assess(&p, 0, t0, f(10, 2), n, later), Next::Advance);
        assert_eq!(assess(&p, 3, t0, f(10, 0), n, later), Next::Complete);
        // Halting does not wait for the interval, but does wait for enough reports.
        assert!(matches!(assess(&p, 1, t0, f(3, 2), n, t0), Next::Halt(_)));
        assert!(matches!(assess(&p, 1, t0, f(0, 4), n, t0), Next::Wait(_)));
        // A step holding one known agent needs that agent's report, not five, once it held
        // its interval; before, a halt still needs min_reports.
        assert_eq!(
            assess(&p, 0, t0, f(1, 0), needed(&p, 1), later),
            Next::Advance
        );
        assert!(matches!(
            assess(&p, 0, t0, f(0, 1), needed(&p, 1), later),
            Next::Halt(_)
        ));
        assert!(matches!(
            assess(&p, 0, t0, f(0, 1), needed(&p, 1), t0),
            Next::Wait(_)
        ));
        assert_eq!(needed(&p, 100), 5);
    }

    #[test]
    fn a_step_reaches_a_known_agent() {
        // Five agents, none below the 20% bucket: the step is raised to reach the lowest.
        let known = [2500, 4100, 6000, 7300, 9900];
        assert_eq!(holds(20, &known), 0);
        let p = reach(20, 0, &known);
        assert_eq!(p, 26);
        assert_eq!(holds(p, &known), 1);
        // A step that already holds one keeps its plan; the floor never goes back.
        assert_eq!(reach(60, 26, &known), 60);
        assert_eq!(reach(20, 30, &known), 30);
        assert_eq!(reach(20, 0, &[]), 20);
        assert_eq!(reach(1, 0, &[9999]), 100);
        assert_eq!(holds(100, &known), 5);
        // The rule agrees with `selected`: an agent is reached at the raised percentage.
        let ids: Vec<String> = (0..5).map(|i| format!("small-{i}")).collect();
        let buckets: Vec<u32> = ids.iter().map(|i| bucket(i, "app")).collect();
        let p = reach(1, 0, &buckets);
        assert!(ids.iter().any(|i| selected(i, "app", p)));
    }
}
