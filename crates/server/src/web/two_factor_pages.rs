//! The pages for texted and emailed codes (C6): sending a code at the second-factor step,
//! verifying the designated email, setting up SMS and email codes, removing a method, getting new
//! recovery codes, and choosing the default method. Each is a "send a code, enter it" step over the
//! same services as the JSON API.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use latchkey_core::two_factor::Method;
use latchkey_core::FieldErrors;
use serde::Deserialize;

use super::pages::{
    check_csrf, code_errors_at_field, enrolling_user, is_code_error, error_page, flow_cookie_name, recovery_codes_page, render, second_factor_view, CsrfOnly, PageForm,
};
use super::session::{Client, Current, PageUser};
use super::Web;
use crate::error::ApiError;

type WebState = State<Arc<Web>>;

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/sign-in/second-factor/send", post(sign_in_send))
        .route("/account/email-verification", get(email_verification_page).post(email_verification_send))
        .route("/account/email-verification/confirm", post(email_verification_confirm))
        .route("/account/two-factor/sms", get(sms_page).post(sms_send))
        .route("/account/two-factor/sms/confirm", post(sms_confirm))
        .route("/account/two-factor/email", get(email_page).post(email_send))
        .route("/account/two-factor/email/confirm", post(email_confirm))
        .route("/account/two-factor/remove/{method}", get(remove_page).post(remove_submit))
        .route("/account/two-factor/remove/{method}/send", post(remove_send))
        .route("/account/recovery-codes", get(recovery_page).post(recovery_submit))
        .route("/account/recovery-codes/send", post(recovery_send))
        .route("/account/two-factor/preferred", post(preferred))
        .route("/account/two-factor/enroll", get(enroll_page))
}

struct SendForm {
    action: String,
    label: &'static str,
    phone: bool,
}

struct ConfirmForm {
    action: String,
    label: &'static str,
    hint: &'static str,
    danger: bool,
}

#[derive(Template)]
#[template(path = "pages/code_step.html")]
struct CodeStepPage {
    title: &'static str,
    lead: String,
    csrf: String,
    restricted: bool,
    notice: Option<String>,
    error: Option<String>,
    errors: FieldErrors,
    phone: String,
    send: Option<SendForm>,
    confirm: Option<ConfirmForm>,
}

impl CodeStepPage {
    fn new(web: &Web, current: &Current, title: &'static str, lead: String) -> Self {
        Self {
            title,
            lead,
            csrf: web.csrf_token_for(&current.token),
            restricted: current.session.restricted,
            notice: None,
            error: None,
            errors: FieldErrors::new(),
            phone: String::new(),
            send: None,
            confirm: None,
        }
    }

    fn send(mut self, action: impl Into<String>, label: &'static str) -> Self {
        self.send = Some(SendForm { action: action.into(), label, phone: false });
        self
    }

    fn confirm(mut self, action: impl Into<String>, label: &'static str, hint: &'static str) -> Self {
        self.confirm = Some(ConfirmForm { action: action.into(), label, hint, danger: false });
        self
    }

    /// After "Email me a verification code": the notice, and the button now offers a new code.
    fn after_send(mut self, sent: Result<String, ApiError>) -> Response {
        if sent.is_ok() {
            if let Some(f) = self.send.as_mut() {
                f.label = "Email me a new code";
            }
        }
        self.outcome(sent.map(|to| sent_to(&to)))
    }

    /// Shows what happened: a sent code's destination, or the error of the last submit (next to
    /// its field where it has one).
    fn outcome(mut self, sent: Result<Option<String>, ApiError>) -> Response {
        let status = match sent {
            Ok(notice) => {
                self.notice = notice;
                StatusCode::OK
            }
            Err(e) if e.status.is_client_error() => {
                if e.fields.is_empty() && !is_code_error(&e) {
                    self.error = Some(e.message.clone());
                }
                let status = e.status;
                self.errors = code_errors_at_field(e);
                status
            }
            Err(e) => return error_page(&e),
        };
        render(status, &self, None)
    }
}

fn sent_to(destination: &str) -> Option<String> {
    Some(format!("We sent a code to {destination}. It works for 10 minutes."))
}

#[derive(Deserialize)]
struct SendFields {
    csrf_token: String,
    method: String,
}

/// "Text me a code" / "Email me a code" on the second-factor page.
async fn sign_in_send(State(web): WebState, headers: HeaderMap, Client(ctx): Client, PageForm(f): PageForm<SendFields>) -> Response {
    if let Err(r) = check_csrf(&web, &headers, None, &f.csrf_token) {
        return r;
    }
    let flow = super::session::cookie_value(&headers, flow_cookie_name(&web)).unwrap_or_default().to_owned();
    let method: String = f.method.chars().take(20).collect();
    match web.app.send_sign_in_code(&flow, &method, &ctx).await {
        Ok(to) => second_factor_view(&web, &headers, Some(&method), sent_to(&to), None).await,
        Err(e) if e.status.is_client_error() && e.status != StatusCode::GONE => second_factor_view(&web, &headers, Some(&method), None, Some(e)).await,
        Err(e) => error_page(&e),
    }
}

#[derive(Deserialize)]
struct CodeFields {
    csrf_token: String,
    code: String,
}

/// The signed-in user of an enrolment page (a restricted session may enrol), with the form's
/// CSRF token checked on a POST.
async fn enrolling(web: &Web, headers: &HeaderMap, csrf: Option<&str>) -> Result<Current, Response> {
    let current = enrolling_user(web, headers).await?;
    if let Some(presented) = csrf {
        check_csrf(web, headers, Some(&current), presented)?;
    }
    Ok(current)
}

// ---------------------------------------------------------------- the designated email

fn email_verification_step(web: &Web, current: &Current) -> CodeStepPage {
    CodeStepPage::new(web, current, "Verify your email", format!("We send a code to {}; enter it here to show the address is yours.", current.user.designated_email))
        .send("/account/email-verification", "Email me a code")
        .confirm("/account/email-verification/confirm", "Verify", "The 6-digit code from the email.")
}

async fn email_verification_page(State(web): WebState, headers: HeaderMap) -> Response {
    match enrolling(&web, &headers, None).await {
        Ok(current) => email_verification_step(&web, &current).outcome(Ok(None)),
        Err(r) => r,
    }
}

async fn email_verification_send(State(web): WebState, headers: HeaderMap, Client(ctx): Client, PageForm(f): PageForm<CsrfOnly>) -> Response {
    let current = match enrolling(&web, &headers, Some(&f.csrf_token)).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let sent = web.app.request_email_verification(&current.user, &ctx).await.map(|()| sent_to(&current.user.designated_email));
    email_verification_step(&web, &current).outcome(sent)
}

async fn email_verification_confirm(State(web): WebState, headers: HeaderMap, Client(ctx): Client, PageForm(f): PageForm<CodeFields>) -> Response {
    let current = match enrolling(&web, &headers, Some(&f.csrf_token)).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match web.app.confirm_email_verification(&current.user, &f.code, &ctx).await {
        Ok(()) if current.session.restricted => Redirect::to("/account/two-factor/email").into_response(),
        Ok(()) => Redirect::to("/account?done=email-verified").into_response(),
        Err(e) => email_verification_step(&web, &current).outcome(Err(e)),
    }
}

// ---------------------------------------------------------------- SMS and email codes

fn sms_step(web: &Web, current: &Current, phone: &str, code_sent: bool) -> CodeStepPage {
    let mut page = CodeStepPage::new(web, current, "Set up text messages", "We text a code to your mobile number; enter it here to turn on SMS codes.".into());
    page.phone = phone.to_owned();
    page.send = Some(SendForm { action: "/account/two-factor/sms".into(), label: if code_sent { "Send a new code" } else { "Text me a code" }, phone: true });
    if code_sent {
        page = page.confirm("/account/two-factor/sms/confirm", "Turn on SMS codes", "The 6-digit code from the text message.");
    }
    page
}

async fn sms_page(State(web): WebState, headers: HeaderMap) -> Response {
    match enrolling(&web, &headers, None).await {
        Ok(current) => sms_step(&web, &current, "", false).outcome(Ok(None)),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct PhoneFields {
    csrf_token: String,
    phone: String,
}

async fn sms_send(State(web): WebState, headers: HeaderMap, Client(ctx): Client, PageForm(f): PageForm<PhoneFields>) -> Response {
    let current = match enrolling(&web, &headers, Some(&f.csrf_token)).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let phone: String = f.phone.chars().take(40).collect();
    let sent = web.app.start_sms_enrollment(&current.user, &phone, &ctx).await;
    let code_sent = sent.is_ok();
    sms_step(&web, &current, &phone, code_sent).outcome(sent.map(|to| sent_to(&to)))
}

async fn sms_confirm(State(web): WebState, headers: HeaderMap, Client(ctx): Client, PageForm(f): PageForm<CodeFields>) -> Response {
    let current = match enrolling(&web, &headers, Some(&f.csrf_token)).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match web.app.confirm_sms(&current.user, &f.code, &ctx).await {
        Ok(codes) => enrolled(&web, &current, codes, "sms").await,
        Err(e) => sms_step(&web, &current, "", true).outcome(Err(e)),
    }
}

fn email_step(web: &Web, current: &Current, code_sent: bool) -> CodeStepPage {
    let page = CodeStepPage::new(web, current, "Set up email codes", format!("We email a code to {}; enter it here to turn on email codes.", current.user.designated_email))
        .send("/account/two-factor/email", if code_sent { "Send a new code" } else { "Email me a code" });
    if code_sent {
        page.confirm("/account/two-factor/email/confirm", "Turn on email codes", "The 6-digit code from the email.")
    } else {
        page
    }
}

async fn email_page(State(web): WebState, headers: HeaderMap) -> Response {
    match enrolling(&web, &headers, None).await {
        // Email codes need a verified address: verify it first, then come back here.
        Ok(current) if current.user.designated_email_verified_at.is_none() => Redirect::to("/account/email-verification").into_response(),
        Ok(current) => email_step(&web, &current, false).outcome(Ok(None)),
        Err(r) => r,
    }
}

async fn email_send(State(web): WebState, headers: HeaderMap, Client(ctx): Client, PageForm(f): PageForm<CsrfOnly>) -> Response {
    let current = match enrolling(&web, &headers, Some(&f.csrf_token)).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let sent = web.app.start_email_enrollment(&current.user, &ctx).await;
    let code_sent = sent.is_ok();
    email_step(&web, &current, code_sent).outcome(sent.map(|()| sent_to(&current.user.designated_email)))
}

async fn email_confirm(State(web): WebState, headers: HeaderMap, Client(ctx): Client, PageForm(f): PageForm<CodeFields>) -> Response {
    let current = match enrolling(&web, &headers, Some(&f.csrf_token)).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match web.app.confirm_email_method(&current.user, &f.code, &ctx).await {
        Ok(codes) => enrolled(&web, &current, codes, "email").await,
        Err(e) => email_step(&web, &current, true).outcome(Err(e)),
    }
}

/// A method was turned on: a restricted session becomes a full one; the first method shows its
/// recovery codes, later ones go back to My Account.
async fn enrolled(web: &Web, current: &Current, codes: Option<Vec<String>>, method: &str) -> Response {
    if let Err(e) = web.app.finish_enrolment(&current.token, &current.session).await {
        return error_page(&e);
    }
    match codes {
        Some(codes) => recovery_codes_page(&current.user.login_name, codes, &format!("two-factor-{method}")),
        None => Redirect::to(&format!("/account?done=two-factor-{method}")).into_response(),
    }
}

// ---------------------------------------------------------------- changes that need a verification code

fn parse_method(method: &str) -> Result<Method, Response> {
    Method::parse(method).ok_or_else(super::pages::not_found_page)
}

/// The method inside a sentence.
fn method_phrase(m: Method) -> &'static str {
    match m {
        Method::Totp => "the authenticator app",
        Method::Sms => "text message (SMS) codes",
        Method::Email => "email codes",
    }
}

fn verification_hint(has_app: bool) -> &'static str {
    if has_app {
        "The 6-digit code from the email, or a code from your authenticator app."
    } else {
        "The 6-digit code from the email."
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

async fn remove_send(State(web): WebState, Path(method): Path<String>, headers: HeaderMap, Client(ctx): Client, PageUser(current): PageUser, PageForm(f): PageForm<CsrfOnly>) -> Response {
    if let Err(r) = check_csrf(&web, &headers, Some(&current), &f.csrf_token) {
        return r;
    }
    let method = match parse_method(&method) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let sent = web.app.send_verification_code(&current.user, None, &ctx).await;
    remove_step(&web, &current, method).await.after_send(sent)
}

async fn remove_submit(State(web): WebState, Path(method): Path<String>, headers: HeaderMap, Client(ctx): Client, PageUser(current): PageUser, PageForm(f): PageForm<CodeFields>) -> Response {
    if let Err(r) = check_csrf(&web, &headers, Some(&current), &f.csrf_token) {
        return r;
    }
    let method = match parse_method(&method) {
        Ok(m) => m,
        Err(r) => return r,
    };
    match web.app.remove_method(&current.user, method, &f.code, &ctx).await {
        Ok(()) => Redirect::to("/account?done=two-factor-removed").into_response(),
        Err(e) => remove_step(&web, &current, method).await.outcome(Err(e)),
    }
}

async fn recovery_step(web: &Web, current: &Current) -> CodeStepPage {
    let has_app = web.app.user_methods(current.user.id).await.is_ok_and(|m| m.contains(&Method::Totp));
    CodeStepPage::new(
        web,
        current,
        "Get new recovery codes",
        format!("New codes replace all of your current ones. To confirm it is you, we email a verification code to {}.", current.user.designated_email),
    )
    .send("/account/recovery-codes/send", "Email me a verification code")
    .confirm("/account/recovery-codes", "Get new recovery codes", verification_hint(has_app))
}

async fn recovery_page(State(web): WebState, PageUser(current): PageUser) -> Response {
    recovery_step(&web, &current).await.outcome(Ok(None))
}

async fn recovery_send(State(web): WebState, headers: HeaderMap, Client(ctx): Client, PageUser(current): PageUser, PageForm(f): PageForm<CsrfOnly>) -> Response {
    if let Err(r) = check_csrf(&web, &headers, Some(&current), &f.csrf_token) {
        return r;
    }
    let sent = web.app.send_verification_code(&current.user, None, &ctx).await;
    recovery_step(&web, &current).await.after_send(sent)
}

async fn recovery_submit(State(web): WebState, headers: HeaderMap, Client(ctx): Client, PageUser(current): PageUser, PageForm(f): PageForm<CodeFields>) -> Response {
    if let Err(r) = check_csrf(&web, &headers, Some(&current), &f.csrf_token) {
        return r;
    }
    match web.app.new_recovery_codes(&current.user, &f.code, &ctx).await {
        Ok(codes) => recovery_codes_page(&current.user.login_name, codes, "recovery-codes"),
        Err(e) => recovery_step(&web, &current).await.outcome(Err(e)),
    }
}

// ---------------------------------------------------------------- the default method

async fn preferred(State(web): WebState, headers: HeaderMap, PageUser(current): PageUser, PageForm(f): PageForm<SendFields>) -> Response {
    if let Err(r) = check_csrf(&web, &headers, Some(&current), &f.csrf_token) {
        return r;
    }
    let result = match Method::parse(&f.method) {
        Some(m) => web.app.set_preferred_method(&current.user, m).await,
        None => Err(ApiError::field("method", "Choose one of your methods.")),
    };
    match result {
        Ok(()) => Redirect::to("/account?done=preferred").into_response(),
        Err(e) if e.status.is_client_error() => super::pages::account_with_message(&web, &current, e).await,
        Err(e) => error_page(&e),
    }
}

// ---------------------------------------------------------------- enrolment required

struct EnrollChoice {
    href: &'static str,
    label: &'static str,
    hint: &'static str,
}

#[derive(Template)]
#[template(path = "pages/enroll.html")]
struct EnrollPage {
    csrf: String,
    company_name: String,
    choices: Vec<EnrollChoice>,
}

/// Where a sign-in lands when the company requires 2FA and the user has no method yet: the
/// company's allowed methods, each with its set-up page. The session here is restricted to
/// enrolment; setting up any method completes the sign-in.
async fn enroll_page(State(web): WebState, headers: HeaderMap) -> Response {
    let current = match enrolling(&web, &headers, None).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if !current.session.restricted {
        return Redirect::to("/account").into_response();
    }
    let company = match web.app.company_two_factor(current.user.company_id).await {
        Ok(c) => c,
        Err(e) => return error_page(&e),
    };
    let choices = company
        .allowed
        .iter()
        .map(|m| match m {
            Method::Totp => EnrollChoice { href: "/account/two-factor/setup", label: "Authenticator app", hint: "A code from an app on your phone, such as Google or Microsoft Authenticator." },
            Method::Sms => EnrollChoice { href: "/account/two-factor/sms", label: "Text message (SMS)", hint: "A code texted to your mobile phone." },
            Method::Email => EnrollChoice { href: "/account/two-factor/email", label: "Email", hint: "A code sent to your designated email." },
        })
        .collect();
    let page = EnrollPage { csrf: web.csrf_token_for(&current.token), company_name: current.user.company_name.clone(), choices };
    render(StatusCode::OK, &page, None)
}
