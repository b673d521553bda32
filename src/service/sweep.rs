//! The sweep of temporary uploads: what a crash or an abandoned upload left in the store's
//! `tmp/`, removed at start and then while the server runs, not only at the next restart.

use super::App;

/// One sweep: temporary objects that no upload of this process owns (in progress or staged)
/// and older than `store.temp_max_age` are removed.
pub async fn once(app: &App) {
    match app.store.sweep_temp(app.cfg.store.temp_max_age).await {
        Ok(n) if n > 0 => tracing::info!(removed = n, "removed abandoned uploads"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot sweep abandoned uploads"),
    }
}

/// Sweeps every `store.sweep_interval`, forever (the server sweeps once before it serves).
pub async fn run(app: App) {
    loop {
        tokio::time::sleep(app.cfg.store.sweep_interval).await;
        once(&app).await;
    }
}
