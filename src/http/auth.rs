//! The bearer-token extractor: every endpoint that needs a token takes a [`Caller`] and names
//! what it does to `App::permit` (service/tokens.rs), which checks role and scope in one place.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};

use crate::service::tokens::{Caller, Reporter, authenticate};
use crate::service::{App, Error};

impl FromRequest for Caller {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Caller, Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let app = req.app_data::<web::Data<App>>().cloned();
        let header = authorization(req);
        Box::pin(async move {
            let app = app.ok_or_else(|| Error::Internal("no app state".into()))?;
            authenticate(&app, header.as_deref()).await
        })
    }
}

/// The request's `Authorization` header, if it is text.
fn authorization(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Who posts a report: the bearer token when the request has one (a bad one is refused
/// `401` as everywhere), and the agent id of the connection's verified client certificate
/// (`[tls] client_ca`). Neither: `401`, as for every endpoint that needs a token.
impl FromRequest for Reporter {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Reporter, Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let app = req.app_data::<web::Data<App>>().cloned();
        let header = authorization(req);
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
