//! The bearer-token extractor: every endpoint that needs a token takes a [`Caller`] and names
//! what it does to `App::permit` (service/tokens.rs), which checks role and scope in one place.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};

use crate::auth;
use crate::db;
use crate::service::tokens::{Caller, Reporter};
use crate::service::{App, Error};

/// How often, at most, a token's last use is written: once a minute, not once a request.
const LAST_USED_EVERY: chrono::Duration = chrono::Duration::seconds(60);

impl FromRequest for Caller {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Caller, Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let app = req.app_data::<web::Data<App>>().cloned();
        let header = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Box::pin(async move {
            let app = app.ok_or_else(|| Error::Internal("no app state".into()))?;
            authenticate(&app, header.as_deref()).await
        })
    }
}

/// Who posts a report: the bearer token when the request has one (a bad one is refused
/// `401` as everywhere), and the agent id of the connection's verified client certificate
/// (`[tls] client_ca`). Neither: `401`, as for every endpoint that needs a token.
impl FromRequest for Reporter {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Reporter, Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let app = req.app_data::<web::Data<App>>().cloned();
        let header = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let certificate = req
            .conn_data::<crate::http::tls::ClientIdentity>()
            .map(|c| c.0.clone());
        Box::pin(async move {
            let app = app.ok_or_else(|| Error::Internal("no app state".into()))?;
            let token = match (&header, &certificate) {
                // Without a token, the certificate alone speaks.
                (None, Some(_)) => None,
                _ => Some(authenticate(&app, header.as_deref()).await?),
            };
            Ok(Reporter { token, certificate })
        })
    }
}

/// Checks the bearer token: known, not revoked, not expired. Records its use at most once
/// a minute.
async fn authenticate(app: &App, header: Option<&str>) -> Result<Caller, Error> {
    let token = header
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(|| {
            Error::Unauthorized("missing bearer token (Authorization: Bearer ...)".into())
        })?
        .trim()
        .to_owned();
    let invalid = || Error::Unauthorized("invalid token".into());
    // Logged in the request's span (with its request id); never the token itself.
    let Some(id) = auth::token_id(&token).map(str::to_owned) else {
        tracing::warn!("refused a request with a malformed token");
        return Err(invalid());
    };
    let lookup_id = id.clone();
    let row = app
        .db
        .call(move |c| db::tokens::lookup(c, &lookup_id))
        .await?;
    let row = match row {
        Some((hash, row)) if auth::matches(&token, &hash) => row,
        _ => {
            tracing::warn!(token_id = %id, "refused a request with an unknown or wrong token");
            return Err(invalid());
        }
    };
    let now = chrono::Utc::now();
    let parse = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    if let Some(expires) = &row.expires_at {
        // An unreadable expiry counts as expired: the row was written by us, so it is a fault.
        if parse(expires).is_none_or(|t| t <= now) {
            tracing::warn!(token_id = %id, %expires, "refused a request with an expired token");
            return Err(Error::Unauthorized(format!(
                "token {id} expired at {expires}; create a new one (arca token create)"
            )));
        }
    }
    let stale = row
        .last_used_at
        .as_deref()
        .and_then(parse)
        .is_none_or(|t| now - t >= LAST_USED_EVERY);
    if stale {
        let touch_id = id.clone();
        // Best effort: a request is not refused because its use could not be recorded.
        if let Err(e) = app.db.call(move |c| db::tokens::touch(c, &touch_id)).await {
            tracing::warn!(token_id = %id, error = %e, "cannot record the token's last use");
        }
    }
    Ok(Caller {
        actor: format!("token:{id}"),
        token: row,
    })
}
