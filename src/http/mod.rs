//! The HTTP server (actix-web): thin handlers that parse, call a use case and answer.

mod artifacts;
mod audit;
pub mod auth;
mod error;
mod promotion;
mod releases;
mod rollout;
mod status;
pub mod tls;
mod tokens;
mod trust;
mod tuf;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use actix_web::rt::net::TcpStream;
use actix_web::{HttpResponse, get, web};
use anyhow::Context;
use tokio_util::either::Either;
use tracing_actix_web::TracingLogger;

use crate::service::App;

/// Largest JSON or trust document body accepted (statements, trust changes): far above any
/// real document, small enough that a flood cannot exhaust memory.
const MAX_JSON_BODY: usize = 4 << 20;

#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// Ready when the database answers and the blob store can be reached (the process being up
/// is `/healthz`): 200 with each check by name and whether this server leads. Not ready: 503
/// with the same checks and the JSON error naming the first failing one
/// (`database_unavailable`, `store_unavailable`); the cause goes to the log.
#[get("/readyz")]
async fn readyz(app: web::Data<App>) -> HttpResponse {
    let r = crate::service::status::readiness(&app).await;
    let status = if r.ready {
        actix_web::http::StatusCode::OK
    } else {
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE
    };
    HttpResponse::build(status).json(r)
}

/// The span of each request: method, path, request id and status. Lighter than
/// tracing-actix-web's default, which matches the route a second time and formats nine fields
/// per request: on the metadata polling path that was a third of the server's CPU
/// (docs/performance.md).
struct RequestSpan;

impl tracing_actix_web::RootSpanBuilder for RequestSpan {
    fn on_request_start(req: &actix_web::dev::ServiceRequest) -> tracing::Span {
        use actix_web::HttpMessage as _;
        let id = req
            .extensions()
            .get::<tracing_actix_web::RequestId>()
            .copied();
        tracing::info_span!(
            "request",
            method = %req.method(),
            path = %req.path(),
            request_id = %id.map(|i| i.to_string()).unwrap_or_default(),
            status = tracing::field::Empty,
        )
    }

    fn on_request_end<B: actix_web::body::MessageBody>(
        span: tracing::Span,
        outcome: &Result<actix_web::dev::ServiceResponse<B>, actix_web::Error>,
    ) {
        let status = match outcome {
            Ok(r) => r.status(),
            Err(e) => e.as_response_error().status_code(),
        };
        span.record("status", status.as_u16());
    }
}

/// Serves `app` (opened by `startup`, its background tasks started) until stopped: binds
/// `cfg.listen`, sets up TLS from `[tls]` (paths relative to the home), routes, middleware.
pub async fn serve(app: App) -> anyhow::Result<()> {
    let cfg = (*app.cfg).clone();
    let dir = app.home.clone();
    let listener = std::net::TcpListener::bind(&cfg.listen)
        .with_context(|| format!("binding {}", cfg.listen))?;
    set_write_timeout(&listener, cfg.limits.write_timeout)?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let (acceptor, resolver) = match &cfg.tls {
        Some(t) => {
            let (cert, key) = (dir.join(&t.cert), dir.join(&t.key));
            let client_ca = t.client_ca.as_ref().map(|c| dir.join(c));
            let (config, resolver) = tls::server_config(&cert, &key, client_ca.as_deref())?;
            (
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
                Some(resolver),
            )
        }
        None => (None, None),
    };
    // Installed before the start-up line, so that a SIGHUP from then on never kills the server
    // (its default action): it reloads the certificate at once, or is logged without TLS.
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    actix_web::rt::spawn(async move {
        while hangups.recv().await.is_some() {
            match &resolver {
                Some(r) => {
                    tracing::info!("SIGHUP: reloading the TLS certificate");
                    r.reload();
                }
                None => tracing::info!("SIGHUP ignored: no TLS certificate to reload"),
            }
        }
    });
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    // Tests and scripts read this line to learn the port.
    println!("arca listening on {scheme}://{addr}");
    std::io::stdout().flush().ok();

    let counters = app.counters.clone();
    let data = web::Data::new(app);
    let (max_blob, max_json) = (cfg.store.max_blob_size, MAX_JSON_BODY as u64);
    let server = actix_server::Server::build()
        .listen("arca", listener, move || {
            use actix_service::ServiceFactoryExt as _;
            let app = actix_web::App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(MAX_JSON_BODY))
                .app_data(web::QueryConfig::default().error_handler(error::query_error))
                .app_data(web::PathConfig::default().error_handler(error::path_error))
                .app_data(
                    web::JsonConfig::default()
                        .limit(MAX_JSON_BODY)
                        .error_handler(error::json_error),
                )
                // Innermost, before routing: HEAD is served wherever GET is (actix sends the
                // headers, Content-Length included, and no body).
                .wrap_fn(|mut req, srv| {
                    if req.method() == actix_web::http::Method::HEAD {
                        req.head_mut().method = actix_web::http::Method::GET;
                    }
                    actix_web::dev::Service::call(srv, req)
                })
                .wrap_fn(|req, srv| {
                    let fut = actix_web::dev::Service::call(srv, req);
                    async move { Ok(error::json_errors(fut.await?)) }
                })
                .wrap_fn({
                    let counters = counters.clone();
                    move |req, srv| {
                        let counters = counters.clone();
                        let fut = actix_web::dev::Service::call(srv, req);
                        async move {
                            let res = fut.await?;
                            counters.response(res.status().as_u16());
                            Ok(res)
                        }
                    }
                })
                // actix-http calls the expect service on HTTP/1.1 only (it sends no `100
                // Continue` over HTTP/2), and HTTP/2 clients send the body right after the
                // head: every HTTP/2 request gets the check the expect service makes, so an
                // announced oversized body is refused from the head alone, unread (the stream
                // is then reset, RST_STREAM NO_ERROR, so the client stops sending).
                .wrap_fn(move |req, srv| {
                    let refusal = (req.version() == actix_web::http::Version::HTTP_2)
                        .then(|| error::refuse_oversized(req.head(), max_blob, max_json))
                        .flatten();
                    match refusal {
                        Some(r) => futures::future::Either::Left(std::future::ready(Ok(
                            req.into_response(r)
                        ))),
                        None => {
                            futures::future::Either::Right(actix_web::dev::Service::call(srv, req))
                        }
                    }
                })
                .wrap(TracingLogger::<RequestSpan>::new())
                // The polled metadata first: routes are matched in order.
                .configure(tuf::routes)
                .service(healthz)
                .service(readyz)
                .configure(artifacts::routes)
                .configure(trust::routes)
                .configure(promotion::routes)
                .configure(releases::routes)
                .configure(rollout::routes)
                .configure(tokens::routes)
                .configure(audit::routes)
                .configure(status::routes)
                .default_service(web::to(error::no_route));
            let app = actix_service::IntoServiceFactory::into_factory(app)
                .map_err(|e: actix_web::Error| e.error_response());
            let expect = actix_service::fn_service(move |req: actix_http::Request| async move {
                match error::refuse_oversized(req.head(), max_blob, max_json) {
                    Some(refusal) => Err(refusal),
                    None => Ok(req),
                }
            });
            let http = actix_http::HttpService::build()
                // As actix-web's HttpServer does: a request head must arrive within 5 s, idle
                // keep-alive connections close after 5 s, and a connection is kept 1 s after the
                // last response before it is closed, so that a client still sending a body the
                // server refused early reads the refusal instead of a broken pipe.
                .keep_alive(Duration::from_secs(5))
                .client_request_timeout(Duration::from_secs(5))
                .client_disconnect_timeout(Duration::from_secs(1))
                .expect(expect)
                // The agent id of a verified client certificate, for the handlers
                // (`req.conn_data::<ClientIdentity>()`): rustls verified the chain against
                // `[tls] client_ca` during the handshake, or the handshake failed.
                .on_connect_ext(|io: &Either<TlsStream, TcpStream>, ext| {
                    if let Either::Left(tls) = io
                        && let Some(leaf) =
                            tls.get_ref().1.peer_certificates().and_then(|c| c.first())
                    {
                        match tls::client_identity(leaf) {
                            Some(id) => {
                                ext.insert(tls::ClientIdentity(id));
                            }
                            None => tracing::warn!(
                                "a verified client certificate names no DNS name or common name: \
                                 it identifies no agent"
                            ),
                        }
                    }
                })
                .finish(actix_service::map_config(app, |_| {
                    actix_web::dev::AppConfig::default()
                }));
            let acceptor = acceptor.clone();
            // Each accepted connection, TLS or not, then HTTP/2 when the TLS handshake chose
            // it by ALPN, else HTTP/1.1 (plain HTTP is HTTP/1.1 only: no h2c). The TLS
            // handshake gets as long as a request head (5 s).
            actix_service::fn_service(move |io: TcpStream| {
                let acceptor = acceptor.clone();
                async move {
                    let peer = io.peer_addr().ok();
                    // As actix-http's `.tcp()` does: small answers (a 503, a 304) go out at once.
                    let _ = io.set_nodelay(true);
                    let Some(acceptor) = acceptor else {
                        return Ok((Either::Right(io), actix_http::Protocol::Http1, peer));
                    };
                    let tls = tokio::time::timeout(Duration::from_secs(5), acceptor.accept(io))
                        .await
                        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))
                        .and_then(|r| r)
                        .map_err(actix_http::error::DispatchError::Io)?;
                    let protocol = if tls.get_ref().1.alpn_protocol() == Some(tls::ALPN_H2) {
                        actix_http::Protocol::Http2
                    } else {
                        actix_http::Protocol::Http1
                    };
                    Ok::<_, actix_http::error::DispatchError>((Either::Left(tls), protocol, peer))
                }
            })
            .and_then(http)
        })
        .with_context(|| format!("serving on {addr}"))?
        .run();
    server.await.context("serving")
}

/// An accepted TLS connection.
type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// Sets `TCP_USER_TIMEOUT` on the listening socket, which every accepted connection inherits:
/// the kernel closes a connection whose peer has acknowledged none of the bytes sent to it
/// for `timeout` (a client that stopped reading a download), and the server drops what it
/// held for it. actix has no write timeout of its own.
fn set_write_timeout(listener: &std::net::TcpListener, timeout: Duration) -> anyhow::Result<()> {
    let ms = u32::try_from(timeout.as_millis()).context("limits.write_timeout is too long")?;
    nix::sys::socket::setsockopt(listener, nix::sys::socket::sockopt::TcpUserTimeout, &ms)
        .context("setting TCP_USER_TIMEOUT on the listening socket")
}
