//! The background task that keeps every channel's online metadata from expiring.

use chrono::Utc;

use super::App;
use super::leader::Leadership;
use crate::tuf::repo;

/// Every `tuf.refresh_interval`, forever: checks the clock; while this server leads, also
/// re-signs expiring metadata, signs an audit checkpoint, runs the soak-time auto-promotions
/// and expires staged uploads that no push claimed. A server that becomes leader runs a round
/// at once, so the re-signing never waits a full interval for a new leader.
pub async fn run(app: App) {
    let mut leads = app.leader.subscribe();
    loop {
        let leader = *leads.borrow_and_update();
        // The clock is checked every round on every server, signing or not: each server signs
        // (promotions on any of them do), so its fault shows in its /metrics (and clears
        // there) while nothing is due, and nothing is signed while it lasts.
        let cfg = app.cfg.tuf.clone();
        let clock = app
            .db
            .call(move |c| repo::check_clock(c, &cfg, Utc::now()))
            .await;
        if let Err(e) = &clock {
            tracing::error!(error = %e, "not re-signing metadata this round");
        }
        if leader {
            if clock.is_ok() {
                refresh_channels(&app).await;
            }
            if let Err(e) = super::audit::checkpoint_if_grown(&app).await {
                tracing::error!(error = %e, "cannot sign an audit checkpoint");
            }
            app.auto.sweep(&app).await;
            // Staged uploads are rows every server sees: the leader expires them.
            match super::upload::expire(&app).await {
                Ok(0) => {}
                Ok(expired) => {
                    tracing::info!(expired, "dropped staged uploads that no push claimed")
                }
                Err(e) => tracing::warn!(error = %e, "cannot expire staged uploads"),
            }
        }
        Leadership::sleep(&mut leads, app.cfg.tuf.refresh_interval).await;
    }
}

/// Re-signs what is expiring in every channel, one transaction per channel.
async fn refresh_channels(app: &App) {
    for (channel, key) in app.keys.signers() {
        let (ch, cfg) = (channel.to_string(), app.cfg.tuf.clone());
        let r = app
            .db
            .call(move |c| {
                let tx = c.transaction()?;
                crate::db::locks::channel(&tx, &ch)?;
                let roles = repo::refresh_expiring(&tx, &ch, &key, &cfg, Utc::now())?;
                tx.commit()?;
                Ok(roles)
            })
            .await;
        match r {
            Ok(roles) if !roles.is_empty() => {
                tracing::info!(%channel, ?roles, "re-signed expiring metadata")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(%channel, error = %e, "cannot re-sign metadata"),
        }
    }
}
