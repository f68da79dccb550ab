//! Who may run a company's security, decided in one place for every company endpoint of the API:
//! - its office managers change and its call center supervisors read, through their session (with
//!   the session's CSRF token on every change);
//! - the operator's API tokens, sent as `Authorization: Bearer …`: an operator-scope token reaches
//!   every company, a company-scope token only its own, with an office manager's rights.
//!
//! Anyone else gets 404 for a company endpoint, as if the company did not exist: a user, a member
//! of another company, a token of another company. A supervisor asking to change gets 403.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::header;
use latchkey_core::secret::TokenHash;
use latchkey_core::Role;
use latchkey_store::{ApiToken, Company};

use super::session::{Current, SignedIn};
use super::Web;
use crate::app::{Actor, AppError, ErrorKind, API_TOKEN_PREFIX};

pub enum Principal {
    /// A signed-in member of a company (any role; [`Admin::read`] turns users away).
    Member(Box<Current>),
    Token(ApiToken),
}

/// The caller of a company or operator endpoint.
pub struct Admin(pub Principal);

impl FromRequestParts<Arc<Web>> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Self::Rejection> {
        let Some(authorization) = parts.headers.get(header::AUTHORIZATION) else {
            let SignedIn(current) = SignedIn::from_request_parts(parts, web).await?;
            return Ok(Admin(Principal::Member(Box::new(current))));
        };
        let secret = authorization
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|s| s.starts_with(API_TOKEN_PREFIX) && s.len() <= 128)
            .ok_or_else(invalid_token)?;
        // A bearer token is not ambient like a cookie, so a change needs no CSRF token.
        let token = web.app.store.use_api_token(&TokenHash::of(secret), web.app.now()).await?.ok_or_else(invalid_token)?;
        Ok(Admin(Principal::Token(token)))
    }
}

fn invalid_token() -> AppError {
    AppError::new(ErrorKind::Unauthorized, "invalid_token", "The API token is unknown or revoked; send `Authorization: Bearer lk_…`.")
}

impl Admin {
    pub fn actor(&self) -> Actor {
        match &self.0 {
            Principal::Member(c) => Actor::User(c.user.id),
            Principal::Token(t) => Actor::ApiToken(t.id),
        }
    }

    /// The signed-in member, when the caller is one (not a token).
    pub fn member(&self) -> Option<&Current> {
        match &self.0 {
            Principal::Member(c) => Some(c),
            Principal::Token(_) => None,
        }
    }

    /// The company `domain`, if the caller may read it: its office managers and supervisors, an
    /// operator token, a token of that company. 404 for everyone else.
    pub async fn read(&self, web: &Web, domain: &str) -> Result<Company, AppError> {
        let company = web.app.store.company_by_domain(domain.trim()).await?.ok_or_else(AppError::not_found)?;
        let allowed = match &self.0 {
            Principal::Member(c) => c.user.company_id == company.id && c.user.role != Role::User,
            Principal::Token(t) => t.company_id.is_none_or(|id| id == company.id),
        };
        if !allowed {
            return Err(AppError::not_found());
        }
        Ok(company)
    }

    /// The company `domain`, if the caller may change it: as [`Admin::read`], and a supervisor
    /// gets 403.
    pub async fn manage(&self, web: &Web, domain: &str) -> Result<Company, AppError> {
        let company = self.read(web, domain).await?;
        if let Principal::Member(c) = &self.0 {
            if c.user.role != Role::OfficeManager {
                return Err(AppError::forbidden("Only an office manager can do this."));
            }
        }
        Ok(company)
    }

    /// Operator endpoints (companies, pilot switches): an operator-scope token only.
    pub fn operator(&self) -> Result<(), AppError> {
        match &self.0 {
            Principal::Token(t) if t.company_id.is_none() => Ok(()),
            _ => Err(AppError::forbidden("Only an operator API token can do this.")),
        }
    }
}
