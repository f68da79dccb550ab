//! Pages from askama templates, the headers a page answer may add (the cookie a page sets, how
//! long to wait before trying again), and the pieces several templates share.

use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

/// Renders a template with a status, and the anonymous CSRF cookie when one was just made.
pub fn render(status: StatusCode, page: &impl Template, set_cookie: Option<String>) -> Response {
    match page.render() {
        Ok(html) => with_cookie((status, Html(html)).into_response(), set_cookie),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong on our side.").into_response()
        }
    }
}

/// Adds a `Set-Cookie` (beside any the response has).
pub fn with_cookie(mut resp: Response, cookie: Option<String>) -> Response {
    if let Some(v) = cookie.and_then(|c| c.parse().ok()) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// Sets `Retry-After` when the error that the page shows has one (a throttle, a busy server).
pub fn with_retry_after(mut resp: Response, secs: Option<u64>) -> Response {
    if let Some(v) = secs.and_then(|s| s.to_string().parse().ok()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// One radio button of a choice between methods.
pub struct MethodChoice {
    pub value: &'static str,
    pub label: &'static str,
    pub checked: bool,
}
