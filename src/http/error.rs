//! The HTTP edge maps use-case errors once: a 4xx with `{"error": {"code", "message"}}` that
//! names the problem, or an opaque 500 whose cause goes to the log only.

use crate::model::api::ErrorCode;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::model::api::{ErrorBody, ErrorDetail};
use crate::service::Error;

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        match self {
            Error::Invalid { .. } => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden { .. } => StatusCode::FORBIDDEN,
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::TimedOut { .. } => StatusCode::REQUEST_TIMEOUT,
            Error::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            Error::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (code, message) = match self {
            Error::Invalid { code, message }
            | Error::Forbidden { code, message }
            | Error::NotFound { code, message }
            | Error::Conflict { code, message }
            | Error::TimedOut { code, message }
            | Error::Unavailable { code, message } => (*code, message.clone()),
            Error::InsufficientStorage(m) => (ErrorCode::InsufficientStorage, m.clone()),
            Error::RangeNotSatisfiable { .. } => (ErrorCode::RangeNotSatisfiable, self.to_string()),
            Error::Unauthorized(m) => (ErrorCode::Unauthorized, m.clone()),
            Error::TooLarge(_) => (ErrorCode::TooLarge, self.to_string()),
            Error::RateLimited { message, .. } => (ErrorCode::RateLimited, message.clone()),
            Error::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                (ErrorCode::Internal, "internal server error".to_owned())
            }
        };
        let mut resp = HttpResponse::build(self.status_code());
        if let Error::RangeNotSatisfiable { size } = self {
            resp.insert_header(("content-range", format!("bytes */{size}")));
        }
        if let Error::RateLimited { retry_after, .. } = self {
            resp.insert_header((
                actix_web::http::header::RETRY_AFTER,
                retry_after.to_string(),
            ));
        }
        resp.json(ErrorBody {
            error: ErrorDetail {
                code: code.as_str().to_owned(),
                message,
            },
        })
    }
}

/// Maps actix's own extractor errors (bad query, bad JSON, too large) to our error shape.
pub fn query_error(
    err: actix_web::error::QueryPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    Error::invalid(ErrorCode::BadRequest, err.to_string()).into()
}

pub fn json_error(
    err: actix_web::error::JsonPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    Error::invalid(ErrorCode::BadRequest, err.to_string()).into()
}

pub fn path_error(
    err: actix_web::error::PathError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    Error::invalid(ErrorCode::BadPath, err.to_string()).into()
}

/// The answer to a path that no route serves.
pub async fn no_route(req: actix_web::HttpRequest) -> HttpResponse {
    Error::not_found(
        ErrorCode::NoRoute,
        format!("no endpoint {} {}", req.method(), req.path()),
    )
    .error_response()
}

/// The stable code of an error answer that did not come from a use case (actix itself
/// answered: a body too large, a method the route does not take...).
fn code_for(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::BAD_REQUEST => ErrorCode::BadRequest,
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::NOT_FOUND => ErrorCode::NoRoute,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::REQUEST_TIMEOUT => ErrorCode::BodyTimeout,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::TooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::RANGE_NOT_SATISFIABLE => ErrorCode::RangeNotSatisfiable,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::Error,
    }
}

/// Gives every 4xx and 5xx answer the JSON error body: the use cases' errors have it already;
/// the ones actix produces itself (a body over its limit, a method a route does not take)
/// are rewritten here, keeping their status and headers. A 5xx keeps an opaque message.
pub fn json_errors<B: actix_web::body::MessageBody + 'static>(
    res: actix_web::dev::ServiceResponse<B>,
) -> actix_web::dev::ServiceResponse<actix_web::body::BoxBody> {
    use actix_web::http::header;
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res.map_into_boxed_body();
    }
    let message = match res.response().error() {
        Some(e) if status.is_client_error() => e.to_string(),
        _ => status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase(),
    };
    let mut new = HttpResponse::build(status).json(ErrorBody {
        error: ErrorDetail {
            code: code_for(status).as_str().to_owned(),
            message,
        },
    });
    for (k, v) in res.headers() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            new.headers_mut().append(k.clone(), v.clone());
        }
    }
    res.into_response(new)
}

/// The `Expect: 100-continue` check, before `100 Continue` is sent: a body announced larger
/// than the endpoint accepts is refused with 413 at once, so the client never sends it.
pub fn refuse_oversized(
    head: &actix_web::dev::RequestHead,
    max_blob: u64,
    max_json: u64,
) -> Option<HttpResponse> {
    let len: u64 = head
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let path = head.uri.path();
    let limit = if matches!(path, "/api/v1/uploads" | "/api/v1/artifacts") {
        max_blob
    } else {
        max_json
    };
    (len > limit).then(|| {
        let e = Error::TooLarge(limit);
        e.error_response()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn code(e: &Error) -> String {
        let b = actix_web::body::to_bytes(e.error_response().into_body())
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        v["error"]["code"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn server_side_failures_have_their_status_and_code() {
        let full = Error::InsufficientStorage("insufficient storage: disk full".into());
        assert_eq!(full.status_code(), StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(code(&full).await, "insufficient_storage");
        let down = Error::unavailable(
            ErrorCode::StoreUnavailable,
            "the blob store cannot be reached",
        );
        assert_eq!(down.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(code(&down).await, "store_unavailable");
    }
}
