//! My Account, page and API: the profile (`/account`, `GET /api/v1/me`) with its emails, linked
//! sign-ins and two-factor methods, the default method, and (in sub-modules) password, PIN, sessions.

pub mod password;
pub mod sessions;

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use latchkey_core::two_factor::Method;
use latchkey_core::{FieldErrors, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::{rfc3339, AppError};
use crate::web::kit::{
    csrf_forms, describe_client, error_page, human_time, method_label, password_hint, render, role_label, sso_link_info, ApiJson, Current, Done, EmailEntry,
    ErrorBody, MethodChoice, PageUser, SessionForm, SignedIn, SsoLinkInfo, Web, WebState,
};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/account", get(account_page))
        .route("/account/two-factor/preferred", post(preferred))
        .route("/api/v1/me", get(me))
        .route("/api/v1/me/2fa/preferred", put(preferred_put))
        .merge(password::routes())
        .merge(sessions::routes())
}

// ---------------------------------------------------------------- the page

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

struct SsoLinkRow {
    id: i64,
    provider: &'static str,
    email: String,
    linked_at: String,
    last_used_at: String,
}

/// The user's links, and the providers the company enabled (linking one is signing in with it
/// once, signed out: the first time asks for this account's password).
async fn sso_rows(web: &Web, u: &latchkey_store::User) -> Result<(Vec<SsoLinkRow>, Vec<&'static str>), AppError> {
    let links = web.app.sso_links(u).await?;
    let settings = web.app.store.sso_settings(u.company_id).await?;
    let rows = links
        .iter()
        .map(|l| SsoLinkRow {
            id: l.id,
            provider: l.provider.label(),
            email: l.email.clone().unwrap_or_default(),
            linked_at: human_time(l.linked_at),
            last_used_at: l.last_used_at.map(human_time).unwrap_or_else(|| "never".into()),
        })
        .collect();
    let offered = web
        .app
        .sso_providers()
        .into_iter()
        .filter(|p| settings.allows(*p))
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

async fn account_view(web: &Web, current: &Current, notice: Option<&'static str>) -> Result<AccountPage, AppError> {
    let u = &current.user;
    let sessions = web.app.sessions(u).await?;
    let emails = web.app.store.additional_emails(u.id).await?;
    let stored = web.app.store.methods_of_user(u.id).await?;
    let recovery_codes_left = if stored.is_empty() { None } else { Some(web.app.store.recovery_codes_left(u.id).await?) };
    let company = web.app.company_two_factor(u.company_id).await?;
    let find = |m: Method| stored.iter().find(|s| s.method == m);
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
            .map(|m| MethodChoice { value: m.as_str(), label: method_label(*m), checked: preferred == Some(*m) })
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
        console: u.role != Role::User,
    })
}

async fn account_page(State(web): WebState, Query(q): Query<AccountQuery>, PageUser(current): PageUser) -> Response {
    match account_view(&web, &current, account_notice(q.done.as_deref())).await {
        Ok(page) => render(StatusCode::OK, &page, None),
        Err(e) => error_page(&e),
    }
}

/// Shows My Account again with an error that belongs to no form field.
async fn account_with_message(web: &Web, current: &Current, e: AppError) -> Response {
    match account_view(web, current, None).await {
        Ok(mut page) => {
            page.error = Some(e.message.clone());
            render(e.status(), &page, None)
        }
        Err(e) => error_page(&e),
    }
}

/// Shows My Account again with the error of one of its forms.
async fn account_with_error(web: &Web, current: &Current, e: AppError, pin_form: bool) -> Response {
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
            render(e.status(), &page, None)
        }
        Err(e) => error_page(&e),
    }
}

// ---------------------------------------------------------------- the default method

#[derive(Deserialize)]
struct PreferredFields {
    csrf_token: String,
    method: String,
}

csrf_forms!(PreferredFields);

/// The method pre-selected at sign-in, chosen on My Account (which shows a refusal).
async fn preferred(State(web): WebState, PageUser(current): PageUser, SessionForm(f): SessionForm<PreferredFields>) -> Response {
    let result = match Method::parse(&f.method) {
        Some(m) => web.app.set_preferred_method(&current.user, m).await,
        None => Err(AppError::field("method", "Choose one of your methods.")),
    };
    match result {
        Ok(()) => Redirect::to("/account?done=preferred").into_response(),
        Err(e) if e.status().is_client_error() => account_with_message(&web, &current, e).await,
        Err(e) => error_page(&e),
    }
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
pub async fn preferred_put(State(web): WebState, SignedIn(current): SignedIn, ApiJson(b): ApiJson<PreferredBody>) -> Result<Json<Done>, AppError> {
    web.app.set_preferred_method(&current.user, b.method).await?;
    Ok(Json(Done { message: "Your preferred method was saved." }))
}

// ---------------------------------------------------------------- GET /api/v1/me

#[derive(Serialize, ToSchema)]
pub struct CompanyRef {
    name: String,
    domain: String,
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
pub struct SecondFactorInfo {
    method: String,
    enabled_at: String,
    /// The masked phone number or the address codes go to; none for the authenticator app.
    detail: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/me", tag = "me", responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn me(State(web): WebState, SignedIn(current): SignedIn) -> Result<Json<Me>, AppError> {
    let u = current.user;
    let (overview, company) = web.app.account_overview(&u).await?;
    let methods = overview.methods;
    let recovery_codes_left = if methods.is_empty() { None } else { Some(overview.recovery_codes_left) };
    let two_factor_available = company.available();
    let preferred_method = overview.preferred_method.map(|m| m.as_str().to_owned());
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
                detail: if m.method == Method::Sms { m.detail.as_deref().map(latchkey_core::two_factor::E164::mask) } else { m.detail },
                method: m.method.as_str().to_owned(),
                enabled_at: rfc3339(m.enabled_at),
            })
            .collect(),
        preferred_method,
        recovery_codes_left,
        sso_links: links.into_iter().map(sso_link_info).collect(),
    }))
}
