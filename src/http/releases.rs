//! Reads for people and dashboards: `GET /api/v1/channels` (what is current where) and
//! `GET /api/v1/release` (one release everywhere). Public, like the TUF metadata they summarise.

use actix_web::{HttpResponse, get, web};
use serde::Deserialize;

use crate::model::{ArtifactName, Version};
use crate::service::{App, Error, board};

#[get("/api/v1/channels")]
async fn channels(app: web::Data<App>) -> Result<HttpResponse, Error> {
    Ok(HttpResponse::Ok().json(board::channels(&app).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseQuery {
    name: ArtifactName,
    version: Version,
}

#[get("/api/v1/release")]
async fn release(app: web::Data<App>, q: web::Query<ReleaseQuery>) -> Result<HttpResponse, Error> {
    let q = q.into_inner();
    Ok(HttpResponse::Ok().json(board::release(&app, q.name, q.version).await?))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(channels).service(release);
}
