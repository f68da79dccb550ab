//! The audit log (C8), page and API: the company's security events, newest first, filtered and
//! paged, and the same events as CSV for office managers who open them in a spreadsheet.
//!
//! The page shows the member's own company, with a filter form (a GET form: filters belong in the
//! address, so a view can be bookmarked and shared) and "Older events" paging; office managers and
//! supervisors read it alike. The API's readers are those of `Admin::read`.

use std::sync::Arc;

use askama::Template;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::{stream, StreamExt};
use latchkey_core::FieldErrors;
use latchkey_store::{AuditQuery, Company};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{console_error, ConsoleFrame, ConsoleUser};
use crate::app::{rfc3339, AppError, AuditEvent, AuditPage, AuditParams, Latchkey, AUDIT_KINDS};
use crate::web::kit::{describe_client, render, Admin, ApiPath, ErrorBody, Web, WebState};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/console/audit", get(audit_page))
        .route("/console/audit.csv", get(csv_download))
        .route("/api/v1/companies/{domain}/audit", get(audit_list))
        .route("/api/v1/companies/{domain}/audit.csv", get(audit_csv))
}

// ---------------------------------------------------------------- the console page

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

async fn member_company(web: &Web, member: &ConsoleUser) -> Result<Company, AppError> {
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
        Err(e) if !e.fields.is_empty() => return render(e.status(), &page(frame, &params, None, e.fields), None),
        Err(e) => return console_error(&e, "/console/audit"),
    };
    match web.app.audit_page(&query).await {
        Ok(events) => render(StatusCode::OK, &page(frame, &params, Some(events), FieldErrors::new()), None),
        Err(e) => console_error(&e, "/console/audit"),
    }
}

async fn csv_download(State(web): WebState, member: ConsoleUser, q: Result<Query<AuditParams>, QueryRejection>) -> Response {
    let result = async {
        let params = read_params(q)?;
        let company = member_company(&web, &member).await?;
        csv_export(&web, &company, &params).await
    };
    result.await.unwrap_or_else(|e| console_error(&e, "/console/audit"))
}

// ---------------------------------------------------------------- the JSON API and the CSV

#[derive(Serialize, ToSchema)]
pub struct AuditEventBody {
    id: i64,
    /// RFC 3339.
    at: String,
    /// One of the audit kinds, e.g. `sign_in_failed`.
    kind: String,
    /// The login name of who acted, `operator`, or `API token <name>`.
    actor: String,
    /// The login name of the account the event is about.
    target: Option<String>,
    client_ip: Option<String>,
    user_agent: Option<String>,
    detail: String,
}

impl From<AuditEvent> for AuditEventBody {
    fn from(e: AuditEvent) -> Self {
        AuditEventBody {
            id: e.id,
            at: rfc3339(e.at),
            kind: e.kind,
            actor: e.actor,
            target: e.target,
            client_ip: e.client_ip,
            user_agent: e.user_agent,
            detail: e.detail,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AuditPageBody {
    /// Newest first.
    events: Vec<AuditEventBody>,
    /// Pass as `before` for the next (older) page; null on the last page.
    next: Option<String>,
}

/// `format=csv` asks the list for the CSV, as the first API contract had it.
#[derive(Deserialize)]
pub struct FormatParam {
    format: Option<String>,
}

/// The query string, or 400 when it cannot be read at all (a filter given twice, say).
fn read_params(q: Result<Query<AuditParams>, QueryRejection>) -> Result<AuditParams, AppError> {
    q.map(|Query(p)| p).map_err(|r| AppError::bad_request(r.body_text()))
}

/// The company's audit events, newest first, `limit` at a time (50 unless asked, at most 200).
#[utoipa::path(get, path = "/api/v1/companies/{domain}/audit", tag = "office manager",
    params(("domain" = String, Path,),
        ("kind" = Option<String>, Query, description = "event kinds, comma-separated, e.g. `sign_in,sign_in_failed`"),
        ("user" = Option<String>, Query, description = "extension of a user who acted or was acted on"),
        ("from" = Option<String>, Query, description = "first day, YYYY-MM-DD (UTC); `since` is accepted too"),
        ("until" = Option<String>, Query, description = "last day, YYYY-MM-DD (UTC), included"),
        ("before" = Option<String>, Query, description = "the `next` of the previous page"),
        ("limit" = Option<i64>, Query, description = "1 to 200, default 50"),
        ("format" = Option<String>, Query, description = "`csv` answers as `…/audit.csv` does")),
    responses((status = 200, body = AuditPageBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, description = "validation_failed, with a message per bad filter", body = ErrorBody)))]
pub async fn audit_list(
    State(web): WebState,
    admin: Admin,
    ApiPath(domain): ApiPath<String>,
    q: Result<Query<AuditParams>, QueryRejection>,
    f: Result<Query<FormatParam>, QueryRejection>,
) -> Result<Response, AppError> {
    let company = admin.read(&web, &domain).await?;
    let params = read_params(q)?;
    let Query(f) = f.map_err(|r| AppError::bad_request(r.body_text()))?;
    match f.format.as_deref().map(str::trim) {
        None | Some("" | "json") => {}
        Some("csv") => return csv_export(&web, &company, &params).await,
        Some(_) => return Err(AppError::field("format", "Use json or csv.")),
    }
    let page = web.app.audit_page(&web.app.audit_query(&company, &params).await?).await?;
    let body = AuditPageBody { events: page.events.into_iter().map(AuditEventBody::from).collect(), next: page.next.map(|id| id.to_string()) };
    Ok(Json(body).into_response())
}

/// Every event the filters match, as CSV (RFC 4180; a cell that a spreadsheet would run as a
/// formula starts with an apostrophe).
#[utoipa::path(get, path = "/api/v1/companies/{domain}/audit.csv", tag = "office manager",
    params(("domain" = String, Path,),
        ("kind" = Option<String>, Query, description = "event kinds, comma-separated"),
        ("user" = Option<String>, Query, description = "extension of a user who acted or was acted on"),
        ("from" = Option<String>, Query, description = "first day, YYYY-MM-DD (UTC)"),
        ("until" = Option<String>, Query, description = "last day, YYYY-MM-DD (UTC), included")),
    responses((status = 200, content_type = "text/csv", body = String,
            description = "columns id, at, kind, event, actor, target, client_ip, user_agent, detail"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn audit_csv(
    State(web): WebState,
    admin: Admin,
    ApiPath(domain): ApiPath<String>,
    q: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Response, AppError> {
    let company = admin.read(&web, &domain).await?;
    csv_export(&web, &company, &read_params(q)?).await
}

/// Events read for the CSV at a time: memory stays bounded whatever the export's size.
const CSV_PAGE: i64 = 500;

/// The CSV download of every event `params` match (paging parameters are refused: it has them all).
async fn csv_export(web: &Web, company: &latchkey_store::Company, params: &AuditParams) -> Result<Response, AppError> {
    let mut paging = FieldErrors::new();
    for (field, value) in [("before", &params.before), ("limit", &params.limit)] {
        if value.as_deref().is_some_and(|v| !v.trim().is_empty()) {
            paging.add(field, "The CSV holds every matching event: leave this out.");
        }
    }
    if !paging.is_empty() {
        return Err(AppError::validation(paging));
    }
    let query = AuditQuery { limit: CSV_PAGE, ..web.app.audit_query(company, params).await? };
    let today = web.app.now().date();
    let disposition = format!("attachment; filename=\"audit-{}-{today}.csv\"", company.domain);
    let body = Body::from_stream(stream::iter([Ok(CSV_HEADER.to_owned())]).chain(csv_pages(web.app.clone(), query)));
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, disposition)], body).into_response())
}

/// The rows, one store page after another, each page starting below the last id of the one
/// before. A store failure ends the stream with an error, so the download is cut, never
/// silently short.
fn csv_pages(app: Arc<Latchkey>, first: AuditQuery) -> impl futures_util::Stream<Item = Result<String, latchkey_store::StoreError>> {
    stream::try_unfold(Some(first), move |next| {
        let app = app.clone();
        async move {
            let Some(query) = next else { return Ok(None) };
            let views = app.store.query_audit(&query).await.inspect_err(|e| tracing::error!(error = %e, "audit export failed"))?;
            let more = views.len() as i64 == query.limit;
            let next = views.last().filter(|_| more).map(|v| AuditQuery { before_id: Some(v.record.id), ..query.clone() });
            let rows: String = views.into_iter().map(|v| csv_row(&AuditEvent::from(v))).collect();
            Ok(Some((rows, next)))
        }
    })
}

const CSV_HEADER: &str = "id,at,kind,event,actor,target,client_ip,user_agent,detail\r\n";

fn csv_row(e: &AuditEvent) -> String {
    let id = e.id.to_string();
    let at = rfc3339(e.at);
    let cells = [&id, &at, &e.kind, e.label(), &e.actor, e.target.as_deref().unwrap_or(""), e.client_ip.as_deref().unwrap_or(""),
        e.user_agent.as_deref().unwrap_or(""), &e.detail];
    let mut row = cells.map(csv_cell).join(",");
    row.push_str("\r\n");
    row
}

/// One cell: a value a spreadsheet would run as a formula (it starts with = + - @, a tab or a
/// carriage return) gets a leading apostrophe; then RFC 4180 quoting where a comma, quote or
/// line break calls for it.
fn csv_cell(value: &str) -> String {
    let guarded = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{value}") } else { value.to_owned() };
    if guarded.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn cells_are_quoted_and_formulas_disarmed() {
        assert_eq!(csv_cell("101@organization.com"), "101@organization.com");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("two\nlines"), "\"two\nlines\"");
        for formula in ["=HYPERLINK(\"x\")", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert!(csv_cell(formula).trim_start_matches('"').starts_with('\''), "{formula:?} -> {}", csv_cell(formula));
        }
        assert_eq!(csv_cell("=1+2,3"), "\"'=1+2,3\"");
        assert_eq!(csv_cell(""), "");
    }
}
