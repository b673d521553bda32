//! `GET|POST /api/v1/tokens`, `DELETE /api/v1/tokens/{id}`: create, list and revoke API
//! tokens (admin; listing: a token that may read tokens).

use actix_web::{HttpResponse, get, post, web};

use crate::audit::AuditAction;
use crate::auth::Action;
use crate::model::api::TokenRequest;
use crate::service::tokens::Caller;
use crate::service::{App, Error, tokens};

#[post("/api/v1/tokens")]
async fn create_token(
    app: web::Data<App>,
    caller: Caller,
    req: web::Json<TokenRequest>,
) -> Result<HttpResponse, Error> {
    app.permit(&caller, Action::Admin(AuditAction::TokenCreate))
        .await?;
    Ok(HttpResponse::Created().json(tokens::create(&app, &caller.actor, req.into_inner()).await?))
}

#[get("/api/v1/tokens")]
async fn list_tokens(app: web::Data<App>, caller: Caller) -> Result<HttpResponse, Error> {
    app.permit(&caller, Action::Read(AuditAction::ReadTokens))
        .await?;
    Ok(HttpResponse::Ok().json(tokens::list(&app).await?))
}

/// Revokes a token at once (a stolen reporter token, a departed operator's admin token).
#[actix_web::delete("/api/v1/tokens/{id}")]
async fn revoke_token(
    app: web::Data<App>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, Error> {
    app.permit(&caller, Action::Admin(AuditAction::TokenRevoke))
        .await?;
    let id = id.into_inner();
    let role = tokens::revoke(&app, &caller.actor, id.clone()).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "id": id, "role": role, "revoked": true })))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(create_token)
        .service(list_tokens)
        .service(revoke_token);
}
