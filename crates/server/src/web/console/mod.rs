//! The office manager's console (C8): the company's users, security policy, email review and audit
//! log, each a sub-module with its pages and its JSON API.
//!
//! Office managers change; call center supervisors see the same pages read-only (no forms); users
//! and anyone else get "Page not found". A console page always works on the signed-in member's own
//! company: no company appears in its URL, so none can be swapped in. The API names the company,
//! and `Admin` decides who reaches it.

pub mod audit;
pub mod email_review;
pub mod policy;
pub mod users;
pub mod users_api;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{Redirect, Response};
use axum::routing::get;
use axum::Router;
use latchkey_core::Role;

use crate::app::{Actor, AppError};
use crate::web::kit::{error_page_to, not_found_page, Current, PageUser, Web};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/users") }))
        .merge(policy::routes())
        .merge(email_review::routes())
        .merge(users::routes())
        .merge(users_api::routes())
        .merge(audit::routes())
}

/// A signed-in office manager or supervisor, on a console page.
pub struct ConsoleUser(pub Current);

impl FromRequestParts<Arc<Web>> for ConsoleUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Self::Rejection> {
        let PageUser(current) = PageUser::from_request_parts(parts, web).await?;
        if current.user.role == Role::User {
            return Err(not_found_page());
        }
        Ok(ConsoleUser(current))
    }
}

impl ConsoleUser {
    /// Office managers change; supervisors only read.
    pub fn can_manage(&self) -> bool {
        self.0.user.role == Role::OfficeManager
    }

    pub fn actor(&self) -> Actor {
        Actor::User(self.0.user.id)
    }

    /// For a form post (its CSRF token already checked by its `SessionForm`): the member is an
    /// office manager. A supervisor posting gets 403 (the pages never offer them a form).
    pub fn check_change(&self) -> Result<(), Response> {
        if !self.can_manage() {
            let e = AppError::forbidden("Only an office manager can do this.");
            return Err(error_page_to(&e, "/console", "Back to the console"));
        }
        Ok(())
    }
}

/// What every console page shows around its content: the company, the tabs, who is signed in.
pub struct ConsoleFrame {
    pub csrf: String,
    pub login_name: String,
    pub company_name: String,
    pub company_domain: String,
    pub can_manage: bool,
    /// The tab to mark: `users`, `policy`, `review` or `audit`.
    pub tab: &'static str,
}

impl ConsoleFrame {
    pub fn new(web: &Web, member: &ConsoleUser, tab: &'static str) -> Self {
        let user = &member.0.user;
        ConsoleFrame {
            csrf: web.csrf_token_for(&member.0.token),
            login_name: user.login_name.clone(),
            company_name: user.company_name.clone(),
            company_domain: user.company_domain.clone(),
            can_manage: member.can_manage(),
            tab,
        }
    }
}

/// The console's answer to a failed change: the page again with the message is best, but where a
/// handler has no page to re-render, a readable error page that leads back.
pub fn console_error(e: &AppError, back: &str) -> Response {
    error_page_to(e, back, "Back")
}
