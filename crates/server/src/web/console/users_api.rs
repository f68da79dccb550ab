//! The JSON API of the console's users (C8): the company's users with what each signs in with, and
//! the changes the Users tab makes (create, welcome, disable, enable, emails, reset two-factor).
//!
//! Office managers (and company API tokens) change, supervisors read; users and other companies
//! get 404.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use latchkey_core::{Role, UserState};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::{rfc3339, AppError, RequestContext, UserSearch, UserSummary};
use crate::web::kit::{Accepted, Admin, ApiJson, ApiPath, Client, Done, EmailEntry, ErrorBody, Web, WebState};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/api/v1/companies/{domain}/users", get(users_list).post(create_user))
        .route("/api/v1/companies/{domain}/users/{extension}", get(user_get))
        .route("/api/v1/companies/{domain}/users/{extension}/welcome", post(resend_welcome))
        .route("/api/v1/companies/{domain}/users/{extension}/disable", post(user_disable))
        .route("/api/v1/companies/{domain}/users/{extension}/enable", post(user_enable))
        .route("/api/v1/companies/{domain}/users/{extension}/designated-email", put(designated_email_put))
        .route("/api/v1/companies/{domain}/users/{extension}/emails", get(emails_list).post(email_add))
        .route("/api/v1/companies/{domain}/users/{extension}/emails/{email}", delete(email_remove))
        .route("/api/v1/companies/{domain}/users/{extension}/2fa/reset", post(two_factor_reset))
}

/// A user as the office manager sees it.
#[derive(Serialize, ToSchema)]
pub struct UserBody {
    extension: String,
    login_name: String,
    /// `user`, `supervisor` or `office_manager`.
    #[schema(value_type = String)]
    role: Role,
    /// `invited` (welcome email sent, not set up), `active` or `disabled`.
    #[schema(value_type = String)]
    status: UserState,
    designated_email: String,
    /// The designated email was proven (welcome link used, or a code sent to it came back).
    email_verified: bool,
    /// Additional emails (e.g. for voicemail notifications).
    emails: Vec<EmailEntry>,
    /// The enabled two-factor methods: `totp`, `sms`, `email`.
    two_factor_methods: Vec<String>,
    /// The single sign-on providers linked to the account: `google`, `microsoft`.
    sso_providers: Vec<String>,
    /// RFC 3339; none before the first sign-in.
    last_sign_in_at: Option<String>,
    created_at: String,
}

impl From<UserSummary> for UserBody {
    fn from(s: UserSummary) -> Self {
        let u = s.user;
        UserBody {
            extension: u.extension,
            login_name: u.login_name,
            role: u.role,
            status: u.state,
            designated_email: u.designated_email,
            email_verified: u.designated_email_verified_at.is_some(),
            emails: s.additional_emails.into_iter().map(EmailEntry::from).collect(),
            two_factor_methods: s.methods.iter().map(|m| m.as_str().to_owned()).collect(),
            sso_providers: s.sso_providers.iter().map(|p| p.as_str().to_owned()).collect(),
            last_sign_in_at: u.last_sign_in_at.map(rfc3339),
            created_at: rfc3339(u.created_at),
        }
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    q: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

/// The company's users in extension order (office managers and supervisors). `q` finds part of an
/// extension, login name, designated or additional email, in any case. A page shorter than `limit`
/// is the last.
#[utoipa::path(get, path = "/api/v1/companies/{domain}/users", tag = "office manager",
    params(("domain" = String, Path,),
        ("q" = Option<String>, Query, description = "Part of an extension, login name or email"),
        ("limit" = Option<i64>, Query, description = "1 to 200; 50 by default"),
        ("offset" = Option<i64>, Query, description = "How many matching users to skip; 0 by default")),
    responses((status = 200, body = [UserBody]), (status = 400, description = "bad_request: a parameter given twice", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, description = "`fields` names `q`, `limit` or `offset`", body = ErrorBody)))]
pub async fn users_list(
    State(web): WebState,
    admin: Admin,
    ApiPath(domain): ApiPath<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<UserBody>>, AppError> {
    let company = admin.read(&web, &domain).await?;
    let Query(q) = query.map_err(|_| AppError::bad_request("The query string could not be read."))?;
    let search = UserSearch::parse(q.q.as_deref(), q.limit.as_deref(), q.offset.as_deref())?;
    let page = web.app.company_users(&company.domain, &search).await?;
    Ok(Json(page.users.into_iter().map(UserBody::from).collect()))
}

#[utoipa::path(get, path = "/api/v1/companies/{domain}/users/{extension}", tag = "office manager",
    params(("domain" = String, Path,), ("extension" = String, Path,)),
    responses((status = 200, body = UserBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn user_get(State(web): WebState, admin: Admin, ApiPath((domain, extension)): ApiPath<(String, String)>) -> Result<Json<UserBody>, AppError> {
    let company = admin.read(&web, &domain).await?;
    Ok(Json(web.app.user_summary(&company.domain, &extension).await?.into()))
}

/// Disables the user (office manager): every session ends at once; sign-in, reset links and
/// single sign-on refuse the account until it is enabled. 409 `cannot_disable_yourself`,
/// `already_disabled`.
#[utoipa::path(post, path = "/api/v1/companies/{domain}/users/{extension}/disable", tag = "office manager",
    params(("domain" = String, Path,), ("extension" = String, Path,)),
    responses((status = 200, body = UserBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn user_disable(State(web): WebState, Client(ctx): Client, admin: Admin, ApiPath(path): ApiPath<(String, String)>) -> Result<Json<UserBody>, AppError> {
    set_access(&web, &ctx, &admin, path, false).await
}

/// Enables a disabled user (office manager): back to `active`, or to `invited` for an account
/// never set up. 409 `not_disabled`.
#[utoipa::path(post, path = "/api/v1/companies/{domain}/users/{extension}/enable", tag = "office manager",
    params(("domain" = String, Path,), ("extension" = String, Path,)),
    responses((status = 200, body = UserBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn user_enable(State(web): WebState, Client(ctx): Client, admin: Admin, ApiPath(path): ApiPath<(String, String)>) -> Result<Json<UserBody>, AppError> {
    set_access(&web, &ctx, &admin, path, true).await
}

/// Disable or enable, then the user as it is now.
async fn set_access(web: &Web, ctx: &RequestContext, admin: &Admin, (domain, extension): (String, String), enable: bool) -> Result<Json<UserBody>, AppError> {
    let company = admin.manage(web, &domain).await?;
    let (domain, actor) = (company.domain.as_str(), admin.actor());
    if enable {
        web.app.enable_user(domain, &extension, actor, ctx).await?;
    } else {
        web.app.disable_user(domain, &extension, actor, ctx).await?;
    }
    Ok(Json(web.app.user_summary(domain, &extension).await?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DesignatedEmailBody {
    email: String,
}

/// Changes the designated email (office manager). The new address is unverified; welcome and
/// reset links sent to the old one stop working; the old address is told (the new one masked) and
/// the new one gets a short notice. An invited user gets a new welcome email at the new address.
#[utoipa::path(put, path = "/api/v1/companies/{domain}/users/{extension}/designated-email", tag = "office manager",
    request_body = DesignatedEmailBody, params(("domain" = String, Path,), ("extension" = String, Path,)),
    responses((status = 200, body = UserBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, description = "validation_failed, same_email or email_is_additional", body = ErrorBody)))]
pub async fn designated_email_put(
    State(web): WebState,
    Client(ctx): Client,
    admin: Admin,
    ApiPath((domain, extension)): ApiPath<(String, String)>,
    ApiJson(b): ApiJson<DesignatedEmailBody>,
) -> Result<Json<UserBody>, AppError> {
    let company = admin.manage(&web, &domain).await?;
    web.app.change_designated_email(&company.domain, &extension, &b.email, admin.actor(), &ctx).await?;
    Ok(Json(web.app.user_summary(&company.domain, &extension).await?.into()))
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
) -> Result<(StatusCode, Json<CreatedUserBody>), AppError> {
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
) -> Result<(StatusCode, Json<Accepted>), AppError> {
    let company = admin.manage(&web, &domain).await?;
    let domain = company.domain.clone();
    web.app.resend_welcome(&domain, &extension, admin.actor(), &ctx).await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { message: "A new welcome email was sent; the previous link no longer works." })))
}

/// The user's additional emails, each with whether it was confirmed (office managers and supervisors).
#[utoipa::path(get, path = "/api/v1/companies/{domain}/users/{extension}/emails", tag = "office manager",
    params(("domain" = String, Path,), ("extension" = String, Path,)),
    responses((status = 200, body = [EmailEntry]), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn emails_list(State(web): WebState, admin: Admin, ApiPath((domain, extension)): ApiPath<(String, String)>) -> Result<Json<Vec<EmailEntry>>, AppError> {
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
) -> Result<(StatusCode, Json<AddedEmailBody>), AppError> {
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
) -> Result<StatusCode, AppError> {
    let company = admin.manage(&web, &domain).await?;
    let domain = company.domain.clone();
    web.app.remove_additional_email(&domain, &extension, &email, admin.actor(), &ctx).await?;
    Ok(StatusCode::NO_CONTENT)
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
) -> Result<Json<Done>, AppError> {
    let company = admin.manage(&web, &domain).await?;
    let domain = company.domain.clone();
    web.app.reset_two_factor(&domain, &extension, admin.actor(), &ctx).await?;
    Ok(Json(Done { message: "Two-factor authentication was reset; the user sets it up again at the next sign-in." }))
}
