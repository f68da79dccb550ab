//! Confirming an additional email, page and API: the link emailed to an address an office manager
//! added; once it is used, the address can sign in by SSO.
//!
//! Opening the link only shows what it confirms (mail scanners and link previews open links too);
//! the Confirm button, a form with a CSRF token, uses it.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::{rfc3339, AppError, EmailConfirmationView};
use crate::web::kit::{error_page_to, human_time, notice_page, render, AnonymousForm, ApiPath, Client, CsrfBinding, CsrfOnly, ErrorBody, Web, WebState};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/confirm-email/{token}", get(confirm_email_page).post(confirm_email_submit))
        .route("/api/v1/email-confirmation/{token}", get(email_confirmation_open).post(email_confirmation_confirm))
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
fn link_error_page(e: &AppError) -> Response {
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

async fn confirm_email_submit(State(web): WebState, Path(token): Path<String>, Client(ctx): Client, AnonymousForm(_): AnonymousForm<CsrfOnly>) -> Response {
    match web.app.confirm_email(&token, &ctx).await {
        Ok(v) => {
            let message = format!("{} is confirmed for the account {}.", v.email, v.login_name);
            notice_page(StatusCode::OK, "Email confirmed", &message, "/sign-in", "Go to sign in")
        }
        Err(e) => link_error_page(&e),
    }
}

/// What a confirmation link confirms.
#[derive(Serialize, ToSchema)]
pub struct EmailConfirmationInfo {
    email: String,
    login_name: String,
    company: String,
    /// RFC 3339.
    expires_at: String,
    verified: bool,
}

fn confirmation_info(v: EmailConfirmationView, verified: bool) -> EmailConfirmationInfo {
    EmailConfirmationInfo { email: v.email, login_name: v.login_name, company: v.company_name, expires_at: rfc3339(v.expires_at), verified }
}

/// Reads a confirmation link without using it.
#[utoipa::path(get, path = "/api/v1/email-confirmation/{token}", tag = "activation", params(("token" = String, Path,)),
    responses((status = 200, body = EmailConfirmationInfo), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn email_confirmation_open(State(web): WebState, ApiPath(token): ApiPath<String>) -> Result<Json<EmailConfirmationInfo>, AppError> {
    Ok(Json(confirmation_info(web.app.open_email_confirmation(&token).await?, false)))
}

/// Confirms the additional email the link was sent to (once); from then on it can sign in by SSO.
#[utoipa::path(post, path = "/api/v1/email-confirmation/{token}", tag = "activation", params(("token" = String, Path,)),
    responses((status = 200, body = EmailConfirmationInfo), (status = 404, body = ErrorBody),
        (status = 410, description = "link_used, link_expired, or link_replaced (the email was removed)", body = ErrorBody)))]
pub async fn email_confirmation_confirm(State(web): WebState, ApiPath(token): ApiPath<String>, Client(ctx): Client) -> Result<Json<EmailConfirmationInfo>, AppError> {
    Ok(Json(confirmation_info(web.app.confirm_email(&token, &ctx).await?, true)))
}
