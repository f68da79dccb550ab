//! The one mapping from an error to a response: `ApiError` answers the JSON API as an
//! [`ErrorBody`], and the browser as a page that says what happened and where to go next.

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use latchkey_core::FieldErrors;
use serde::Serialize;

use super::render::{render, with_retry_after};
use crate::error::ApiError;

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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.code, message: self.message, fields: self.fields };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
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
pub fn error_page(e: &ApiError) -> Response {
    let (href, label) = match e.code {
        "link_expired" | "link_replaced" | "link_used" | "link_not_found" => ("/forgot-password", "Forgot Password"),
        c if c.starts_with("sso_") => ("/sign-in", "Sign in with your password"),
        _ => ("/sign-in", "Go to sign in"),
    };
    let (href, label) = if e.code == "link_used" && e.message.contains("account is set up") { ("/sign-in", "Go to sign in") } else { (href, label) };
    error_page_to(e, href, label)
}

/// An error page whose way on is the caller's (a link that is not a password link, say).
pub fn error_page_to(e: &ApiError, href: &str, label: &str) -> Response {
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
    let resp = render(e.status, &Notice { title, message: &e.message, action_href: href, action_label: label }, None);
    with_retry_after(resp, e.retry_after)
}

pub fn not_found_page() -> Response {
    notice_page(StatusCode::NOT_FOUND, "Page not found", "There is nothing at this address.", "/sign-in", "Go to sign in")
}
