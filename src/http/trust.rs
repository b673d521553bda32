//! `GET /api/v1/trust`, `GET /api/v1/trust/{version}`, `POST /api/v1/trust`.

use crate::audit::AuditAction;
use crate::model::api::ErrorCode;
use actix_web::{HttpResponse, get, post, web};

use crate::auth::Action;
use crate::model::api::TrustChangeResponse;
use crate::service::tokens::Caller;
use crate::service::{App, Error, reads, trust};

#[get("/api/v1/trust")]
async fn current(app: web::Data<App>) -> Result<HttpResponse, Error> {
    let (_, body) = reads::trust_document(&app)
        .await?
        .ok_or_else(|| Error::Internal("no trust document".into()))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

#[get("/api/v1/trust/{version}")]
async fn by_version(app: web::Data<App>, path: web::Path<String>) -> Result<HttpResponse, Error> {
    let raw = path.into_inner();
    let v: u64 = raw.trim_end_matches(".json").parse().map_err(|_| {
        Error::invalid(
            ErrorCode::BadVersion,
            format!("{raw:?} is not a version number"),
        )
    })?;
    let body = reads::trust_version(&app, v).await?;
    let body = body.ok_or_else(|| {
        Error::not_found(
            ErrorCode::NoTrustVersion,
            format!("no trust document version {v}"),
        )
    })?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("cache-control", "public, max-age=31536000, immutable"))
        .body(body))
}

#[post("/api/v1/trust")]
async fn change(
    app: web::Data<App>,
    caller: Caller,
    body: web::Bytes,
) -> Result<HttpResponse, Error> {
    app.permit(&caller, Action::Admin(AuditAction::PermitTrustChange))
        .await?;
    let version = trust::apply(&app, &caller.actor, &body).await?;
    Ok(HttpResponse::Created().json(TrustChangeResponse { version }))
}

#[post("/api/v1/trust/rotation")]
async fn rotate_root(
    app: web::Data<App>,
    caller: Caller,
    body: web::Json<crate::model::api::RootRotation>,
) -> Result<HttpResponse, Error> {
    app.permit(&caller, Action::Admin(AuditAction::PermitTrustRotateRoot))
        .await?;
    let r = body.into_inner();
    let version = trust::apply_with(
        &app,
        &caller.actor,
        &r.trust.to_bytes(),
        AuditAction::TrustRotateRoot,
        "root keys",
        trust::Extras {
            roots: r.roots,
            ..Default::default()
        },
    )
    .await?
    .version;
    Ok(HttpResponse::Created().json(TrustChangeResponse { version }))
}

/// The releases current in some channel that a key built (listed when it is revoked).
#[get("/api/v1/keys/{keyid}/releases")]
async fn built_by(
    app: web::Data<App>,
    path: web::Path<arca_keys::KeyId>,
) -> Result<HttpResponse, Error> {
    let id = path.into_inner().to_string();
    Ok(HttpResponse::Ok().json(reads::built_by(&app, id).await?))
}

/// Step one of an online-key rotation: a pending key for the channel.
#[post("/api/v1/channels/{channel}/online-key")]
async fn propose_online(
    app: web::Data<App>,
    caller: Caller,
    path: web::Path<crate::model::ChannelName>,
) -> Result<HttpResponse, Error> {
    app.permit(&caller, Action::Admin(AuditAction::OnlineKeyPropose))
        .await?;
    let key = crate::service::online::propose(&app, &caller.actor, &path.into_inner()).await?;
    Ok(HttpResponse::Created().json(key))
}

/// Step two: the channel's next root, root-signed, naming the pending key.
#[post("/api/v1/channels/{channel}/root")]
async fn install_root(
    app: web::Data<App>,
    caller: Caller,
    path: web::Path<crate::model::ChannelName>,
    env: web::Json<crate::tuf::metadata::Envelope>,
) -> Result<HttpResponse, Error> {
    app.permit(&caller, Action::Admin(AuditAction::ChannelRoot))
        .await?;
    let version =
        crate::service::online::install(&app, &caller.actor, &path.into_inner(), env.into_inner())
            .await?;
    Ok(HttpResponse::Created().json(serde_json::json!({ "targets_version": version })))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(current)
        .service(by_version)
        .service(change)
        .service(rotate_root)
        .service(built_by)
        .service(propose_online)
        .service(install_root);
}
