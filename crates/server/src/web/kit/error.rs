//! The one mapping from an error to a response: an [`AppError`]'s kind chooses the status code;
//! the error answers the JSON API as an [`ErrorBody`], and the browser as a page that says what
//! happened and where to go next.

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use latchkey_core::FieldErrors;
use serde::Serialize;

use super::render::{render, with_retry_after};
use crate::app::{AppError, ErrorKind};

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `link_expired`.
    pub error: &'static str,
    /// What happened and what to do, for a person.
    pub message: String,
    /// Messages per field, every broken rule at once.
    #[serde(skip_serializing_if = "FieldErrors::is_empty")]
    #[schema(value_type = Option<std::collections::HashMap<String, Vec<String>>>)]
    pub fields: FieldErrors,
}

impl AppError {
    /// The status code each kind of error answers with: the one place a service's error meets HTTP.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            ErrorKind::Malformed => StatusCode::BAD_REQUEST,
            ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::UnsupportedFormat => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Gone => StatusCode::GONE,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Busy { .. } | ErrorKind::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// An error for a request axum's own extractors refused with `status` (a body too large, not
    /// JSON, not a form): the kind that answers with that status, so the status stays axum's.
    pub fn rejected(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        let kind = match status {
            StatusCode::PAYLOAD_TOO_LARGE => ErrorKind::TooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorKind::UnsupportedFormat,
            StatusCode::UNPROCESSABLE_ENTITY => ErrorKind::Invalid,
            s if s.is_server_error() => ErrorKind::Internal,
            _ => ErrorKind::Malformed,
        };
        Self::new(kind, code, message)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = self.retry_after();
        let body = ErrorBody { error: self.code, message: self.message, fields: self.fields };
        let mut resp = (status, axum::Json(body)).into_response();
        if let Some(secs) = retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

#[derive(Template)]
#[template(path = "pages/notice.html")]
struct Notice<'a> {
    title: &'a str,
    message: &'a str,
    action_href: &'a str,
    action_label: &'a str,
}

/// A page that says one thing and offers one way on.
pub fn notice_page(status: StatusCode, title: &str, message: &str, action_href: &str, action_label: &str) -> Response {
    render(status, &Notice { title, message, action_href, action_label }, None)
}

/// A page for an error with no form to go back to: what happened and where to go next.
pub fn error_page(e: &AppError) -> Response {
    let (href, label) = match e.code {
        "link_expired" | "link_replaced" | "link_used" | "link_not_found" => ("/forgot-password", "Forgot Password"),
        c if c.starts_with("sso_") => ("/sign-in", "Sign in with your password"),
        _ => ("/sign-in", "Go to sign in"),
    };
    let (href, label) = if e.code == "link_used" && e.message.contains("account is set up") { ("/sign-in", "Go to sign in") } else { (href, label) };
    error_page_to(e, href, label)
}

/// An error page whose way on is the caller's (a link that is not a password link, say).
pub fn error_page_to(e: &AppError, href: &str, label: &str) -> Response {
    let title = match e.code {
        "link_expired" => "This link has expired",
        "link_used" => "This link was already used",
        "link_replaced" => "This link was replaced",
        "link_not_found" => "This link is not valid",
        "too_many_attempts" => "Too many attempts",
        "csrf_failed" => "Please try again",
        "sso_denied" => "You were not signed in",
        "sso_state_invalid" | "sso_expired" => "This sign-in cannot continue",
        "sso_unavailable" => "The sign-in provider is unavailable",
        "sso_refused" => "The sign-in could not be verified",
        "sso_not_offered" => "This sign-in is not offered",
        "store_unavailable" | "timeout" | "busy" => "Temporarily unavailable",
        _ => "Something is not right",
    };
    let resp = render(e.status(), &Notice { title, message: &e.message, action_href: href, action_label: label }, None);
    with_retry_after(resp, e.retry_after())
}

pub fn not_found_page() -> Response {
    notice_page(StatusCode::NOT_FOUND, "Page not found", "There is nothing at this address.", "/sign-in", "Go to sign in")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statuses the JSON API has always answered with, kind by kind.
    #[test]
    fn each_kind_answers_with_its_status() {
        let cases = [
            (AppError::bad_request("x"), 400, None),
            (AppError::field("f", "x"), 422, None),
            (AppError::unauthorized(), 401, None),
            (AppError::csrf(), 403, None),
            (AppError::not_found(), 404, None),
            (AppError::new(ErrorKind::Gone, "link_used", "x"), 410, None),
            (AppError::new(ErrorKind::Conflict, "conflict", "x"), 409, None),
            (AppError::throttled(30, "x".into()), 429, Some("30")),
            (AppError::busy(), 503, Some("2")),
            (AppError::timed_out(), 503, Some("5")),
            (AppError::from(latchkey_store::StoreError::Unavailable("down".into())), 503, Some("5")),
            (AppError::new(ErrorKind::Unavailable { retry_after: None }, "delivery_failed", "x"), 503, None),
            (AppError::internal(), 500, None),
        ];
        for (e, status, retry) in cases {
            let code = e.code;
            let resp = e.into_response();
            assert_eq!(resp.status().as_u16(), status, "{code}");
            assert_eq!(resp.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap()), retry, "{code}");
        }
    }

    #[test]
    fn a_refusal_by_axum_keeps_its_status() {
        for status in [StatusCode::BAD_REQUEST, StatusCode::PAYLOAD_TOO_LARGE, StatusCode::UNSUPPORTED_MEDIA_TYPE, StatusCode::UNPROCESSABLE_ENTITY] {
            assert_eq!(AppError::rejected(status, "x", "x").status(), status);
        }
    }
}
