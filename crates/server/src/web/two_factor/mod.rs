//! Two-factor authentication, pages and API: a sub-module per method (authenticator app, text
//! message, email code, recovery codes) and one for removing a method; here, what they share.
//!
//! Shared: the "send a code, enter it" step, enrolment turning a restricted session into a full one
//! (the first method shows the recovery codes), the verification code, and the enrolment page a
//! company's rule sends to. The default method is chosen on My Account (`my_account`).

pub mod authenticator_app;
pub mod email_code;
pub mod recovery_codes;
pub mod removal;
pub mod text_message;

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey_core::two_factor::Method;
use latchkey_core::FieldErrors;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::{AppError, ErrorKind};
use crate::web::kit::{accepted, csrf_forms, error_page, render, sent_to, Client, CodeSent, Current, ErrorBody, PageEnrolling, SignedIn, Web, WebState};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/account/two-factor/enroll", get(enroll_page))
        .route("/api/v1/me/2fa/verification-code", post(verification_code))
        .merge(authenticator_app::routes())
        .merge(text_message::routes())
        .merge(email_code::routes())
        .merge(recovery_codes::routes())
        .merge(removal::routes())
}

// ---------------------------------------------------------------- the code step page

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

/// A "send a code, enter it" step: verifying the designated email, setting up SMS or email codes,
/// removing a method, getting new recovery codes.
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
    fn after_send(mut self, sent: Result<String, AppError>) -> Response {
        if sent.is_ok() {
            if let Some(f) = self.send.as_mut() {
                f.label = "Email me a new code";
            }
        }
        self.outcome(sent.map(|to| sent_to(&to)))
    }

    /// Shows what happened: a sent code's destination, or the error of the last submit (next to
    /// its field where it has one).
    fn outcome(mut self, sent: Result<Option<String>, AppError>) -> Response {
        let status = match sent {
            Ok(notice) => {
                self.notice = notice;
                StatusCode::OK
            }
            Err(e) if e.status().is_client_error() => {
                if e.fields.is_empty() && !is_code_error(&e) {
                    self.error = Some(e.message.clone());
                }
                let status = e.status();
                self.errors = code_errors_at_field(e);
                status
            }
            Err(e) => return error_page(&e),
        };
        render(status, &self, None)
    }
}

#[derive(Deserialize)]
struct CodeFields {
    csrf_token: String,
    code: String,
}

csrf_forms!(CodeFields);

/// A refused code (wrong, used, expired) belongs next to the code field.
fn is_code_error(e: &AppError) -> bool {
    matches!(e.code, "invalid_code" | "code_used" | "code_expired")
}

/// The error's field messages, with a refused code's message under `code`.
fn code_errors_at_field(e: AppError) -> FieldErrors {
    if is_code_error(&e) {
        let mut f = FieldErrors::new();
        f.add("code", e.message);
        f
    } else {
        e.fields
    }
}

fn verification_hint(has_app: bool) -> &'static str {
    if has_app {
        "The 6-digit code from the email, or a code from your authenticator app."
    } else {
        "The 6-digit code from the email."
    }
}

// ---------------------------------------------------------------- a method was set up

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
fn recovery_codes_page(login_name: &str, codes: Vec<String>, done: &str) -> Response {
    let txt = format!("Recovery codes for {login_name}\n\nEach code works once, in place of your second factor.\n\n{}\n", codes.join("\n"));
    let page = RecoveryCodesPage {
        download_href: format!("data:text/plain;charset=utf-8,{}", url::form_urlencoded::byte_serialize(txt.as_bytes()).collect::<String>().replace('+', "%20")),
        file_name: format!("recovery-codes-{}.txt", login_name.replace('@', "-at-")),
        continue_href: format!("/account?done={done}"),
        codes,
    };
    render(StatusCode::OK, &page, None)
}

/// A method was turned on (a restricted session became a full one with it): the first method
/// shows its recovery codes, later ones go back to My Account with the notice `done`.
fn enrolled(current: &Current, codes: Option<Vec<String>>, done: &str) -> Response {
    match codes {
        Some(codes) => recovery_codes_page(&current.user.login_name, codes, done),
        None => Redirect::to(&format!("/account?done={done}")).into_response(),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeBody {
    code: String,
}

#[derive(Serialize, ToSchema)]
pub struct Enrolled {
    /// Only with the first method: shown once, store them safely.
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_codes: Option<Vec<String>>,
}

/// A method was turned on (a restricted session became a full one with it).
fn enrolled_json(codes: Option<Vec<String>>) -> Json<Enrolled> {
    Json(Enrolled { recovery_codes: codes })
}

/// Removes a method after a verification code (or a code from a method that stays).
async fn remove(web: &Web, method: Method, ctx: &crate::app::RequestContext, current: &Current, b: &CodeBody) -> Result<StatusCode, AppError> {
    web.app.remove_method(&current.user, method, &b.code, ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- the verification code

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
) -> Result<Response, AppError> {
    let body = body.map_err(|r| AppError::rejected(r.status(), "malformed_body", r.body_text()))?;
    let via = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        // The same rule as every other JSON body: a body that is there says it is JSON.
        if !is_json(&headers) {
            return Err(AppError::new(ErrorKind::UnsupportedFormat, "unsupported_media_type", "Send a JSON body with Content-Type: application/json."));
        }
        let b: ViaBody = serde_json::from_slice(&body).map_err(|e| AppError::new(ErrorKind::Malformed, "malformed_json", format!("The body is not valid: {e}")))?;
        Some(Method::parse(&b.via).filter(|m| *m != Method::Totp).ok_or_else(|| AppError::field("via", "Codes are sent by email or sms."))?)
    };
    Ok(accepted(web.app.send_verification_code(&current.user, via, &ctx).await?))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next()).is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
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
async fn enroll_page(State(web): WebState, PageEnrolling(current): PageEnrolling) -> Response {
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
