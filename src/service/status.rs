//! The status read model behind `GET /api/v1/status` and `GET /metrics`: the expiry of every
//! channel's metadata and of every key, and the agents per running version.

use crate::model::api::ErrorCode;
use crate::tuf::metadata::TufRole;
use chrono::Utc;

use super::{App, Error};
use crate::db;
use crate::model::api::{ErrorDetail, KeyStatus, MetaStatus, Readiness, Status};
use crate::tuf::metadata::parse_time;

/// The expiry of every channel's newest metadata of each role and of every key of the
/// current trust document, with the trust version and the audit log's length.
pub async fn status(app: &App) -> Result<Status, Error> {
    let trust = app.trust().await?;
    let channels: Vec<String> = app.cfg.pipeline.iter().map(ToString::to_string).collect();
    let now = Utc::now();
    let (metadata, audit_entries) = app
        .db
        .call(move |c| {
            let mut out = Vec::new();
            for ch in &channels {
                for role in [
                    TufRole::Root,
                    TufRole::Targets,
                    TufRole::Snapshot,
                    TufRole::Timestamp,
                ] {
                    if let Some(m) = db::tuf::latest(c, ch, role)? {
                        let left = parse_time(&m.expires).map_or(0, |t| (t - now).num_seconds());
                        out.push(MetaStatus {
                            channel: ch.clone(),
                            role: role.into(),
                            version: m.version,
                            expires: m.expires,
                            expires_in: left,
                        });
                    }
                }
            }
            Ok((out, db::audit::head(c)?.0))
        })
        .await?;
    let keys = trust
        .keys
        .iter()
        .map(|(id, e)| KeyStatus {
            keyid: id.to_string(),
            roles: e.roles.iter().map(ToString::to_string).collect(),
            status: format!("{:?}", e.status).to_lowercase(),
            not_after: e.not_after.clone(),
            not_after_in: e
                .not_after
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| (t.with_timezone(&Utc) - now).num_seconds()),
        })
        .collect();
    Ok(Status {
        trust_version: trust.version,
        metadata,
        keys,
        audit_entries,
    })
}

/// (channel, name, version, agents) for every version agents last reported running.
pub async fn agent_versions(app: &App) -> Result<Vec<(String, String, String, u64)>, Error> {
    Ok(app.db.call(|c| db::rollouts::agent_versions(c)).await?)
}

/// Whether the server can take requests: the database answers (and holds a trust document)
/// and the blob store can be reached, both checked at once. Not ready names the failing checks
/// and carries the first one's error (`database_unavailable`, `store_unavailable`); the cause
/// goes to the log. Whether this server leads does not make it ready or not.
pub async fn readiness(app: &App) -> Readiness {
    let (database, store) = tokio::join!(
        app.db.call(|c| db::trust::latest_version(c)),
        app.store.check()
    );
    let mut error = None;
    let database = match database {
        Ok(Some(_)) => "ok",
        Ok(None) => {
            tracing::error!("not ready: the database holds no trust document");
            error = Some((
                ErrorCode::DatabaseUnavailable,
                "not ready: the database holds no trust document".to_owned(),
            ));
            "empty"
        }
        Err(e) => {
            tracing::error!(error = %e, "not ready: the database does not answer");
            error = Some((
                ErrorCode::DatabaseUnavailable,
                "not ready: the database does not answer".to_owned(),
            ));
            "unavailable"
        }
    };
    let store = match store {
        Ok(()) => "ok",
        Err(e) => {
            tracing::error!(error = %e, store = %app.store_label(), "not ready: the blob store does not answer");
            error.get_or_insert((
                ErrorCode::StoreUnavailable,
                format!(
                    "not ready: the blob store {} cannot be reached",
                    app.store_label()
                ),
            ));
            "unavailable"
        }
    };
    Readiness {
        ready: error.is_none(),
        database: database.to_owned(),
        store: store.to_owned(),
        leader: app.leader.is_leader(),
        engine: app.db.engine().as_str().to_owned(),
        error: error.map(|(code, message)| ErrorDetail {
            code: code.as_str().to_owned(),
            message,
        }),
    }
}
