//! The bearer-token extractor: every mutating endpoint takes an [`Actor`].

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};

use crate::auth;
use crate::db;
use crate::service::{App, Error};

/// Who made the request (`token:<id>`), with an admin token: every mutating endpoint but
/// reports takes one.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

/// Who made the request, with a token of any role: `reporter` tokens, which agents hold, may
/// post reports (for the agents and channels of their scope) and nothing else.
#[derive(Debug, Clone)]
pub struct Reporter {
    /// `token:<id>`.
    pub actor: String,
    pub token: db::tokens::TokenRow,
}

pub use crate::auth::{ADMIN, REPORTER};

impl FromRequest for Actor {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Actor, Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let fut = authenticate(req);
        Box::pin(async move {
            let (actor, token) = fut.await?;
            let role = token.role;
            if role != ADMIN {
                return Err(Error::forbidden(
                    "token_role",
                    format!("a {role} token may not do this (only post agent reports)"),
                ));
            }
            Ok(Actor(actor))
        })
    }
}

impl FromRequest for Reporter {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Reporter, Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let fut = authenticate(req);
        Box::pin(async move {
            let (actor, token) = fut.await?;
            Ok(Reporter { actor, token })
        })
    }
}

/// (actor, token) of a checked token, once the database answered.
type Authenticated = Pin<Box<dyn Future<Output = Result<(String, db::tokens::TokenRow), Error>>>>;

/// Checks the bearer token: (actor, its row).
fn authenticate(req: &HttpRequest) -> Authenticated {
    {
        let app = req.app_data::<web::Data<App>>().cloned();
        let header = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Box::pin(async move {
            let app = app.ok_or_else(|| Error::Internal("no app state".into()))?;
            let token = header
                .as_deref()
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
            match row {
                Some((hash, row)) if auth::matches(&token, &hash) => {
                    Ok((format!("token:{id}"), row))
                }
                _ => {
                    tracing::warn!(token_id = %id, "refused a request with an unknown or wrong token");
                    Err(invalid())
                }
            }
        })
    }
}
