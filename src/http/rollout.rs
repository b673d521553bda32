//! `POST /api/v1/reports`, `GET /api/v1/rollouts[/status]`, `POST /api/v1/rollouts/{action}`,
//! `GET /api/v1/agents`, `POST /api/v1/tokens`, `DELETE /api/v1/tokens/{id}`.

use actix_web::{HttpResponse, get, post, web};
use serde::Deserialize;

use super::auth::{ADMIN, Actor, REPORTER, Reporter};
use crate::db;
use crate::model::api::{Report, RolloutAction, TokenRequest, TokenResponse};
use crate::model::{ArtifactName, ChannelName};
use crate::service::{App, Error, rollout};

#[post("/api/v1/reports")]
async fn report(
    app: web::Data<App>,
    who: Reporter,
    rep: web::Json<Report>,
) -> Result<HttpResponse, Error> {
    rep.check_fields()?;
    Ok(HttpResponse::Ok().json(rollout::report(&app, &who.0, rep.into_inner()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelQuery {
    channel: Option<ChannelName>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusQuery {
    channel: ChannelName,
    name: ArtifactName,
}

#[get("/api/v1/rollouts")]
async fn list(app: web::Data<App>, q: web::Query<ChannelQuery>) -> Result<HttpResponse, Error> {
    let channel = q.into_inner().channel.map(|c| c.to_string());
    Ok(HttpResponse::Ok().json(rollout::list(&app, channel).await?))
}

#[get("/api/v1/rollouts/status")]
async fn status(app: web::Data<App>, q: web::Query<StatusQuery>) -> Result<HttpResponse, Error> {
    Ok(HttpResponse::Ok().json(rollout::status(&app, &q.channel, &q.name).await?))
}

#[post("/api/v1/rollouts/{action}")]
async fn act(
    app: web::Data<App>,
    actor: Actor,
    action: web::Path<String>,
    req: web::Json<RolloutAction>,
) -> Result<HttpResponse, Error> {
    req.check_fields()?;
    Ok(HttpResponse::Ok().json(rollout::act(&app, &actor.0, &action, req.into_inner()).await?))
}

/// The fleet is an inventory worth keeping to those with a token (of any role).
#[get("/api/v1/agents")]
async fn agents(
    app: web::Data<App>,
    _who: Reporter,
    q: web::Query<ChannelQuery>,
) -> Result<HttpResponse, Error> {
    let channel = q.into_inner().channel.map(|c| c.to_string());
    Ok(HttpResponse::Ok().json(rollout::agents(&app, channel).await?))
}

#[post("/api/v1/tokens")]
async fn create_token(
    app: web::Data<App>,
    actor: Actor,
    req: web::Json<TokenRequest>,
) -> Result<HttpResponse, Error> {
    let req = req.into_inner();
    req.check_fields()?;
    if req.role != ADMIN && req.role != REPORTER {
        return Err(Error::invalid(
            "invalid_role",
            format!("token role {:?} is not admin or reporter", req.role),
        ));
    }
    let (token, id, hash) = crate::auth::new_token().map_err(|e| Error::Internal(e.to_string()))?;
    let (role, id2, actor_s) = (req.role.clone(), id.clone(), actor.0.clone());
    app.db
        .call(move |c| {
            let tx = c.transaction()?;
            db::tokens::insert(&tx, &id2, &hash, &role)?;
            db::audit::append(
                &tx,
                &db::audit::Entry {
                    actor: &actor_s,
                    action: "token-create",
                    subject: &format!("token:{id2}"),
                    outcome: "ok",
                    details: serde_json::json!({ "role": role, "description": req.description }),
                },
            )?;
            tx.commit()?;
            Ok(())
        })
        .await?;
    tracing::info!(token = %id, role = %req.role, "token created");
    Ok(HttpResponse::Created().json(TokenResponse {
        id,
        role: req.role,
        token,
    }))
}

/// Revokes a token at once (a stolen reporter token, a departed operator's admin token).
#[actix_web::delete("/api/v1/tokens/{id}")]
async fn revoke_token(
    app: web::Data<App>,
    actor: Actor,
    id: web::Path<String>,
) -> Result<HttpResponse, Error> {
    let id = id.into_inner();
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::invalid(
            "invalid_token_id",
            format!("{id:?} is not a token id (16 hex digits)"),
        ));
    }
    if actor.0 == format!("token:{id}") {
        return Err(Error::conflict(
            "token_in_use",
            "a token cannot revoke itself; use another admin token",
        ));
    }
    let (id2, actor_s) = (id.clone(), actor.0.clone());
    let role = app
        .db
        .call(move |c| {
            let tx = c.transaction()?;
            let role = db::tokens::delete(&tx, &id2)?;
            if let Some(role) = &role {
                db::audit::append(
                    &tx,
                    &db::audit::Entry {
                        actor: &actor_s,
                        action: "token-revoke",
                        subject: &format!("token:{id2}"),
                        outcome: "ok",
                        details: serde_json::json!({ "role": role }),
                    },
                )?;
            }
            tx.commit()?;
            Ok(role)
        })
        .await?
        .ok_or_else(|| Error::not_found("no_token", format!("no token with id {id}")))?;
    tracing::info!(token = %id, %role, "token revoked");
    Ok(HttpResponse::Ok().json(serde_json::json!({ "id": id, "role": role, "revoked": true })))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(report)
        .service(list)
        .service(status)
        .service(act)
        .service(agents)
        .service(create_token)
        .service(revoke_token);
}
