//! The console's audit log (C8): the member's own company's security events, newest first, with a
//! filter form (a GET form: filters belong in the address, so a view can be bookmarked and shared),
//! "Older events" paging, and the CSV export. Read-only, for office managers and supervisors alike.

use std::sync::Arc;

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use latchkey_core::FieldErrors;
use latchkey_store::Company;

use super::super::audit_api::{csv_export, read_params};
use super::super::pages::{describe_client, render};
use super::super::Web;
use super::{console_error, ConsoleFrame, ConsoleUser};
use crate::app::{AuditEvent, AuditPage, AuditParams, AUDIT_KINDS};
use crate::error::ApiError;

type WebState = State<Arc<Web>>;

pub fn routes() -> Router<Arc<Web>> {
    Router::new().route("/console/audit", get(audit_page)).route("/console/audit.csv", get(audit_csv))
}

struct KindChoice {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

/// One row, every cell ready to show.
struct EventRow {
    at: String,
    label: String,
    detail: String,
    actor: String,
    target: String,
    client_ip: String,
    browser: String,
    user_agent: String,
}

#[derive(Template)]
#[template(path = "pages/console_audit.html")]
struct AuditLogPage {
    frame: ConsoleFrame,
    kinds: Vec<KindChoice>,
    user: String,
    from: String,
    until: String,
    errors: FieldErrors,
    events: Vec<EventRow>,
    /// Paging links, when there is a page that way.
    newest_href: Option<String>,
    older_href: Option<String>,
    csv_href: String,
}

/// "23 Nov 2026, 07:55:07 UTC": to the second, as an audit trail needs.
fn audit_time(t: time::OffsetDateTime) -> String {
    t.format(&time::macros::format_description!("[day padding:none] [month repr:short] [year], [hour]:[minute]:[second] UTC")).unwrap_or_default()
}

fn row(e: AuditEvent) -> EventRow {
    let dash = || "—".to_owned();
    EventRow {
        at: audit_time(e.at),
        label: e.label().to_owned(),
        detail: e.detail,
        actor: e.actor,
        target: e.target.unwrap_or_else(dash),
        client_ip: e.client_ip.unwrap_or_else(dash),
        browser: e.user_agent.as_deref().map_or_else(dash, |ua| describe_client(Some(ua), None)),
        user_agent: e.user_agent.unwrap_or_default(),
    }
}

/// `path` with the filters of `params` (and `extra`), encoded.
fn href(path: &str, params: &AuditParams, extra: Option<(&str, &str)>) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.extend_pairs(params.filter_pairs());
    query.extend_pairs(extra);
    let query = query.finish();
    if query.is_empty() { path.to_owned() } else { format!("{path}?{query}") }
}

fn page(frame: ConsoleFrame, params: &AuditParams, events: Option<AuditPage>, errors: FieldErrors) -> AuditLogPage {
    let text = |v: &Option<String>| v.as_deref().unwrap_or("").trim().to_owned();
    let kind = params.single_kind();
    let (events, next) = events.map_or((Vec::new(), None), |p| (p.events, p.next));
    AuditLogPage {
        frame,
        kinds: AUDIT_KINDS.iter().map(|&(value, label)| KindChoice { value, label, selected: kind == Some(value) }).collect(),
        user: text(&params.user),
        from: text(&params.from),
        until: text(&params.until),
        errors,
        events: events.into_iter().map(row).collect(),
        newest_href: params.before.as_deref().filter(|b| !b.trim().is_empty()).map(|_| href("/console/audit", params, None)),
        older_href: next.map(|id| href("/console/audit", params, Some(("before", &id.to_string())))),
        csv_href: href("/console/audit.csv", params, None),
    }
}

async fn member_company(web: &Web, member: &ConsoleUser) -> Result<Company, ApiError> {
    web.app.company(&member.0.user.company_domain).await
}

async fn audit_page(State(web): WebState, member: ConsoleUser, q: Result<Query<AuditParams>, QueryRejection>) -> Response {
    let frame = ConsoleFrame::new(&web, &member, "audit");
    let params = match read_params(q) {
        Ok(p) => p,
        Err(e) => return console_error(&e, "/console/audit"),
    };
    let company = match member_company(&web, &member).await {
        Ok(c) => c,
        Err(e) => return console_error(&e, "/console"),
    };
    let query = match web.app.audit_query(&company, &params).await {
        Ok(q) => q,
        // Bad filters: the form again, each message beside its field, no events.
        Err(e) if !e.fields.is_empty() => return render(e.status, &page(frame, &params, None, e.fields), None),
        Err(e) => return console_error(&e, "/console/audit"),
    };
    match web.app.audit_page(&query).await {
        Ok(events) => render(StatusCode::OK, &page(frame, &params, Some(events), FieldErrors::new()), None),
        Err(e) => console_error(&e, "/console/audit"),
    }
}

async fn audit_csv(State(web): WebState, member: ConsoleUser, q: Result<Query<AuditParams>, QueryRejection>) -> Response {
    let result = async {
        let params = read_params(q)?;
        let company = member_company(&web, &member).await?;
        csv_export(&web, &company, &params).await
    };
    result.await.unwrap_or_else(|e| console_error(&e, "/console/audit"))
}
