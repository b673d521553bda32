//! The background task that keeps every channel's online metadata from expiring.

use chrono::Utc;

use super::App;
use crate::tuf::repo;

/// Re-signs expiring metadata now and then every `tuf.refresh_interval`, forever.
pub async fn run(app: App) {
    loop {
        // The clock is checked every round, signing or not: a fault shows in /metrics (and
        // clears there) while nothing is due, and nothing is signed while it lasts.
        let cfg = app.cfg.tuf.clone();
        let clock = app
            .db
            .call(move |c| repo::check_clock(c, &cfg, Utc::now()))
            .await;
        if let Err(e) = &clock {
            tracing::error!(error = %e, "not re-signing metadata this round");
        }
        let keys: Vec<_> = app
            .keys
            .signers()
            .into_iter()
            .filter(|_| clock.is_ok())
            .collect();
        for (channel, key) in keys {
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
        if let Err(e) = super::audit::checkpoint_if_grown(&app).await {
            tracing::error!(error = %e, "cannot sign an audit checkpoint");
        }
        app.auto.sweep(&app).await;
        match super::upload::expire(&app).await {
            Ok(0) => {}
            Ok(expired) => tracing::info!(expired, "dropped staged uploads that no push claimed"),
            Err(e) => tracing::warn!(error = %e, "cannot expire staged uploads"),
        }
        tokio::time::sleep(app.cfg.tuf.refresh_interval).await;
    }
}
