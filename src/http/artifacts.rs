//! `POST /api/v1/artifacts` (push), `GET /api/v1/artifacts`, `GET /api/v1/statements/{sha256}`.

use crate::model::api::ErrorCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use base64::Engine as _;
use futures::StreamExt;
use serde::Deserialize;

use crate::auth::Action;
use crate::model::api::{PushQuery, STATEMENT_HEADER, UploadQuery};
use crate::model::{ArtifactName, Version};
use crate::service::tokens::Caller;
use crate::service::{App, Error, push, reads, upload};

/// Longest accepted statement header (base64 of the DSSE envelope).
const MAX_STATEMENT_HEADER: usize = 16 * 1024;

#[post("/api/v1/artifacts")]
async fn push_artifact(
    app: web::Data<App>,
    caller: Caller,
    req: HttpRequest,
    q: web::Query<PushQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, Error> {
    app.permit(
        &caller,
        Action::Push {
            name: q.name.as_str(),
        },
    )
    .await?;
    let header = req.headers().get(STATEMENT_HEADER).ok_or_else(|| {
        Error::invalid(
            ErrorCode::MissingStatement,
            format!("the {STATEMENT_HEADER} header (base64 DSSE build statement) is required"),
        )
    })?;
    if header.len() > MAX_STATEMENT_HEADER {
        return Err(Error::invalid(
            ErrorCode::BadStatement,
            "statement header too large",
        ));
    }
    let statement = base64::engine::general_purpose::STANDARD
        .decode(header.as_bytes())
        .map_err(|e| {
            Error::invalid(
                ErrorCode::BadStatement,
                format!("{STATEMENT_HEADER} is not base64: {e}"),
            )
        })?;

    let q = q.into_inner();
    // A push that names a staged upload has an empty body: only a body takes an upload slot.
    let _slot = match q.upload {
        None => Some(app.transfers.upload()?),
        Some(_) => None,
    };
    let (body, forward) = forward(payload, app.cfg.limits.body_idle_timeout);
    let (result, idle) =
        futures::join!(push::push(&app, &caller.actor, q, statement, body), forward);
    let resp = result.map_err(|e| idle.unwrap_or(e))?;
    Ok(if resp.created {
        HttpResponse::Created().json(resp)
    } else {
        HttpResponse::Ok().json(resp)
    })
}

/// actix's payload is bound to its worker thread; this forwards it through a bounded channel so
/// the store sees a `Send` stream, with backpressure. Run the returned future next to the
/// consumer (`join!`). A body that sends nothing for `idle` fails the stream; the future then
/// returns the error to answer (408), since the consumer only sees a failed body.
fn forward(
    mut payload: web::Payload,
    idle: std::time::Duration,
) -> (
    impl futures::Stream<Item = Result<bytes::Bytes, String>> + Send,
    impl std::future::Future<Output = Option<Error>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, String>>(8);
    let body =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let pump = async move {
        let timed_out = || Error::TimedOut {
            code: ErrorCode::BodyTimeout,
            message: format!(
                "the upload sent no bytes for {}; its bytes were discarded",
                humantime::format_duration(idle)
            ),
        };
        // The timeout applies to each chunk of the network stream, before chunks are joined:
        // a slow client that keeps sending is not idle.
        let timed = futures::stream::unfold(Some(payload.by_ref()), move |p| async move {
            let p = p?;
            match tokio::time::timeout(idle, p.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(p))),
                Ok(Some(Err(e))) => Some((Err(Some(e)), None)),
                Ok(None) => None,
                Err(_) => Some((Err(None), None)),
            }
        });
        let mut chunks = std::pin::pin!(arca_store::coalesce(timed));
        while let Some(chunk) = chunks.next().await {
            let (item, idle) = match chunk {
                Ok(c) => (Ok(c), None),
                Err(Some(e)) => (Err(e.to_string()), None),
                Err(None) => (Err("the upload went idle".to_owned()), Some(timed_out())),
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return idle;
            }
        }
        None
    };
    (body, pump)
}

#[post("/api/v1/uploads")]
async fn stage_upload(
    app: web::Data<App>,
    caller: Caller,
    q: web::Query<UploadQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, Error> {
    app.permit(
        &caller,
        Action::Push {
            name: q.name.as_str(),
        },
    )
    .await?;
    let _slot = app.transfers.upload()?;
    let (body, pump) = forward(payload, app.cfg.limits.body_idle_timeout);
    let (result, idle) = futures::join!(
        upload::stage(&app, &caller.actor, q.into_inner(), body),
        pump
    );
    Ok(HttpResponse::Created().json(result.map_err(|e| idle.unwrap_or(e))?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArtifactQuery {
    name: ArtifactName,
    version: Version,
}

#[get("/api/v1/artifacts")]
async fn get_artifact(
    app: web::Data<App>,
    q: web::Query<ArtifactQuery>,
) -> Result<HttpResponse, Error> {
    let (name, version) = (q.name.to_string(), q.version.to_string());
    let found = reads::artifact(&app, name, version).await?;
    let info = found.ok_or_else(|| {
        Error::not_found(
            ErrorCode::NoArtifact,
            format!("no artifact {}@{}", q.name, q.version),
        )
    })?;
    Ok(HttpResponse::Ok().json(info))
}

#[get("/api/v1/statements/{sha256}")]
async fn get_statement(
    app: web::Data<App>,
    path: web::Path<String>,
) -> Result<HttpResponse, Error> {
    let sha = path.into_inner();
    if sha.len() != 64 || !sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(Error::invalid(
            ErrorCode::BadDigest,
            format!("{sha:?} is not a SHA-256 hex digest"),
        ));
    }
    let body = reads::statement(&app, sha.clone()).await?;
    let body = body.ok_or_else(|| {
        Error::not_found(
            ErrorCode::NoStatement,
            format!("no statement with sha256 {sha}"),
        )
    })?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("cache-control", "public, max-age=31536000, immutable"))
        .body(body))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(push_artifact)
        .service(stage_upload)
        .service(get_artifact)
        .service(get_statement);
}
