//! The JSON bodies that more than one flow answers with: a confirmation, an accepted request, a
//! code sent, an emailed link's facts, an additional email, a linked sign-in.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::rfc3339;

#[derive(Serialize, ToSchema)]
pub struct Done {
    pub message: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Accepted {
    pub message: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct CodeSent {
    /// Where the code went, as it may be shown: the email address, or `•••• 4477` for a phone.
    sent_to: String,
}

/// 202 with where the code went.
pub fn accepted(sent_to: String) -> Response {
    (StatusCode::ACCEPTED, Json(CodeSent { sent_to })).into_response()
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

pub fn link_info(v: crate::app::LinkView) -> LinkInfo {
    LinkInfo { login_name: v.login_name, company: v.company_name, expires_at: rfc3339(v.expires_at), password_min_length: v.password_min_length }
}

#[derive(Serialize, ToSchema)]
pub struct LoginNameBody {
    pub login_name: String,
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
pub struct SsoLinkInfo {
    /// For `DELETE /api/v1/me/sso-links/{id}`.
    id: i64,
    /// `google` or `microsoft`.
    provider: String,
    email: Option<String>,
    linked_at: String,
    last_used_at: Option<String>,
}

pub fn sso_link_info(l: latchkey_store::SsoLink) -> SsoLinkInfo {
    SsoLinkInfo { id: l.id, provider: l.provider.as_str().to_owned(), email: l.email, linked_at: rfc3339(l.linked_at), last_used_at: l.last_used_at.map(rfc3339) }
}
