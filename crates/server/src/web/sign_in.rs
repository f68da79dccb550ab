//! Signing in, pages and API: the password step, the second-factor step (a code from a method, or
//! a recovery code; texted and emailed codes sent on request), and signing out.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey_core::two_factor::Method;
use latchkey_core::FieldErrors;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppError;
use crate::web::kit::{
    accepted, cookie_value, csrf_forms, error_page, flow_cookie_name, method_label, redirect_with_cookie, render, sent_to, sign_in_response, signed_in,
    signed_in_response, with_cookie, with_retry_after, AnonymousForm, ApiJson, ApiPath, Client, CodeSent, CsrfBinding, CsrfOnly, EnrollingForm, ErrorBody,
    MaybeSignedIn, MethodChoice, SignInResponse, SignedIn, Web, WebState,
};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/sign-in", get(sign_in_page).post(sign_in_submit))
        .route("/sign-out", post(sign_out_submit))
        .route("/sign-in/second-factor", get(second_factor_page).post(second_factor_submit))
        .route("/sign-in/second-factor/send", post(second_factor_send))
        .route("/api/v1/csrf", get(csrf))
        .route("/api/v1/sign-in", post(sign_in))
        .route("/api/v1/sign-in/{flow}/verify", post(sign_in_verify))
        .route("/api/v1/sign-in/{flow}/send", post(sign_in_send))
        .route("/api/v1/sign-out", post(sign_out))
}

// ---------------------------------------------------------------- the password step

#[derive(Template)]
#[template(path = "pages/sign_in.html")]
struct SignInPage<'a> {
    csrf: String,
    login_name: &'a str,
    notice: Option<&'static str>,
    error: Option<String>,
    errors: FieldErrors,
    /// "Sign in with Google" / "Sign in with Office 365": the providers the operator registered.
    sso: Vec<SsoButton>,
}

struct SsoButton {
    href: String,
    label: String,
}

fn sso_buttons(web: &Web) -> Vec<SsoButton> {
    web.app.sso_providers().into_iter().map(|p| SsoButton { href: format!("/sso/{}/start", p.as_str()), label: format!("Sign in with {}", p.label()) }).collect()
}

#[derive(Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

/// Only fixed sentences can appear from the query: nothing a link can inject.
fn done_notice(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "setup" => Some("Your account is set up. Sign in with your login name and new password."),
        "reset" => Some("Your password was reset and every session was signed out. Sign in with your new password."),
        "signed-out" => Some("You are signed out."),
        _ => None,
    }
}

async fn sign_in_page(State(web): WebState, headers: HeaderMap, Query(q): Query<DoneQuery>, MaybeSignedIn(current): MaybeSignedIn) -> Response {
    if current.is_some() {
        return Redirect::to("/account").into_response();
    }
    let binding = CsrfBinding::of(&web, &headers, None);
    let page = SignInPage { csrf: binding.token(&web), login_name: "", notice: done_notice(q.done.as_deref()), error: None, errors: FieldErrors::new(), sso: sso_buttons(&web) };
    render(StatusCode::OK, &page, binding.set_cookie)
}

#[derive(Deserialize)]
struct SignInForm {
    csrf_token: String,
    login_name: String,
    password: String,
}

#[derive(Deserialize)]
struct SecondFactorFields {
    csrf_token: String,
    method: String,
    code: String,
}

#[derive(Deserialize)]
struct SendFields {
    csrf_token: String,
    method: String,
}

csrf_forms!(SignInForm, SecondFactorFields, SendFields);

async fn sign_in_submit(State(web): WebState, headers: HeaderMap, Client(ctx): Client, AnonymousForm(f): AnonymousForm<SignInForm>) -> Response {
    match web.app.sign_in(&f.login_name, &f.password, &ctx).await {
        Ok(outcome) => signed_in_response(&web, outcome),
        Err(e) if e.status().is_client_error() => {
            let binding = CsrfBinding::of(&web, &headers, None);
            let login_name: String = f.login_name.chars().take(300).collect();
            let page = SignInPage {
                csrf: binding.token(&web),
                login_name: &login_name,
                notice: None,
                error: Some(e.message.clone()),
                errors: e.fields.clone(),
                sso: sso_buttons(&web),
            };
            with_retry_after(render(e.status(), &page, binding.set_cookie), e.retry_after())
        }
        Err(e) => error_page(&e),
    }
}

/// Also for a session restricted to enrolment: someone who cannot set up a method now can leave.
async fn sign_out_submit(State(web): WebState, Client(ctx): Client, EnrollingForm(current, _): EnrollingForm<CsrfOnly>) -> Response {
    if let Err(e) = web.app.sign_out(&current.token, &current.user, &ctx).await {
        return error_page(&e);
    }
    redirect_with_cookie("/sign-in?done=signed-out", web.session_cookie(None))
}

// ---------------------------------------------------------------- the second-factor step

#[derive(Template)]
#[template(path = "pages/second_factor.html")]
struct SecondFactorPage {
    csrf: String,
    code_hint: String,
    choices: Vec<MethodChoice>,
    /// SMS and email among the methods: each gets a "send me a code" button.
    sendable: Vec<MethodChoice>,
    notice: Option<String>,
    error: Option<String>,
    errors: FieldErrors,
}

async fn second_factor_view(web: &Web, headers: &HeaderMap, chosen: Option<&str>, notice: Option<String>, failed: Option<AppError>) -> Response {
    let flow = cookie_value(headers, flow_cookie_name(web)).unwrap_or_default().to_owned();
    let (methods, default) = match web.app.flow_challenge(&flow).await {
        Ok(c) => c,
        Err(e) => return error_page(&e),
    };
    let selected = chosen.unwrap_or(default.as_str());
    let mut choices: Vec<MethodChoice> =
        methods.iter().map(|m| MethodChoice { value: m.as_str(), label: method_label(*m), checked: m.as_str() == selected }).collect();
    let sendable = methods
        .iter()
        .filter(|m| matches!(m, Method::Sms | Method::Email))
        .map(|m| MethodChoice { value: m.as_str(), label: if *m == Method::Sms { "Text me a code" } else { "Email me a code" }, checked: false })
        .collect();
    choices.push(MethodChoice { value: "recovery_code", label: "Use a recovery code", checked: selected == "recovery_code" });
    let binding = CsrfBinding::of(web, headers, None);
    let status = failed.as_ref().map_or(StatusCode::OK, |e| e.status());
    let retry = failed.as_ref().and_then(|e| e.retry_after());
    let sources: Vec<&str> = methods
        .iter()
        .map(|m| match m {
            Method::Totp => "your authenticator app",
            Method::Sms => "the text message",
            Method::Email => "the email",
        })
        .collect();
    let code_hint = format!("The 6-digit code from {}, or one of your recovery codes.", join_or(&sources));
    let page = SecondFactorPage {
        code_hint,
        csrf: binding.token(web),
        choices,
        sendable,
        notice,
        error: failed.as_ref().map(|e| e.message.clone()),
        errors: failed.map(|e| e.fields).unwrap_or_default(),
    };
    with_retry_after(render(status, &page, binding.set_cookie), retry)
}

/// "a, b or c".
fn join_or(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

async fn second_factor_page(State(web): WebState, headers: HeaderMap) -> Response {
    second_factor_view(&web, &headers, None, None, None).await
}

async fn second_factor_submit(State(web): WebState, headers: HeaderMap, Client(ctx): Client, AnonymousForm(f): AnonymousForm<SecondFactorFields>) -> Response {
    let flow = cookie_value(&headers, flow_cookie_name(&web)).unwrap_or_default().to_owned();
    match web.app.verify_second_factor(&flow, &f.method, &f.code, &ctx).await {
        Ok((signed, _)) => {
            let resp = redirect_with_cookie("/account", web.session_cookie(Some(&signed.token)));
            with_cookie(resp, Some(web.cookie(flow_cookie_name(&web), None)))
        }
        Err(e) if e.status().is_client_error() && e.status() != StatusCode::GONE => {
            let method: String = f.method.chars().take(20).collect();
            second_factor_view(&web, &headers, Some(&method), None, Some(e)).await
        }
        Err(e) => error_page(&e),
    }
}

/// "Text me a code" / "Email me a code" on the second-factor page.
async fn second_factor_send(State(web): WebState, headers: HeaderMap, Client(ctx): Client, AnonymousForm(f): AnonymousForm<SendFields>) -> Response {
    let flow = cookie_value(&headers, flow_cookie_name(&web)).unwrap_or_default().to_owned();
    let method: String = f.method.chars().take(20).collect();
    match web.app.send_sign_in_code(&flow, &method, &ctx).await {
        Ok(to) => second_factor_view(&web, &headers, Some(&method), sent_to(&to), None).await,
        Err(e) if e.status().is_client_error() && e.status() != StatusCode::GONE => second_factor_view(&web, &headers, Some(&method), None, Some(e)).await,
        Err(e) => error_page(&e),
    }
}

// ---------------------------------------------------------------- the JSON API

#[derive(Serialize, ToSchema)]
pub struct CsrfResponse {
    csrf_token: String,
}

/// The CSRF token to send in `X-CSRF-Token` with cookie-authenticated calls.
#[utoipa::path(get, path = "/api/v1/csrf", tag = "session", responses((status = 200, body = CsrfResponse)))]
pub async fn csrf(State(web): WebState, headers: HeaderMap, MaybeSignedIn(current): MaybeSignedIn) -> Response {
    let binding = CsrfBinding::of(&web, &headers, current.as_ref());
    let body = Json(CsrfResponse { csrf_token: binding.token(&web) });
    match binding.set_cookie {
        Some(c) => ([(header::SET_COOKIE, c)], body).into_response(),
        None => body.into_response(),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInBody {
    /// `extension@company-domain`, any case.
    login_name: String,
    password: String,
}

/// Signs in with login name and password. A right password ends signed in (session cookie in
/// `Set-Cookie`), at the second-factor step (`flow`), or — where the company requires 2FA and the
/// user has none — with a session restricted to enrolment.
#[utoipa::path(post, path = "/api/v1/sign-in", tag = "session", request_body = SignInBody,
    responses((status = 200, body = SignInResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn sign_in(State(web): WebState, Client(ctx): Client, ApiJson(body): ApiJson<SignInBody>) -> Result<Response, AppError> {
    Ok(sign_in_response(&web, web.app.sign_in(&body.login_name, &body.password, &ctx).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    /// `totp`, `sms`, `email` or `recovery_code`.
    method: String,
    code: String,
}

/// The second-factor step. Wrong codes count against the account (all its flows); after 5 within
/// 15 minutes the step is locked for 15 minutes (429).
#[utoipa::path(post, path = "/api/v1/sign-in/{flow}/verify", tag = "session", request_body = VerifyBody, params(("flow" = String, Path,)),
    responses((status = 200, body = SignInResponse), (status = 401, description = "invalid_code", body = ErrorBody),
        (status = 410, description = "flow_expired", body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn sign_in_verify(State(web): WebState, ApiPath(flow): ApiPath<String>, Client(ctx): Client, ApiJson(b): ApiJson<VerifyBody>) -> Result<Response, AppError> {
    let (signed, left) = web.app.verify_second_factor(&flow, &b.method, &b.code, &ctx).await?;
    Ok(signed_in(&web, &signed, left))
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
pub async fn sign_in_send(State(web): WebState, ApiPath(flow): ApiPath<String>, Client(ctx): Client, ApiJson(b): ApiJson<SendBody>) -> Result<Response, AppError> {
    Ok(accepted(web.app.send_sign_in_code(&flow, &b.method, &ctx).await?))
}

#[utoipa::path(post, path = "/api/v1/sign-out", tag = "session", responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn sign_out(State(web): WebState, Client(ctx): Client, SignedIn(current): SignedIn) -> Result<Response, AppError> {
    web.app.sign_out(&current.token, &current.user, &ctx).await?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, web.session_cookie(None))]).into_response())
}
