//! Promotion and rollback. Each decision is made inside the same transaction that writes its
//! outcome, against the trust document and channel state as they are at that moment (a key
//! revoked since the push no longer counts), so concurrent requests serialise and a crash
//! leaves either the whole promotion (state, metadata, audit entry) or none of it.

use crate::model::api::ErrorCode;

use crate::db::Conn;
use chrono::Utc;

use super::facts::{channel_policy, still_valid};
use super::{App, Error};
use crate::audit::AuditAction;
use crate::db::Sql;
use crate::db::{self, DbError};
use crate::model::Version;
use crate::model::api::{PromoteRequest, PromoteResponse, RollbackRequest, RollbackResponse};
use crate::tuf::repo;

/// What one promotion attempt did, for the response and the audit log.
struct Outcome {
    response: PromoteResponse,
    /// Some `auto = true` channel takes its releases from the one promoted into, under the
    /// trust document the promotion decided with: the auto-promotion task has work.
    feeds_auto: bool,
}

/// Promotes inside one transaction: evaluate, then (if allowed and not a dry run) record the
/// release, publish the channel's metadata and append the audit entry.
fn promote_tx(
    c: &mut Conn,
    key: &dyn crate::tuf::repo::OnlineKey,
    tuf: &crate::config::TufConfig,
    req: &PromoteRequest,
    actor: &str,
    action: AuditAction,
) -> Result<Result<Outcome, Error>, DbError> {
    let tx = c.transaction()?;
    let result = (|| -> Result<Outcome, Error> {
        // The concurrency contract (db::locks): trust, then the channel, before any read.
        db::locks::trust(&tx)?;
        db::locks::channel(&tx, req.to.as_str())?;
        // The artifact and the trust document in one round trip (with the locks, ahead).
        let find = db::artifacts::find_sql();
        let rows = tx.query_all(&[
            (
                find.as_str(),
                crate::params![req.name.as_str(), req.version.as_str()],
            ),
            (db::trust::LATEST, crate::params![]),
        ])?;
        let a = db::artifacts::found(&rows[0])?.ok_or_else(|| {
            Error::not_found(
                ErrorCode::NoArtifact,
                format!("no artifact {}@{}", req.name, req.version),
            )
        })?;
        let trust = super::facts::trust_from(db::trust::latest_from(&rows[1])?)?;
        let now = Utc::now();
        let policy = channel_policy(&tx, &trust, &req.to)?;
        let reads = super::facts::reads(&tx, &a, &req.to, &policy)?;
        let super::facts::Evaluation {
            decision,
            mut already,
            current,
            statements,
            last_rollout,
        } = super::facts::evaluate_with(&trust, &policy, &a, &req.to, now, reads)?;
        // A release whose rollout stopped at 0% (no previous release to return to) is current
        // in name only: promoting it again releases it.
        if already
            && last_rollout
                .as_ref()
                .is_some_and(|r| r.artifact_id == a.id && r.decides_entry() && !r.state.is_active())
        {
            already = false;
        }
        let subject = format!("{}@{} -> {}", req.name, req.version, req.to);
        if req.dry_run {
            // A dry run refuses a bad plan exactly as the promotion would.
            super::rollout::choose_plan(req.rollout.as_ref(), &policy)?;
        }
        if already || req.dry_run {
            return Ok(Outcome {
                feeds_auto: false,
                response: PromoteResponse {
                    decision,
                    promoted: false,
                    already_current: already,
                    targets_version: None,
                    rollout: None,
                },
            });
        }
        let mut details = serde_json::json!({
            "rules": decision.rules, "reason": req.reason, "break_glass": decision.break_glass,
            "trust_version": trust.version,
        });
        if !decision.allowed {
            db::audit::append(
                &tx,
                &db::audit::Entry {
                    actor,
                    action,
                    subject: &subject,
                    outcome: "refused",
                    details,
                },
            )?;
            return Ok(Outcome {
                feeds_auto: false,
                response: PromoteResponse {
                    decision,
                    promoted: false,
                    already_current: false,
                    targets_version: None,
                    rollout: None,
                },
            });
        }
        let plan = super::rollout::choose_plan(req.rollout.as_ref(), &policy)?;
        let rollout = super::rollout::begin_after(
            &tx,
            req.to.as_str(),
            &a.name,
            a.id,
            current,
            last_rollout,
            plan.as_ref(),
        )?;
        db::channels::record_release(
            &tx,
            req.to.as_str(),
            &a.name,
            a.id,
            action.as_str(),
            actor,
            req.reason.as_deref(),
        )?;
        let version = repo::publish_promoted(
            &tx,
            req.to.as_str(),
            &a,
            statements,
            trust.version,
            rollout,
            key,
            tuf,
            now,
        )?;
        if let (Some(id), Some(p)) = (rollout, &plan) {
            // Audit details are canonical JSON: no floats, so the ceiling goes in basis points.
            details["rollout"] = serde_json::json!({
                "id": id, "steps": p.steps, "step_interval": humantime::format_duration(p.step_interval).to_string(),
                "max_failure_bp": (p.max_failure_rate * 10_000.0).round() as u64, "min_reports": p.min_reports,
            });
        }
        let outcome = if decision.break_glass {
            "ok (break-glass)"
        } else {
            "ok"
        };
        db::audit::append(
            &tx,
            &db::audit::Entry {
                actor,
                action,
                subject: &subject,
                outcome,
                details,
            },
        )?;
        Ok(Outcome {
            // Parsed policies are cached: this reads and parses nothing in the steady state.
            feeds_auto: feeds_auto(&tx, &trust, &req.to),
            response: PromoteResponse {
                decision,
                promoted: true,
                already_current: false,
                targets_version: Some(version),
                rollout: rollout.map(|id| id as u64),
            },
        })
    })();
    // Refusals commit too: their audit entry is the only trace they leave.
    if result.is_ok() {
        tx.commit()?;
    }
    Ok(result)
}

/// `POST /api/v1/promotions`: a refused promotion is an `Ok` response with `allowed: false`
/// (the HTTP edge answers 403 with the decision). A promotion may let a later `auto = true`
/// channel take the release: the auto-promotion task is told, and answered, before this returns.
pub async fn promote(
    app: &App,
    actor: &str,
    req: PromoteRequest,
    action: AuditAction,
) -> Result<PromoteResponse, Error> {
    let name = req.name.clone();
    let (r, feeds_auto) = promote_counted(app, actor, req, action).await?;
    if r.promoted && feeds_auto {
        app.auto.changed(app, &name).await;
    }
    Ok(r)
}

/// Whether an `auto = true` channel takes its releases from `channel` under `trust`.
fn feeds_auto(
    c: &dyn Sql,
    trust: &arca_keys::TrustDocument,
    channel: &crate::model::ChannelName,
) -> bool {
    trust.policies.keys().any(|ch| {
        ch.parse::<crate::model::ChannelName>()
            .ok()
            .and_then(|ch| channel_policy(c, trust, &ch).ok())
            .is_some_and(|p| p.auto && p.from.as_ref() == Some(channel))
    })
}

/// One promotion, telling nobody (what the auto-promotion task itself runs).
pub async fn promote_once(
    app: &App,
    actor: &str,
    req: PromoteRequest,
    action: AuditAction,
) -> Result<PromoteResponse, Error> {
    Ok(promote_counted(app, actor, req, action).await?.0)
}

/// [`promote_once`], and whether an auto channel takes releases from the one promoted into.
async fn promote_counted(
    app: &App,
    actor: &str,
    req: PromoteRequest,
    action: AuditAction,
) -> Result<(PromoteResponse, bool), Error> {
    let (_, key) = app.channel_key(req.to.as_str())?;
    let (tuf, actor_s, req2) = (app.cfg.tuf.clone(), actor.to_owned(), req.clone());
    let outcome = app
        .db
        .call(move |c| promote_tx(c, &key, &tuf, &req2, &actor_s, action))
        .await??;
    let (r, feeds_auto) = (outcome.response, outcome.feeds_auto);
    if r.promoted {
        super::metrics::Counters::add(&app.counters.promotions_ok, 1);
    } else if !r.decision.allowed && !req.dry_run && !r.already_current {
        super::metrics::Counters::add(&app.counters.promotions_refused, 1);
    }
    if r.promoted {
        tracing::info!(name = %req.name, version = %req.version, to = %req.to, break_glass = r.decision.break_glass, "promoted");
    }
    Ok((r, feeds_auto))
}

/// `POST /api/v1/rollbacks`: returns the channel to a release it held before, as a new
/// metadata version. The earlier release's build signature must still be valid now.
pub async fn rollback(
    app: &App,
    actor: &str,
    req: RollbackRequest,
) -> Result<RollbackResponse, Error> {
    let (_, key) = app.channel_key(req.channel.as_str())?;
    let (tuf, actor_s) = (app.cfg.tuf.clone(), actor.to_owned());
    let subject = format!("{} in {}", req.name, req.channel);
    let req2 = req.clone();
    let result = app
        .db
        .call(move |c| rollback_tx(c, &key, &tuf, &req2, &actor_s))
        .await?;
    match &result {
        Ok(r) => {
            tracing::info!(name = %req.name, channel = %req.channel, from = %r.from, to = %r.to, "rolled back")
        }
        Err(e) if !matches!(e, Error::Internal(_)) => {
            app.audit_refusal(actor, AuditAction::Rollback, subject, e)
                .await
        }
        Err(_) => {}
    }
    result
}

fn rollback_tx(
    c: &mut Conn,
    key: &dyn crate::tuf::repo::OnlineKey,
    tuf: &crate::config::TufConfig,
    req: &RollbackRequest,
    actor: &str,
) -> Result<Result<RollbackResponse, Error>, DbError> {
    let tx = c.transaction()?;
    let result = (|| -> Result<RollbackResponse, Error> {
        db::locks::trust(&tx)?;
        db::locks::channel(&tx, req.channel.as_str())?;
        let history = db::channels::history(&tx, req.channel.as_str(), req.name.as_str())?;
        let current = history
            .last()
            .ok_or_else(|| {
                Error::not_found(
                    ErrorCode::NoRelease,
                    format!("{} has never been in {}", req.name, req.channel),
                )
            })?
            .version
            .clone();
        let target = match &req.to {
            Some(v) if v.as_str() == current => {
                return Err(Error::conflict(
                    ErrorCode::AlreadyCurrent,
                    format!("{}@{v} is already current in {}", req.name, req.channel),
                ));
            }
            Some(v) => history
                .iter()
                .rev()
                .find(|h| h.version == v.as_str())
                .map(|h| h.version.clone())
                .ok_or_else(|| {
                    Error::not_found(
                        ErrorCode::NotInHistory,
                        format!("{} never held {}@{v}", req.channel, req.name),
                    )
                })?,
            None => history
                .iter()
                .rev()
                .find(|h| h.version != current)
                .map(|h| h.version.clone())
                .ok_or_else(|| {
                    Error::conflict(
                        ErrorCode::NoEarlierRelease,
                        format!("{} has held no other release of {}", req.channel, req.name),
                    )
                })?,
        };
        let a = db::artifacts::find(&tx, req.name.as_str(), &target)?.ok_or_else(|| {
            Error::Internal(format!("history names missing {}@{target}", req.name))
        })?;
        if let Some(why) = still_valid(&tx, &a, &req.channel)? {
            return Err(Error::forbidden(
                ErrorCode::RollbackTargetInvalid,
                format!("cannot roll back to {}@{target}: {why}", req.name),
            ));
        }
        super::rollout::begin(&tx, req.channel.as_str(), &a.name, a.id, None)?;
        db::channels::record_release(
            &tx,
            req.channel.as_str(),
            &a.name,
            a.id,
            "rollback",
            actor,
            req.reason.as_deref(),
        )?;
        let version =
            repo::publish_release(&tx, req.channel.as_str(), &a.name, key, tuf, Utc::now())?;
        db::audit::append(
            &tx,
            &db::audit::Entry {
                actor,
                action: AuditAction::Rollback,
                subject: &format!("{} in {}: {current} -> {target}", req.name, req.channel),
                outcome: "ok",
                details: serde_json::json!({ "reason": req.reason, "targets_version": version }),
            },
        )?;
        let parse = |v: &str| {
            v.parse::<Version>()
                .map_err(|e| Error::Internal(e.to_string()))
        };
        Ok(RollbackResponse {
            from: parse(&current)?,
            to: parse(&target)?,
            targets_version: version,
        })
    })();
    if result.is_ok() {
        tx.commit()?;
    }
    Ok(result)
}
