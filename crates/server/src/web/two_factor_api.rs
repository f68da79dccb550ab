//! The JSON API for texted and emailed codes (C6): verifying the designated email, enrolling SMS
//! and email, codes at the sign-in step, and the changes a verification code confirms (removing a
//! method, new recovery codes).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use latchkey_core::two_factor::Method;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::api::{ApiJson, ApiPath, Enrolled};
use super::session::{Client, Current, Enrolling, SignedIn};
use super::Web;
use crate::error::{ApiError, ErrorBody};

type WebState = State<Arc<Web>>;

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/api/v1/sign-in/{flow}/send", post(sign_in_send))
        .route("/api/v1/me/email-verification", post(email_verification_start))
        .route("/api/v1/me/email-verification/confirm", post(email_verification_confirm))
        .route("/api/v1/me/2fa/sms", post(sms_start).delete(remove_sms))
        .route("/api/v1/me/2fa/sms/confirm", post(sms_confirm))
        .route("/api/v1/me/2fa/email", post(email_start).delete(remove_email))
        .route("/api/v1/me/2fa/email/confirm", post(email_confirm))
        .route("/api/v1/me/2fa/verification-code", post(verification_code))
        .route("/api/v1/me/2fa/{method}", delete(remove_method))
        .route("/api/v1/me/recovery-codes", post(recovery_codes))
}

#[derive(Serialize, ToSchema)]
pub struct CodeSent {
    /// Where the code went, as it may be shown: the email address, or `•••• 4477` for a phone.
    sent_to: String,
}

fn accepted(sent_to: String) -> Response {
    (StatusCode::ACCEPTED, Json(CodeSent { sent_to })).into_response()
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    /// `sms` or `email`.
    method: String,
}

/// Sends a sign-in code by SMS or email for a flow at the second-factor step. Sends are limited
/// per user, per number and per company (429 with Retry-After).
#[utoipa::path(post, path = "/api/v1/sign-in/{flow}/send", tag = "session", request_body = SendBody, params(("flow" = String, Path,)),
    responses((status = 202, body = CodeSent), (status = 410, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn sign_in_send(State(web): WebState, ApiPath(flow): ApiPath<String>, Client(ctx): Client, ApiJson(b): ApiJson<SendBody>) -> Result<Response, ApiError> {
    Ok(accepted(web.app.send_sign_in_code(&flow, &b.method, &ctx).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeBody {
    code: String,
}

/// Sends a code to the designated email; entering it verifies the address.
#[utoipa::path(post, path = "/api/v1/me/email-verification", tag = "two-factor",
    responses((status = 202, body = CodeSent), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn email_verification_start(State(web): WebState, Client(ctx): Client, Enrolling(current): Enrolling) -> Result<Response, ApiError> {
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
pub async fn email_verification_confirm(State(web): WebState, Client(ctx): Client, Enrolling(current): Enrolling, ApiJson(b): ApiJson<CodeBody>) -> Result<Json<EmailVerified>, ApiError> {
    web.app.confirm_email_verification(&current.user, &b.code, &ctx).await?;
    Ok(Json(EmailVerified { email_verified: true }))
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
pub async fn sms_start(State(web): WebState, Client(ctx): Client, Enrolling(current): Enrolling, ApiJson(b): ApiJson<PhoneBody>) -> Result<Response, ApiError> {
    Ok(accepted(web.app.start_sms_enrollment(&current.user, &b.phone, &ctx).await?))
}

/// Completing an enrolment turns a session restricted to enrolment into a full one.
async fn enrolled(web: &Web, current: &Current, codes: Option<Vec<String>>) -> Result<Json<Enrolled>, ApiError> {
    web.app.finish_enrolment(&current.token, &current.session).await?;
    Ok(Json(Enrolled::new(codes)))
}

#[utoipa::path(post, path = "/api/v1/me/2fa/sms/confirm", tag = "two-factor", request_body = CodeBody,
    responses((status = 200, body = Enrolled), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn sms_confirm(State(web): WebState, Client(ctx): Client, Enrolling(current): Enrolling, ApiJson(b): ApiJson<CodeBody>) -> Result<Json<Enrolled>, ApiError> {
    let codes = web.app.confirm_sms(&current.user, &b.code, &ctx).await?;
    enrolled(&web, &current, codes).await
}

/// Starts email codes: a code goes to the designated email, which must be verified (409).
#[utoipa::path(post, path = "/api/v1/me/2fa/email", tag = "two-factor",
    responses((status = 202, body = CodeSent), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "email_not_verified", body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn email_start(State(web): WebState, Client(ctx): Client, Enrolling(current): Enrolling) -> Result<Response, ApiError> {
    web.app.start_email_enrollment(&current.user, &ctx).await?;
    Ok(accepted(current.user.designated_email))
}

#[utoipa::path(post, path = "/api/v1/me/2fa/email/confirm", tag = "two-factor", request_body = CodeBody,
    responses((status = 200, body = Enrolled), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn email_confirm(State(web): WebState, Client(ctx): Client, Enrolling(current): Enrolling, ApiJson(b): ApiJson<CodeBody>) -> Result<Json<Enrolled>, ApiError> {
    let codes = web.app.confirm_email_method(&current.user, &b.code, &ctx).await?;
    enrolled(&web, &current, codes).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ViaBody {
    /// `email` (the default) or `sms` (the enrolled mobile number).
    via: String,
}

/// Sends a verification code for removing a method or getting new recovery codes: to the
/// designated email, or with `{"via": "sms"}` to the SMS method's number. The body is optional.
#[utoipa::path(post, path = "/api/v1/me/2fa/verification-code", tag = "two-factor", request_body(content = Option<ViaBody>),
    responses((status = 202, body = CodeSent), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn verification_code(
    State(web): WebState,
    Client(ctx): Client,
    SignedIn(current): SignedIn,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| ApiError::new(r.status(), "malformed_body", r.body_text()))?;
    let via = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        // The same rule as every other JSON body: a body that is there says it is JSON.
        if !is_json(&headers) {
            return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "Send a JSON body with Content-Type: application/json."));
        }
        let b: ViaBody = serde_json::from_slice(&body).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("The body is not valid: {e}")))?;
        Some(Method::parse(&b.via).filter(|m| *m != Method::Totp).ok_or_else(|| ApiError::field("via", "Codes are sent by email or sms."))?)
    };
    Ok(accepted(web.app.send_verification_code(&current.user, via, &ctx).await?))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next()).is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// Removes a method after a verification code (or a code from a method that stays). Where the
/// company requires 2FA, the last method cannot be removed (409 `required_by_company`).
#[utoipa::path(delete, path = "/api/v1/me/2fa/{method}", tag = "two-factor", request_body = CodeBody, params(("method" = String, Path,)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "required_by_company", body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn remove_method(State(web): WebState, ApiPath(method): ApiPath<String>, Client(ctx): Client, SignedIn(current): SignedIn, ApiJson(b): ApiJson<CodeBody>) -> Result<StatusCode, ApiError> {
    let method = Method::parse(&method).ok_or_else(ApiError::not_found)?;
    remove(&web, method, &ctx, &current, &b).await
}

// `/me/2fa/totp`, `/sms` and `/email` have routes of their own (their POSTs), which take the
// DELETE before the `{method}` route could; the document lists them there too, as a client
// matching paths finds the fixed path before the template.

/// Removes the authenticator app, as `DELETE /api/v1/me/2fa/{method}`.
#[utoipa::path(delete, path = "/api/v1/me/2fa/totp", tag = "two-factor", request_body = CodeBody,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "required_by_company", body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn remove_totp(State(web): WebState, Client(ctx): Client, SignedIn(current): SignedIn, ApiJson(b): ApiJson<CodeBody>) -> Result<StatusCode, ApiError> {
    remove(&web, Method::Totp, &ctx, &current, &b).await
}

/// Removes SMS codes, as `DELETE /api/v1/me/2fa/{method}`.
#[utoipa::path(delete, path = "/api/v1/me/2fa/sms", tag = "two-factor", request_body = CodeBody,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "required_by_company", body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn remove_sms(State(web): WebState, Client(ctx): Client, SignedIn(current): SignedIn, ApiJson(b): ApiJson<CodeBody>) -> Result<StatusCode, ApiError> {
    remove(&web, Method::Sms, &ctx, &current, &b).await
}

/// Removes email codes, as `DELETE /api/v1/me/2fa/{method}`.
#[utoipa::path(delete, path = "/api/v1/me/2fa/email", tag = "two-factor", request_body = CodeBody,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "required_by_company", body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn remove_email(State(web): WebState, Client(ctx): Client, SignedIn(current): SignedIn, ApiJson(b): ApiJson<CodeBody>) -> Result<StatusCode, ApiError> {
    remove(&web, Method::Email, &ctx, &current, &b).await
}

async fn remove(web: &Web, method: Method, ctx: &crate::app::RequestContext, current: &Current, b: &CodeBody) -> Result<StatusCode, ApiError> {
    web.app.remove_method(&current.user, method, &b.code, ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct NewRecoveryCodes {
    /// Shown once: the earlier set no longer works.
    codes: Vec<String>,
}

/// "Get new recovery codes": replaces the whole set after a verification code.
#[utoipa::path(post, path = "/api/v1/me/recovery-codes", tag = "two-factor", request_body = CodeBody,
    responses((status = 200, body = NewRecoveryCodes), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn recovery_codes(State(web): WebState, Client(ctx): Client, SignedIn(current): SignedIn, ApiJson(b): ApiJson<CodeBody>) -> Result<Json<NewRecoveryCodes>, ApiError> {
    let codes = web.app.new_recovery_codes(&current.user, &b.code, &ctx).await?;
    Ok(Json(NewRecoveryCodes { codes }))
}
