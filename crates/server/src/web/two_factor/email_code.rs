//! Email codes, page and API: verifying the designated email first (a code sent to it comes back),
//! then codes sent to it turned on as a method; and its removal.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey_core::two_factor::Method;
use serde::Serialize;
use utoipa::ToSchema;

use super::{enrolled, enrolled_json, remove, CodeBody, CodeFields, CodeStepPage, Enrolled};
use crate::app::AppError;
use crate::web::kit::{accepted, sent_to, ApiJson, Client, CodeSent, CsrfOnly, Current, Enrolling, EnrollingForm, ErrorBody, PageEnrolling, SignedIn, Web, WebState};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/account/email-verification", get(email_verification_page).post(email_verification_send))
        .route("/account/email-verification/confirm", post(email_verification_submit))
        .route("/account/two-factor/email", get(email_page).post(email_send))
        .route("/account/two-factor/email/confirm", post(email_confirm_submit))
        .route("/api/v1/me/email-verification", post(email_verification_start))
        .route("/api/v1/me/email-verification/confirm", post(email_verification_confirm))
        .route("/api/v1/me/2fa/email", post(email_start).delete(remove_email))
        .route("/api/v1/me/2fa/email/confirm", post(email_confirm))
}

// ---------------------------------------------------------------- the designated email

fn email_verification_step(web: &Web, current: &Current) -> CodeStepPage {
    CodeStepPage::new(web, current, "Verify your email", format!("We send a code to {}; enter it here to show the address is yours.", current.user.designated_email))
        .send("/account/email-verification", "Email me a code")
        .confirm("/account/email-verification/confirm", "Verify", "The 6-digit code from the email.")
}

async fn email_verification_page(State(web): WebState, PageEnrolling(current): PageEnrolling) -> Response {
    email_verification_step(&web, &current).outcome(Ok(None))
}

async fn email_verification_send(State(web): WebState, Client(ctx): Client, EnrollingForm(current, _): EnrollingForm<CsrfOnly>) -> Response {
    let sent = web.app.request_email_verification(&current.user, &ctx).await.map(|()| sent_to(&current.user.designated_email));
    email_verification_step(&web, &current).outcome(sent)
}

async fn email_verification_submit(State(web): WebState, Client(ctx): Client, EnrollingForm(current, f): EnrollingForm<CodeFields>) -> Response {
    match web.app.confirm_email_verification(&current.user, &f.code, &ctx).await {
        Ok(()) if current.session.restricted => Redirect::to("/account/two-factor/email").into_response(),
        Ok(()) => Redirect::to("/account?done=email-verified").into_response(),
        Err(e) => email_verification_step(&web, &current).outcome(Err(e)),
    }
}

/// Sends a code to the designated email; entering it verifies the address.
#[utoipa::path(post, path = "/api/v1/me/email-verification", tag = "two-factor",
    responses((status = 202, body = CodeSent), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn email_verification_start(State(web): WebState, Client(ctx): Client, Enrolling(current): Enrolling) -> Result<Response, AppError> {
    web.app.request_email_verification(&current.user, &ctx).await?;
    Ok(accepted(current.user.designated_email))
}

#[derive(Serialize, ToSchema)]
pub struct EmailVerified {
    email_verified: bool,
}

#[utoipa::path(post, path = "/api/v1/me/email-verification/confirm", tag = "two-factor", request_body = CodeBody,
    responses((status = 200, body = EmailVerified), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn email_verification_confirm(State(web): WebState, Client(ctx): Client, Enrolling(current): Enrolling, ApiJson(b): ApiJson<CodeBody>) -> Result<Json<EmailVerified>, AppError> {
    web.app.confirm_email_verification(&current.user, &b.code, &ctx).await?;
    Ok(Json(EmailVerified { email_verified: true }))
}

// ---------------------------------------------------------------- email codes

fn email_step(web: &Web, current: &Current, code_sent: bool) -> CodeStepPage {
    let page = CodeStepPage::new(web, current, "Set up email codes", format!("We email a code to {}; enter it here to turn on email codes.", current.user.designated_email))
        .send("/account/two-factor/email", if code_sent { "Send a new code" } else { "Email me a code" });
    if code_sent {
        page.confirm("/account/two-factor/email/confirm", "Turn on email codes", "The 6-digit code from the email.")
    } else {
        page
    }
}

async fn email_page(State(web): WebState, PageEnrolling(current): PageEnrolling) -> Response {
    // Email codes need a verified address: verify it first, then come back here.
    if current.user.designated_email_verified_at.is_none() {
        return Redirect::to("/account/email-verification").into_response();
    }
    email_step(&web, &current, false).outcome(Ok(None))
}

async fn email_send(State(web): WebState, Client(ctx): Client, EnrollingForm(current, _): EnrollingForm<CsrfOnly>) -> Response {
    let sent = web.app.start_email_enrollment(&current.user, &ctx).await;
    let code_sent = sent.is_ok();
    email_step(&web, &current, code_sent).outcome(sent.map(|()| sent_to(&current.user.designated_email)))
}

async fn email_confirm_submit(State(web): WebState, Client(ctx): Client, EnrollingForm(current, f): EnrollingForm<CodeFields>) -> Response {
    match web.app.confirm_email_method(&current.user, &current.enrolling(), &f.code, &ctx).await {
        Ok(codes) => enrolled(&current, codes, "two-factor-email"),
        Err(e) => email_step(&web, &current, true).outcome(Err(e)),
    }
}

/// Starts email codes: a code goes to the designated email, which must be verified (409).
#[utoipa::path(post, path = "/api/v1/me/2fa/email", tag = "two-factor",
    responses((status = 202, body = CodeSent), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "email_not_verified", body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn email_start(State(web): WebState, Client(ctx): Client, Enrolling(current): Enrolling) -> Result<Response, AppError> {
    web.app.start_email_enrollment(&current.user, &ctx).await?;
    Ok(accepted(current.user.designated_email))
}

#[utoipa::path(post, path = "/api/v1/me/2fa/email/confirm", tag = "two-factor", request_body = CodeBody,
    responses((status = 200, body = Enrolled), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn email_confirm(State(web): WebState, Client(ctx): Client, Enrolling(current): Enrolling, ApiJson(b): ApiJson<CodeBody>) -> Result<Json<Enrolled>, AppError> {
    let codes = web.app.confirm_email_method(&current.user, &current.enrolling(), &b.code, &ctx).await?;
    Ok(enrolled_json(codes))
}

/// Removes email codes, as `DELETE /api/v1/me/2fa/{method}`.
#[utoipa::path(delete, path = "/api/v1/me/2fa/email", tag = "two-factor", request_body = CodeBody,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "required_by_company", body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn remove_email(State(web): WebState, Client(ctx): Client, SignedIn(current): SignedIn, ApiJson(b): ApiJson<CodeBody>) -> Result<StatusCode, AppError> {
    remove(&web, Method::Email, &ctx, &current, &b).await
}
