//! The page behind the link emailed to an additional email. Opening it only shows what it
//! confirms — mail scanners and link previews open links too — and the Confirm button (a form
//! with a CSRF token) uses it.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::pages::{check_csrf, error_page_to, human_time, notice_page, render, CsrfOnly, PageForm};
use super::session::{Client, CsrfBinding};
use super::Web;
use crate::app::rfc3339;
use crate::error::ApiError;

type WebState = State<Arc<Web>>;

pub fn routes() -> Router<Arc<Web>> {
    Router::new().route("/confirm-email/{token}", get(confirm_email_page).post(confirm_email_submit))
}

#[derive(Template)]
#[template(path = "pages/confirm_email.html")]
struct ConfirmEmailPage {
    csrf: String,
    token: String,
    email: String,
    login_name: String,
    company_name: String,
    expires_at: String,
    expires_human: String,
}

/// A confirmation link that does not work is not about a password: the way on is signing in.
fn link_error_page(e: &ApiError) -> Response {
    error_page_to(e, "/sign-in", "Go to sign in")
}

async fn confirm_email_page(State(web): WebState, headers: HeaderMap, Path(token): Path<String>) -> Response {
    let v = match web.app.open_email_confirmation(&token).await {
        Ok(v) => v,
        Err(e) => return link_error_page(&e),
    };
    let binding = CsrfBinding::of(&web, &headers, None);
    let page = ConfirmEmailPage {
        csrf: binding.token(&web),
        token,
        email: v.email,
        login_name: v.login_name,
        company_name: v.company_name,
        expires_at: rfc3339(v.expires_at),
        expires_human: human_time(v.expires_at),
    };
    render(StatusCode::OK, &page, binding.set_cookie)
}

async fn confirm_email_submit(
    State(web): WebState,
    headers: HeaderMap,
    Path(token): Path<String>,
    Client(ctx): Client,
    PageForm(f): PageForm<CsrfOnly>,
) -> Response {
    if let Err(r) = check_csrf(&web, &headers, None, &f.csrf_token) {
        return r;
    }
    match web.app.confirm_email(&token, &ctx).await {
        Ok(v) => {
            let message = format!("{} is confirmed for the account {}.", v.email, v.login_name);
            notice_page(StatusCode::OK, "Email confirmed", &message, "/sign-in", "Go to sign in")
        }
        Err(e) => link_error_page(&e),
    }
}
