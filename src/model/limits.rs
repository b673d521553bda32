//! Caps on the free-text fields of requests, and the media-type check. Everything here ends up
//! in the database and in answers that anyone may fetch (`/api/v1/history` needs no token),
//! so a field's cap bounds what one request can make every later reader download.

use super::api::{PromoteRequest, PushQuery, Report, RollbackRequest, RolloutAction, TokenRequest};
use crate::model::api::ErrorCode;

/// Longest reason (promotion, rollback, rollout action), in bytes: a change ticket and a few
/// sentences. The history and the audit log repeat it for every reader.
pub const MAX_REASON: usize = 1024;
/// Longest token label, in bytes: a name and a purpose ("ci runner, team X").
pub const MAX_TOKEN_LABEL: usize = 256;
/// Longest agent report message, in bytes: the last lines of a failed health check.
pub const MAX_REPORT_MESSAGE: usize = 2048;
/// Longest media type, in bytes: RFC 6838 caps type and subtype at 127 characters each.
pub const MAX_MEDIA_TYPE: usize = 255;

/// A field that failed its check: the code names the field (`bad_reason`, ...).
#[derive(Debug, PartialEq)]
pub struct FieldError {
    pub code: ErrorCode,
    pub message: String,
}

/// Free text: at most `max` bytes, no control characters but newline and tab (a reason is
/// printed to terminals: no escape sequences).
pub fn check_text(
    field: &str,
    code: ErrorCode,
    value: Option<&str>,
    max: usize,
) -> Result<(), FieldError> {
    let Some(v) = value else { return Ok(()) };
    let message = if v.len() > max {
        format!(
            "{field} is {} bytes long; at most {max} are accepted",
            v.len()
        )
    } else if v.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        format!("{field} contains a control character")
    } else {
        return Ok(());
    };
    Err(FieldError { code, message })
}

/// A media type as RFC 6838 spells it: `type/subtype`, each of restricted-name characters,
/// then optional `; name=value` parameters of token characters.
pub fn check_media_type(value: Option<&str>) -> Result<(), FieldError> {
    let Some(v) = value else { return Ok(()) };
    let restricted = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let mut parts = v.split(';');
    let essence = parts.next().unwrap_or_default();
    let ok = v.len() <= MAX_MEDIA_TYPE
        && essence
            .split_once('/')
            .is_some_and(|(t, s)| restricted(t) && restricted(s))
        && parts.all(|p| {
            p.trim_start_matches(' ')
                .split_once('=')
                .is_some_and(|(n, val)| token(n) && token(val))
        });
    if ok {
        Ok(())
    } else {
        Err(FieldError {
            code: ErrorCode::BadMediaType,
            message: format!(
                "media_type {:?} is not a media type (type/subtype, at most {MAX_MEDIA_TYPE} bytes)",
                v.chars().take(80).collect::<String>()
            ),
        })
    }
}

fn reason(value: &Option<String>) -> Result<(), FieldError> {
    check_text("reason", ErrorCode::BadReason, value.as_deref(), MAX_REASON)
}

impl PromoteRequest {
    pub fn check_fields(&self) -> Result<(), FieldError> {
        reason(&self.reason)
    }
}

impl RollbackRequest {
    pub fn check_fields(&self) -> Result<(), FieldError> {
        reason(&self.reason)
    }
}

impl RolloutAction {
    pub fn check_fields(&self) -> Result<(), FieldError> {
        reason(&self.reason)
    }
}

impl TokenRequest {
    pub fn check_fields(&self) -> Result<(), FieldError> {
        check_text(
            "label",
            ErrorCode::InvalidLabel,
            self.label.as_deref(),
            MAX_TOKEN_LABEL,
        )
    }
}

impl Report {
    pub fn check_fields(&self) -> Result<(), FieldError> {
        check_text(
            "message",
            ErrorCode::BadMessage,
            Some(&self.message),
            MAX_REPORT_MESSAGE,
        )
    }
}

impl PushQuery {
    pub fn check_fields(&self) -> Result<(), FieldError> {
        check_media_type(self.media_type.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        for ok in [
            "application/octet-stream",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "text/plain; charset=utf-8",
        ] {
            assert_eq!(check_media_type(Some(ok)), Ok(()), "{ok}");
        }
        for bad in [
            "text",
            "/plain",
            "text/",
            "text/pl\u{1b}[31main",
            "text/plain\r\nx-injected: 1",
            "text/plain; charset",
            &format!("a/{}", "b".repeat(200)),
        ] {
            assert_eq!(
                check_media_type(Some(bad)).unwrap_err().code,
                ErrorCode::BadMediaType
            );
        }
    }

    #[test]
    fn free_text() {
        assert!(
            check_text(
                "reason",
                ErrorCode::BadReason,
                Some("CHG-1\nline two\t."),
                64
            )
            .is_ok()
        );
        let long = "x".repeat(65);
        let e = check_text("reason", ErrorCode::BadReason, Some(&long), 64).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadReason);
        assert!(e.message.contains("65 bytes"), "{}", e.message);
        assert!(check_text("reason", ErrorCode::BadReason, Some("a\u{1b}[2J"), 64).is_err());
    }
}
