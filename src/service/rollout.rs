//! Phased rollouts: starting one with a release, agents' reports, and the moves that follow
//! (advance, complete, halt and roll back), automatic or by an operator. Each move is one
//! transaction that changes the rollout, re-signs the channel's targets (the plan and step are
//! in the release's signed entry) and appends the audit entry.

use crate::db::Sql;
use crate::model::api::ErrorCode;
use chrono::{DateTime, Utc};

use super::{App, Error};
use crate::audit::AuditAction;
use crate::db::{self, DbError, rollouts::RolloutRow};
use crate::model::api::{
    AgentInfo, Report, ReportOutcome, ReportResponse, RolloutAction, RolloutStatus, RolloutVerb,
    StepFigures, StepReach,
};
use crate::rollout::{self, Figures, Next, Plan, State};
use crate::tuf::repo;

/// Called inside a release's transaction before its metadata is published: supersedes the
/// name's active rollout and, with a plan, starts a new one whose previous release is the one
/// agents ran before (the current release, or the previous release of an unfinished rollout).
pub fn begin(
    c: &dyn Sql,
    channel: &str,
    name: &str,
    artifact_id: i64,
    plan: Option<&Plan>,
) -> Result<Option<i64>, DbError> {
    let current = db::channels::current(c, channel, name)?.map(|(a, _)| a.id);
    let last = db::rollouts::latest(c, channel, name)?;
    begin_after(c, channel, name, artifact_id, current, last, plan)
}

/// [`begin`] for a caller that has read `current`, the release of `name` current in `channel`
/// until now, and `last`, the name's latest rollout there.
pub fn begin_after(
    c: &dyn Sql,
    channel: &str,
    name: &str,
    artifact_id: i64,
    current: Option<i64>,
    last: Option<db::rollouts::RolloutRow>,
    plan: Option<&Plan>,
) -> Result<Option<i64>, DbError> {
    let mut previous = current;
    if let Some(last) = last {
        if Some(last.artifact_id) == current && last.decides_entry() {
            previous = last.previous_id;
            // A running one is replaced; one stopped at 0% is released by promoting again.
            let why = if last.state.is_active() {
                "another release of the name entered the channel"
            } else {
                "promoted again after it stopped"
            };
            db::rollouts::set_state(c, last.id, State::Superseded, Some(why))?;
        } else if last.state.is_active() {
            db::rollouts::set_state(
                c,
                last.id,
                State::Superseded,
                Some("another release of the name entered the channel"),
            )?;
        }
    }
    let Some(plan) = plan else {
        return Ok(None);
    };
    let mut previous = previous.filter(|p| *p != artifact_id);
    // Agents outside the percentage install the previous release: only one that is still
    // validly signed (a revoked builder key makes it unfit, as for a rollback).
    if let Some(p) = previous
        && let Some(why) = unfit(c, p, channel)?
    {
        tracing::warn!(channel, name, reason = %why, "the previous release is no longer valid; agents outside the rollout keep what they run");
        previous = None;
    }
    Ok(Some(db::rollouts::insert(
        c,
        channel,
        name,
        artifact_id,
        previous,
        plan,
    )?))
}

/// The plan a release entering a channel follows: the promotion's own (checked), else the
/// channel policy's.
pub fn choose_plan(
    own: Option<&Plan>,
    policy: &crate::policy::Policy,
) -> Result<Option<Plan>, Error> {
    match own {
        Some(p) => {
            p.validate()
                .map_err(|e| Error::invalid(ErrorCode::InvalidRollout, e.to_string()))?;
            Ok(Some(p.clone()))
        }
        None => Ok(policy.rollout.clone()),
    }
}

/// Why artifact `id` may not become current in `channel` again, if it may not.
fn unfit(c: &dyn Sql, id: i64, channel: &str) -> Result<Option<String>, DbError> {
    let Some(a) = db::artifacts::by_id(c, id)? else {
        return Ok(Some(format!("artifact {id} is missing")));
    };
    let channel: crate::model::ChannelName = channel
        .parse()
        .map_err(|e: crate::model::NameError| DbError::Corrupt(e.to_string()))?;
    super::facts::still_valid(c, &a, &channel).map_err(|e| DbError::Corrupt(e.to_string()))
}

/// When a rollout's step started, for holding it: times are stored to the second, so the step
/// counts from the next whole second and never ends early.
fn step_started(r: &RolloutRow) -> DateTime<Utc> {
    parse_time(&r.step_started_at) + chrono::Duration::seconds(1)
}

fn parse_time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now())
}

/// Stops a rollout and returns the channel to its previous release (a roll-forward: a new
/// metadata version pointing at the older bytes). With no previous release the rollout's
/// entry stays listed at 0%: no agent takes it.
fn halt_tx(
    c: &dyn Sql,
    r: &RolloutRow,
    (state, reason): (State, &str),
    actor: &str,
    figures: Figures,
    key: &dyn crate::tuf::repo::OnlineKey,
    tuf: &crate::config::TufConfig,
) -> Result<u64, DbError> {
    db::rollouts::set_state(c, r.id, state, Some(reason))?;
    let new = db::artifacts::by_id(c, r.artifact_id)?;
    let mut prev = r
        .previous_id
        .map(|id| db::artifacts::by_id(c, id))
        .transpose()?
        .flatten();
    // Never back to a release that is no longer validly signed: hold the new one at 0% instead.
    let mut unfit_reason = None;
    if let Some(p) = &prev
        && let Some(why) = unfit(c, p.id, &r.channel)?
    {
        db::rollouts::clear_previous(c, r.id)?;
        unfit_reason = Some(format!(
            "previous release {} is not valid now: {why}",
            p.version
        ));
        prev = None;
    }
    if let Some(p) = &prev {
        db::channels::record_release(
            c,
            &r.channel,
            &r.name,
            p.id,
            "rollback",
            actor,
            Some(reason),
        )?;
    }
    let version = repo::publish_release(c, &r.channel, &r.name, key, tuf, Utc::now())?;
    let new_version = new.map(|a| a.version).unwrap_or_default();
    db::audit::append(
        c,
        &db::audit::Entry {
            actor,
            action: if state == State::Halted {
                AuditAction::RolloutHalt
            } else {
                AuditAction::RolloutAbort
            },
            subject: &format!(
                "{}@{new_version} in {}: rollout {} -> {}",
                r.name,
                r.channel,
                r.id,
                prev.as_ref()
                    .map_or("no previous release (0%)".to_owned(), |p| p.version.clone())
            ),
            outcome: "ok",
            details: serde_json::json!({
                "rollout": r.id, "step": r.step, "percent": r.percent(), "reason": reason,
                "previous_unfit": unfit_reason,
                "ok": figures.ok, "failed": figures.failed,
                "failure_rate": format!("{:.4}", figures.failure_rate()),
                "max_failure_rate": format!("{:.4}", r.plan.max_failure_rate),
                "min_reports": r.plan.min_reports,
                "targets_version": version,
            }),
        },
    )?;
    Ok(version)
}

/// Buckets of the agents known for a rollout's name in its channel: those seen within
/// `agents.stale_after`.
fn known_buckets(
    c: &dyn Sql,
    channel: &str,
    name: &str,
    stale_after: std::time::Duration,
) -> Result<Vec<u32>, DbError> {
    let since =
        Utc::now() - chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::MAX / 2);
    Ok(
        db::rollouts::known_agents(c, channel, name, &arca_keys::format_time(since))?
            .iter()
            .map(|a| rollout::bucket(a, name))
            .collect(),
    )
}

/// Moves a rollout one step on (or completes it at the last step), re-signing the entry. The
/// next step publishes its planned percentage, raised to reach a known agent if it reaches
/// none (`rollout::reach`).
#[allow(clippy::too_many_arguments)]
fn advance_tx(
    c: &dyn Sql,
    r: &RolloutRow,
    actor: &str,
    figures: Figures,
    (forced, reason): (bool, Option<&str>),
    known: &[u32],
    key: &dyn crate::tuf::repo::OnlineKey,
    tuf: &crate::config::TufConfig,
) -> Result<State, DbError> {
    let last = r.step + 1 >= r.plan.steps.len();
    let percent = if last {
        100
    } else {
        rollout::reach(r.plan.steps[r.step + 1], r.percent(), known)
    };
    let (state, action) = if last {
        db::rollouts::set_state(c, r.id, State::Completed, None)?;
        (State::Completed, AuditAction::RolloutComplete)
    } else {
        db::rollouts::set_step(c, r.id, r.step + 1, percent)?;
        (r.state, AuditAction::RolloutAdvance)
    };
    let version = repo::publish_release(c, &r.channel, &r.name, key, tuf, Utc::now())?;
    db::audit::append(
        c,
        &db::audit::Entry {
            actor,
            action,
            subject: &format!(
                "{} in {}: rollout {} at {percent}%",
                r.name, r.channel, r.id
            ),
            outcome: "ok",
            details: serde_json::json!({
                "rollout": r.id, "from_step": r.step, "percent": percent, "forced": forced,
                "planned_percent": if last { 100 } else { r.plan.steps[r.step + 1] },
                "reason": reason,
                "ok": figures.ok, "failed": figures.failed,
                "failure_rate": format!("{:.4}", figures.failure_rate()), "targets_version": version,
            }),
        },
    )?;
    Ok(state)
}

/// Raises the percentage a running step publishes when the step held its interval and
/// reaches none of the known agents (5 agents, a 20% step), and restarts the step's clock so
/// the widened step holds a full interval with an agent in it. Audit `rollout-widen`.
fn widen_tx(
    c: &dyn Sql,
    r: &RolloutRow,
    known: &[u32],
    key: &dyn crate::tuf::repo::OnlineKey,
    tuf: &crate::config::TufConfig,
) -> Result<Option<u32>, DbError> {
    let interval =
        chrono::Duration::from_std(r.plan.step_interval).unwrap_or(chrono::Duration::MAX);
    let held = step_started(r)
        .checked_add_signed(interval)
        .is_some_and(|d| Utc::now() >= d);
    let percent = rollout::reach(r.planned(), r.percent(), known);
    if !held || percent <= r.percent() {
        return Ok(None);
    }
    db::rollouts::set_percent(c, r.id, percent)?;
    let version = repo::publish_release(c, &r.channel, &r.name, key, tuf, Utc::now())?;
    db::audit::append(
        c,
        &db::audit::Entry {
            actor: &format!("rollout:{}", r.id),
            action: AuditAction::RolloutWiden,
            subject: &format!(
                "{} in {}: rollout {} at {percent}% (planned {}%)",
                r.name,
                r.channel,
                r.id,
                r.planned()
            ),
            outcome: "ok",
            details: serde_json::json!({
                "rollout": r.id, "step": r.step, "planned_percent": r.planned(),
                "from_percent": r.percent(), "percent": percent,
                "known_agents": known.len(), "targets_version": version,
            }),
        },
    )?;
    Ok(Some(percent))
}

/// `POST /api/v1/reports`: records an agent's report; a report that pushes a running
/// rollout's failure rate over its ceiling halts it and rolls the channel back at once.
/// `who` is the reporting token, or the agent id of the connection's verified client
/// certificate, or both: rate-limited (before anything else, so that refusals, which are
/// audited, are bounded too; per token, else per certificate), the token bound to the agents
/// and channels it may speak for (admin tokens speak for any), the certificate to its one
/// agent id (any channel); with both, both must allow the report.
pub async fn report(
    app: &App,
    who: &super::tokens::Reporter,
    mut rep: Report,
) -> Result<ReportResponse, Error> {
    let actor = who.actor();
    // A token's reports share its bucket; a certificate's (without a token) are its agent's.
    let (bucket, what) = match (&who.token, &who.certificate) {
        (Some(c), _) => (c.token.id.clone(), format!("token {}", c.token.id)),
        (None, Some(id)) => (actor.clone(), format!("the client certificate of {id}")),
        (None, None) => {
            return Err(Error::Unauthorized(
                "missing bearer token (Authorization: Bearer ...) or client certificate".into(),
            ));
        }
    };
    if let Err(retry_after) = app
        .report_limiter
        .take(&bucket, app.cfg.agents.reports_per_minute)
    {
        return Err(Error::RateLimited {
            retry_after,
            message: format!(
                "{what} posted more than {} reports a minute; retry in {retry_after} s",
                app.cfg.agents.reports_per_minute
            ),
        });
    }
    let action = crate::auth::Action::Report {
        agent: rep.agent.as_str(),
        channel: rep.channel.as_str(),
    };
    // Both must allow it: the token's role and bindings, and the certificate's agent id.
    if let Some(caller) = &who.token {
        app.permit(caller, action).await?;
    }
    if let Some(certified) = &who.certificate {
        app.permit_identity(&actor, certified, action).await?;
    }
    let (_, key) = app.channel_key(rep.channel.as_str())?;
    if !matches!(rep.outcome, ReportOutcome::Error | ReportOutcome::Heartbeat)
        && rep.version.is_none()
    {
        return Err(Error::invalid(
            ErrorCode::InvalidReport,
            format!(
                "an {} report names the version it is about",
                rep.outcome.as_str()
            ),
        ));
    }
    rep.check_fields()?;
    let Ok(at) = chrono::DateTime::parse_from_rfc3339(&rep.at) else {
        return Err(Error::invalid(
            ErrorCode::InvalidReport,
            format!("at {:?} is not an RFC 3339 time", rep.at),
        ));
    };
    // The agent's clock decides nothing: a time in the future is the server's now.
    let now = Utc::now();
    rep.at = arca_keys::format_time(at.with_timezone(&Utc).min(now));
    let (tuf, actor) = (app.cfg.tuf.clone(), actor.to_owned());
    let (keep, stale_after) = (app.cfg.agents.keep_reports, app.cfg.agents.stale_after);
    let rep2 = rep.clone();
    let (resp, halted) = app
        .db
        .call(move |c| {
            let tx = c.transaction()?;
            let ch = rep2.channel.as_str();
            db::locks::channel(&tx, ch)?;
            let name = rep2.name.as_str();
            let version = rep2.version.as_ref().map(|v| v.as_str());
            if db::channels::current(&tx, ch, name)?.is_none() {
                return Ok(Err(Error::not_found(
                    ErrorCode::NoRelease,
                    format!("{ch} has never held {name}: nothing to report on"),
                )));
            }
            if rep2.outcome == ReportOutcome::Heartbeat {
                db::rollouts::heartbeat(
                    &tx,
                    ch,
                    name,
                    rep2.agent.as_str(),
                    rep2.current.as_ref().map(|v| v.as_str()),
                    &actor,
                )?;
                tx.commit()?;
                return Ok(Ok((
                    ReportResponse {
                        rollout: None,
                        halted: false,
                    },
                    None,
                )));
            }
            let active = db::rollouts::active(&tx, ch, name)?;
            let mut counted = None;
            if let (Some(r), Some(v)) = (&active, version) {
                let a = db::artifacts::by_id(&tx, r.artifact_id)?;
                if a.is_some_and(|a| a.version == v) {
                    counted = Some(r.clone());
                }
            }
            db::rollouts::insert_report(
                &tx,
                &db::rollouts::NewReport {
                    rollout: counted.as_ref().map(|r| (r.id, r.step)),
                    channel: ch,
                    name,
                    version,
                    current: rep2.current.as_ref().map(|v| v.as_str()),
                    agent: rep2.agent.as_str(),
                    outcome: rep2.outcome.as_str(),
                    message: &rep2.message,
                    at: &rep2.at,
                    actor: &actor,
                },
                keep,
            )?;
            let mut halted = None;
            // Paused rollouts halt too: a pause holds the step, it does not hide failures.
            if let Some(r) = counted.as_ref() {
                let (figures, _) = db::rollouts::figures(&tx, r.id)?;
                let known = known_buckets(&tx, ch, name, stale_after)?;
                let needed = rollout::needed(&r.plan, rollout::holds(r.percent(), &known));
                let started = step_started(r);
                if let Next::Halt(why) =
                    rollout::assess(&r.plan, r.step, started, figures, needed, Utc::now())
                {
                    halt_tx(
                        &tx,
                        r,
                        (State::Halted, &why),
                        &format!("rollout:{}", r.id),
                        figures,
                        &key,
                        &tuf,
                    )?;
                    halted = Some(why);
                }
            }
            tx.commit()?;
            Ok(Ok((
                ReportResponse {
                    rollout: counted.map(|r| r.id as u64),
                    halted: halted.is_some(),
                },
                halted,
            )))
        })
        .await??;
    super::metrics::Counters::add(&app.counters.reports, 1);
    if let Some(why) = halted {
        tracing::warn!(channel = %rep.channel, name = %rep.name, reason = %why, "rollout halted; channel rolled back");
    }
    Ok(resp)
}

/// Advances or completes every running rollout whose figures allow it (the background task
/// calls this every `rollout.tick`).
pub async fn tick(app: &App) -> Result<(), Error> {
    let running = app
        .db
        .call(|c| db::rollouts::in_state(c, State::Running))
        .await?;
    for r in running {
        let (_, key) = match app.channel_key(&r.channel) {
            Ok(k) => k,
            Err(_) => continue,
        };
        let tuf = app.cfg.tuf.clone();
        let stale_after = app.cfg.agents.stale_after;
        let id = r.id;
        let moved = app
            .db
            .call(move |c| {
                let tx = c.transaction()?;
                // Read again inside the transaction: an operator may have moved it.
                db::locks::channel(&tx, &r.channel)?;
                let Some(r) = db::rollouts::active(&tx, &r.channel, &r.name)?
                    .filter(|x| x.id == id && x.state == State::Running)
                else {
                    return Ok(None);
                };
                let (figures, _) = db::rollouts::figures(&tx, r.id)?;
                let known = known_buckets(&tx, &r.channel, &r.name, stale_after)?;
                let needed = rollout::needed(&r.plan, rollout::holds(r.percent(), &known));
                let started = step_started(&r);
                let actor = format!("rollout:{}", r.id);
                let moved =
                    match rollout::assess(&r.plan, r.step, started, figures, needed, Utc::now()) {
                        // A step that held its interval without reaching any known agent is
                        // widened: it must never wait on an empty bucket.
                        Next::Wait(_) => widen_tx(&tx, &r, &known, &key, &tuf)?.map(|_| "widened"),
                        Next::Advance | Next::Complete => {
                            advance_tx(
                                &tx,
                                &r,
                                &actor,
                                figures,
                                (false, None),
                                &known,
                                &key,
                                &tuf,
                            )?;
                            Some("advanced")
                        }
                        Next::Halt(why) => {
                            halt_tx(&tx, &r, (State::Halted, &why), &actor, figures, &key, &tuf)?;
                            Some("halted")
                        }
                    };
                tx.commit()?;
                Ok(moved)
            })
            .await?;
        if let Some(m) = moved {
            tracing::info!(rollout = id, "rollout {m}");
        }
    }
    Ok(())
}

/// Runs [`tick`] every `rollout.tick` while this server leads, forever. (Two servers ticking
/// at once would still move each step once: `tick` re-reads the rollout under its channel's
/// lock.)
pub async fn run(app: App) {
    let mut leads = app.leader.subscribe();
    loop {
        super::leader::Leadership::until_leader(&mut leads).await;
        if let Err(e) = tick(&app).await {
            tracing::error!(error = %e, "cannot move rollouts on");
        }
        tokio::time::sleep(app.cfg.rollout.tick).await;
    }
}

/// `POST /api/v1/rollouts/{action}`: an operator's advance, pause, resume or abort.
pub async fn act(
    app: &App,
    actor: &str,
    action: &str,
    req: RolloutAction,
) -> Result<RolloutStatus, Error> {
    let (_, key) = app.channel_key(req.channel.as_str())?;
    let Ok(verb) = action.parse::<RolloutVerb>() else {
        return Err(Error::not_found(
            ErrorCode::UnknownAction,
            format!("no rollout action {action:?} (advance, pause, resume, abort)"),
        ));
    };
    let (tuf, actor_s) = (app.cfg.tuf.clone(), actor.to_owned());
    let stale_after = app.cfg.agents.stale_after;
    let req2 = req.clone();
    let result = app
        .db
        .call(move |c| {
            let tx = c.transaction()?;
            let r = (|| -> Result<(), Error> {
                let (ch, name) = (req2.channel.as_str(), req2.name.as_str());
                db::locks::channel(&tx, ch)?;
                let r = db::rollouts::active(&tx, ch, name)?.ok_or_else(|| {
                    Error::conflict(
                        ErrorCode::NoActiveRollout,
                        format!("{name} has no running or paused rollout in {ch}"),
                    )
                })?;
                let (figures, _) = db::rollouts::figures(&tx, r.id)?;
                match (verb, r.state) {
                    (RolloutVerb::Advance, _) => {
                        let known = known_buckets(&tx, ch, name, stale_after)?;
                        let why = (true, req2.reason.as_deref());
                        advance_tx(&tx, &r, &actor_s, figures, why, &known, &key, &tuf)?;
                    }
                    (RolloutVerb::Pause, State::Running) | (RolloutVerb::Resume, State::Paused) => {
                        let to = if verb == RolloutVerb::Pause {
                            State::Paused
                        } else {
                            db::rollouts::restart_step_clock(&tx, r.id)?;
                            State::Running
                        };
                        db::rollouts::set_state(&tx, r.id, to, req2.reason.as_deref())?;
                        let version = repo::publish_release(&tx, ch, name, &key, &tuf, Utc::now())?;
                        db::audit::append(
                            &tx,
                            &db::audit::Entry {
                                actor: &actor_s,
                                action: verb.audit_action(),
                                subject: &format!("{name} in {ch}: rollout {} at {}%", r.id, r.percent()),
                                outcome: "ok",
                                details: serde_json::json!({
                                    "rollout": r.id, "reason": req2.reason, "targets_version": version,
                                }),
                            },
                        )?;
                    }
                    (RolloutVerb::Pause | RolloutVerb::Resume, _) => {
                        return Err(Error::conflict(
                            ErrorCode::RolloutState,
                            format!("rollout {} is {}; cannot {} it", r.id, r.state.as_str(), verb.as_str()),
                        ));
                    }
                    (RolloutVerb::Abort, _) => {
                        let why = req2
                            .reason
                            .clone()
                            .unwrap_or_else(|| "aborted by an operator".into());
                        halt_tx(&tx, &r, (State::Aborted, &why), &actor_s, figures, &key, &tuf)?;
                    }
                }
                Ok(())
            })();
            if r.is_ok() {
                tx.commit()?;
            }
            Ok(r)
        })
        .await?;
    if let Err(e) = &result {
        let subject = format!("{} in {}", req.name, req.channel);
        app.audit_refusal(actor, AuditAction::Rollout, subject, e)
            .await;
    }
    result?;
    status(app, &req.channel, &req.name).await
}

fn status_of(
    c: &dyn Sql,
    r: &RolloutRow,
    stale_after: std::time::Duration,
) -> Result<RolloutStatus, DbError> {
    let (figures, by_step) = db::rollouts::figures(c, r.id)?;
    let known = known_buckets(c, &r.channel, &r.name, stale_after)?;
    let needed = rollout::needed(&r.plan, rollout::holds(r.percent(), &known));
    // The current step at what it publishes; the others at what the rule gives them with the
    // agents known now (past steps never above the current one).
    let mut floor = 0;
    let reach = r
        .plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, &planned)| {
            let percent = match i.cmp(&r.step) {
                std::cmp::Ordering::Less => rollout::reach(planned, floor, &known).min(r.percent()),
                std::cmp::Ordering::Equal => r.percent(),
                std::cmp::Ordering::Greater if i + 1 == r.plan.steps.len() => 100,
                std::cmp::Ordering::Greater => rollout::reach(planned, floor, &known),
            };
            floor = floor.max(percent);
            StepReach {
                step: i as u32,
                planned,
                percent,
                agents: rollout::holds(percent, &known),
            }
        })
        .collect();
    let version = |id: Option<i64>| -> Result<Option<String>, DbError> {
        Ok(match id {
            Some(id) => db::artifacts::by_id(c, id)?.map(|a| a.version),
            None => None,
        })
    };
    let next = (r.state == State::Running).then(|| {
        match rollout::assess(
            &r.plan,
            r.step,
            step_started(r),
            figures,
            needed,
            Utc::now(),
        ) {
            Next::Wait(w) => w,
            Next::Advance => "advancing at the next tick".into(),
            Next::Complete => "completing at the next tick".into(),
            Next::Halt(h) => format!("halting: {h}"),
        }
    });
    Ok(RolloutStatus {
        id: r.id as u64,
        channel: r.channel.clone(),
        name: r.name.clone(),
        version: version(Some(r.artifact_id))?.unwrap_or_default(),
        previous: version(r.previous_id)?,
        plan: r.plan.clone(),
        step: r.step as u32,
        percent: r.percent(),
        state: r.state.as_str().to_owned(),
        step_started_at: r.step_started_at.clone(),
        created_at: r.created_at.clone(),
        updated_at: r.updated_at.clone(),
        reason: r.reason.clone(),
        failure_rate: figures.failure_rate(),
        figures,
        steps: by_step
            .into_iter()
            .map(|(step, f)| StepFigures {
                step: step as u32,
                percent: r.plan.steps.get(step).copied().unwrap_or(100),
                ok: f.ok,
                failed: f.failed,
            })
            .collect(),
        next,
        known_agents: known.len() as u64,
        reach,
    })
}

/// The newest rollout of `name` in `channel`.
pub async fn status(
    app: &App,
    channel: &crate::model::ChannelName,
    name: &crate::model::ArtifactName,
) -> Result<RolloutStatus, Error> {
    app.channel_key(channel.as_str())?;
    let (ch, n) = (channel.to_string(), name.to_string());
    let stale_after = app.cfg.agents.stale_after;
    app.db
        .call(move |c| {
            Ok(match db::rollouts::latest(c, &ch, &n)? {
                Some(r) => Ok(status_of(c, &r, stale_after)?),
                None => Err(Error::not_found(
                    ErrorCode::NoRollout,
                    format!("{n} has had no rollout in {ch}"),
                )),
            })
        })
        .await?
}

/// The newest rollout of every name in `channel` (or every channel).
pub async fn list(app: &App, channel: Option<String>) -> Result<Vec<RolloutStatus>, Error> {
    if let Some(ch) = &channel {
        app.channel_key(ch)?;
    }
    let stale_after = app.cfg.agents.stale_after;
    Ok(app
        .db
        .call(move |c| {
            db::rollouts::list(c, channel.as_deref())?
                .iter()
                .map(|r| status_of(c, r, stale_after))
                .collect()
        })
        .await?)
}

/// Most agents one `GET /api/v1/agents` answers (the client pages with `offset`).
pub const MAX_AGENTS_PAGE: u32 = 1000;

/// Agents that reported on `channel` (or any), `limit` from `offset`, with what each runs,
/// what the channel means it to run (by the signed rollout plan) and whether it is stale.
pub async fn agents(
    app: &App,
    channel: Option<String>,
    limit: u32,
    offset: u64,
) -> Result<Vec<AgentInfo>, Error> {
    if let Some(ch) = &channel {
        app.channel_key(ch)?;
    }
    let stale_after = app.cfg.agents.stale_after;
    let limit = limit.clamp(1, MAX_AGENTS_PAGE);
    Ok(app
        .db
        .call(move |c| {
            let mut rows = db::rollouts::agents(c, channel.as_deref(), limit, offset)?;
            let since = arca_keys::format_time(
                Utc::now()
                    - chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::MAX / 2),
            );
            let mut wanted_of: std::collections::HashMap<(String, String), Wanted> =
                Default::default();
            for a in &mut rows {
                a.stale = a.last_seen < since;
                let key = (a.channel.clone(), a.name.clone());
                if !wanted_of.contains_key(&key) {
                    let w = wanted(c, &a.channel, &a.name)?;
                    wanted_of.insert(key.clone(), w);
                }
                if let Some(w) = wanted_of.get(&key) {
                    a.wanted = w.for_agent(&a.agent, &a.name);
                    a.off_release = w.listed && a.wanted != a.current;
                }
            }
            Ok::<_, DbError>(rows)
        })
        .await?)
}

/// What a channel means agents of a name to run: its release, or, while a rollout shapes the
/// entry, the release for agents inside the percentage and the previous one (or nothing)
/// for the others.
struct Wanted {
    listed: bool,
    current: Option<String>,
    rollout: Option<(u32, Option<String>)>,
}

impl Wanted {
    fn for_agent(&self, agent: &str, name: &str) -> Option<String> {
        match &self.rollout {
            Some((percent, previous)) if !rollout::selected(agent, name, *percent) => {
                previous.clone()
            }
            _ => self.current.clone(),
        }
    }
}

fn wanted(c: &dyn Sql, channel: &str, name: &str) -> Result<Wanted, DbError> {
    let Some((current, _)) = db::channels::current(c, channel, name)? else {
        return Ok(Wanted {
            listed: false,
            current: None,
            rollout: None,
        });
    };
    let rollout = match db::rollouts::latest(c, channel, name)? {
        Some(r) if r.artifact_id == current.id && r.decides_entry() => {
            let percent = if r.state.is_active() { r.percent() } else { 0 };
            let previous = match r.previous_id {
                Some(id) => db::artifacts::by_id(c, id)?.map(|a| a.version),
                None => None,
            };
            Some((percent, previous))
        }
        _ => None,
    };
    Ok(Wanted {
        listed: true,
        current: Some(current.version),
        rollout,
    })
}

/// `DELETE /api/v1/agents/{agent}?channel=CH[&name=N]`: forgets a decommissioned agent (its
/// row and its reports), audited as `agent-forget`.
pub async fn forget(
    app: &App,
    actor: &str,
    agent: crate::model::api::AgentId,
    channel: crate::model::ChannelName,
    name: Option<crate::model::ArtifactName>,
) -> Result<Vec<String>, Error> {
    app.channel_key(channel.as_str())?;
    let actor_s = actor.to_owned();
    let (agent2, ch2, name2) = (agent.to_string(), channel.to_string(), name.clone());
    let names = app
        .db
        .call(move |c| {
            let tx = c.transaction()?;
            let names =
                db::rollouts::forget(&tx, &agent2, &ch2, name2.as_ref().map(|n| n.as_str()))?;
            if !names.is_empty() {
                db::audit::append(
                    &tx,
                    &db::audit::Entry {
                        actor: &actor_s,
                        action: AuditAction::AgentForget,
                        subject: &format!("agent {agent2} in {ch2}"),
                        outcome: "ok",
                        details: serde_json::json!({ "agent": agent2, "channel": ch2, "names": names }),
                    },
                )?;
            }
            tx.commit()?;
            Ok::<_, DbError>(names)
        })
        .await?;
    if names.is_empty() {
        let what = name.map_or_else(String::new, |n| format!(" for {n}"));
        return Err(Error::not_found(
            ErrorCode::NoAgent,
            format!("no agent {agent} has reported in {channel}{what}"),
        ));
    }
    Ok(names)
}
