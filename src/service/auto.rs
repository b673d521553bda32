//! Continuous delivery: a channel whose policy says `auto = true` takes a release by itself as
//! soon as every rule passes — checked after each change that could make a rule pass (a push,
//! a statement, a promotion) and periodically, for soak periods that end.
//!
//! The use cases that make such a change do not call in here: they send a message to the
//! auto-promotion task ([`Queue::changed`]) and wait for its answer. One task runs every
//! auto-promotion, one at a time, and promotes with `promote::promote_once`, which sends
//! nothing back, so promotion and auto-promotion do not call each other.

use chrono::Utc;

use super::App;
use super::facts::{self, current_trust};
use super::promote;
use crate::audit::AuditAction;
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

/// A change that may let an auto channel take a release: of one name, or of every name.
struct Nudge {
    only: Option<ArtifactName>,
    done: tokio::sync::oneshot::Sender<Vec<String>>,
}

/// The sending side of the auto-promotion task's queue (cheap to clone). The task starts with
/// the first message, on the runtime that sends it.
#[derive(Clone)]
pub struct Queue {
    tx: tokio::sync::mpsc::UnboundedSender<Nudge>,
    rx: std::sync::Arc<std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Nudge>>>>,
}

impl Default for Queue {
    fn default() -> Self {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        Queue {
            tx,
            rx: std::sync::Arc::new(std::sync::Mutex::new(Some(rx))),
        }
    }
}

impl Queue {
    /// `name` changed (a push, a statement, a promotion): every auto promotion it is ready for
    /// runs now. Returns the channels it entered.
    pub async fn changed(&self, app: &App, name: &ArtifactName) -> Vec<String> {
        self.send(app, Some(name.clone())).await
    }

    /// Anything may have changed (a policy, the clock): every name is tried.
    pub async fn sweep(&self, app: &App) -> Vec<String> {
        self.send(app, None).await
    }

    async fn send(&self, app: &App, only: Option<ArtifactName>) -> Vec<String> {
        let receiver = self.rx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(rx) = receiver {
            tokio::spawn(task(app.clone(), rx));
        }
        let (done, answer) = tokio::sync::oneshot::channel();
        if self.tx.send(Nudge { only, done }).is_err() {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }
}

/// The auto-promotion task: one message at a time.
async fn task(app: App, mut rx: tokio::sync::mpsc::UnboundedReceiver<Nudge>) {
    while let Some(n) = rx.recv().await {
        let entered = run(&app, n.only.as_ref()).await;
        let _ = n.done.send(entered);
    }
}

/// Tries every auto promotion for `only` (or every name), repeatedly (one may enable the
/// next). Returns the channels entered.
async fn run(app: &App, only: Option<&ArtifactName>) -> Vec<String> {
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
                            .is_ok_and(|e| e.decision.allowed && !e.already),
                    )
                })
                .await
                .unwrap_or(false);
            if !ready {
                continue;
            }
            match promote::promote_once(app, "auto", req.clone(), AuditAction::AutoPromote).await {
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
