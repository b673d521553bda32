//! Which server runs the background work: the leader, elected through `db::leader` (an
//! advisory lock on PostgreSQL; on SQLite the one server). Re-signing expiring metadata,
//! audit checkpoints, soak-time auto-promotion, rollout ticks and the periodic temp sweep run
//! only while this server leads; requests are served by every server alike.

use std::time::Duration;

use tokio::sync::watch;

use super::App;
use crate::db::leader::Elector;

/// Whether this server leads now; cheap to clone, shared by the tasks it gates.
#[derive(Clone)]
pub struct Leadership {
    state: std::sync::Arc<watch::Sender<bool>>,
}

impl Default for Leadership {
    /// Not leading until an election says so.
    fn default() -> Self {
        Leadership {
            state: std::sync::Arc::new(watch::Sender::new(false)),
        }
    }
}

impl Leadership {
    pub fn is_leader(&self) -> bool {
        *self.state.borrow()
    }

    /// A receiver of every change, for [`Leadership::until_leader`] and
    /// [`Leadership::sleep`].
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.state.subscribe()
    }

    /// Returns once this server leads (at once if it does).
    pub async fn until_leader(rx: &mut watch::Receiver<bool>) {
        let _ = rx.wait_for(|leads| *leads).await;
    }

    /// Sleeps for `d`, or less when leadership changed since `rx` last looked (so that a
    /// server that has just become leader runs its round at once, not a full interval later).
    pub async fn sleep(rx: &mut watch::Receiver<bool>, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            changed = rx.changed() => {
                if changed.is_err() {
                    tokio::time::sleep(d).await;
                }
            }
        }
    }
}

impl App {
    /// Records the outcome of an election; logs a change, naming this server.
    fn set_leader(&self, leads: bool, why: Option<&str>) {
        // Only a change is sent: every send wakes the loops waiting in `sleep`, and an
        // unchanged outcome every `leader.retry` would run the refresh round that often.
        let was = *self.leader.state.borrow();
        self.leader.state.send_if_modified(|now| {
            let changed = *now != leads;
            *now = leads;
            changed
        });
        let (pid, listen) = (std::process::id(), &self.cfg.listen);
        match (was, leads) {
            (false, true) => {
                tracing::info!(pid, %listen, "became leader: this server runs the background work")
            }
            (true, false) => tracing::info!(
                pid,
                %listen,
                reason = why.unwrap_or("another server holds the lock"),
                "lost leadership"
            ),
            _ => {}
        }
    }
}

/// The first election, before the server serves (so the start-up work and `/readyz` know
/// the answer); then the election every `leader.retry` in a task of its own, forever.
pub async fn start(app: &App) {
    let elector = app.db.elector(app.cfg.leader.always);
    let elector = elect(app, elector).await;
    tokio::spawn(run(app.clone(), elector));
}

async fn run(app: App, mut elector: Option<Elector>) {
    loop {
        tokio::time::sleep(app.cfg.leader.retry).await;
        let e = elector
            .take()
            .unwrap_or_else(|| app.db.elector(app.cfg.leader.always));
        elector = elect(&app, e).await;
    }
}

/// One try (blocking: on the blocking pool); the elector back unless its thread failed.
async fn elect(app: &App, mut elector: Elector) -> Option<Elector> {
    let tried = tokio::task::spawn_blocking(move || {
        let r = elector.try_lead();
        (elector, r)
    })
    .await;
    match tried {
        Ok((elector, Ok(leads))) => {
            app.set_leader(leads, None);
            Some(elector)
        }
        Ok((elector, Err(e))) => {
            if app.leader.is_leader() {
                app.set_leader(false, Some(&e.to_string()));
            } else {
                tracing::debug!(error = %e, "cannot take part in the leader election now");
            }
            Some(elector)
        }
        Err(e) => {
            app.set_leader(false, Some(&e.to_string()));
            None
        }
    }
}
