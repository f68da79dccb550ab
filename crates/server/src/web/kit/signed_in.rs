//! Where a completed first factor (a password, or single sign-on) leads — a session, the
//! second-factor step, or enrolment — as the API's JSON body or the browser's redirect and cookie.

use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use latchkey_core::two_factor::Method;
use serde::Serialize;
use utoipa::ToSchema;

use super::render::with_cookie;
use super::Web;
use crate::app::{SignInOutcome, SignedIn};

#[derive(Serialize, ToSchema, Default)]
pub struct SignInResponse {
    /// `signed_in`, `second_factor` or `enrollment_required`.
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    login_name: Option<String>,
    /// The new session's CSRF token, for `X-CSRF-Token` (signed in, or restricted to enrolment).
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf_token: Option<String>,
    /// For `POST /api/v1/sign-in/{flow}/verify`.
    #[serde(skip_serializing_if = "Option::is_none")]
    flow: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    methods: Option<Vec<Method>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    default_method: Option<Method>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    allowed_methods: Option<Vec<Method>>,
    /// After a recovery code: how many are left.
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_codes_left: Option<i64>,
}

/// The API's answer to a completed first factor (a password, or single sign-on).
pub fn sign_in_response(web: &Web, outcome: SignInOutcome) -> Response {
    match outcome {
        SignInOutcome::SignedIn(signed) => signed_in(web, &signed, None),
        SignInOutcome::SecondFactor { flow, methods, default } => Json(SignInResponse {
            state: "second_factor",
            flow: Some(flow.expose().to_owned()),
            methods: Some(methods),
            default_method: Some(default),
            ..Default::default()
        })
        .into_response(),
        SignInOutcome::EnrollmentRequired { session, allowed } => {
            let body = SignInResponse {
                state: "enrollment_required",
                login_name: Some(session.user.login_name.clone()),
                csrf_token: Some(web.csrf_token_for(session.token.expose())),
                allowed_methods: Some(allowed),
                ..Default::default()
            };
            ([(header::SET_COOKIE, web.session_cookie(Some(&session.token)))], Json(body)).into_response()
        }
    }
}

/// The API's answer to a sign-in that ended with a session: its cookie, and its CSRF token.
pub fn signed_in(web: &Web, signed: &SignedIn, recovery_codes_left: Option<i64>) -> Response {
    let body = SignInResponse {
        state: "signed_in",
        login_name: Some(signed.user.login_name.clone()),
        csrf_token: Some(web.csrf_token_for(signed.token.expose())),
        recovery_codes_left,
        ..Default::default()
    };
    ([(header::SET_COOKIE, web.session_cookie(Some(&signed.token)))], Json(body)).into_response()
}

/// Where a completed first factor (a password, or single sign-on) sends the browser.
pub fn signed_in_response(web: &Web, outcome: SignInOutcome) -> Response {
    match outcome {
        SignInOutcome::SignedIn(signed) => redirect_with_cookie("/account", web.session_cookie(Some(&signed.token))),
        SignInOutcome::SecondFactor { flow, .. } => redirect_with_cookie("/sign-in/second-factor", web.cookie(flow_cookie_name(web), Some(flow.expose()))),
        SignInOutcome::EnrollmentRequired { session, .. } => redirect_with_cookie("/account/two-factor/enroll", web.session_cookie(Some(&session.token))),
    }
}

pub fn redirect_with_cookie(to: &str, cookie: String) -> Response {
    with_cookie(Redirect::to(to).into_response(), Some(cookie))
}

/// The cookie that carries a sign-in waiting at the second-factor step (its token, not a session).
pub fn flow_cookie_name(web: &Web) -> &'static str {
    if web.app.config.cookie_secure { "__Host-latchkey_flow" } else { "latchkey_flow" }
}
