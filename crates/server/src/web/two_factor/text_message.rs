//! Text message (SMS) codes, page and API: the mobile number gets a code, and becomes a method
//! once the code comes back; and its removal.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey_core::two_factor::Method;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{enrolled, enrolled_json, remove, CodeBody, CodeFields, CodeStepPage, Enrolled, SendForm};
use crate::app::AppError;
use crate::web::kit::{accepted, csrf_forms, sent_to, ApiJson, Client, CodeSent, Current, Enrolling, EnrollingForm, ErrorBody, PageEnrolling, SignedIn, Web, WebState};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/account/two-factor/sms", get(sms_page).post(sms_send))
        .route("/account/two-factor/sms/confirm", post(sms_confirm_submit))
        .route("/api/v1/me/2fa/sms", post(sms_start).delete(remove_sms))
        .route("/api/v1/me/2fa/sms/confirm", post(sms_confirm))
}

fn sms_step(web: &Web, current: &Current, phone: &str, code_sent: bool) -> CodeStepPage {
    let mut page = CodeStepPage::new(web, current, "Set up text messages", "We text a code to your mobile number; enter it here to turn on SMS codes.".into());
    page.phone = phone.to_owned();
    page.send = Some(SendForm { action: "/account/two-factor/sms".into(), label: if code_sent { "Send a new code" } else { "Text me a code" }, phone: true });
    if code_sent {
        page = page.confirm("/account/two-factor/sms/confirm", "Turn on SMS codes", "The 6-digit code from the text message.");
    }
    page
}

async fn sms_page(State(web): WebState, PageEnrolling(current): PageEnrolling) -> Response {
    sms_step(&web, &current, "", false).outcome(Ok(None))
}

#[derive(Deserialize)]
struct PhoneFields {
    csrf_token: String,
    phone: String,
}

csrf_forms!(PhoneFields);

async fn sms_send(State(web): WebState, Client(ctx): Client, EnrollingForm(current, f): EnrollingForm<PhoneFields>) -> Response {
    let phone: String = f.phone.chars().take(40).collect();
    let sent = web.app.start_sms_enrollment(&current.user, &phone, &ctx).await;
    let code_sent = sent.is_ok();
    sms_step(&web, &current, &phone, code_sent).outcome(sent.map(|to| sent_to(&to)))
}

async fn sms_confirm_submit(State(web): WebState, Client(ctx): Client, EnrollingForm(current, f): EnrollingForm<CodeFields>) -> Response {
    match web.app.confirm_sms(&current.user, &current.enrolling(), &f.code, &ctx).await {
        Ok(codes) => enrolled(&current, codes, "two-factor-sms"),
        Err(e) => sms_step(&web, &current, "", true).outcome(Err(e)),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhoneBody {
    /// The mobile number in E.164, like `+15550104477` (spaces are ignored).
    phone: String,
}

/// Starts SMS: the number gets a code, and becomes a method once the code comes back.
#[utoipa::path(post, path = "/api/v1/me/2fa/sms", tag = "two-factor", request_body = PhoneBody,
    responses((status = 202, body = CodeSent), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn sms_start(State(web): WebState, Client(ctx): Client, Enrolling(current): Enrolling, ApiJson(b): ApiJson<PhoneBody>) -> Result<Response, AppError> {
    Ok(accepted(web.app.start_sms_enrollment(&current.user, &b.phone, &ctx).await?))
}

#[utoipa::path(post, path = "/api/v1/me/2fa/sms/confirm", tag = "two-factor", request_body = CodeBody,
    responses((status = 200, body = Enrolled), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn sms_confirm(State(web): WebState, Client(ctx): Client, Enrolling(current): Enrolling, ApiJson(b): ApiJson<CodeBody>) -> Result<Json<Enrolled>, AppError> {
    let codes = web.app.confirm_sms(&current.user, &current.enrolling(), &b.code, &ctx).await?;
    Ok(enrolled_json(codes))
}

/// Removes SMS codes, as `DELETE /api/v1/me/2fa/{method}`.
#[utoipa::path(delete, path = "/api/v1/me/2fa/sms", tag = "two-factor", request_body = CodeBody,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "required_by_company", body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn remove_sms(State(web): WebState, Client(ctx): Client, SignedIn(current): SignedIn, ApiJson(b): ApiJson<CodeBody>) -> Result<StatusCode, AppError> {
    remove(&web, Method::Sms, &ctx, &current, &b).await
}
