//! The authenticator app (TOTP), page and API: a new secret shown as a QR code and in groups of
//! four, saved once a code from the app and the current password come back; and its removal.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use latchkey_core::two_factor::Method;
use latchkey_core::FieldErrors;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{code_errors_at_field, enrolled, enrolled_json, is_code_error, remove, CodeBody, Enrolled};
use crate::app::AppError;
use crate::web::kit::{csrf_forms, error_page, render, ApiJson, Client, Current, Enrolling, EnrollingForm, ErrorBody, PageEnrolling, SignedIn, Web, WebState};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/account/two-factor/setup", axum::routing::get(totp_setup_page).post(totp_setup_submit))
        .route("/api/v1/me/2fa/totp", post(totp_start).delete(remove_totp))
        .route("/api/v1/me/2fa/totp/confirm", post(totp_confirm))
}

#[derive(Template)]
#[template(path = "pages/totp_setup.html")]
struct TotpSetupPage {
    csrf: String,
    login_name: String,
    restricted: bool,
    qr_svg: String,
    secret_groups: String,
    error: Option<String>,
    errors: FieldErrors,
}

async fn totp_setup_view(web: &Web, current: &Current, failed: Option<AppError>) -> Response {
    let setup = match web.app.totp_enrollment_for_page(&current.user).await {
        Ok(s) => s,
        Err(e) => return error_page(&e),
    };
    let secret_groups = setup.secret.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ");
    let status = failed.as_ref().map_or(StatusCode::OK, |e| e.status());
    let page = TotpSetupPage {
        csrf: web.csrf_token_for(&current.token),
        login_name: current.user.login_name.clone(),
        restricted: current.session.restricted,
        qr_svg: setup.qr_svg,
        secret_groups,
        error: failed.as_ref().filter(|e| e.fields.is_empty() && !is_code_error(e)).map(|e| e.message.clone()),
        errors: failed.map(code_errors_at_field).unwrap_or_default(),
    };
    render(status, &page, None)
}

async fn totp_setup_page(State(web): WebState, PageEnrolling(current): PageEnrolling) -> Response {
    totp_setup_view(&web, &current, None).await
}

#[derive(Deserialize)]
struct TotpSetupFields {
    csrf_token: String,
    code: String,
    current_password: String,
}

csrf_forms!(TotpSetupFields);

async fn totp_setup_submit(State(web): WebState, Client(ctx): Client, EnrollingForm(current, f): EnrollingForm<TotpSetupFields>) -> Response {
    match web.app.confirm_totp(&current.user, &current.enrolling(), &f.code, &f.current_password, &ctx).await {
        Ok(codes) => enrolled(&current, codes, "two-factor"),
        Err(e) if e.status().is_client_error() => totp_setup_view(&web, &current, Some(e)).await,
        Err(e) => error_page(&e),
    }
}

#[derive(Serialize, ToSchema)]
pub struct TotpSetup {
    /// Base32, for typing into the app by hand.
    secret: String,
    otpauth_uri: String,
    /// The QR code of `otpauth_uri`, as SVG.
    qr_svg: String,
}

/// Starts setting up the authenticator app: a new secret, pending until confirmed.
#[utoipa::path(post, path = "/api/v1/me/2fa/totp", tag = "two-factor",
    responses((status = 200, body = TotpSetup), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn totp_start(State(web): WebState, Enrolling(current): Enrolling) -> Result<Json<TotpSetup>, AppError> {
    let e = web.app.start_totp_enrollment(&current.user).await?;
    Ok(Json(TotpSetup { secret: e.secret, otpauth_uri: e.otpauth_uri, qr_svg: e.qr_svg }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpConfirmBody {
    code: String,
    current_password: String,
}

/// Saves the authenticator app after a code from it and the current password (Sonar step 7). A
/// session restricted to enrolment becomes a full session.
#[utoipa::path(post, path = "/api/v1/me/2fa/totp/confirm", tag = "two-factor", request_body = TotpConfirmBody,
    responses((status = 200, body = Enrolled), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn totp_confirm(State(web): WebState, Client(ctx): Client, Enrolling(current): Enrolling, ApiJson(b): ApiJson<TotpConfirmBody>) -> Result<Json<Enrolled>, AppError> {
    let codes = web.app.confirm_totp(&current.user, &current.enrolling(), &b.code, &b.current_password, &ctx).await?;
    Ok(enrolled_json(codes))
}

// `/me/2fa/totp`, `/sms` and `/email` have routes of their own (their POSTs), which take the
// DELETE before the `{method}` route could; the document lists them there too, as a client
// matching paths finds the fixed path before the template.

/// Removes the authenticator app, as `DELETE /api/v1/me/2fa/{method}`.
#[utoipa::path(delete, path = "/api/v1/me/2fa/totp", tag = "two-factor", request_body = CodeBody,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "required_by_company", body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn remove_totp(State(web): WebState, Client(ctx): Client, SignedIn(current): SignedIn, ApiJson(b): ApiJson<CodeBody>) -> Result<StatusCode, AppError> {
    remove(&web, Method::Totp, &ctx, &current, &b).await
}
