//! Removing a method, page and API, after a verification code emailed to the designated email (or
//! a code from a method that stays). Where the company requires 2FA, the last method stays.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use latchkey_core::two_factor::Method;

use super::{remove, verification_hint, CodeBody, CodeFields, CodeStepPage};
use crate::app::AppError;
use crate::web::kit::{not_found_page, ApiJson, ApiPath, Client, CsrfOnly, Current, ErrorBody, PageUser, SessionForm, SignedIn, Web, WebState};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/account/two-factor/remove/{method}", get(remove_page).post(remove_submit))
        .route("/account/two-factor/remove/{method}/send", post(remove_send))
        .route("/api/v1/me/2fa/{method}", delete(remove_method))
}

fn parse_method(method: &str) -> Result<Method, Response> {
    Method::parse(method).ok_or_else(not_found_page)
}

/// The method inside a sentence.
fn method_phrase(m: Method) -> &'static str {
    match m {
        Method::Totp => "the authenticator app",
        Method::Sms => "text message (SMS) codes",
        Method::Email => "email codes",
    }
}

async fn remove_step(web: &Web, current: &Current, method: Method) -> CodeStepPage {
    let has_other_app = method != Method::Totp && web.app.user_methods(current.user.id).await.is_ok_and(|m| m.contains(&Method::Totp));
    let mut page = CodeStepPage::new(
        web,
        current,
        "Remove a two-factor method",
        format!(
            "To remove {}, confirm it is you: we email a verification code to {}.",
            method_phrase(method),
            current.user.designated_email
        ),
    )
    .send(format!("/account/two-factor/remove/{}/send", method.as_str()), "Email me a verification code")
    .confirm(format!("/account/two-factor/remove/{}", method.as_str()), "Remove", verification_hint(has_other_app));
    if let Some(c) = page.confirm.as_mut() {
        c.danger = true;
    }
    page
}

async fn remove_page(State(web): WebState, Path(method): Path<String>, PageUser(current): PageUser) -> Response {
    match parse_method(&method) {
        Ok(m) => remove_step(&web, &current, m).await.outcome(Ok(None)),
        Err(r) => r,
    }
}

async fn remove_send(State(web): WebState, Path(method): Path<String>, Client(ctx): Client, PageUser(current): PageUser, SessionForm(_): SessionForm<CsrfOnly>) -> Response {
    let method = match parse_method(&method) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let sent = web.app.send_verification_code(&current.user, None, &ctx).await;
    remove_step(&web, &current, method).await.after_send(sent)
}

async fn remove_submit(State(web): WebState, Path(method): Path<String>, Client(ctx): Client, PageUser(current): PageUser, SessionForm(f): SessionForm<CodeFields>) -> Response {
    let method = match parse_method(&method) {
        Ok(m) => m,
        Err(r) => return r,
    };
    match web.app.remove_method(&current.user, method, &f.code, &ctx).await {
        Ok(()) => Redirect::to("/account?done=two-factor-removed").into_response(),
        Err(e) => remove_step(&web, &current, method).await.outcome(Err(e)),
    }
}

/// Removes a method after a verification code (or a code from a method that stays). Where the
/// company requires 2FA, the last method cannot be removed (409 `required_by_company`).
#[utoipa::path(delete, path = "/api/v1/me/2fa/{method}", tag = "two-factor", request_body = CodeBody, params(("method" = String, Path,)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "required_by_company", body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn remove_method(State(web): WebState, ApiPath(method): ApiPath<String>, Client(ctx): Client, SignedIn(current): SignedIn, ApiJson(b): ApiJson<CodeBody>) -> Result<StatusCode, AppError> {
    let method = Method::parse(&method).ok_or_else(AppError::not_found)?;
    remove(&web, method, &ctx, &current, &b).await
}
