//! `GET /api/v1/audit`, `GET /api/v1/audit/checkpoints`, `POST /api/v1/audit/checkpoints`.

use actix_web::{HttpResponse, get, post, web};
use serde::Deserialize;

use crate::audit::AuditAction;
use crate::auth::Action;
use crate::service::tokens::Caller;
use crate::service::{App, Error, audit};

/// Most entries per page.
const MAX_PAGE: i64 = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    #[serde(default)]
    after: i64,
    #[serde(default = "default_limit")]
    limit: i64,
}

fn default_limit() -> i64 {
    1000
}

/// The log, a page at a time (the audit log names tokens and subjects: a token is required).
#[get("/api/v1/audit")]
async fn entries(
    app: web::Data<App>,
    caller: Caller,
    q: web::Query<Page>,
) -> Result<HttpResponse, Error> {
    app.permit(&caller, Action::Read(AuditAction::ReadAudit))
        .await?;
    let (after, limit) = (q.after.max(0), q.limit.clamp(1, MAX_PAGE));
    let rows = audit::entries(&app, after, limit).await?;
    Ok(HttpResponse::Ok().json(rows))
}

#[get("/api/v1/audit/checkpoints")]
async fn checkpoints(app: web::Data<App>, caller: Caller) -> Result<HttpResponse, Error> {
    app.permit(&caller, Action::Read(AuditAction::ReadAuditCheckpoints))
        .await?;
    Ok(HttpResponse::Ok().json(audit::checkpoints(&app).await?))
}

#[post("/api/v1/audit/checkpoints")]
async fn sign_checkpoint(app: web::Data<App>, caller: Caller) -> Result<HttpResponse, Error> {
    app.permit(&caller, Action::Admin(AuditAction::AuditCheckpoint))
        .await?;
    Ok(HttpResponse::Created().json(audit::checkpoint(&app).await?))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(entries)
        .service(checkpoints)
        .service(sign_checkpoint);
}
