//! `POST /api/v1/reports`, `GET /api/v1/rollouts[/status]`, `POST /api/v1/rollouts/{action}`,
//! `GET /api/v1/agents`, `DELETE /api/v1/agents/{agent}`.

use crate::model::api::ErrorCode;
use actix_web::{HttpResponse, get, post, web};
use serde::Deserialize;

use crate::audit::AuditAction;
use crate::auth::Action;
use crate::model::api::{AgentId, Report, RolloutAction};
use crate::model::{ArtifactName, ChannelName};
use crate::service::tokens::Caller;
use crate::service::{App, Error, rollout, tokens};

/// Largest report body: a report is a few short fields and a message of at most 2 KiB
/// (even written entirely as `\u` escapes, 12 KiB).
const MAX_REPORT_BODY: usize = 16 << 10;

/// `POST /api/v1/reports`. The token (or the client certificate's agent id) is checked
/// before the body is read.
async fn report(
    app: web::Data<App>,
    who: tokens::Reporter,
    rep: web::Json<Report>,
) -> Result<HttpResponse, Error> {
    Ok(HttpResponse::Ok().json(rollout::report(&app, &who, rep.into_inner()).await?))
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
    caller: Caller,
    action: web::Path<String>,
    req: web::Json<RolloutAction>,
) -> Result<HttpResponse, Error> {
    app.permit(
        &caller,
        Action::Rollout {
            verb: action.parse().ok(),
            name: req.name.as_str(),
            channel: req.channel.as_str(),
        },
    )
    .await?;
    req.check_fields()?;
    Ok(
        HttpResponse::Ok()
            .json(rollout::act(&app, &caller.actor, &action, req.into_inner()).await?),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentsQuery {
    channel: Option<ChannelName>,
    /// At most this many agents (default and most: 1000).
    limit: Option<u32>,
    /// Skip this many (ordered by channel, name, agent).
    offset: Option<u64>,
}

/// The fleet is an inventory worth keeping to those with a token (admin, viewer, reporter).
#[get("/api/v1/agents")]
async fn agents(
    app: web::Data<App>,
    who: Caller,
    q: web::Query<AgentsQuery>,
) -> Result<HttpResponse, Error> {
    app.permit(&who, Action::ListAgents).await?;
    let q = q.into_inner();
    let channel = q.channel.map(|c| c.to_string());
    let limit = q.limit.unwrap_or(rollout::MAX_AGENTS_PAGE);
    Ok(
        HttpResponse::Ok()
            .json(rollout::agents(&app, channel, limit, q.offset.unwrap_or(0)).await?),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForgetQuery {
    channel: ChannelName,
    name: Option<ArtifactName>,
}

/// Forgets a decommissioned agent (admin).
#[actix_web::delete("/api/v1/agents/{agent}")]
async fn forget_agent(
    app: web::Data<App>,
    caller: Caller,
    agent: web::Path<String>,
    q: web::Query<ForgetQuery>,
) -> Result<HttpResponse, Error> {
    app.permit(&caller, Action::Admin(AuditAction::AgentForget))
        .await?;
    let agent: AgentId = agent
        .into_inner()
        .parse()
        .map_err(|e: String| Error::invalid(ErrorCode::InvalidAgent, e))?;
    let q = q.into_inner();
    let channel = q.channel.clone();
    let names = rollout::forget(&app, &caller.actor, agent.clone(), q.channel, q.name).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "agent": agent.to_string(), "channel": channel.to_string(), "names": names, "forgotten": true,
    })))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v1/reports")
            .app_data(
                web::JsonConfig::default()
                    .limit(MAX_REPORT_BODY)
                    .error_handler(super::error::json_error),
            )
            .route(web::post().to(report)),
    )
    .service(list)
    .service(status)
    .service(act)
    .service(agents)
    .service(forget_agent);
}
