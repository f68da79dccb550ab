//! The email association review page: the seed's SSO security considerations as findings, each
//! naming the accounts and the fix, with a link to each account's page where the office manager
//! removes an email. The same findings as `GET /api/v1/companies/{domain}/email-review`.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use latchkey_core::email_review::{Finding, FindingKind};

use super::{ConsoleFrame, ConsoleUser};
use crate::web::pages::{render, role_label};
use crate::web::Web;

pub fn routes() -> Router<Arc<Web>> {
    Router::new().route("/console/email-review", get(page))
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

async fn page(State(web): State<Arc<Web>>, member: ConsoleUser) -> Response {
    let review = match web.app.email_review(&member.0.user.company_domain).await {
        Ok(r) => r,
        Err(e) => return super::console_error(&e, "/console"),
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
