//! The JSON API of ../shared/API.md over the same services as the pages. Handlers only move
//! JSON in and out; every decision is in `app` and `core`.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use latchkey_core::flows::activation::CompleteSetupForm;
use latchkey_core::flows::password_reset::NewPasswordForm;
use latchkey_core::Role;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::admin::Admin;
use super::session::{Client, CsrfBinding, Enrolling, MaybeSignedIn, SignedIn};
use crate::app::SignInOutcome;
use latchkey_core::two_factor::{Method, TwoFactorMode};
use super::Web;
use crate::app::{rfc3339, SecurityRules};
use crate::error::{ApiError, ErrorBody};

type WebState = State<Arc<Web>>;


pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/api/v1/csrf", get(csrf))
        .route("/api/v1/activation/{token}", get(activation_open).post(activation_complete))
        .route("/api/v1/password/forgot", post(password_forgot))
        .route("/api/v1/password/reset/{token}", get(reset_open).post(reset_complete))
        .route("/api/v1/login-name/forgot", post(login_name_forgot))
        .route("/api/v1/sign-in", post(sign_in))
        .route("/api/v1/sign-in/{flow}/verify", post(sign_in_verify))
        .route("/api/v1/sign-out", post(sign_out))
        .route("/api/v1/me/2fa/totp", post(totp_start).delete(super::two_factor_api::remove_totp))
        .route("/api/v1/me/2fa/totp/confirm", post(totp_confirm))
        .route("/api/v1/me/2fa/preferred", axum::routing::put(preferred_put))
        .route("/api/v1/companies/{domain}/users/{extension}/2fa/reset", post(two_factor_reset))
        .route("/api/v1/companies/{domain}/policy", get(policy_get).put(policy_put))
        .route("/api/v1/me", get(me))
        .route("/api/v1/me/sso-links", get(sso_links))
        .route("/api/v1/me/sso-links/{id}", delete(sso_link_remove))
        .route("/api/v1/me/sessions", get(sessions))
        .route("/api/v1/me/sessions/{id}", delete(revoke_session))
        .route("/api/v1/me/sessions/revoke-others", post(revoke_other_sessions))
        .route("/api/v1/me/password", post(change_password))
        .route("/api/v1/me/pin", post(change_pin))
        .route("/api/v1/companies/{domain}/users", post(create_user))
        .route("/api/v1/companies/{domain}/users/{extension}/welcome", post(resend_welcome))
}

/// `Json` whose rejections speak our error format: 400 malformed, 415 not JSON, 413 too large,
/// 422 wrong types or fields.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => {
                let status = rejection.status();
                let code = match status {
                    StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                    StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
                    _ => "malformed_json",
                };
                let message = match status {
                    StatusCode::PAYLOAD_TOO_LARGE => "The request body is too large.".to_owned(),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "Send a JSON body with Content-Type: application/json.".to_owned(),
                    _ => rejection.body_text(),
                };
                Err(ApiError::new(status, code, message))
            }
        }
    }
}

/// `Path` whose rejection speaks our error format: a path segment that is not UTF-8 once
/// percent-decoded (`/api/v1/activation/%FF`) is 400 `bad_request` in JSON, not axum's plain text.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(ApiPath(v)),
            Err(_) => Err(ApiError::bad_request("The address is not valid: a part of it could not be read as text.")),
        }
    }
}

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

/// What an emailed link (Complete Setup or password reset) is for.
#[derive(Serialize, ToSchema)]
pub struct LinkInfo {
    login_name: String,
    company: String,
    /// RFC 3339.
    expires_at: String,
    password_min_length: usize,
}

fn link_info(v: crate::app::LinkView) -> LinkInfo {
    LinkInfo { login_name: v.login_name, company: v.company_name, expires_at: rfc3339(v.expires_at), password_min_length: v.password_min_length }
}

#[utoipa::path(get, path = "/api/v1/activation/{token}", tag = "activation",
    params(("token" = String, Path, description = "the token of the welcome email's Complete Setup link")),
    responses((status = 200, body = LinkInfo), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 410, description = "link_expired, link_used or link_replaced", body = ErrorBody)))]
pub async fn activation_open(State(web): WebState, ApiPath(token): ApiPath<String>) -> Result<Json<LinkInfo>, ApiError> {
    let v = web.app.open_activation(&token).await?;
    Ok(Json(link_info(v)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteSetupBody {
    password: String,
    password_confirmation: String,
    /// Voicemail PIN: at least 4 digits, not all the same, not sequential.
    pin: String,
}

#[derive(Serialize, ToSchema)]
pub struct LoginNameBody {
    login_name: String,
}

#[utoipa::path(post, path = "/api/v1/activation/{token}", tag = "activation", request_body = CompleteSetupBody,
    params(("token" = String, Path,)),
    responses((status = 200, body = LoginNameBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 410, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn activation_complete(
    State(web): WebState,
    ApiPath(token): ApiPath<String>,
    Client(ctx): Client,
    ApiJson(body): ApiJson<CompleteSetupBody>,
) -> Result<Json<LoginNameBody>, ApiError> {
    let form = CompleteSetupForm { password: body.password, password_confirmation: body.password_confirmation, pin: body.pin };
    let user = web.app.complete_setup(&token, &form, &ctx).await?;
    Ok(Json(LoginNameBody { login_name: user.login_name }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotPasswordBody {
    /// The designated email; or give `login_name` instead.
    email: Option<String>,
    login_name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Accepted {
    message: &'static str,
}

const FORGOT_PASSWORD_SENT: &str =
    "If an account matches, an email with a password reset link is on its way to its designated email. The link works for 3 hours.";
const FORGOT_LOGIN_SENT: &str = "If accounts use this email, an email listing their login names is on its way.";

/// Always 202, known address or not.
#[utoipa::path(post, path = "/api/v1/password/forgot", tag = "recovery", request_body = ForgotPasswordBody,
    responses((status = 202, body = Accepted), (status = 422, body = ErrorBody)))]
pub async fn password_forgot(State(web): WebState, Client(ctx): Client, ApiJson(body): ApiJson<ForgotPasswordBody>) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    web.app.forgot_password(body.email.as_deref(), body.login_name.as_deref(), &ctx)?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { message: FORGOT_PASSWORD_SENT })))
}

#[utoipa::path(get, path = "/api/v1/password/reset/{token}", tag = "recovery", params(("token" = String, Path,)),
    responses((status = 200, body = LinkInfo), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn reset_open(State(web): WebState, ApiPath(token): ApiPath<String>) -> Result<Json<LinkInfo>, ApiError> {
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
) -> Result<Json<LoginNameBody>, ApiError> {
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
pub async fn login_name_forgot(State(web): WebState, ApiJson(body): ApiJson<ForgotLoginNameBody>) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    web.app.forgot_login_name(&body.email)?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { message: FORGOT_LOGIN_SENT })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInBody {
    /// `extension@company-domain`, any case.
    login_name: String,
    password: String,
}

#[derive(Serialize, ToSchema, Default)]
pub struct SignInResponse {
    /// `signed_in`, `second_factor` or `enrollment_required`.
    pub(super) state: &'static str,
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

/// Signs in with login name and password. A right password ends signed in (session cookie in
/// `Set-Cookie`), at the second-factor step (`flow`), or — where the company requires 2FA and the
/// user has none — with a session restricted to enrolment.
#[utoipa::path(post, path = "/api/v1/sign-in", tag = "session", request_body = SignInBody,
    responses((status = 200, body = SignInResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn sign_in(State(web): WebState, Client(ctx): Client, ApiJson(body): ApiJson<SignInBody>) -> Result<Response, ApiError> {
    Ok(sign_in_response(&web, web.app.sign_in(&body.login_name, &body.password, &ctx).await?))
}

/// The answer to a completed first factor (a password, or single sign-on).
pub(super) fn sign_in_response(web: &Web, outcome: SignInOutcome) -> Response {
    match outcome {
        SignInOutcome::SignedIn(signed) => {
            let body = SignInResponse {
                state: "signed_in",
                login_name: Some(signed.user.login_name.clone()),
                csrf_token: Some(web.csrf_token_for(signed.token.expose())),
                ..Default::default()
            };
            ([(header::SET_COOKIE, web.session_cookie(Some(&signed.token)))], Json(body)).into_response()
        }
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
pub async fn sign_in_verify(State(web): WebState, ApiPath(flow): ApiPath<String>, Client(ctx): Client, ApiJson(b): ApiJson<VerifyBody>) -> Result<Response, ApiError> {
    let (signed, left) = web.app.verify_second_factor(&flow, &b.method, &b.code, &ctx).await?;
    let body = SignInResponse {
        state: "signed_in",
        login_name: Some(signed.user.login_name.clone()),
        csrf_token: Some(web.csrf_token_for(signed.token.expose())),
        recovery_codes_left: left,
        ..Default::default()
    };
    Ok(([(header::SET_COOKIE, web.session_cookie(Some(&signed.token)))], Json(body)).into_response())
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
pub async fn totp_start(State(web): WebState, Enrolling(current): Enrolling) -> Result<Json<TotpSetup>, ApiError> {
    let e = web.app.start_totp_enrollment(&current.user).await?;
    Ok(Json(TotpSetup { secret: e.secret, otpauth_uri: e.otpauth_uri, qr_svg: e.qr_svg }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpConfirmBody {
    code: String,
    current_password: String,
}

#[derive(Serialize, ToSchema)]
pub struct Enrolled {
    /// Only with the first method: shown once, store them safely.
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_codes: Option<Vec<String>>,
}

impl Enrolled {
    pub fn new(recovery_codes: Option<Vec<String>>) -> Self {
        Self { recovery_codes }
    }
}

/// Saves the authenticator app after a code from it and the current password (Sonar step 7). A
/// session restricted to enrolment becomes a full session.
#[utoipa::path(post, path = "/api/v1/me/2fa/totp/confirm", tag = "two-factor", request_body = TotpConfirmBody,
    responses((status = 200, body = Enrolled), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn totp_confirm(State(web): WebState, Client(ctx): Client, Enrolling(current): Enrolling, ApiJson(b): ApiJson<TotpConfirmBody>) -> Result<Json<Enrolled>, ApiError> {
    let codes = web.app.confirm_totp(&current.user, &b.code, &b.current_password, &ctx).await?;
    web.app.finish_enrolment(&current.token, &current.session).await?;
    Ok(Json(Enrolled { recovery_codes: codes }))
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    /// `off`, `optional` or `required`.
    #[schema(value_type = String)]
    two_factor: TwoFactorMode,
    #[schema(value_type = Vec<String>)]
    allowed_methods: Vec<Method>,
    #[schema(value_type = Option<String>)]
    default_method: Option<Method>,
    #[serde(default)]
    default_method_locked: bool,
    /// Read-only: whether the operator turned the two-factor pilot on for this company.
    #[serde(default)]
    two_factor_enabled: bool,
    /// The company's minimum password length, 8 to 64; left out of a change, it stays as it is.
    #[serde(default)]
    password_min_length: Option<i64>,
}

fn policy_body(p: &latchkey_store::TwoFactorPolicy) -> PolicyBody {
    PolicyBody {
        two_factor: TwoFactorMode::parse(&p.mode).unwrap_or_default(),
        allowed_methods: p.allowed_methods.iter().filter_map(|m| Method::parse(m)).collect(),
        default_method: p.default_method.as_deref().and_then(Method::parse),
        default_method_locked: p.default_method_locked,
        two_factor_enabled: p.enabled,
        password_min_length: Some(p.password_min_length),
    }
}

#[utoipa::path(get, path = "/api/v1/companies/{domain}/policy", tag = "office manager", params(("domain" = String, Path,)),
    responses((status = 200, body = PolicyBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn policy_get(State(web): WebState, admin: Admin, ApiPath(domain): ApiPath<String>) -> Result<Json<PolicyBody>, ApiError> {
    let company = admin.read(&web, &domain).await?;
    Ok(Json(policy_body(&web.app.store.two_factor_policy(company.id).await?)))
}

/// Sets the company's two-factor rules (office manager).
#[utoipa::path(put, path = "/api/v1/companies/{domain}/policy", tag = "office manager", request_body = PolicyBody, params(("domain" = String, Path,)),
    responses((status = 200, body = PolicyBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn policy_put(
    State(web): WebState,
    Client(ctx): Client,
    admin: Admin,
    ApiPath(domain): ApiPath<String>,
    ApiJson(b): ApiJson<PolicyBody>,
) -> Result<Json<PolicyBody>, ApiError> {
    let company = admin.manage(&web, &domain).await?;
    let domain = company.domain.clone();
    let rules = SecurityRules {
        mode: b.two_factor,
        allowed: b.allowed_methods,
        default_method: b.default_method,
        default_locked: b.default_method_locked,
        password_min_length: b.password_min_length,
    };
    let p = web.app.set_security_policy(&domain, &rules, admin.actor(), &ctx).await?;
    Ok(Json(policy_body(&p)))
}

#[utoipa::path(post, path = "/api/v1/sign-out", tag = "session", responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn sign_out(State(web): WebState, Client(ctx): Client, SignedIn(current): SignedIn) -> Result<Response, ApiError> {
    web.app.sign_out(&current.token, &current.user, &ctx).await?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, web.session_cookie(None))]).into_response())
}

#[derive(Serialize, ToSchema)]
pub struct CompanyRef {
    name: String,
    domain: String,
}

#[derive(Serialize, ToSchema)]
pub struct EmailEntry {
    email: String,
    /// Its confirmation link was used: it can sign in by SSO where the company uses it.
    verified: bool,
}

impl From<latchkey_store::AdditionalEmail> for EmailEntry {
    fn from(e: latchkey_store::AdditionalEmail) -> Self {
        EmailEntry { email: e.email, verified: e.verified_at.is_some() }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    login_name: String,
    extension: String,
    /// `user`, `supervisor` or `office_manager`.
    #[schema(value_type = String)]
    role: Role,
    company: CompanyRef,
    designated_email: String,
    email_verified: bool,
    /// Additional emails (e.g. for voicemail notifications).
    emails: Vec<EmailEntry>,
    /// Whether the company offers two-factor authentication (the pilot is on and not "off").
    two_factor_available: bool,
    second_factors: Vec<SecondFactorInfo>,
    preferred_method: Option<String>,
    /// Present once a method is enrolled.
    recovery_codes_left: Option<i64>,
    sso_links: Vec<SsoLinkInfo>,
}

#[derive(Serialize, ToSchema)]
pub struct SsoLinkInfo {
    /// For `DELETE /api/v1/me/sso-links/{id}`.
    id: i64,
    /// `google` or `microsoft`.
    provider: String,
    email: Option<String>,
    linked_at: String,
    last_used_at: Option<String>,
}

fn sso_link_info(l: latchkey_store::SsoLink) -> SsoLinkInfo {
    SsoLinkInfo { id: l.id, provider: l.provider, email: l.email, linked_at: rfc3339(l.linked_at), last_used_at: l.last_used_at.map(rfc3339) }
}

/// The provider identities that sign in to this account.
#[utoipa::path(get, path = "/api/v1/me/sso-links", tag = "me", responses((status = 200, body = [SsoLinkInfo]), (status = 401, body = ErrorBody)))]
pub async fn sso_links(State(web): WebState, SignedIn(current): SignedIn) -> Result<Json<Vec<SsoLinkInfo>>, ApiError> {
    Ok(Json(web.app.sso_links(&current.user).await?.into_iter().map(sso_link_info).collect()))
}

/// Unlinks an identity (it can be linked again at any time); audited, the user is emailed.
#[utoipa::path(delete, path = "/api/v1/me/sso-links/{id}", tag = "me", params(("id" = i64, Path,)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn sso_link_remove(State(web): WebState, ApiPath(id): ApiPath<String>, Client(ctx): Client, SignedIn(current): SignedIn) -> Result<StatusCode, ApiError> {
    let id: i64 = id.parse().map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "link_not_found", "There is no such linked sign-in on your account."))?;
    web.app.remove_sso_link(&current.user, id, &ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct SecondFactorInfo {
    method: String,
    enabled_at: String,
    /// The masked phone number or the address codes go to; none for the authenticator app.
    detail: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/me", tag = "me", responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn me(State(web): WebState, SignedIn(current): SignedIn) -> Result<Json<Me>, ApiError> {
    let u = current.user;
    let (overview, company) = web.app.account_overview(&u).await?;
    let methods = overview.methods;
    let recovery_codes_left = if methods.is_empty() { None } else { Some(overview.recovery_codes_left) };
    let two_factor_available = company.available();
    let preferred_method = overview.preferred_method;
    let links = overview.sso_links;
    let emails = overview.additional_emails;
    Ok(Json(Me {
        login_name: u.login_name,
        extension: u.extension,
        role: u.role,
        company: CompanyRef { name: u.company_name, domain: u.company_domain },
        designated_email: u.designated_email,
        email_verified: u.designated_email_verified_at.is_some(),
        emails: emails.into_iter().map(EmailEntry::from).collect(),
        two_factor_available,
        second_factors: methods
            .into_iter()
            .map(|m| SecondFactorInfo {
                // A phone number is shown masked, even to its owner: a stolen session should not
                // learn the number to port or swap.
                detail: if m.method == "sms" { m.detail.as_deref().map(latchkey_core::two_factor::E164::mask) } else { m.detail },
                method: m.method,
                enabled_at: rfc3339(m.enabled_at),
            })
            .collect(),
        preferred_method,
        recovery_codes_left,
        sso_links: links.into_iter().map(sso_link_info).collect(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    /// Handle for `DELETE /api/v1/me/sessions/{id}` (not the session secret).
    id: String,
    created_at: String,
    last_seen_at: String,
    client_ip: Option<String>,
    user_agent: Option<String>,
    /// The session making this request.
    current: bool,
}

#[utoipa::path(get, path = "/api/v1/me/sessions", tag = "me", responses((status = 200, body = [SessionInfo]), (status = 401, body = ErrorBody)))]
pub async fn sessions(State(web): WebState, SignedIn(current): SignedIn) -> Result<Json<Vec<SessionInfo>>, ApiError> {
    let list = web.app.sessions(&current.user).await?;
    Ok(Json(
        list.into_iter()
            .map(|s| SessionInfo {
                current: s.handle == current.session.handle,
                id: s.handle,
                created_at: rfc3339(s.created_at),
                last_seen_at: rfc3339(s.last_seen_at),
                client_ip: s.client_ip,
                user_agent: s.user_agent,
            })
            .collect(),
    ))
}

#[utoipa::path(delete, path = "/api/v1/me/sessions/{id}", tag = "me", params(("id" = String, Path,)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_session(State(web): WebState, Client(ctx): Client, SignedIn(current): SignedIn, ApiPath(id): ApiPath<String>) -> Result<StatusCode, ApiError> {
    web.app.revoke_session(&current.user, &id, &ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Signs out every other session of the account.
#[utoipa::path(post, path = "/api/v1/me/sessions/revoke-others", tag = "me",
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn revoke_other_sessions(State(web): WebState, Client(ctx): Client, SignedIn(current): SignedIn) -> Result<StatusCode, ApiError> {
    web.app.revoke_other_sessions(&current.user, &current.token, &ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordBody {
    current_password: String,
    password: String,
    password_confirmation: String,
}

#[derive(Serialize, ToSchema)]
pub struct Done {
    message: &'static str,
}

/// Changes the password; every other session ends.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "me", request_body = ChangePasswordBody,
    responses((status = 200, body = Done), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn change_password(
    State(web): WebState,
    Client(ctx): Client,
    SignedIn(current): SignedIn,
    ApiJson(b): ApiJson<ChangePasswordBody>,
) -> Result<Json<Done>, ApiError> {
    web.app.change_password(&current.user, &current.token, &b.current_password, &b.password, &b.password_confirmation, &ctx).await?;
    Ok(Json(Done { message: "Your password was changed. Your other sessions were signed out." }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePinBody {
    current_password: String,
    pin: String,
}

#[utoipa::path(post, path = "/api/v1/me/pin", tag = "me", request_body = ChangePinBody,
    responses((status = 200, body = Done), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn change_pin(State(web): WebState, Client(ctx): Client, SignedIn(current): SignedIn, ApiJson(b): ApiJson<ChangePinBody>) -> Result<Json<Done>, ApiError> {
    web.app.change_pin(&current.user, &b.current_password, &b.pin, &ctx).await?;
    Ok(Json(Done { message: "Your voicemail PIN was changed." }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserBody {
    extension: String,
    designated_email: String,
    /// `user` (default), `supervisor` or `office_manager`.
    #[schema(value_type = Option<String>)]
    role: Option<Role>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedUserBody {
    login_name: String,
    welcome_email_sent: bool,
}

/// Creates an invited user and sends the welcome email (office manager of that company).
#[utoipa::path(post, path = "/api/v1/companies/{domain}/users", tag = "office manager", request_body = CreateUserBody, params(("domain" = String, Path,)),
    responses((status = 201, body = CreatedUserBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_user(
    State(web): WebState,
    Client(ctx): Client,
    admin: Admin,
    ApiPath(domain): ApiPath<String>,
    ApiJson(b): ApiJson<CreateUserBody>,
) -> Result<(StatusCode, Json<CreatedUserBody>), ApiError> {
    let company = admin.manage(&web, &domain).await?;
    let domain = company.domain.clone();
    let created = web
        .app
        .create_user(&domain, &b.extension, &b.designated_email, b.role.unwrap_or(Role::User), admin.actor(), &ctx)
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedUserBody { login_name: created.user.login_name, welcome_email_sent: created.email_sent })))
}

/// Sends a new welcome email; the old link stops working.
#[utoipa::path(post, path = "/api/v1/companies/{domain}/users/{extension}/welcome", tag = "office manager",
    params(("domain" = String, Path,), ("extension" = String, Path,)),
    responses((status = 202, body = Accepted), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn resend_welcome(
    State(web): WebState,
    Client(ctx): Client,
    admin: Admin,
    ApiPath((domain, extension)): ApiPath<(String, String)>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let company = admin.manage(&web, &domain).await?;
    let domain = company.domain.clone();
    web.app.resend_welcome(&domain, &extension, admin.actor(), &ctx).await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { message: "A new welcome email was sent; the previous link no longer works." })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferredBody {
    /// `totp`, `sms` or `email`: one the user has set up.
    #[schema(value_type = String)]
    method: Method,
}

/// The method pre-selected at sign-in; 409 `locked_by_company` where the company locked its default.
#[utoipa::path(put, path = "/api/v1/me/2fa/preferred", tag = "two-factor", request_body = PreferredBody,
    responses((status = 200, body = Done), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn preferred_put(State(web): WebState, SignedIn(current): SignedIn, ApiJson(b): ApiJson<PreferredBody>) -> Result<Json<Done>, ApiError> {
    web.app.set_preferred_method(&current.user, b.method).await?;
    Ok(Json(Done { message: "Your preferred method was saved." }))
}

/// Removes every method and recovery code of a user (office manager of that company); the user
/// enrols again and is told by email.
#[utoipa::path(post, path = "/api/v1/companies/{domain}/users/{extension}/2fa/reset", tag = "office manager",
    params(("domain" = String, Path,), ("extension" = String, Path,)),
    responses((status = 200, body = Done), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn two_factor_reset(
    State(web): WebState,
    Client(ctx): Client,
    admin: Admin,
    ApiPath((domain, extension)): ApiPath<(String, String)>,
) -> Result<Json<Done>, ApiError> {
    let company = admin.manage(&web, &domain).await?;
    let domain = company.domain.clone();
    web.app.reset_two_factor(&domain, &extension, admin.actor(), &ctx).await?;
    Ok(Json(Done { message: "Two-factor authentication was reset; the user sets it up again at the next sign-in." }))
}
