//! The security policy, page and API: the company's two-factor rules, its minimum password length,
//! and which single sign-on providers' own MFA counts in place of Latchkey's second factor.
//!
//! Three forms, each saved on its own (one transaction each); supervisors see the rules, no forms.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey_core::flows::sso::Provider;
use latchkey_core::policy::PasswordPolicy;
use latchkey_core::two_factor::{Method, TwoFactorMode};
use latchkey_core::FieldErrors;
use latchkey_store::{SsoSettings, TwoFactorPolicy};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{console_error, ConsoleFrame, ConsoleUser};
use crate::app::{AppError, SecurityRules};
use crate::web::kit::{csrf_forms, method_label, render, Admin, ApiJson, ApiPath, Client, ErrorBody, SessionForm, Web, WebState};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/console/policy", get(page))
        .route("/console/policy/two-factor", post(save_two_factor))
        .route("/console/policy/password", post(save_password))
        .route("/console/policy/sso", post(save_sso))
        .route("/api/v1/companies/{domain}/policy", get(policy_get).put(policy_put))
        .route("/api/v1/companies/{domain}/sso", get(sso_get).put(sso_put))
}

struct ModeOption {
    value: &'static str,
    label: &'static str,
    hint: &'static str,
    checked: bool,
}

struct MethodOption {
    value: &'static str,
    label: &'static str,
    allowed: bool,
    is_default: bool,
}

struct ProviderOption {
    value: &'static str,
    label: &'static str,
    mfa_sufficient: bool,
}

#[derive(Template)]
#[template(path = "pages/console_policy.html")]
struct PolicyPage {
    frame: ConsoleFrame,
    notice: Option<&'static str>,
    two_factor_enabled: bool,
    modes: Vec<ModeOption>,
    methods: Vec<MethodOption>,
    default_locked: bool,
    /// The mode and default as words, for the read-only view.
    mode_label: &'static str,
    default_label: &'static str,
    two_factor_errors: FieldErrors,
    password_min_length: i64,
    password_min: usize,
    password_max: usize,
    password_errors: FieldErrors,
    sso_enabled: bool,
    providers: Vec<ProviderOption>,
    sso_errors: FieldErrors,
}

#[derive(Deserialize)]
struct Done {
    done: Option<String>,
}

async fn page(State(web): WebState, member: ConsoleUser, Query(q): Query<Done>) -> Response {
    let notice = match q.done.as_deref() {
        Some("two-factor") => Some("The two-factor rules were saved."),
        Some("password") => Some("The password rule was saved. It applies to every new password from now on."),
        Some("sso") => Some("The single sign-on setting was saved."),
        _ => None,
    };
    show(&web, &member, notice, Errors::default(), StatusCode::OK).await
}

/// Errors of the one form that was just refused.
#[derive(Default)]
struct Errors {
    two_factor: FieldErrors,
    password: FieldErrors,
    sso: FieldErrors,
}

async fn show(web: &Web, member: &ConsoleUser, notice: Option<&'static str>, errors: Errors, status: StatusCode) -> Response {
    let company_id = member.0.user.company_id;
    let loaded = async { Ok::<_, AppError>((web.app.store.two_factor_policy(company_id).await?, web.app.store.sso_settings(company_id).await?)) };
    let (policy, sso) = match loaded.await {
        Ok(v) => v,
        Err(e) => return console_error(&e, "/console/policy"),
    };
    let page = policy_page(ConsoleFrame::new(web, member, "policy"), notice, &policy, &sso, errors);
    render(status, &page, None)
}

fn policy_page(frame: ConsoleFrame, notice: Option<&'static str>, policy: &TwoFactorPolicy, sso: &SsoSettings, errors: Errors) -> PolicyPage {
    let mode = policy.mode;
    let default = policy.default_method;
    PolicyPage {
        frame,
        notice,
        two_factor_enabled: policy.enabled,
        modes: [
            (TwoFactorMode::Off, "Off", "Nobody is asked for a second factor."),
            (TwoFactorMode::Optional, "Optional", "People may set up a method from My Account."),
            (TwoFactorMode::Required, "Required", "Everyone sets up a method at their next sign-in."),
        ]
        .into_iter()
        .map(|(m, label, hint)| ModeOption { value: m.as_str(), label, hint, checked: m == mode })
        .collect(),
        methods: Method::ALL
            .into_iter()
            .map(|m| MethodOption {
                value: m.as_str(),
                label: method_label(m),
                allowed: policy.allowed_methods.contains(&m),
                is_default: default == Some(m),
            })
            .collect(),
        default_locked: policy.default_method_locked,
        mode_label: match mode {
            TwoFactorMode::Off => "Off",
            TwoFactorMode::Optional => "Optional",
            TwoFactorMode::Required => "Required",
        },
        default_label: default.map(method_label).unwrap_or("None"),
        two_factor_errors: errors.two_factor,
        password_min_length: policy.password_min_length,
        password_min: PasswordPolicy::SEED_MIN_LENGTH,
        password_max: PasswordPolicy::MAX_COMPANY_MIN_LENGTH,
        password_errors: errors.password,
        sso_enabled: sso.enabled && !sso.providers.is_empty(),
        providers: Provider::ALL
            .into_iter()
            .filter(|p| sso.allows(*p))
            .map(|p| ProviderOption { value: p.as_str(), label: p.label(), mfa_sufficient: sso.mfa_sufficient.contains(&p) })
            .collect(),
        sso_errors: errors.sso,
    }
}

/// Checkboxes are separate fields (`allow_totp=on`), since a plain form cannot post a list.
#[derive(Deserialize)]
struct TwoFactorForm {
    csrf_token: String,
    two_factor: String,
    allow_totp: Option<String>,
    allow_sms: Option<String>,
    allow_email: Option<String>,
    #[serde(default)]
    default_method: String,
    default_method_locked: Option<String>,
}

async fn save_two_factor(State(web): WebState, client: Client, member: ConsoleUser, SessionForm(f): SessionForm<TwoFactorForm>) -> Response {
    if let Err(r) = member.check_change() {
        return r;
    }
    let Some(mode) = TwoFactorMode::parse(&f.two_factor) else {
        return refused(&web, &member, Errors { two_factor: one("two_factor", "Choose off, optional or required."), ..Default::default() }).await;
    };
    let allowed: Vec<Method> = [(Method::Totp, &f.allow_totp), (Method::Sms, &f.allow_sms), (Method::Email, &f.allow_email)]
        .into_iter()
        .filter(|(_, on)| on.is_some())
        .map(|(m, _)| m)
        .collect();
    let default_method = match f.default_method.as_str() {
        "" => None,
        other => match Method::parse(other) {
            Some(m) => Some(m),
            None => return refused(&web, &member, Errors { two_factor: one("default_method", "Choose one of the methods."), ..Default::default() }).await,
        },
    };
    let rules = SecurityRules { mode, allowed, default_method, default_locked: f.default_method_locked.is_some(), password_min_length: None };
    match web.app.set_security_policy(&member.0.user.company_domain, &rules, member.actor(), &client.0).await {
        Ok(_) => Redirect::to("/console/policy?done=two-factor").into_response(),
        Err(e) if !e.fields.is_empty() => refused(&web, &member, Errors { two_factor: e.fields, ..Default::default() }).await,
        Err(e) => console_error(&e, "/console/policy"),
    }
}

#[derive(Deserialize)]
struct PasswordForm {
    csrf_token: String,
    password_min_length: String,
}

async fn save_password(State(web): WebState, client: Client, member: ConsoleUser, SessionForm(f): SessionForm<PasswordForm>) -> Response {
    if let Err(r) = member.check_change() {
        return r;
    }
    let Ok(n) = f.password_min_length.trim().parse::<i64>() else {
        return refused(&web, &member, Errors { password: one("password_min_length", "Enter a number of characters."), ..Default::default() }).await;
    };
    match web.app.set_password_min_length(&member.0.user.company_domain, n, member.actor(), &client.0).await {
        Ok(_) => Redirect::to("/console/policy?done=password").into_response(),
        Err(e) if !e.fields.is_empty() => refused(&web, &member, Errors { password: e.fields, ..Default::default() }).await,
        Err(e) => console_error(&e, "/console/policy"),
    }
}

#[derive(Deserialize)]
struct SsoForm {
    csrf_token: String,
    mfa_google: Option<String>,
    mfa_microsoft: Option<String>,
}

async fn save_sso(State(web): WebState, client: Client, member: ConsoleUser, SessionForm(f): SessionForm<SsoForm>) -> Response {
    if let Err(r) = member.check_change() {
        return r;
    }
    let chosen: Vec<String> = [(Provider::Google, &f.mfa_google), (Provider::Microsoft, &f.mfa_microsoft)]
        .into_iter()
        .filter(|(_, on)| on.is_some())
        .map(|(p, _)| p.as_str().to_owned())
        .collect();
    match web.app.set_sso_mfa_sufficient(&member.0.user.company_domain, &chosen, member.actor(), &client.0).await {
        Ok(_) => Redirect::to("/console/policy?done=sso").into_response(),
        Err(e) if !e.fields.is_empty() => refused(&web, &member, Errors { sso: e.fields, ..Default::default() }).await,
        Err(e) => console_error(&e, "/console/policy"),
    }
}

csrf_forms!(TwoFactorForm, PasswordForm, SsoForm);

async fn refused(web: &Web, member: &ConsoleUser, errors: Errors) -> Response {
    show(web, member, None, errors, StatusCode::UNPROCESSABLE_ENTITY).await
}

fn one(field: &str, message: &str) -> FieldErrors {
    let mut e = FieldErrors::new();
    e.add(field, message);
    e
}

// ---------------------------------------------------------------- the JSON API

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
        two_factor: p.mode,
        allowed_methods: p.allowed_methods.clone(),
        default_method: p.default_method,
        default_method_locked: p.default_method_locked,
        two_factor_enabled: p.enabled,
        password_min_length: Some(p.password_min_length),
    }
}

#[utoipa::path(get, path = "/api/v1/companies/{domain}/policy", tag = "office manager", params(("domain" = String, Path,)),
    responses((status = 200, body = PolicyBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn policy_get(State(web): WebState, admin: Admin, ApiPath(domain): ApiPath<String>) -> Result<Json<PolicyBody>, AppError> {
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
) -> Result<Json<PolicyBody>, AppError> {
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

#[derive(Serialize, ToSchema)]
pub struct SsoSettingsBody {
    /// The operator's pilot switch.
    enabled: bool,
    /// Providers the operator enabled: `google`, `microsoft`.
    providers: Vec<String>,
    /// Providers whose own MFA counts in place of Latchkey's second factor.
    mfa_sufficient: Vec<String>,
}

fn sso_body(s: SsoSettings) -> SsoSettingsBody {
    let names = |providers: &[Provider]| providers.iter().map(|p| p.as_str().to_owned()).collect();
    SsoSettingsBody { enabled: s.enabled, providers: names(&s.providers), mfa_sufficient: names(&s.mfa_sufficient) }
}

#[utoipa::path(get, path = "/api/v1/companies/{domain}/sso", tag = "office manager", params(("domain" = String, Path,)),
    responses((status = 200, body = SsoSettingsBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn sso_get(State(web): WebState, admin: Admin, ApiPath(domain): ApiPath<String>) -> Result<Json<SsoSettingsBody>, AppError> {
    let company = admin.read(&web, &domain).await?;
    let domain = company.domain.clone();
    Ok(Json(sso_body(web.app.sso_settings_of(&domain).await?)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoMfaBody {
    /// A subset of the enabled `providers`; `[]` makes the company's 2FA rule apply after every SSO sign-in.
    mfa_sufficient: Vec<String>,
}

/// Sets the providers whose MFA is enough after SSO (office manager); enabling SSO and providers
/// stays the operator's.
#[utoipa::path(put, path = "/api/v1/companies/{domain}/sso", tag = "office manager", request_body = SsoMfaBody, params(("domain" = String, Path,)),
    responses((status = 200, body = SsoSettingsBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, description = "unknown_provider or provider_not_enabled", body = ErrorBody)))]
pub async fn sso_put(
    State(web): WebState,
    Client(ctx): Client,
    admin: Admin,
    ApiPath(domain): ApiPath<String>,
    ApiJson(b): ApiJson<SsoMfaBody>,
) -> Result<Json<SsoSettingsBody>, AppError> {
    let company = admin.manage(&web, &domain).await?;
    let domain = company.domain.clone();
    let settings = web.app.set_sso_mfa_sufficient(&domain, &b.mfa_sufficient, admin.actor(), &ctx).await?;
    Ok(Json(sso_body(settings)))
}
