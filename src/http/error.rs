//! The HTTP edge maps use-case errors once: a 4xx with `{"error": {"code", "message"}}` that
//! names the problem, or an opaque 500 whose cause goes to the log only.

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
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (code, message) = match self {
            Error::Invalid { code, message }
            | Error::Forbidden { code, message }
            | Error::NotFound { code, message }
            | Error::Conflict { code, message }
            | Error::Unavailable { code, message } => (*code, message.clone()),
            Error::Unauthorized(m) => ("unauthorized", m.clone()),
            Error::TooLarge(_) => ("too_large", self.to_string()),
            Error::RateLimited { message, .. } => ("rate_limited", message.clone()),
            Error::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                ("internal", "internal server error".to_owned())
            }
        };
        let mut answer = HttpResponse::build(self.status_code());
        if let Error::RateLimited { retry_after, .. } = self {
            answer.insert_header((
                actix_web::http::header::RETRY_AFTER,
                retry_after.to_string(),
            ));
        }
        answer.json(ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
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
    Error::invalid("bad_request", err.to_string()).into()
}

pub fn json_error(
    err: actix_web::error::JsonPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    Error::invalid("bad_request", err.to_string()).into()
}
