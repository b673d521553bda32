//! Rollouts, agents' reports and each agent's last word.

use super::Sql;
use crate::params;

use crate::model::api::AgentInfo;

use super::{DbError, now_str};
use crate::rollout::{Figures, Plan, State};

/// One rollout row.
#[derive(Debug, Clone)]
pub struct RolloutRow {
    pub id: i64,
    pub channel: String,
    pub name: String,
    pub artifact_id: i64,
    pub previous_id: Option<i64>,
    pub plan: Plan,
    pub step: usize,
    pub step_started_at: String,
    pub state: State,
    pub reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The percentage the current step published, when raised above the plan's (so that
    /// the step reaches a known agent).
    pub published: Option<u32>,
}

impl RolloutRow {
    /// The planned percentage of the current step.
    pub fn planned(&self) -> u32 {
        self.plan.steps[self.step.min(self.plan.steps.len() - 1)]
    }

    /// The percentage of agents the rollout reaches now (what its signed entry says).
    pub fn percent(&self) -> u32 {
        self.published.unwrap_or(0).max(self.planned()).min(100)
    }

    /// Whether this rollout (of the channel's current release) still shapes its target entry:
    /// while running or paused, and after a halt or abort that had no previous release to
    /// return to (the entry stays listed at 0%, so no agent takes it).
    pub fn decides_entry(&self) -> bool {
        self.state.is_active()
            || (matches!(self.state, State::Halted | State::Aborted) && self.previous_id.is_none())
    }
}

const COLUMNS: &str = "id, channel, name, artifact_id, previous_id, plan, step, step_started_at, \
                       state, reason, created_at, updated_at, percent";

fn rollout_row(r: &super::sql::Row) -> Result<RolloutRow, DbError> {
    let bad = |i: usize, e: String| DbError::Corrupt(format!("rollout column {i}: {e}"));
    let plan: String = r.get(5)?;
    let state: String = r.get(8)?;
    Ok(RolloutRow {
        id: r.get(0)?,
        channel: r.get(1)?,
        name: r.get(2)?,
        artifact_id: r.get(3)?,
        previous_id: r.get(4)?,
        plan: serde_json::from_str(&plan).map_err(|e| bad(5, e.to_string()))?,
        step: r.get(6)?,
        step_started_at: r.get(7)?,
        state: state.parse().map_err(|e| bad(8, e))?,
        reason: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
        published: r.get::<Option<i64>>(12)?.map(|p| p.clamp(0, 100) as u32),
    })
}

/// Starts a rollout at its first step. Returns its id.
pub fn insert(
    c: &dyn Sql,
    channel: &str,
    name: &str,
    artifact_id: i64,
    previous_id: Option<i64>,
    plan: &Plan,
) -> Result<i64, DbError> {
    let now = now_str();
    c.query_one("INSERT INTO rollouts (channel, name, artifact_id, previous_id, plan, step, step_started_at, \
         state, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, 'running', ?6, ?6) RETURNING id", params![
            channel,
            name,
            artifact_id,
            previous_id,
            serde_json::to_string(plan).expect("a plan encodes"),
            now
        ])?
    .get(0)
}

/// The newest rollout of `name` in `channel`, whatever its state.
pub fn latest(c: &dyn Sql, channel: &str, name: &str) -> Result<Option<RolloutRow>, DbError> {
    latest_from(&c.query(&latest_sql(), params![channel, name])?)
}

/// [`latest`] as a query: `?1` the channel, `?2` the name.
pub fn latest_sql() -> String {
    format!(
        "SELECT {COLUMNS} FROM rollouts WHERE channel = ?1 AND name = ?2 ORDER BY id DESC LIMIT 1"
    )
}

/// [`latest`] from the rows of [`latest_sql`].
pub fn latest_from(rows: &[super::sql::Row]) -> Result<Option<RolloutRow>, DbError> {
    rows.first().map(rollout_row).transpose()
}

/// The running or paused rollout of `name` in `channel`.
pub fn active(c: &dyn Sql, channel: &str, name: &str) -> Result<Option<RolloutRow>, DbError> {
    Ok(latest(c, channel, name)?.filter(|r| r.state.is_active()))
}

/// Every rollout in a state, oldest first (the ticker asks for the running ones).
pub fn in_state(c: &dyn Sql, state: State) -> Result<Vec<RolloutRow>, DbError> {
    c.query(
        &format!("SELECT {COLUMNS} FROM rollouts WHERE state = ?1 ORDER BY id"),
        params![state.as_str()],
    )?
    .iter()
    .map(rollout_row)
    .collect()
}

/// The newest rollout of each name in `channel` (or every channel).
pub fn list(c: &dyn Sql, channel: Option<&str>) -> Result<Vec<RolloutRow>, DbError> {
    c.query(
        &format!(
            "SELECT {COLUMNS} FROM rollouts WHERE id IN \
         (SELECT MAX(id) FROM rollouts WHERE CAST(?1 AS TEXT) IS NULL OR channel = ?1 GROUP BY channel, name) \
         ORDER BY channel, name"
        ),
        params![channel],
    )?
    .iter()
    .map(rollout_row)
    .collect()
}

/// Moves a rollout to `step` (restarting the step's clock), publishing `percent`.
pub fn set_step(c: &dyn Sql, id: i64, step: usize, percent: u32) -> Result<(), DbError> {
    let now = now_str();
    c.execute(
        "UPDATE rollouts SET step = ?2, step_started_at = ?3, updated_at = ?3, percent = ?4 \
         WHERE id = ?1",
        params![id, step as i64, now, percent],
    )?;
    Ok(())
}

/// Raises the percentage the current step publishes, restarting the step's clock.
pub fn set_percent(c: &dyn Sql, id: i64, percent: u32) -> Result<(), DbError> {
    c.execute(
        "UPDATE rollouts SET percent = ?2, step_started_at = ?3, updated_at = ?3 WHERE id = ?1",
        params![id, percent, now_str()],
    )?;
    Ok(())
}

/// Changes a rollout's state, with the reason.
pub fn set_state(c: &dyn Sql, id: i64, state: State, reason: Option<&str>) -> Result<(), DbError> {
    c.defer("UPDATE rollouts SET state = ?2, reason = COALESCE(?3, reason), updated_at = ?4 WHERE id = ?1", params![id, state.as_str(), reason, now_str()])?;
    Ok(())
}

/// Forgets a rollout's previous release (it can no longer be returned to).
pub fn clear_previous(c: &dyn Sql, id: i64) -> Result<(), DbError> {
    c.execute(
        "UPDATE rollouts SET previous_id = NULL, updated_at = ?2 WHERE id = ?1",
        params![id, now_str()],
    )?;
    Ok(())
}

/// Restarts the clock of the current step (a resumed rollout holds its step a full interval).
pub fn restart_step_clock(c: &dyn Sql, id: i64) -> Result<(), DbError> {
    let now = now_str();
    c.execute(
        "UPDATE rollouts SET step_started_at = ?2, updated_at = ?2 WHERE id = ?1",
        params![id, now],
    )?;
    Ok(())
}

/// A report as stored.
pub struct NewReport<'a> {
    pub rollout: Option<(i64, usize)>,
    pub channel: &'a str,
    pub name: &'a str,
    pub version: Option<&'a str>,
    pub current: Option<&'a str>,
    pub agent: &'a str,
    pub outcome: &'a str,
    pub message: &'a str,
    pub at: &'a str,
    pub actor: &'a str,
}

/// Records a report and the agent's last word, then deletes the agent's reports beyond the
/// newest `keep`, except the latest `ok`/`failed` of each rollout (which its figures count).
pub fn insert_report(c: &dyn Sql, r: &NewReport<'_>, keep: u32) -> Result<(), DbError> {
    let now = now_str();
    c.execute("INSERT INTO reports (rollout_id, step, channel, name, version, agent, outcome, message, at, \
         received_at, actor) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)", params![
            r.rollout.map(|(id, _)| id),
            r.rollout.map(|(_, s)| s as i64),
            r.channel,
            r.name,
            r.version,
            r.agent,
            r.outcome,
            r.message,
            r.at,
            now,
            r.actor
        ])?;
    c.execute("INSERT INTO agents (agent, channel, name, current, version, outcome, message, last_seen, actor) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (channel, name, agent) DO UPDATE SET \
         current = excluded.current, version = excluded.version, outcome = excluded.outcome, \
         message = excluded.message, last_seen = excluded.last_seen, actor = excluded.actor", params![
            r.agent, r.channel, r.name, r.current, r.version, r.outcome, r.message, now, r.actor
        ])?;
    c.execute("DELETE FROM reports WHERE channel = ?1 AND name = ?2 AND agent = ?3 \
         AND id NOT IN (SELECT id FROM reports WHERE channel = ?1 AND name = ?2 AND agent = ?3 \
                        ORDER BY id DESC LIMIT ?4) \
         AND id NOT IN (SELECT MAX(id) FROM reports WHERE channel = ?1 AND name = ?2 AND agent = ?3 \
                        AND rollout_id IS NOT NULL AND outcome IN ('ok', 'failed') GROUP BY rollout_id)", params![r.channel, r.name, r.agent, i64::from(keep)])?;
    Ok(())
}

/// A heartbeat: the agent is alive and runs `current`. Its last outcome and message stay.
pub fn heartbeat(
    c: &dyn Sql,
    channel: &str,
    name: &str,
    agent: &str,
    current: Option<&str>,
    actor: &str,
) -> Result<(), DbError> {
    c.execute("INSERT INTO agents (agent, channel, name, current, version, outcome, message, last_seen, actor) \
         VALUES (?1, ?2, ?3, ?4, NULL, 'heartbeat', '', ?5, ?6) ON CONFLICT (channel, name, agent) \
         DO UPDATE SET current = excluded.current, last_seen = excluded.last_seen, actor = excluded.actor", params![agent, channel, name, current, now_str(), actor])?;
    Ok(())
}

/// Ids of the agents of `name` in `channel` seen at or after `since`.
pub fn known_agents(
    c: &dyn Sql,
    channel: &str,
    name: &str,
    since: &str,
) -> Result<Vec<String>, DbError> {
    c.query("SELECT agent FROM agents WHERE channel = ?1 AND name = ?2 AND last_seen >= ?3 ORDER BY agent", params![channel, name, since])?.iter().map(|r| r.get(0)).collect()
}

/// Forgets an agent in `channel` (one name, or every name): its row and its reports. Returns
/// the names it was known for.
pub fn forget(
    c: &dyn Sql,
    agent: &str,
    channel: &str,
    name: Option<&str>,
) -> Result<Vec<String>, DbError> {
    let names: Vec<String> = c
        .query(
            "SELECT name FROM agents WHERE agent = ?1 AND channel = ?2 AND (CAST(?3 AS TEXT) IS NULL OR name = ?3) \
             ORDER BY name",
            params![agent, channel, name],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect::<Result<_, _>>()?;
    c.execute(
        "DELETE FROM agents WHERE agent = ?1 AND channel = ?2 AND (CAST(?3 AS TEXT) IS NULL OR name = ?3)",
        params![agent, channel, name],
    )?;
    c.execute(
        "DELETE FROM reports WHERE agent = ?1 AND channel = ?2 AND (CAST(?3 AS TEXT) IS NULL OR name = ?3)",
        params![agent, channel, name],
    )?;
    Ok(names)
}

/// Distinct agents of a rollout by their latest `ok`/`failed` report, overall and by the step
/// in which that latest report arrived.
pub fn figures(c: &dyn Sql, rollout: i64) -> Result<(Figures, Vec<(usize, Figures)>), DbError> {
    let rows = c.query(
        "SELECT r.step, r.outcome FROM reports r JOIN \
         (SELECT agent, MAX(id) AS id FROM reports WHERE rollout_id = ?1 AND outcome IN ('ok', 'failed') \
          GROUP BY agent) m ON m.id = r.id",
        params![rollout],
    )?;
    let mut total = Figures::default();
    let mut by_step: std::collections::BTreeMap<usize, Figures> = Default::default();
    for r in rows {
        let step = r.get::<Option<i64>>(0)?.unwrap_or(0) as usize;
        let outcome: String = r.get(1)?;
        let f = by_step.entry(step).or_default();
        if outcome == "ok" {
            total.ok += 1;
            f.ok += 1;
        } else {
            total.failed += 1;
            f.failed += 1;
        }
    }
    Ok((total, by_step.into_iter().collect()))
}

/// Agents that reported on `channel` (or any), by channel, name, agent: `limit` of them from
/// `offset`. `stale`, `wanted` and `off_release` are left for the caller.
pub fn agents(
    c: &dyn Sql,
    channel: Option<&str>,
    limit: u32,
    offset: u64,
) -> Result<Vec<AgentInfo>, DbError> {
    c.query("SELECT g.agent, g.channel, g.name, g.current, g.version, g.outcome, g.message, g.last_seen, \
         g.actor, t.label FROM agents g \
         LEFT JOIN tokens t ON g.actor IS NOT NULL AND t.id = substr(g.actor, 7) \
         WHERE CAST(?1 AS TEXT) IS NULL OR g.channel = ?1 ORDER BY g.channel, g.name, g.agent LIMIT ?2 OFFSET ?3", params![channel, limit, offset as i64])?.iter().map(|r| {
        Ok(AgentInfo {
            agent: r.get(0)?,
            channel: r.get(1)?,
            name: r.get(2)?,
            current: r.get(3)?,
            version: r.get(4)?,
            outcome: r.get(5)?,
            message: r.get(6)?,
            last_seen: r.get(7)?,
            token: r.get(8)?,
            token_label: r.get(9)?,
            stale: false,
            wanted: None,
            off_release: false,
        })
    }).collect()
}

/// Agents per (channel, name, current version), for `/metrics`.
pub fn agent_versions(c: &dyn Sql) -> Result<Vec<(String, String, String, u64)>, DbError> {
    c.query(
        "SELECT channel, name, COALESCE(current, ''), COUNT(*) FROM agents \
         GROUP BY channel, name, current ORDER BY channel, name, current",
        params![],
    )?
    .iter()
    .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<i64>(3)? as u64)))
    .collect()
}
