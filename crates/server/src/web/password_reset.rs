//! Password reset and the forgotten login name, pages and API: the request (answered alike, known or
//! not), the reset link (3 hours: a new password, every session ended), the login names email.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey_core::flows::password_reset::NewPasswordForm;
use latchkey_core::{FieldErrors, LoginName};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::app::AppError;
use crate::web::kit::{
    csrf_forms, error_page, link_info, notice_page, password_hint, render, Accepted, AnonymousForm, ApiJson, ApiPath, Client, CsrfBinding, ErrorBody,
    LinkInfo, LoginNameBody, Web, WebState,
};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/forgot-password", get(forgot_password_page).post(forgot_password_submit))
        .route("/reset-password/{token}", get(reset_password_page).post(reset_password_submit))
        .route("/forgot-login-name", get(forgot_login_page).post(forgot_login_submit))
        .route("/api/v1/password/forgot", post(password_forgot))
        .route("/api/v1/password/reset/{token}", get(reset_open).post(reset_complete))
        .route("/api/v1/login-name/forgot", post(login_name_forgot))
}

// ---------------------------------------------------------------- the two "forgot" pages

/// What differs between the forgot-password and the forgot-login-name page: their words and their
/// one field. Both send an email and say so alike, known address or not.
struct ForgotForm {
    title: &'static str,
    lead: &'static str,
    action: &'static str,
    /// The field's name, label, input type and autocomplete.
    field: &'static str,
    label: &'static str,
    kind: &'static str,
    autocomplete: &'static str,
    /// The other of the two pages, linked below the form.
    other_href: &'static str,
    other_label: &'static str,
}

const FORGOT_PASSWORD: ForgotForm = ForgotForm {
    title: "Forgot password",
    lead: "Enter your designated email or your login name. We will email a password reset link; it works for 3 hours.",
    action: "/forgot-password",
    field: "account",
    label: "Designated email or login name",
    kind: "text",
    autocomplete: "username",
    other_href: "/forgot-login-name",
    other_label: "Forgot login name?",
};

const FORGOT_LOGIN_NAME: ForgotForm = ForgotForm {
    title: "Forgot login name",
    lead: "Enter the email linked to your extension. We will email you the login names that use it.",
    action: "/forgot-login-name",
    field: "email",
    label: "Email",
    kind: "email",
    autocomplete: "email",
    other_href: "/forgot-password",
    other_label: "Forgot password?",
};

#[derive(Template)]
#[template(path = "pages/forgot.html")]
struct ForgotPage<'a> {
    form: &'static ForgotForm,
    csrf: String,
    value: &'a str,
    errors: FieldErrors,
}

/// A "forgot" page with a fresh CSRF token: empty, or as it was sent (the value cut to 300
/// characters) with what was wrong.
fn forgot_page(web: &Web, headers: &HeaderMap, form: &'static ForgotForm, status: StatusCode, value: &str, errors: FieldErrors) -> Response {
    let binding = CsrfBinding::of(web, headers, None);
    let value: String = value.chars().take(300).collect();
    render(status, &ForgotPage { form, csrf: binding.token(web), value: &value, errors }, binding.set_cookie)
}

// ---------------------------------------------------------------- forgot password

async fn forgot_password_page(State(web): WebState, headers: HeaderMap) -> Response {
    forgot_page(&web, &headers, &FORGOT_PASSWORD, StatusCode::OK, "", FieldErrors::new())
}

#[derive(Deserialize)]
struct ForgotPasswordFields {
    csrf_token: String,
    /// Designated email or login name: one field, as people do not know which they have.
    account: String,
}

#[derive(Deserialize)]
struct NewPasswordFields {
    csrf_token: String,
    password: String,
    password_confirmation: String,
}

#[derive(Deserialize)]
struct ForgotLoginFields {
    csrf_token: String,
    email: String,
}

csrf_forms!(ForgotPasswordFields, NewPasswordFields, ForgotLoginFields);

async fn forgot_password_submit(State(web): WebState, headers: HeaderMap, Client(ctx): Client, AnonymousForm(f): AnonymousForm<ForgotPasswordFields>) -> Response {
    let value = f.account.trim();
    // `101@organization.com` reads as a login name and as an address: ask both ways; each answer
    // goes only to the designated email of what matched.
    let as_login = LoginName::parse(value).is_ok();
    let as_email = latchkey_core::Email::parse(value).is_ok();
    let outcome = match (as_login, as_email) {
        (true, true) => web.app.forgot_password(None, Some(value), &ctx).and_then(|_| web.app.forgot_password(Some(value), None, &ctx)),
        (true, false) => web.app.forgot_password(None, Some(value), &ctx),
        _ => web.app.forgot_password(Some(value), None, &ctx),
    };
    match outcome {
        Ok(()) => notice_page(
            StatusCode::OK,
            "Check your email",
            "If an account matches, we sent a password reset link to its designated email. The link works for 3 hours and only once. Check your spam folder too.",
            "/sign-in",
            "Back to sign in",
        ),
        Err(e) => {
            let mut errors = FieldErrors::new();
            errors.add("account", "Enter your designated email or your login name (like 101@organization.com).");
            forgot_page(&web, &headers, &FORGOT_PASSWORD, e.status(), value, errors)
        }
    }
}

// ---------------------------------------------------------------- the reset link

#[derive(Template)]
#[template(path = "pages/reset_password.html")]
struct ResetPasswordPage {
    csrf: String,
    token: String,
    login_name: String,
    company_name: String,
    password_hint: String,
    error: Option<String>,
    errors: FieldErrors,
}

async fn reset_password_page(State(web): WebState, headers: HeaderMap, Path(token): Path<String>) -> Response {
    reset_password_view(&web, &headers, token, None).await
}

async fn reset_password_view(web: &Web, headers: &HeaderMap, token: String, failed: Option<AppError>) -> Response {
    let v = match web.app.open_reset(&token).await {
        Ok(v) => v,
        Err(e) => return error_page(failed.as_ref().unwrap_or(&e)),
    };
    let binding = CsrfBinding::of(web, headers, None);
    let status = failed.as_ref().map_or(StatusCode::OK, |e| e.status());
    let page = ResetPasswordPage {
        csrf: binding.token(web),
        token,
        login_name: v.login_name,
        company_name: v.company_name,
        password_hint: password_hint(v.password_min_length),
        error: failed.as_ref().map(|e| e.message.clone()),
        errors: failed.map(|e| e.fields).unwrap_or_default(),
    };
    render(status, &page, binding.set_cookie)
}

async fn reset_password_submit(
    State(web): WebState,
    headers: HeaderMap,
    Path(token): Path<String>,
    Client(ctx): Client,
    AnonymousForm(f): AnonymousForm<NewPasswordFields>,
) -> Response {
    let form = NewPasswordForm { password: f.password, password_confirmation: f.password_confirmation };
    match web.app.reset_password(&token, &form, &ctx).await {
        Ok(_) => Redirect::to("/sign-in?done=reset").into_response(),
        Err(e) if e.status() == StatusCode::UNPROCESSABLE_ENTITY || e.status() == StatusCode::SERVICE_UNAVAILABLE => {
            reset_password_view(&web, &headers, token, Some(e)).await
        }
        Err(e) => error_page(&e),
    }
}

// ---------------------------------------------------------------- forgot login name

async fn forgot_login_page(State(web): WebState, headers: HeaderMap) -> Response {
    forgot_page(&web, &headers, &FORGOT_LOGIN_NAME, StatusCode::OK, "", FieldErrors::new())
}

async fn forgot_login_submit(State(web): WebState, headers: HeaderMap, AnonymousForm(f): AnonymousForm<ForgotLoginFields>) -> Response {
    match web.app.forgot_login_name(&f.email) {
        Ok(()) => notice_page(StatusCode::OK, "Check your email", "If accounts use this email, we sent it the list of their login names.", "/sign-in", "Back to sign in"),
        Err(e) => forgot_page(&web, &headers, &FORGOT_LOGIN_NAME, e.status(), &f.email, e.fields.clone()),
    }
}

// ---------------------------------------------------------------- the JSON API

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotPasswordBody {
    /// The designated email; or give `login_name` instead.
    email: Option<String>,
    login_name: Option<String>,
}

const FORGOT_PASSWORD_SENT: &str =
    "If an account matches, an email with a password reset link is on its way to its designated email. The link works for 3 hours.";
const FORGOT_LOGIN_SENT: &str = "If accounts use this email, an email listing their login names is on its way.";

/// Always 202, known address or not.
#[utoipa::path(post, path = "/api/v1/password/forgot", tag = "recovery", request_body = ForgotPasswordBody,
    responses((status = 202, body = Accepted), (status = 422, body = ErrorBody)))]
pub async fn password_forgot(State(web): WebState, Client(ctx): Client, ApiJson(body): ApiJson<ForgotPasswordBody>) -> Result<(StatusCode, Json<Accepted>), AppError> {
    web.app.forgot_password(body.email.as_deref(), body.login_name.as_deref(), &ctx)?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { message: FORGOT_PASSWORD_SENT })))
}

#[utoipa::path(get, path = "/api/v1/password/reset/{token}", tag = "recovery", params(("token" = String, Path,)),
    responses((status = 200, body = LinkInfo), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn reset_open(State(web): WebState, ApiPath(token): ApiPath<String>) -> Result<Json<LinkInfo>, AppError> {
    let v = web.app.open_reset(&token).await?;
    Ok(Json(link_info(v)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPasswordBody {
    password: String,
    password_confirmation: String,
}

/// Sets the new password and ends every session of the account.
#[utoipa::path(post, path = "/api/v1/password/reset/{token}", tag = "recovery", request_body = NewPasswordBody, params(("token" = String, Path,)),
    responses((status = 200, body = LoginNameBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 410, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn reset_complete(
    State(web): WebState,
    ApiPath(token): ApiPath<String>,
    Client(ctx): Client,
    ApiJson(body): ApiJson<NewPasswordBody>,
) -> Result<Json<LoginNameBody>, AppError> {
    let form = NewPasswordForm { password: body.password, password_confirmation: body.password_confirmation };
    let user = web.app.reset_password(&token, &form, &ctx).await?;
    Ok(Json(LoginNameBody { login_name: user.login_name }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotLoginNameBody {
    email: String,
}

#[utoipa::path(post, path = "/api/v1/login-name/forgot", tag = "recovery", request_body = ForgotLoginNameBody,
    responses((status = 202, body = Accepted), (status = 422, body = ErrorBody)))]
pub async fn login_name_forgot(State(web): WebState, ApiJson(body): ApiJson<ForgotLoginNameBody>) -> Result<(StatusCode, Json<Accepted>), AppError> {
    web.app.forgot_login_name(&body.email)?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { message: FORGOT_LOGIN_SENT })))
}
