//! The email association review, page and API: the seed's SSO security considerations as findings
//! (shared emails, several SSO emails, additional emails that sign in), each with accounts and fix.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use latchkey_core::email_review::{Finding, FindingKind, InvolvedAccount};
use latchkey_core::Role;
use serde::Serialize;
use utoipa::ToSchema;

use super::{console_error, ConsoleFrame, ConsoleUser};
use crate::app::AppError;
use crate::web::kit::{render, role_label, Admin, ApiPath, ErrorBody, Web, WebState};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/console/email-review", get(page))
        .route("/api/v1/companies/{domain}/email-review", get(email_review))
}

struct FindingRow {
    title: &'static str,
    emails: Vec<String>,
    can_sign_in: bool,
    accounts: Vec<AccountRow>,
    fix: &'static str,
}

struct AccountRow {
    login_name: String,
    extension: String,
    role: &'static str,
    can_sign_in: bool,
}

#[derive(Template)]
#[template(path = "pages/console_email_review.html")]
struct ReviewPage {
    frame: ConsoleFrame,
    sso_enabled: bool,
    findings: Vec<FindingRow>,
}

async fn page(State(web): WebState, member: ConsoleUser) -> Response {
    let review = match web.app.email_review(&member.0.user.company_domain).await {
        Ok(r) => r,
        Err(e) => return console_error(&e, "/console"),
    };
    let page = ReviewPage { frame: ConsoleFrame::new(&web, &member, "review"), sso_enabled: review.sso_enabled, findings: review.findings.into_iter().map(row).collect() };
    render(StatusCode::OK, &page, None)
}

fn row(f: Finding) -> FindingRow {
    FindingRow {
        title: match f.kind {
            FindingKind::SharedEmail => "One email on several accounts",
            FindingKind::SeveralSsoEmails => "Several emails sign in to one account",
            FindingKind::AdditionalEmailCanSignIn => "An additional email can sign in",
        },
        fix: f.kind.fix(),
        emails: f.emails,
        can_sign_in: f.can_sign_in,
        accounts: f
            .accounts
            .into_iter()
            .map(|a| AccountRow { login_name: a.login_name, extension: a.extension, role: role_label(a.role), can_sign_in: a.can_sign_in })
            .collect(),
    }
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
pub async fn email_review(State(web): WebState, admin: Admin, ApiPath(domain): ApiPath<String>) -> Result<Json<EmailReviewBody>, AppError> {
    let company = admin.read(&web, &domain).await?;
    let domain = company.domain.clone();
    let review = web.app.email_review(&domain).await?;
    Ok(Json(EmailReviewBody { sso_enabled: review.sso_enabled, findings: review.findings.into_iter().map(finding_body).collect() }))
}
