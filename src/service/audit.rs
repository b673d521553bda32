//! Audit checkpoints: the server signs (size, head, time) with its audit key, on demand and
//! whenever the log grew since the last one (from the background task).

use super::{App, Error};
use crate::audit::{Checkpoint, Entry};
use crate::db;

/// Signs a checkpoint of the log as it is now (a no-op returning the last one if nothing was
/// appended since).
pub async fn checkpoint(app: &App) -> Result<Checkpoint, Error> {
    let key = app.audit_key.clone();
    let cp = app
        .db
        .call(move |c| {
            let tx = c.transaction()?;
            db::locks::audit_head(&tx)?;
            let (size, head) = db::audit::head(&tx)?;
            let cp = Checkpoint::sign(size, &head, &db::now_str(), &key);
            db::audit::insert_checkpoint(&tx, &cp)?;
            tx.commit()?;
            Ok(db::audit::checkpoints(c)?
                .into_iter()
                .rfind(|k| k.size == size)
                .unwrap_or(cp))
        })
        .await?;
    Ok(cp)
}

/// Signs a checkpoint if the log grew since the last one.
pub async fn checkpoint_if_grown(app: &App) -> Result<Option<Checkpoint>, Error> {
    let grown = app
        .db
        .call(|c| Ok(db::audit::head(c)?.0 > db::audit::last_checkpoint_size(c)?))
        .await?;
    if grown {
        checkpoint(app).await.map(Some)
    } else {
        Ok(None)
    }
}

/// Up to `limit` entries of the log after sequence number `after`, in order.
pub async fn entries(app: &App, after: i64, limit: i64) -> Result<Vec<Entry>, Error> {
    Ok(app
        .db
        .call(move |c| db::audit::entries(c, after, limit))
        .await?)
}

/// Every signed checkpoint, smallest first.
pub async fn checkpoints(app: &App) -> Result<Vec<Checkpoint>, Error> {
    Ok(app.db.call(|c| db::audit::checkpoints(c)).await?)
}
