//! The console's Users tab (C8): the company's users with a search, each user's page, and for
//! office managers the forms that change them (create, resend welcome, disable, enable, the
//! designated email, additional emails, reset 2FA). Supervisors see the same facts and no form.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use latchkey_core::{FieldErrors, Role, UserState};
use serde::Deserialize;

use super::{console_error, ConsoleFrame, ConsoleUser};
use crate::app::{AppError, UserSearch, UserSummary};
use crate::web::kit::{
    csrf_forms, error_page, human_time, method_label, not_found_page, render, role_label, Client, FormRefused, SessionForm, Web, WebState,
};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/console/users", get(list_page).post(create))
        .route("/console/users/{extension}", get(user_page))
        .route("/console/users/{extension}/{change}", post(change))
}

/// One row of the users table.
struct UserRow {
    href: String,
    extension: String,
    login_name: String,
    role: &'static str,
    status: &'static str,
    status_class: &'static str,
    designated_email: String,
    email_verified: bool,
    methods: Vec<&'static str>,
    sso: Vec<&'static str>,
    last_sign_in: String,
}

fn status_badge(state: UserState) -> (&'static str, &'static str) {
    match state {
        UserState::Invited => ("Invited", "warn"),
        UserState::Active => ("Active", "ok"),
        UserState::Disabled => ("Disabled", "off"),
    }
}

impl From<&UserSummary> for UserRow {
    fn from(s: &UserSummary) -> Self {
        let u = &s.user;
        let (status, status_class) = status_badge(u.state);
        UserRow {
            href: format!("/console/users/{}", u.extension),
            extension: u.extension.clone(),
            login_name: u.login_name.clone(),
            role: role_label(u.role),
            status,
            status_class,
            designated_email: u.designated_email.clone(),
            email_verified: u.designated_email_verified_at.is_some(),
            methods: s.methods.iter().map(|m| method_label(*m)).collect(),
            sso: s.sso_providers.iter().map(|p| p.label()).collect(),
            last_sign_in: u.last_sign_in_at.map(human_time).unwrap_or_else(|| "Never".into()),
        }
    }
}

// ---------------------------------------------------------------- the list

/// The "Create user" form as typed, shown again with its errors.
#[derive(Default, Deserialize)]
struct CreateFields {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    extension: String,
    #[serde(default)]
    designated_email: String,
    #[serde(default)]
    role: String,
}

#[derive(Template)]
#[template(path = "pages/console_users.html")]
struct UsersPage {
    frame: ConsoleFrame,
    q: String,
    rows: Vec<UserRow>,
    prev_href: Option<String>,
    next_href: Option<String>,
    error: Option<String>,
    create: CreateFields,
    errors: FieldErrors,
}

#[derive(Deserialize)]
struct ListQuery {
    q: Option<String>,
    offset: Option<String>,
}

/// `/console/users?q=…&offset=…`: a page of the same search.
fn page_href(q: &str, offset: i64) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if !q.is_empty() {
        query.append_pair("q", q);
    }
    if offset > 0 {
        query.append_pair("offset", &offset.to_string());
    }
    let query = query.finish();
    if query.is_empty() { "/console/users".to_owned() } else { format!("/console/users?{query}") }
}

async fn users_page(web: &Web, member: &ConsoleUser, q: Option<&str>, offset: Option<&str>) -> Result<UsersPage, AppError> {
    let frame = ConsoleFrame::new(web, member, "users");
    let mut page = UsersPage {
        frame,
        q: q.unwrap_or_default().trim().chars().take(300).collect(),
        rows: Vec::new(),
        prev_href: None,
        next_href: None,
        error: None,
        create: CreateFields { role: "user".into(), ..Default::default() },
        errors: FieldErrors::new(),
    };
    let search = match UserSearch::parse(q, None, offset) {
        Ok(s) => s,
        Err(e) => {
            page.error = Some(e.fields.fields().flat_map(|(_, m)| m.iter().cloned()).collect::<Vec<_>>().join(" "));
            return Ok(page);
        }
    };
    let found = web.app.company_users(&member.0.user.company_domain, &search).await?;
    page.rows = found.users.iter().map(UserRow::from).collect();
    page.prev_href = (search.offset > 0).then(|| page_href(&page.q, (search.offset - search.limit).max(0)));
    page.next_href = found.more.then(|| page_href(&page.q, search.offset + search.limit));
    Ok(page)
}

async fn list_page(State(web): WebState, member: ConsoleUser, Query(q): Query<ListQuery>) -> Response {
    match users_page(&web, &member, q.q.as_deref(), q.offset.as_deref()).await {
        Ok(page) => {
            let status = if page.error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
            render(status, &page, None)
        }
        Err(e) => error_page(&e),
    }
}

/// "Create user": the welcome email goes out, and the new user's page says where to.
async fn create(State(web): WebState, Client(ctx): Client, member: ConsoleUser, SessionForm(f): SessionForm<CreateFields>) -> Response {
    if let Err(r) = member.check_change() {
        return r;
    }
    let result = match f.role.parse::<Role>() {
        Ok(role) => web.app.create_user(&member.0.user.company_domain, &f.extension, &f.designated_email, role, member.actor(), &ctx).await,
        Err(e) => Err(AppError::field("role", e.0)),
    };
    match result {
        Ok(created) => {
            let done = if created.email_sent { "created" } else { "created-unsent" };
            Redirect::to(&format!("/console/users/{}?done={done}", created.user.extension)).into_response()
        }
        Err(e) => create_failed(&web, &member, f, e).await,
    }
}

/// The list again with the form as typed and each error next to its field.
async fn create_failed(web: &Web, member: &ConsoleUser, f: CreateFields, e: AppError) -> Response {
    let mut page = match users_page(web, member, None, None).await {
        Ok(p) => p,
        Err(e) => return error_page(&e),
    };
    page.errors = e.fields.clone();
    if e.code == "extension_taken" {
        page.errors.add("extension", e.message.clone());
    } else if page.errors.is_empty() {
        page.error = Some(e.message.clone());
    }
    let typed = |v: String| v.chars().take(300).collect();
    page.create = CreateFields { csrf_token: String::new(), extension: typed(f.extension), designated_email: typed(f.designated_email), role: typed(f.role) };
    render(e.status(), &page, None)
}

// ---------------------------------------------------------------- one user

#[derive(Template)]
#[template(path = "pages/console_user.html")]
struct UserPage {
    frame: ConsoleFrame,
    u: UserRow,
    created_at: String,
    invited: bool,
    disabled: bool,
    /// The signed-in office manager's own account: no Disable.
    is_self: bool,
    additional_emails: Vec<(String, bool)>,
    notice: Option<String>,
    error: Option<String>,
    /// Each email form's value as typed and its errors, shown next to its field.
    designated_value: String,
    designated_errors: FieldErrors,
    additional_value: String,
    additional_errors: FieldErrors,
}

/// The sentence after a change. Only these fixed sentences can come from the query; the one
/// fact they carry (the address) is read from the store, so a link cannot inject text.
fn done_notice(done: &str, designated_email: &str) -> Option<String> {
    Some(match done {
        "created" => format!("The user was created and the welcome email was sent to {designated_email}."),
        "created-unsent" => "The user was created, but the welcome email could not be sent. Use Resend welcome email.".into(),
        "welcome" => format!("A new welcome email was sent to {designated_email}; the previous link no longer works."),
        "welcome-unsent" => "The welcome email could not be sent. Try again in a moment.".into(),
        "disabled" => "The account is disabled and every session of it was signed out.".into(),
        "enabled" => "The account is enabled again.".into(),
        "designated-email" => format!("The designated email is now {designated_email}. The old address was told; links sent to it no longer work."),
        "designated-email-welcome" => format!("The designated email is now {designated_email}, and a new welcome email was sent to it."),
        "email-added" => "The additional email was added, and a confirmation link was sent to it.".into(),
        "email-removed" => "The additional email was removed.".into(),
        "two-factor-reset" => "Two-factor authentication was reset: the user sets it up again at the next sign-in.".into(),
        _ => return None,
    })
}

async fn user_view(web: &Web, member: &ConsoleUser, extension: &str, done: Option<&str>) -> Result<UserPage, AppError> {
    let s = web.app.user_summary(&member.0.user.company_domain, extension).await?;
    let u = &s.user;
    Ok(UserPage {
        frame: ConsoleFrame::new(web, member, "users"),
        created_at: human_time(u.created_at),
        invited: u.state == UserState::Invited,
        disabled: u.state == UserState::Disabled,
        is_self: u.id == member.0.user.id,
        additional_emails: s.additional_emails.iter().map(|e| (e.email.clone(), e.verified_at.is_some())).collect(),
        notice: done.and_then(|d| done_notice(d, &u.designated_email)),
        error: None,
        designated_value: String::new(),
        designated_errors: FieldErrors::new(),
        additional_value: String::new(),
        additional_errors: FieldErrors::new(),
        u: UserRow::from(&s),
    })
}

#[derive(Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

async fn user_page(State(web): WebState, member: ConsoleUser, Path(extension): Path<String>, Query(q): Query<DoneQuery>) -> Response {
    match user_view(&web, &member, &extension, q.done.as_deref()).await {
        Ok(page) => render(StatusCode::OK, &page, None),
        Err(e) => error_page_back(&e),
    }
}

fn error_page_back(e: &AppError) -> Response {
    console_error(e, "/console/users")
}

#[derive(Deserialize)]
struct ChangeFields {
    #[serde(default)]
    csrf_token: String,
    /// The address, for the forms that take one (each form's field has its own name, so that
    /// the ids on the page stay unique).
    #[serde(default, alias = "designated_email", alias = "additional_email")]
    email: String,
}

csrf_forms!(CreateFields, ChangeFields);

/// Every form of the user's page posts here; `change` names it. Back to the page with its notice,
/// or the page again with the error next to the form that failed. A change that does not exist is
/// "Page not found" for any readable form, whatever its token.
async fn change(
    State(web): WebState,
    Client(ctx): Client,
    member: ConsoleUser,
    Path((extension, change)): Path<(String, String)>,
    form: Result<SessionForm<ChangeFields>, FormRefused>,
) -> Response {
    let form = match form {
        Err(FormRefused::Unreadable(r)) => return r,
        form => form,
    };
    if !CHANGES.contains(&change.as_str()) {
        return not_found_page();
    }
    let SessionForm(f) = match form {
        Ok(f) => f,
        Err(refused) => return refused.into_response(),
    };
    if let Err(r) = member.check_change() {
        return r;
    }
    match apply(&web, &member, &extension, &change, &f.email, &ctx).await {
        Ok(done) => Redirect::to(&format!("/console/users/{}?done={done}", extension.trim())).into_response(),
        Err(e) => change_failed(&web, &member, &extension, &change, f.email, e).await,
    }
}

const CHANGES: [&str; 7] = ["welcome", "disable", "enable", "designated-email", "add-email", "remove-email", "reset-two-factor"];

/// Runs one change; returns the notice to show.
async fn apply(web: &Web, member: &ConsoleUser, ext: &str, change: &str, email: &str, ctx: &crate::app::RequestContext) -> Result<&'static str, AppError> {
    let (app, domain, actor) = (&web.app, member.0.user.company_domain.as_str(), member.actor());
    Ok(match change {
        "welcome" => if app.resend_welcome(domain, ext, actor, ctx).await?.email_sent { "welcome" } else { "welcome-unsent" },
        "disable" => app.disable_user(domain, ext, actor, ctx).await.map(|_| "disabled")?,
        "enable" => app.enable_user(domain, ext, actor, ctx).await.map(|_| "enabled")?,
        "designated-email" => match app.change_designated_email(domain, ext, email, actor, ctx).await?.welcome_email_sent {
            Some(true) => "designated-email-welcome",
            _ => "designated-email",
        },
        "add-email" => app.add_additional_email(domain, ext, email, actor, ctx).await.map(|_| "email-added")?,
        "remove-email" => app.remove_additional_email(domain, ext, email, actor, ctx).await.map(|_| "email-removed")?,
        "reset-two-factor" => app.reset_two_factor(domain, ext, actor, ctx).await.map(|_| "two-factor-reset")?,
        _ => return Err(AppError::not_found()),
    })
}

async fn change_failed(web: &Web, member: &ConsoleUser, ext: &str, change: &str, email: String, e: AppError) -> Response {
    let mut page = match user_view(web, member, ext, None).await {
        Ok(p) => p,
        Err(not_found) => return error_page_back(&not_found),
    };
    let email: String = email.chars().take(300).collect();
    match change {
        "designated-email" if !e.fields.is_empty() => (page.designated_value, page.designated_errors) = (email, e.fields.clone()),
        "add-email" if !e.fields.is_empty() => (page.additional_value, page.additional_errors) = (email, e.fields.clone()),
        _ => page.error = Some(e.message.clone()),
    }
    render(e.status(), &page, None)
}
