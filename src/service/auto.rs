//! Continuous delivery: a channel whose policy says `auto = true` takes a release by itself as
//! soon as every rule passes — checked after each change that could make a rule pass (a push,
//! a statement, a promotion) and periodically, for soak periods that end.

use chrono::Utc;

use super::App;
use super::facts::{self, current_trust};
use super::promote;
use crate::db;
use crate::db::Sql;
use crate::model::api::PromoteRequest;
use crate::model::{ArtifactName, ChannelName};

/// Channels with `auto = true` and the channel each takes releases from.
fn auto_channels(
    pipeline: &[ChannelName],
    c: &dyn Sql,
) -> Result<Vec<(ChannelName, ChannelName)>, super::Error> {
    let trust = current_trust(c)?;
    let mut out = Vec::new();
    for ch in pipeline {
        if let Ok(p) = facts::channel_policy(c, &trust, ch)
            && p.auto
            && let Some(from) = p.from
        {
            out.push((ch.clone(), from));
        }
    }
    Ok(out)
}

/// The (name, version) pairs that an auto channel could take now: the current release of each
/// name in its `from` channel, when it is not already current in the auto channel.
async fn candidates(
    app: &App,
    only: Option<&ArtifactName>,
) -> Result<Vec<PromoteRequest>, super::Error> {
    let pipeline = app.cfg.pipeline.clone();
    let only = only.map(|n| n.to_string());
    let pairs = app
        .db
        .call(move |c| -> Result<_, db::DbError> {
            let chans = match auto_channels(&pipeline, c) {
                Ok(ch) => ch,
                Err(_) => return Ok(Vec::new()),
            };
            let mut out = Vec::new();
            for (to, from) in chans {
                for a in db::channels::current_releases(c, from.as_str())? {
                    if only.as_deref().is_some_and(|n| n != a.name) {
                        continue;
                    }
                    let here = db::channels::current(c, to.as_str(), &a.name)?;
                    if here.is_some_and(|(cur, _)| cur.id == a.id) {
                        continue;
                    }
                    out.push((to.clone(), a.name.clone(), a.version.clone()));
                }
            }
            Ok(out)
        })
        .await?;
    Ok(pairs
        .into_iter()
        .filter_map(|(to, name, version)| {
            Some(PromoteRequest {
                name: name.parse().ok()?,
                version: version.parse().ok()?,
                to,
                dry_run: false,
                reason: Some("auto: every rule of the channel's policy passed".into()),
                rollout: None,
            })
        })
        .collect())
}

/// Tries every auto promotion `name` is ready for, repeatedly (one may enable the next).
/// Returns the channels it entered.
pub async fn after_change(app: &App, name: &ArtifactName) -> Vec<String> {
    run(app, Some(name)).await
}

/// Tries every auto promotion for every name (the periodic sweep). Returns the channels entered.
pub async fn run(app: &App, only: Option<&ArtifactName>) -> Vec<String> {
    let mut entered = Vec::new();
    for _ in 0..app.cfg.pipeline.len() {
        let reqs = match candidates(app, only).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot list auto-promotion candidates");
                return entered;
            }
        };
        let mut progressed = false;
        for req in reqs {
            // Evaluate quietly first: a release waiting for its rules is not a refusal to audit.
            let req2 = req.clone();
            let ready = app
                .db
                .call(move |c| -> Result<bool, db::DbError> {
                    let Ok(trust) = current_trust(c) else {
                        return Ok(false);
                    };
                    let Some(a) =
                        db::artifacts::find(c, req2.name.as_str(), req2.version.as_str())?
                    else {
                        return Ok(false);
                    };
                    let Ok(policy) = facts::channel_policy(c, &trust, &req2.to) else {
                        return Ok(false);
                    };
                    Ok(
                        facts::evaluate(c, &trust, &policy, &a, &req2.to, Utc::now())
                            .is_ok_and(|(d, already)| d.allowed && !already),
                    )
                })
                .await
                .unwrap_or(false);
            if !ready {
                continue;
            }
            match Box::pin(promote::promote(app, "auto", req.clone(), "auto-promote")).await {
                Ok(r) if r.promoted => {
                    entered.push(req.to.to_string());
                    progressed = true;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, name = %req.name, to = %req.to, "auto-promotion failed")
                }
            }
        }
        if !progressed {
            break;
        }
    }
    entered
}
