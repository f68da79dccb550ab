//! The JSON API of the office manager's side of single sign-on: additional emails and their
//! confirmation link, the providers whose MFA is enough, and the email association review.
//! Office managers change, supervisors read, users and other companies see nothing.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use latchkey_core::email_review::{Finding, InvolvedAccount};
use latchkey_core::Role;
use latchkey_store::SsoSettings;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::admin::Admin;
use super::api::{ApiJson, ApiPath, EmailEntry};
use super::session::Client;
use super::Web;
use crate::app::{rfc3339, EmailConfirmationView};
use crate::error::{ApiError, ErrorBody};

type WebState = State<Arc<Web>>;

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/api/v1/companies/{domain}/users/{extension}/emails", get(emails_list).post(email_add))
        .route("/api/v1/companies/{domain}/users/{extension}/emails/{email}", delete(email_remove))
        .route("/api/v1/email-confirmation/{token}", get(email_confirmation_open).post(email_confirmation_confirm))
        .route("/api/v1/companies/{domain}/sso", get(sso_get).put(sso_put))
        .route("/api/v1/companies/{domain}/email-review", get(email_review))
}

/// The user's additional emails, each with whether it was confirmed (office managers and supervisors).
#[utoipa::path(get, path = "/api/v1/companies/{domain}/users/{extension}/emails", tag = "office manager",
    params(("domain" = String, Path,), ("extension" = String, Path,)),
    responses((status = 200, body = [EmailEntry]), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn emails_list(State(web): WebState, admin: Admin, ApiPath((domain, extension)): ApiPath<(String, String)>) -> Result<Json<Vec<EmailEntry>>, ApiError> {
    let company = admin.read(&web, &domain).await?;
    let domain = company.domain.clone();
    let emails = web.app.additional_emails_of(&domain, &extension).await?;
    Ok(Json(emails.into_iter().map(EmailEntry::from).collect()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddEmailBody {
    email: String,
}

#[derive(Serialize, ToSchema)]
pub struct AddedEmailBody {
    email: String,
    /// Always false here: the address counts once the link emailed to it is used.
    verified: bool,
    confirmation_email_sent: bool,
}

/// Adds an additional email (e.g. for voicemail notifications) and emails it a confirmation
/// link; the user's designated email is told. 422 for a malformed address or one the account has.
#[utoipa::path(post, path = "/api/v1/companies/{domain}/users/{extension}/emails", tag = "office manager", request_body = AddEmailBody,
    params(("domain" = String, Path,), ("extension" = String, Path,)),
    responses((status = 201, body = AddedEmailBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, description = "validation_failed or email_already_added", body = ErrorBody)))]
pub async fn email_add(
    State(web): WebState,
    Client(ctx): Client,
    admin: Admin,
    ApiPath((domain, extension)): ApiPath<(String, String)>,
    ApiJson(b): ApiJson<AddEmailBody>,
) -> Result<(StatusCode, Json<AddedEmailBody>), ApiError> {
    let company = admin.manage(&web, &domain).await?;
    let domain = company.domain.clone();
    let added = web.app.add_additional_email(&domain, &extension, &b.email, admin.actor(), &ctx).await?;
    let body = AddedEmailBody { email: added.email.to_string(), verified: false, confirmation_email_sent: added.confirmation_email_sent };
    Ok((StatusCode::CREATED, Json(body)))
}

/// Removes an additional email; a confirmation link still on its way stops working.
#[utoipa::path(delete, path = "/api/v1/companies/{domain}/users/{extension}/emails/{email}", tag = "office manager",
    params(("domain" = String, Path,), ("extension" = String, Path,), ("email" = String, Path,)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, description = "email_not_found", body = ErrorBody)))]
pub async fn email_remove(
    State(web): WebState,
    Client(ctx): Client,
    admin: Admin,
    ApiPath((domain, extension, email)): ApiPath<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let company = admin.manage(&web, &domain).await?;
    let domain = company.domain.clone();
    web.app.remove_additional_email(&domain, &extension, &email, admin.actor(), &ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a confirmation link confirms.
#[derive(Serialize, ToSchema)]
pub struct EmailConfirmationInfo {
    email: String,
    login_name: String,
    company: String,
    /// RFC 3339.
    expires_at: String,
    verified: bool,
}

fn confirmation_info(v: EmailConfirmationView, verified: bool) -> EmailConfirmationInfo {
    EmailConfirmationInfo { email: v.email, login_name: v.login_name, company: v.company_name, expires_at: rfc3339(v.expires_at), verified }
}

/// Reads a confirmation link without using it.
#[utoipa::path(get, path = "/api/v1/email-confirmation/{token}", tag = "activation", params(("token" = String, Path,)),
    responses((status = 200, body = EmailConfirmationInfo), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn email_confirmation_open(State(web): WebState, ApiPath(token): ApiPath<String>) -> Result<Json<EmailConfirmationInfo>, ApiError> {
    Ok(Json(confirmation_info(web.app.open_email_confirmation(&token).await?, false)))
}

/// Confirms the additional email the link was sent to (once); from then on it can sign in by SSO.
#[utoipa::path(post, path = "/api/v1/email-confirmation/{token}", tag = "activation", params(("token" = String, Path,)),
    responses((status = 200, body = EmailConfirmationInfo), (status = 404, body = ErrorBody),
        (status = 410, description = "link_used, link_expired, or link_replaced (the email was removed)", body = ErrorBody)))]
pub async fn email_confirmation_confirm(State(web): WebState, ApiPath(token): ApiPath<String>, Client(ctx): Client) -> Result<Json<EmailConfirmationInfo>, ApiError> {
    Ok(Json(confirmation_info(web.app.confirm_email(&token, &ctx).await?, true)))
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
    SsoSettingsBody { enabled: s.enabled, providers: s.providers, mfa_sufficient: s.mfa_sufficient }
}

#[utoipa::path(get, path = "/api/v1/companies/{domain}/sso", tag = "office manager", params(("domain" = String, Path,)),
    responses((status = 200, body = SsoSettingsBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn sso_get(State(web): WebState, admin: Admin, ApiPath(domain): ApiPath<String>) -> Result<Json<SsoSettingsBody>, ApiError> {
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
) -> Result<Json<SsoSettingsBody>, ApiError> {
    let company = admin.manage(&web, &domain).await?;
    let domain = company.domain.clone();
    let settings = web.app.set_sso_mfa_sufficient(&domain, &b.mfa_sufficient, admin.actor(), &ctx).await?;
    Ok(Json(sso_body(settings)))
}

#[derive(Serialize, ToSchema)]
pub struct EmailReviewBody {
    /// With SSO off nothing signs in by email yet; the findings are what would once it is on.
    sso_enabled: bool,
    findings: Vec<FindingBody>,
}

#[derive(Serialize, ToSchema)]
pub struct FindingBody {
    /// `shared_email`, `several_sso_emails` or `additional_email_can_sign_in`.
    kind: &'static str,
    /// The address concerned; for `several_sso_emails` every address that signs in to the account.
    emails: Vec<String>,
    /// Whether the email is confirmed on any of the accounts, so signs in to it by SSO.
    can_sign_in: bool,
    accounts: Vec<InvolvedAccountBody>,
    /// What to do about it.
    fix: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct InvolvedAccountBody {
    login_name: String,
    extension: String,
    #[schema(value_type = String)]
    role: Role,
    /// The finding's email signs in to this account.
    can_sign_in: bool,
}

fn finding_body(f: Finding) -> FindingBody {
    let account = |a: InvolvedAccount| InvolvedAccountBody { login_name: a.login_name, extension: a.extension, role: a.role, can_sign_in: a.can_sign_in };
    FindingBody { kind: f.kind.as_str(), fix: f.kind.fix(), emails: f.emails, can_sign_in: f.can_sign_in, accounts: f.accounts.into_iter().map(account).collect() }
}

/// The email association review (office managers and supervisors): shared emails, accounts with
/// several SSO emails, additional emails that sign in — each with its fix.
#[utoipa::path(get, path = "/api/v1/companies/{domain}/email-review", tag = "office manager", params(("domain" = String, Path,)),
    responses((status = 200, body = EmailReviewBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn email_review(State(web): WebState, admin: Admin, ApiPath(domain): ApiPath<String>) -> Result<Json<EmailReviewBody>, ApiError> {
    let company = admin.read(&web, &domain).await?;
    let domain = company.domain.clone();
    let review = web.app.email_review(&domain).await?;
    Ok(Json(EmailReviewBody { sso_enabled: review.sso_enabled, findings: review.findings.into_iter().map(finding_body).collect() }))
}
