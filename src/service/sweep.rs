//! The sweep of temporary uploads: what a crash or an abandoned upload left in the store's
//! `tmp/`, removed at start and then while the server runs, not only at the next restart.

use super::App;

/// One sweep: temporary objects older than `store.temp_max_age` that no upload of this
/// process owns (in progress) and no staged upload in the database names (whichever server
/// staged it) are removed.
pub async fn once(app: &App) {
    // The staged uploads are read before the store is listed. One whose row is written after
    // this read is not in `keep`, but its object was finished moments before its row: it is
    // far younger than `store.temp_max_age` when the listing runs, and is not swept (and the
    // server staging it skips it anyway until the row is written: its `Staged` holds it).
    let keep = match app.db.call(|c| crate::db::uploads::temp_paths(c)).await {
        Ok(paths) => paths.into_iter().collect(),
        Err(e) => {
            tracing::warn!(error = %e, "not sweeping abandoned uploads: cannot read the staged ones");
            return;
        }
    };
    match app
        .store
        .sweep_temp(app.cfg.store.temp_max_age, &keep)
        .await
    {
        Ok(n) if n > 0 => tracing::info!(removed = n, "removed abandoned uploads"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot sweep abandoned uploads"),
    }
}

/// Blobs that no artifact names, left by a crash between a push storing its bytes and
/// committing its row (a push that ends without its row removes its blob itself). Run once at
/// start, before the server takes requests: no push is in flight then, so none can be about to
/// reference a blob this deletes. Only blobs older than `store.temp_max_age` go, so a blob
/// that another server sharing the store is committing right now is left alone.
pub async fn orphans(app: &App) {
    let found = match app.store.blobs_older_than(app.cfg.store.temp_max_age).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the blobs to look for orphans");
            return;
        }
    };
    let mut removed = 0usize;
    for digest in found {
        let hex = digest.hex();
        let referenced = app
            .db
            .call(move |c| crate::db::artifacts::blob_referenced(c, &hex))
            .await;
        match referenced {
            Ok(false) => match app.store.delete(&digest).await {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(blob = %digest.hex(), error = %e, "cannot remove an orphan blob")
                }
            },
            Ok(true) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for orphan blobs");
                return;
            }
        }
    }
    if removed > 0 {
        tracing::info!(
            removed,
            "removed blobs that no artifact names (left by a crash)"
        );
    }
}

/// Sweeps every `store.sweep_interval` while this server leads, forever (every server sweeps
/// once before it serves).
pub async fn run(app: App) {
    loop {
        tokio::time::sleep(app.cfg.store.sweep_interval).await;
        if app.leader.is_leader() {
            once(&app).await;
        }
    }
}
