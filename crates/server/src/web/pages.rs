//! Server-rendered pages, usable without JavaScript: sign in, Complete Setup, forgot password,
//! reset password, forgot login name, and My Account. Each form carries a CSRF token; each error
//! stands next to its field.

use std::sync::Arc;

use askama::Template;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use latchkey_core::flows::activation::CompleteSetupForm;
use latchkey_core::flows::password_reset::NewPasswordForm;
use latchkey_core::{FieldErrors, LoginName};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::session::{Client, CsrfBinding, Current, MaybeSignedIn, PageUser};
use super::Web;
use crate::app::{rfc3339, SignInOutcome};
use latchkey_core::two_factor::Method;
use crate::error::ApiError;

type WebState = State<Arc<Web>>;

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/", get(home))
        .route("/static/latchkey.css", get(stylesheet))
        .route("/static/latchkey.js", get(script))
        .route("/sign-in", get(sign_in_page).post(sign_in_submit))
        .route("/sign-out", post(sign_out))
        .route("/complete-setup/{token}", get(complete_setup_page).post(complete_setup_submit))
        .route("/forgot-password", get(forgot_password_page).post(forgot_password_submit))
        .route("/reset-password/{token}", get(reset_password_page).post(reset_password_submit))
        .route("/forgot-login-name", get(forgot_login_page).post(forgot_login_submit))
        .route("/sign-in/second-factor", get(second_factor_page).post(second_factor_submit))
        .route("/account/two-factor/setup", get(totp_setup_page).post(totp_setup_submit))
        .route("/account", get(account_page))
        .route("/account/password", post(account_password))
        .route("/account/pin", post(account_pin))
        .route("/account/sessions/revoke-others", post(account_revoke_others))
        .route("/account/sessions/{id}/revoke", post(account_revoke_session))
}

const CSS: &str = include_str!("../../static/latchkey.css");

async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], CSS).into_response()
}

const JS: &str = include_str!("../../static/latchkey.js");

async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], JS).into_response()
}

/// Renders a template with a status, and the anonymous CSRF cookie when one was just made.
pub(super) fn render(status: StatusCode, page: &impl Template, set_cookie: Option<String>) -> Response {
    match page.render() {
        Ok(html) => {
            let mut resp = (status, Html(html)).into_response();
            if let Some(c) = set_cookie.and_then(|c| c.parse().ok()) {
                resp.headers_mut().append(header::SET_COOKIE, c);
            }
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong on our side.").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "pages/notice.html")]
struct Notice<'a> {
    title: &'a str,
    message: &'a str,
    action_href: &'a str,
    action_label: &'a str,
}

/// A page that says one thing and offers one way on.
pub(super) fn notice_page(status: StatusCode, title: &str, message: &str, action_href: &str, action_label: &str) -> Response {
    render(status, &Notice { title, message, action_href, action_label }, None)
}

/// A page for an error with no form to go back to: what happened and where to go next.
pub fn error_page(e: &ApiError) -> Response {
    let (href, label) = match e.code {
        "link_expired" | "link_replaced" | "link_used" | "link_not_found" => ("/forgot-password", "Forgot Password"),
        c if c.starts_with("sso_") => ("/sign-in", "Sign in with your password"),
        _ => ("/sign-in", "Go to sign in"),
    };
    let (href, label) = if e.code == "link_used" && e.message.contains("account is set up") { ("/sign-in", "Go to sign in") } else { (href, label) };
    error_page_to(e, href, label)
}

/// An error page whose way on is the caller's (a link that is not a password link, say).
pub(super) fn error_page_to(e: &ApiError, href: &str, label: &str) -> Response {
    let title = match e.code {
        "link_expired" => "This link has expired",
        "link_used" => "This link was already used",
        "link_replaced" => "This link was replaced",
        "link_not_found" => "This link is not valid",
        "too_many_attempts" => "Too many attempts",
        "csrf_failed" => "Please try again",
        "sso_denied" => "You were not signed in",
        "sso_state_invalid" | "sso_expired" => "This sign-in cannot continue",
        "sso_unavailable" => "The sign-in provider is unavailable",
        "sso_refused" => "The sign-in could not be verified",
        "sso_not_offered" => "This sign-in is not offered",
        "store_unavailable" | "timeout" | "busy" => "Temporarily unavailable",
        _ => "Something is not right",
    };
    let mut resp = render(e.status, &Notice { title, message: &e.message, action_href: href, action_label: label }, None);
    if let Some(secs) = e.retry_after.and_then(|s| s.to_string().parse().ok()) {
        resp.headers_mut().insert(header::RETRY_AFTER, secs);
    }
    resp
}

pub fn not_found_page() -> Response {
    notice_page(StatusCode::NOT_FOUND, "Page not found", "There is nothing at this address.", "/sign-in", "Go to sign in")
}

/// `Form` whose rejections become a readable page instead of plain text.
pub(super) struct PageForm<T>(pub(super) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for PageForm<T> {
    type Rejection = Response;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Form::<T>::from_request(req, state)
            .await
            .map(|Form(v)| PageForm(v))
            .map_err(|r| error_page(&ApiError::new(r.status(), "bad_request", "The form could not be read. Reload the page and try again.")))
    }
}

/// Checks the form's CSRF token against the request's binding.
pub(super) fn check_csrf(web: &Web, headers: &HeaderMap, current: Option<&Current>, presented: &str) -> Result<(), Response> {
    let binding = CsrfBinding::of(web, headers, current);
    if binding.set_cookie.is_some() || !web.csrf_valid(&binding.binding, presented) {
        return Err(error_page(&ApiError::csrf()));
    }
    Ok(())
}

async fn home(MaybeSignedIn(current): MaybeSignedIn) -> Redirect {
    Redirect::to(if current.is_some() { "/account" } else { "/sign-in" })
}

// ---------------------------------------------------------------- sign in / sign out

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

async fn sign_in_submit(State(web): WebState, headers: HeaderMap, Client(ctx): Client, PageForm(f): PageForm<SignInForm>) -> Response {
    if let Err(r) = check_csrf(&web, &headers, None, &f.csrf_token) {
        return r;
    }
    match web.app.sign_in(&f.login_name, &f.password, &ctx).await {
        Ok(outcome) => signed_in_response(&web, outcome),
        Err(e) if e.status.is_client_error() => {
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
            let mut resp = render(e.status, &page, binding.set_cookie);
            if let Some(v) = e.retry_after.and_then(|s| s.to_string().parse().ok()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
        Err(e) => error_page(&e),
    }
}

/// Where a completed first factor (a password, or single sign-on) sends the browser.
pub(super) fn signed_in_response(web: &Web, outcome: SignInOutcome) -> Response {
    match outcome {
        SignInOutcome::SignedIn(signed) => redirect_with_cookie("/account", web.session_cookie(Some(&signed.token))),
        SignInOutcome::SecondFactor { flow, .. } => redirect_with_cookie("/sign-in/second-factor", web.cookie(flow_cookie_name(web), Some(flow.expose()))),
        SignInOutcome::EnrollmentRequired { session, .. } => redirect_with_cookie("/account/two-factor/enroll", web.session_cookie(Some(&session.token))),
    }
}

#[derive(Deserialize)]
pub(super) struct CsrfOnly {
    pub(super) csrf_token: String,
}

/// Also for a session restricted to enrolment: someone who cannot set up a method now can leave.
async fn sign_out(State(web): WebState, headers: HeaderMap, Client(ctx): Client, PageForm(f): PageForm<CsrfOnly>) -> Response {
    let current = match enrolling_user(&web, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(r) = check_csrf(&web, &headers, Some(&current), &f.csrf_token) {
        return r;
    }
    if let Err(e) = web.app.sign_out(&current.token, &current.user, &ctx).await {
        return error_page(&e);
    }
    let mut resp = Redirect::to("/sign-in?done=signed-out").into_response();
    if let Ok(v) = web.session_cookie(None).parse() {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

// ---------------------------------------------------------------- Complete Setup

/// "24 Nov 2026, 09:00 UTC": what a person reads; the machine form stays in `datetime`.
pub(super) fn human_time(t: time::OffsetDateTime) -> String {
    t.format(&time::macros::format_description!("[day padding:none] [month repr:short] [year], [hour]:[minute] UTC")).unwrap_or_default()
}

fn password_hint(min_length: usize) -> String {
    format!("At least {min_length} characters, with at least 1 capital letter and 1 number.")
}

#[derive(Template)]
#[template(path = "pages/complete_setup.html")]
struct CompleteSetupPage {
    csrf: String,
    token: String,
    login_name: String,
    company_name: String,
    expires_at: String,
    expires_human: String,
    password_hint: String,
    error: Option<String>,
    errors: FieldErrors,
}

async fn complete_setup_page(State(web): WebState, headers: HeaderMap, Path(token): Path<String>) -> Response {
    complete_setup_view(&web, &headers, token, None).await
}

/// The Complete Setup page for a link, showing `failed` (a refused Save) next to its fields; a
/// link that no longer works shows its own page instead.
async fn complete_setup_view(web: &Web, headers: &HeaderMap, token: String, failed: Option<ApiError>) -> Response {
    let v = match web.app.open_activation(&token).await {
        Ok(v) => v,
        Err(e) => return error_page(failed.as_ref().unwrap_or(&e)),
    };
    let binding = CsrfBinding::of(web, headers, None);
    let status = failed.as_ref().map_or(StatusCode::OK, |e| e.status);
    let page = CompleteSetupPage {
        csrf: binding.token(web),
        token,
        login_name: v.login_name,
        company_name: v.company_name,
        expires_at: rfc3339(v.expires_at),
        expires_human: human_time(v.expires_at),
        password_hint: password_hint(v.password_min_length),
        error: failed.as_ref().map(|e| e.message.clone()),
        errors: failed.map(|e| e.fields).unwrap_or_default(),
    };
    render(status, &page, binding.set_cookie)
}

#[derive(Deserialize)]
struct CompleteSetupFields {
    csrf_token: String,
    password: String,
    password_confirmation: String,
    pin: String,
}

async fn complete_setup_submit(
    State(web): WebState,
    headers: HeaderMap,
    Path(token): Path<String>,
    Client(ctx): Client,
    PageForm(f): PageForm<CompleteSetupFields>,
) -> Response {
    if let Err(r) = check_csrf(&web, &headers, None, &f.csrf_token) {
        return r;
    }
    let form = CompleteSetupForm { password: f.password, password_confirmation: f.password_confirmation, pin: f.pin };
    match web.app.complete_setup(&token, &form, &ctx).await {
        Ok(_) => Redirect::to("/sign-in?done=setup").into_response(),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY || e.status == StatusCode::SERVICE_UNAVAILABLE => {
            complete_setup_view(&web, &headers, token, Some(e)).await
        }
        Err(e) => error_page(&e),
    }
}

// ---------------------------------------------------------------- forgot password / reset

#[derive(Template)]
#[template(path = "pages/forgot_password.html")]
struct ForgotPasswordPage<'a> {
    csrf: String,
    value: &'a str,
    errors: FieldErrors,
}

async fn forgot_password_page(State(web): WebState, headers: HeaderMap) -> Response {
    let binding = CsrfBinding::of(&web, &headers, None);
    render(StatusCode::OK, &ForgotPasswordPage { csrf: binding.token(&web), value: "", errors: FieldErrors::new() }, binding.set_cookie)
}

#[derive(Deserialize)]
struct ForgotPasswordFields {
    csrf_token: String,
    /// Designated email or login name: one field, as people do not know which they have.
    account: String,
}

async fn forgot_password_submit(State(web): WebState, headers: HeaderMap, Client(ctx): Client, PageForm(f): PageForm<ForgotPasswordFields>) -> Response {
    if let Err(r) = check_csrf(&web, &headers, None, &f.csrf_token) {
        return r;
    }
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
        Ok(()) => render(
            StatusCode::OK,
            &Notice {
                title: "Check your email",
                message: "If an account matches, we sent a password reset link to its designated email. The link works for 3 hours and only once. Check your spam folder too.",
                action_href: "/sign-in",
                action_label: "Back to sign in",
            },
            None,
        ),
        Err(e) => {
            let mut errors = FieldErrors::new();
            errors.add("account", "Enter your designated email or your login name (like 101@organization.com).");
            let binding = CsrfBinding::of(&web, &headers, None);
            let value: String = value.chars().take(300).collect();
            render(e.status, &ForgotPasswordPage { csrf: binding.token(&web), value: &value, errors }, binding.set_cookie)
        }
    }
}

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

async fn reset_password_view(web: &Web, headers: &HeaderMap, token: String, failed: Option<ApiError>) -> Response {
    let v = match web.app.open_reset(&token).await {
        Ok(v) => v,
        Err(e) => return error_page(failed.as_ref().unwrap_or(&e)),
    };
    let binding = CsrfBinding::of(web, headers, None);
    let status = failed.as_ref().map_or(StatusCode::OK, |e| e.status);
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

#[derive(Deserialize)]
struct NewPasswordFields {
    csrf_token: String,
    password: String,
    password_confirmation: String,
}

async fn reset_password_submit(
    State(web): WebState,
    headers: HeaderMap,
    Path(token): Path<String>,
    Client(ctx): Client,
    PageForm(f): PageForm<NewPasswordFields>,
) -> Response {
    if let Err(r) = check_csrf(&web, &headers, None, &f.csrf_token) {
        return r;
    }
    let form = NewPasswordForm { password: f.password, password_confirmation: f.password_confirmation };
    match web.app.reset_password(&token, &form, &ctx).await {
        Ok(_) => Redirect::to("/sign-in?done=reset").into_response(),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY || e.status == StatusCode::SERVICE_UNAVAILABLE => {
            reset_password_view(&web, &headers, token, Some(e)).await
        }
        Err(e) => error_page(&e),
    }
}

// ---------------------------------------------------------------- forgot login name

#[derive(Template)]
#[template(path = "pages/forgot_login_name.html")]
struct ForgotLoginPage<'a> {
    csrf: String,
    value: &'a str,
    errors: FieldErrors,
}

async fn forgot_login_page(State(web): WebState, headers: HeaderMap) -> Response {
    let binding = CsrfBinding::of(&web, &headers, None);
    render(StatusCode::OK, &ForgotLoginPage { csrf: binding.token(&web), value: "", errors: FieldErrors::new() }, binding.set_cookie)
}

#[derive(Deserialize)]
struct ForgotLoginFields {
    csrf_token: String,
    email: String,
}

async fn forgot_login_submit(State(web): WebState, headers: HeaderMap, PageForm(f): PageForm<ForgotLoginFields>) -> Response {
    if let Err(r) = check_csrf(&web, &headers, None, &f.csrf_token) {
        return r;
    }
    match web.app.forgot_login_name(&f.email) {
        Ok(()) => render(
            StatusCode::OK,
            &Notice {
                title: "Check your email",
                message: "If accounts use this email, we sent it the list of their login names.",
                action_href: "/sign-in",
                action_label: "Back to sign in",
            },
            None,
        ),
        Err(e) => {
            let binding = CsrfBinding::of(&web, &headers, None);
            let value: String = f.email.chars().take(300).collect();
            render(e.status, &ForgotLoginPage { csrf: binding.token(&web), value: &value, errors: e.fields.clone() }, binding.set_cookie)
        }
    }
}

// ---------------------------------------------------------------- My Account

/// One method in the Multi-Factor Authentication section of My Account.
struct MethodRow {
    label: &'static str,
    on: bool,
    /// The masked phone number or the address codes go to.
    detail: String,
    setup_href: &'static str,
    setup_label: &'static str,
    remove_href: String,
}

fn method_row(m: Method, stored: Option<&latchkey_store::StoredMethod>) -> MethodRow {
    let (setup_href, setup_label) = match m {
        Method::Totp => ("/account/two-factor/setup", "Set up authenticator app"),
        Method::Sms => ("/account/two-factor/sms", "Set up text messages"),
        Method::Email => ("/account/two-factor/email", "Set up email codes"),
    };
    let detail = stored.and_then(|s| s.detail.as_deref()).map(|d| match m {
        Method::Sms => latchkey_core::two_factor::E164::mask(d),
        _ => d.to_owned(),
    });
    MethodRow {
        label: method_label(m),
        on: stored.is_some(),
        detail: detail.unwrap_or_default(),
        setup_href,
        setup_label,
        remove_href: format!("/account/two-factor/remove/{}", m.as_str()),
    }
}

struct SessionRow {
    handle: String,
    created_at: String,
    last_seen_at: String,
    client: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "pages/account.html")]
struct AccountPage {
    csrf: String,
    login_name: String,
    extension: String,
    company_name: String,
    role: &'static str,
    designated_email: String,
    email_verified: bool,
    additional_emails: Vec<String>,
    sessions: Vec<SessionRow>,
    /// Linked Google / Microsoft sign-ins, and the providers the user can link.
    sso_links: Vec<SsoLinkRow>,
    sso_offered: Vec<&'static str>,
    two_factor_available: bool,
    method_rows: Vec<MethodRow>,
    recovery_codes_left: Option<i64>,
    preferred_options: Vec<MethodChoice>,
    /// The company's locked default method, shown instead of the choice.
    locked_default: Option<&'static str>,
    password_hint: String,
    notice: Option<&'static str>,
    password_errors: FieldErrors,
    pin_errors: FieldErrors,
    error: Option<String>,
    /// Office managers and supervisors get a link to the company console.
    console: bool,
}

pub(super) struct SsoLinkRow {
    id: i64,
    provider: &'static str,
    email: String,
    linked_at: String,
    last_used_at: String,
}

/// The user's links, and the providers the company enabled (linking one is signing in with it
/// once, signed out: the first time asks for this account's password).
async fn sso_rows(web: &Web, u: &latchkey_store::User) -> Result<(Vec<SsoLinkRow>, Vec<&'static str>), ApiError> {
    let links = web.app.sso_links(u).await?;
    let settings = web.app.store.sso_settings(u.company_id).await?;
    let rows = links
        .iter()
        .map(|l| SsoLinkRow {
            id: l.id,
            provider: latchkey_core::flows::sso::Provider::parse(&l.provider).map_or("Single sign-on", |p| p.label()),
            email: l.email.clone().unwrap_or_default(),
            linked_at: human_time(l.linked_at),
            last_used_at: l.last_used_at.map(human_time).unwrap_or_else(|| "never".into()),
        })
        .collect();
    let offered = web
        .app
        .sso_providers()
        .into_iter()
        .filter(|p| settings.allows(p.as_str()))
        .map(|p| p.label())
        .collect();
    Ok((rows, offered))
}

#[derive(Deserialize)]
struct AccountQuery {
    done: Option<String>,
}

fn account_notice(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "password" => Some("Your password was changed. Your other sessions were signed out."),
        "pin" => Some("Your voicemail PIN was changed."),
        "sessions" => Some("Your other sessions were signed out."),
        "session" => Some("That session was signed out."),
        "two-factor" => Some("The authenticator app is set up. You will be asked for its code when you sign in."),
        "two-factor-sms" => Some("Text message codes are on. You can choose them when you sign in."),
        "two-factor-email" => Some("Email codes are on. You can choose them when you sign in."),
        "two-factor-removed" => Some("The method was removed."),
        "email-verified" => Some("Your email is verified."),
        "preferred" => Some("Your default method was saved."),
        "recovery-codes" => Some("Your new recovery codes are ready. The earlier ones no longer work."),
        "sso-unlinked" => Some("The linked sign-in was removed. It can be linked again at any time."),
        _ => None,
    }
}

pub(super) fn role_label(role: latchkey_core::Role) -> &'static str {
    match role {
        latchkey_core::Role::User => "User",
        latchkey_core::Role::Supervisor => "Call Center Supervisor",
        latchkey_core::Role::OfficeManager => "Office Manager",
    }
}

async fn account_view(web: &Web, current: &Current, notice: Option<&'static str>) -> Result<AccountPage, ApiError> {
    let u = &current.user;
    let sessions = web.app.sessions(u).await?;
    let emails = web.app.store.additional_emails(u.id).await?;
    let stored = web.app.store.methods_of_user(u.id).await?;
    let recovery_codes_left = if stored.is_empty() { None } else { Some(web.app.store.recovery_codes_left(u.id).await?) };
    let company = web.app.company_two_factor(u.company_id).await?;
    let find = |m: Method| stored.iter().find(|s| s.method == m.as_str());
    // The company's allowed methods, and any the user still has from before it narrowed them.
    let shown: Vec<Method> = Method::ALL.into_iter().filter(|m| company.allowed.contains(m) || find(*m).is_some()).collect();
    let preferred = web.app.store.preferred_method(u.id).await?;
    let enabled: Vec<Method> = shown.iter().copied().filter(|m| find(*m).is_some()).collect();
    let (sso_links, sso_offered) = sso_rows(web, u).await?;
    Ok(AccountPage {
        sso_links,
        sso_offered,
        two_factor_available: company.available(),
        method_rows: shown.iter().map(|m| method_row(*m, find(*m))).collect(),
        preferred_options: enabled
            .iter()
            .map(|m| MethodChoice { value: m.as_str(), label: method_label(*m), checked: preferred.as_deref() == Some(m.as_str()) })
            .collect(),
        locked_default: company.default_method.filter(|_| company.default_locked).map(method_label),
        recovery_codes_left,
        csrf: web.csrf_token_for(&current.token),
        login_name: u.login_name.clone(),
        extension: u.extension.clone(),
        company_name: u.company_name.clone(),
        role: role_label(u.role),
        designated_email: u.designated_email.clone(),
        email_verified: u.designated_email_verified_at.is_some(),
        additional_emails: emails.into_iter().map(|e| e.email).collect(),
        sessions: sessions
            .into_iter()
            .map(|s| SessionRow {
                current: s.handle == current.session.handle,
                created_at: human_time(s.created_at),
                last_seen_at: human_time(s.last_seen_at),
                client: describe_client(s.user_agent.as_deref(), s.client_ip.as_deref()),
                handle: s.handle,
            })
            .collect(),
        password_hint: password_hint(latchkey_core::policy::PasswordPolicy::with_min_length(u.company_password_min_length as usize).min_length),
        notice,
        password_errors: FieldErrors::new(),
        pin_errors: FieldErrors::new(),
        error: None,
        console: u.role != latchkey_core::Role::User,
    })
}

/// "Chrome on Linux · 10.0.0.7": enough to recognise a device, nothing more.
pub(super) fn describe_client(ua: Option<&str>, ip: Option<&str>) -> String {
    let ua = ua.unwrap_or("");
    let browser = ["Edg", "Firefox", "Chrome", "Safari"].into_iter().find(|b| ua.contains(b)).map(|b| if b == "Edg" { "Edge" } else { b });
    let os = ["Windows", "Android", "iPhone", "Mac OS", "Linux"].into_iter().find(|o| ua.contains(o)).map(|o| if o == "Mac OS" { "macOS" } else { o });
    let device = match (browser, os) {
        (Some(b), Some(o)) => format!("{b} on {o}"),
        (Some(b), None) => b.to_owned(),
        _ if ua.is_empty() => "Unknown device".to_owned(),
        _ => ua.chars().take(40).collect(),
    };
    match ip {
        Some(ip) => format!("{device} · {ip}"),
        None => device,
    }
}

async fn account_page(State(web): WebState, Query(q): Query<AccountQuery>, PageUser(current): PageUser) -> Response {
    match account_view(&web, &current, account_notice(q.done.as_deref())).await {
        Ok(page) => render(StatusCode::OK, &page, None),
        Err(e) => error_page(&e),
    }
}

/// Shows My Account again with an error that belongs to no form field.
pub(super) async fn account_with_message(web: &Web, current: &Current, e: ApiError) -> Response {
    match account_view(web, current, None).await {
        Ok(mut page) => {
            page.error = Some(e.message.clone());
            render(e.status, &page, None)
        }
        Err(e) => error_page(&e),
    }
}

/// Shows My Account again with the error of one of its forms.
async fn account_with_error(web: &Web, current: &Current, e: ApiError, pin_form: bool) -> Response {
    match account_view(web, current, None).await {
        Ok(mut page) => {
            let mut fields = e.fields.clone();
            if fields.is_empty() {
                page.error = Some(e.message.clone());
            }
            if pin_form {
                std::mem::swap(&mut page.pin_errors, &mut fields);
            } else {
                std::mem::swap(&mut page.password_errors, &mut fields);
            }
            render(e.status, &page, None)
        }
        Err(e) => error_page(&e),
    }
}

#[derive(Deserialize)]
struct PasswordFields {
    csrf_token: String,
    current_password: String,
    password: String,
    password_confirmation: String,
}

async fn account_password(State(web): WebState, headers: HeaderMap, Client(ctx): Client, PageUser(current): PageUser, PageForm(f): PageForm<PasswordFields>) -> Response {
    if let Err(r) = check_csrf(&web, &headers, Some(&current), &f.csrf_token) {
        return r;
    }
    match web.app.change_password(&current.user, &current.token, &f.current_password, &f.password, &f.password_confirmation, &ctx).await {
        Ok(()) => Redirect::to("/account?done=password").into_response(),
        Err(e) => account_with_error(&web, &current, e, false).await,
    }
}

#[derive(Deserialize)]
struct PinFields {
    csrf_token: String,
    // Its own name: the page has a second "current password" field, and ids must be unique.
    #[serde(rename = "pin_current_password")]
    current_password: String,
    pin: String,
}

async fn account_pin(State(web): WebState, headers: HeaderMap, Client(ctx): Client, PageUser(current): PageUser, PageForm(f): PageForm<PinFields>) -> Response {
    if let Err(r) = check_csrf(&web, &headers, Some(&current), &f.csrf_token) {
        return r;
    }
    match web.app.change_pin(&current.user, &f.current_password, &f.pin, &ctx).await {
        Ok(()) => Redirect::to("/account?done=pin").into_response(),
        Err(e) => account_with_error(&web, &current, e, true).await,
    }
}

async fn account_revoke_others(State(web): WebState, headers: HeaderMap, Client(ctx): Client, PageUser(current): PageUser, PageForm(f): PageForm<CsrfOnly>) -> Response {
    if let Err(r) = check_csrf(&web, &headers, Some(&current), &f.csrf_token) {
        return r;
    }
    match web.app.revoke_other_sessions(&current.user, &current.token, &ctx).await {
        Ok(_) => Redirect::to("/account?done=sessions").into_response(),
        Err(e) => error_page(&e),
    }
}

async fn account_revoke_session(
    State(web): WebState,
    headers: HeaderMap,
    Client(ctx): Client,
    PageUser(current): PageUser,
    Path(id): Path<String>,
    PageForm(f): PageForm<CsrfOnly>,
) -> Response {
    if let Err(r) = check_csrf(&web, &headers, Some(&current), &f.csrf_token) {
        return r;
    }
    match web.app.revoke_session(&current.user, &id, &ctx).await {
        Ok(()) if id == current.session.handle => Redirect::to("/sign-in?done=signed-out").into_response(),
        Ok(()) => Redirect::to("/account?done=session").into_response(),
        Err(e) => error_page(&e),
    }
}


// ---------------------------------------------------------------- two-factor

pub(super) fn redirect_with_cookie(to: &str, cookie: String) -> Response {
    let mut resp = Redirect::to(to).into_response();
    if let Ok(v) = cookie.parse() {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// The cookie that carries a sign-in waiting at the second-factor step (its token, not a session).
pub(super) fn flow_cookie_name(web: &Web) -> &'static str {
    if web.app.config.cookie_secure { "__Host-latchkey_flow" } else { "latchkey_flow" }
}

struct MethodChoice {
    value: &'static str,
    label: &'static str,
    checked: bool,
}

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

pub(super) fn method_label(m: Method) -> &'static str {
    match m {
        Method::Totp => "Authenticator app",
        Method::Sms => "Text message (SMS)",
        Method::Email => "Email",
    }
}

pub(super) async fn second_factor_view(web: &Web, headers: &HeaderMap, chosen: Option<&str>, notice: Option<String>, failed: Option<ApiError>) -> Response {
    let flow = super::session::cookie_value(headers, flow_cookie_name(web)).unwrap_or_default().to_owned();
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
    let status = failed.as_ref().map_or(StatusCode::OK, |e| e.status);
    let retry = failed.as_ref().and_then(|e| e.retry_after);
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
    let mut resp = render(status, &page, binding.set_cookie);
    if let Some(v) = retry.and_then(|s| s.to_string().parse().ok()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

async fn second_factor_page(State(web): WebState, headers: HeaderMap) -> Response {
    second_factor_view(&web, &headers, None, None, None).await
}

#[derive(Deserialize)]
struct SecondFactorFields {
    csrf_token: String,
    method: String,
    code: String,
}

async fn second_factor_submit(State(web): WebState, headers: HeaderMap, Client(ctx): Client, PageForm(f): PageForm<SecondFactorFields>) -> Response {
    if let Err(r) = check_csrf(&web, &headers, None, &f.csrf_token) {
        return r;
    }
    let flow = super::session::cookie_value(&headers, flow_cookie_name(&web)).unwrap_or_default().to_owned();
    match web.app.verify_second_factor(&flow, &f.method, &f.code, &ctx).await {
        Ok((signed, _)) => {
            let mut resp = redirect_with_cookie("/account", web.session_cookie(Some(&signed.token)));
            if let Ok(v) = web.cookie(flow_cookie_name(&web), None).parse() {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            resp
        }
        Err(e) if e.status.is_client_error() && e.status != StatusCode::GONE => {
            let method: String = f.method.chars().take(20).collect();
            second_factor_view(&web, &headers, Some(&method), None, Some(e)).await
        }
        Err(e) => error_page(&e),
    }
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

#[derive(Template)]
#[template(path = "pages/recovery_codes.html")]
struct RecoveryCodesPage {
    codes: Vec<String>,
    continue_href: String,
    download_href: String,
    file_name: String,
}

/// The recovery codes, shown once, with a .txt download, a box to copy from and a printout.
/// `done` names the notice My Account shows after Continue.
pub(super) fn recovery_codes_page(login_name: &str, codes: Vec<String>, done: &str) -> Response {
    let txt = format!("Recovery codes for {login_name}\n\nEach code works once, in place of your second factor.\n\n{}\n", codes.join("\n"));
    let page = RecoveryCodesPage {
        download_href: format!("data:text/plain;charset=utf-8,{}", url::form_urlencoded::byte_serialize(txt.as_bytes()).collect::<String>().replace('+', "%20")),
        file_name: format!("recovery-codes-{}.txt", login_name.replace('@', "-at-")),
        continue_href: format!("/account?done={done}"),
        codes,
    };
    render(StatusCode::OK, &page, None)
}

async fn totp_setup_view(web: &Web, current: &Current, failed: Option<ApiError>) -> Response {
    let setup = match web.app.totp_enrollment_for_page(&current.user).await {
        Ok(s) => s,
        Err(e) => return error_page(&e),
    };
    let secret_groups = setup.secret.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ");
    let status = failed.as_ref().map_or(StatusCode::OK, |e| e.status);
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

/// "a, b or c".
fn join_or(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// A refused code (wrong, used, expired) belongs next to the code field.
pub(super) fn is_code_error(e: &ApiError) -> bool {
    matches!(e.code, "invalid_code" | "code_used" | "code_expired")
}

/// The error's field messages, with a refused code's message under `code`.
pub(super) fn code_errors_at_field(e: ApiError) -> FieldErrors {
    if is_code_error(&e) {
        let mut f = FieldErrors::new();
        f.add("code", e.message);
        f
    } else {
        e.fields
    }
}

/// Pages for a signed-in user whose session may be restricted to enrolment.
pub(super) async fn enrolling_user(web: &Web, headers: &HeaderMap) -> Result<Current, Response> {
    let Some(token) = super::session::cookie_value(headers, web.session_cookie_name()) else {
        return Err(Redirect::to("/sign-in").into_response());
    };
    match web.app.resolve_session(token).await {
        Ok(Some((session, user))) => Ok(Current { token: token.to_owned(), session, user }),
        Ok(None) => Err(Redirect::to("/sign-in").into_response()),
        Err(e) => Err(error_page(&e)),
    }
}

async fn totp_setup_page(State(web): WebState, headers: HeaderMap) -> Response {
    match enrolling_user(&web, &headers).await {
        Ok(current) => totp_setup_view(&web, &current, None).await,
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct TotpSetupFields {
    csrf_token: String,
    code: String,
    current_password: String,
}

async fn totp_setup_submit(State(web): WebState, headers: HeaderMap, Client(ctx): Client, PageForm(f): PageForm<TotpSetupFields>) -> Response {
    let current = match enrolling_user(&web, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(r) = check_csrf(&web, &headers, Some(&current), &f.csrf_token) {
        return r;
    }
    match web.app.confirm_totp(&current.user, &f.code, &f.current_password, &ctx).await {
        Ok(codes) => {
            if let Err(e) = web.app.finish_enrolment(&current.token, &current.session).await {
                return error_page(&e);
            }
            match codes {
                Some(codes) => recovery_codes_page(&current.user.login_name, codes, "two-factor"),
                None => Redirect::to("/account?done=two-factor").into_response(),
            }
        }
        Err(e) if e.status.is_client_error() => totp_setup_view(&web, &current, Some(e)).await,
        Err(e) => error_page(&e),
    }
}
