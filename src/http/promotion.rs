//! `POST /api/v1/promotions`, `POST /api/v1/rollbacks`, `GET /api/v1/history`,
//! `POST /api/v1/statements`, `GET|POST /api/v1/policies/...`.

use crate::audit::AuditAction;
use crate::model::api::ErrorCode;
use actix_web::{HttpResponse, get, post, web};
use serde::Deserialize;

use crate::auth::Action;
use crate::model::api::{PolicyChange, PromoteRequest, RollbackRequest};
use crate::model::{ArtifactName, ChannelName};
use crate::service::tokens::Caller;
use crate::service::{App, Error, policy, promote, reads, statements};

#[post("/api/v1/promotions")]
async fn promote_release(
    app: web::Data<App>,
    caller: Caller,
    req: web::Json<PromoteRequest>,
) -> Result<HttpResponse, Error> {
    let req = req.into_inner();
    app.permit(
        &caller,
        Action::Promote {
            name: req.name.as_str(),
            channel: req.to.as_str(),
        },
    )
    .await?;
    req.check_fields()?;
    let subject = format!("{}@{} to {}", req.name, req.version, req.to);
    let resp = promote::promote(&app, &caller.actor, req.clone(), AuditAction::Promote).await?;
    if resp.decision.allowed || req.dry_run || resp.already_current {
        return Ok(HttpResponse::Ok().json(resp));
    }
    Ok(HttpResponse::Forbidden().json(serde_json::json!({
        "error": {
            "code": ErrorCode::PolicyRefused,
            "message": format!("promotion of {subject} refused: {}", resp.decision.failures().join("; ")),
        },
        "decision": resp.decision,
    })))
}

#[post("/api/v1/rollbacks")]
async fn rollback(
    app: web::Data<App>,
    caller: Caller,
    req: web::Json<RollbackRequest>,
) -> Result<HttpResponse, Error> {
    app.permit(
        &caller,
        Action::Rollback {
            name: req.name.as_str(),
            channel: req.channel.as_str(),
        },
    )
    .await?;
    req.check_fields()?;
    Ok(HttpResponse::Ok().json(promote::rollback(&app, &caller.actor, req.into_inner()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    name: ArtifactName,
    channel: ChannelName,
    /// Only changes after this sequence number (the last `seq` of the previous page).
    after: Option<i64>,
    /// At most this many (default and most: [`MAX_HISTORY_PAGE`]).
    limit: Option<u32>,
}

/// Most history rows one request answers; `arca history` pages with `after`.
pub const MAX_HISTORY_PAGE: u32 = 1000;

#[get("/api/v1/history")]
async fn history(app: web::Data<App>, q: web::Query<HistoryQuery>) -> Result<HttpResponse, Error> {
    app.channel_key(q.channel.as_str())?;
    let (name, channel) = (q.name.to_string(), q.channel.to_string());
    let after = q.after.unwrap_or(0);
    let limit = i64::from(
        q.limit
            .unwrap_or(MAX_HISTORY_PAGE)
            .clamp(1, MAX_HISTORY_PAGE),
    );
    let rows = reads::history_page(&app, channel, name, after, limit).await?;
    Ok(HttpResponse::Ok().json(rows))
}

#[post("/api/v1/statements")]
async fn add_statement(
    app: web::Data<App>,
    caller: Caller,
    body: web::Bytes,
) -> Result<HttpResponse, Error> {
    Ok(HttpResponse::Created().json(statements::add(&app, &caller, &body).await?))
}

#[get("/api/v1/policies/{channel}")]
async fn get_policy(
    app: web::Data<App>,
    path: web::Path<ChannelName>,
) -> Result<HttpResponse, Error> {
    let channel = path.into_inner();
    app.channel_key(channel.as_str())?;
    let trust = app.trust().await?;
    let sha = trust
        .policies
        .get(channel.as_str())
        .cloned()
        .ok_or_else(|| Error::not_found(ErrorCode::NoPolicy, format!("no policy for {channel}")))?;
    let body = policy_body(&app, sha).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/toml")
        .body(body))
}

#[get("/api/v1/policies/by-digest/{sha256}")]
async fn get_policy_by_digest(
    app: web::Data<App>,
    path: web::Path<String>,
) -> Result<HttpResponse, Error> {
    let body = policy_body(&app, path.into_inner()).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/toml")
        .insert_header(("cache-control", "public, max-age=31536000, immutable"))
        .body(body))
}

async fn policy_body(app: &App, sha: String) -> Result<String, Error> {
    reads::policy(app, sha.clone()).await?.ok_or_else(|| {
        Error::not_found(ErrorCode::NoPolicy, format!("no policy with sha256 {sha}"))
    })
}

#[post("/api/v1/policies/{channel}")]
async fn set_policy(
    app: web::Data<App>,
    caller: Caller,
    path: web::Path<ChannelName>,
    query: web::Query<crate::model::api::PolicyChangeQuery>,
    change: web::Json<PolicyChange>,
) -> Result<HttpResponse, Error> {
    app.permit(&caller, Action::Admin(AuditAction::PermitPolicyChange))
        .await?;
    let r = policy::set(
        &app,
        &caller.actor,
        path.into_inner(),
        change.into_inner(),
        query.force,
    )
    .await?;
    Ok(HttpResponse::Created().json(r))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(promote_release)
        .service(rollback)
        .service(history)
        .service(add_statement)
        .service(get_policy_by_digest)
        .service(get_policy)
        .service(set_policy);
}
