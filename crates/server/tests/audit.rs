//! The audit log over HTTP, on SQLite and PostgreSQL: security events written by real requests
//! come back with who acted, on whom, from which address and browser; filters and keyset pages
//! through the API; the CSV export (quoting, the spreadsheet-formula guard, every row past the
//! store's page size); who may read it; 422 for bad filters; the console page and its CSV link;
//! and the retention purge.

#[macro_use]
#[path = "support/server.rs"]
mod server;
#[path = "support/smtp.rs"]
mod smtp;

use std::collections::BTreeMap;

use latchkey_core::flows::activation::CompleteSetupForm;
use latchkey_core::Role;
use latchkey_server::app::Actor;
use latchkey_store::{AuditEntry, AuditQuery};
use reqwest::StatusCode;
use serde_json::{json, Value};
use server::{token_of, Backend, Browser, TestServer};

on_both_stores!(
    security_events_name_actor_target_address_and_browser,
    filters_and_pages_through_the_api,
    the_csv_quotes_disarms_formulas_and_holds_every_row,
    only_the_company_s_managers_supervisors_and_tokens_read_it,
    bad_filters_are_refused_with_a_message_each,
    the_filter_accepts_the_kinds_staff_changes_write,
    the_console_page_shows_pages_and_exports_the_events,
    retention_purges_only_events_past_it,
);

const DOMAIN: &str = "organization.com";
const PASSWORD: &str = "Welcome2Sonar";
const AUDIT: &str = "/api/v1/companies/organization.com/audit";

/// A browser that sends `user_agent` with every request.
fn browser_as(s: &TestServer, user_agent: &str) -> Browser {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).user_agent(user_agent).build().unwrap();
    Browser { base: s.base.clone(), http, cookies: BTreeMap::new(), csrf: None }
}

/// Creates and activates an account of `domain`; returns its login name.
async fn member(s: &TestServer, domain: &str, ext: &str, role: Role) -> String {
    let created = s.app.create_user(domain, ext, &format!("{ext}@example.com"), role, Actor::Operator, &Default::default()).await.unwrap();
    let form = CompleteSetupForm { password: PASSWORD.into(), password_confirmation: PASSWORD.into(), pin: "2580".into() };
    s.app.complete_setup(&token_of(&created.complete_setup_url), &form, &Default::default()).await.unwrap();
    created.user.login_name
}

async fn signed_in(s: &TestServer, login: &str, password: &str) -> Browser {
    let mut b = s.browser();
    let a = b.sign_in(login, password).await;
    assert_eq!(a.json()["state"], "signed_in", "{}", a.body);
    b
}

/// The company's office manager (extension 100), signed in.
async fn office_manager(s: &TestServer, domain: &str) -> Browser {
    let (login, password) = s.company_with_office_manager(domain).await;
    signed_in(s, &login, &password).await
}

/// A new API token for one company (`Some(domain)`) or the operator (`None`); returns its secret.
async fn api_token(s: &TestServer, name: &str, domain: Option<&str>) -> String {
    s.app.create_api_token(name, domain, latchkey_server::app::Actor::Operator, &Default::default()).await.unwrap().secret
}

async fn with_token(s: &TestServer, secret: &str, path: &str) -> (StatusCode, String) {
    let resp = reqwest::Client::new().get(format!("{}{path}", s.base)).bearer_auth(secret).send().await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

/// The events of one API answer, checked to be a 200.
async fn events(b: &mut Browser, path: &str) -> (Vec<Value>, Value) {
    let a = b.get(path).await;
    assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
    let body = a.json();
    (body["events"].as_array().unwrap().clone(), body["next"].clone())
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["kind"].as_str().unwrap()).collect()
}

fn find<'a>(events: &'a [Value], kind: &str) -> &'a Value {
    events.iter().find(|e| e["kind"] == kind).unwrap_or_else(|| panic!("no {kind} in {events:?}"))
}

async fn company_id(s: &TestServer, domain: &str) -> i64 {
    s.app.store.company_by_domain(domain).await.unwrap().unwrap().id
}

async fn user_id(s: &TestServer, login: &str) -> i64 {
    s.app.store.user_by_login_name(&latchkey_core::LoginName::parse(login).unwrap()).await.unwrap().unwrap().id
}

/// Writes an event straight to the store, at the clock's time.
async fn append(s: &TestServer, company: i64, kind: &'static str, user: Option<i64>, user_agent: Option<&str>) {
    let entry = AuditEntry {
        company_id: Some(company),
        actor_user_id: user,
        actor_token_id: None,
        target_user_id: user,
        kind,
        detail: String::new(),
        client_ip: Some("192.0.2.7".into()),
        user_agent: user_agent.map(str::to_owned),
        at: s.app.now(),
    };
    s.app.store.append_audit(&entry).await.unwrap();
}

async fn security_events_name_actor_target_address_and_browser(s: &TestServer) {
    let mut om = office_manager(s, DOMAIN).await;
    let alice = member(s, DOMAIN, "101", Role::User).await;
    let softphone = "Softphone/3.1 (Windows NT 10.0)";
    let mut b = browser_as(s, softphone);
    assert_eq!(b.sign_in(&alice, "Wrong-password1").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(b.sign_in(&alice, PASSWORD).await.json()["state"], "signed_in");
    let pin = b.post("/api/v1/me/pin", json!({"current_password": PASSWORD, "pin": "4826"})).await;
    assert_eq!(pin.status, StatusCode::OK, "{}", pin.body);
    let password = json!({"current_password": PASSWORD, "password": "Changed2Sonar", "password_confirmation": "Changed2Sonar"});
    assert_eq!(b.post("/api/v1/me/password", password).await.status, StatusCode::OK);
    assert_eq!(b.post("/api/v1/password/forgot", json!({"login_name": alice})).await.status, StatusCode::ACCEPTED);
    let created = om.post(&format!("/api/v1/companies/{DOMAIN}/users"), json!({"extension": "102", "designated_email": "bob@example.com"})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let token = api_token(s, "provisioning", Some(DOMAIN)).await;
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/companies/{DOMAIN}/users", s.base))
        .bearer_auth(&token)
        .header("user-agent", "provisioning-script/1.0")
        .json(&json!({"extension": "103", "designated_email": "carol@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);

    // The reset link is made in the background (the answer cannot tell whether the account exists).
    let mut alices = Vec::new();
    for _ in 0..100 {
        alices = events(&mut om, &format!("{AUDIT}?user=101")).await.0;
        if alices[0]["kind"] == "password_reset_requested" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(kinds(&alices)[..5], ["password_reset_requested", "password_changed", "pin_changed", "sign_in", "sign_in_failed"], "newest first");
    for kind in ["sign_in_failed", "sign_in", "pin_changed", "password_changed", "password_reset_requested"] {
        let e = find(&alices, kind);
        assert_eq!((&e["actor"], &e["target"]), (&json!(alice), &json!(alice)), "{kind}");
        assert_eq!((&e["client_ip"], &e["user_agent"]), (&json!("127.0.0.1"), &json!(softphone)), "{kind}");
        let at = time::OffsetDateTime::parse(e["at"].as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
        assert!((at - s.app.now()).abs() < time::Duration::minutes(1), "{kind} at {at}");
    }
    assert_eq!(find(&alices, "sign_in_failed")["detail"], "invalid_credentials");
    assert_eq!(find(&alices, "sign_in")["detail"], "password", "how the user signed in");

    let (created, _) = events(&mut om, &format!("{AUDIT}?kind=user_created")).await;
    let target = |e: &Value| e["target"].as_str().unwrap().to_owned();
    let by_om = created.iter().find(|e| target(e) == "102@organization.com").unwrap();
    assert_eq!(by_om["actor"], "100@organization.com", "the office manager who created it");
    let by_token = created.iter().find(|e| target(e) == "103@organization.com").unwrap();
    assert_eq!((&by_token["actor"], &by_token["user_agent"]), (&json!("API token provisioning"), &json!("provisioning-script/1.0")));
    let by_operator = created.iter().find(|e| target(e) == alice).unwrap();
    assert_eq!(by_operator["actor"], "operator", "made at the CLI");
}

/// Issue 18 item 11: disabling and enabling a user are audited as `user_disabled` and
/// `user_enabled`, and the filter refused those kinds (400) although the log held them.
async fn the_filter_accepts_the_kinds_staff_changes_write(s: &TestServer) {
    let (om_login, om_password) = s.company_with_office_manager(DOMAIN).await;
    let alice = member(s, DOMAIN, "101", Role::User).await;
    let mut om = signed_in(s, &om_login, &om_password).await;
    let users = "/api/v1/companies/organization.com/users/101";
    assert_eq!(om.post(&format!("{users}/disable"), json!({})).await.status, StatusCode::OK);
    assert_eq!(om.post(&format!("{users}/enable"), json!({})).await.status, StatusCode::OK);
    for kind in ["user_disabled", "user_enabled"] {
        let (found, _) = events(&mut om, &format!("{AUDIT}?kind={kind}")).await;
        assert_eq!(kinds(&found), vec![kind], "{kind}");
        assert_eq!((&found[0]["actor"], &found[0]["target"]), (&json!(om_login), &json!(alice)), "{kind}");
    }
}

async fn filters_and_pages_through_the_api(s: &TestServer) {
    let (om_login, om_password) = s.company_with_office_manager(DOMAIN).await;
    let (alice, bob) = (member(s, DOMAIN, "101", Role::User).await, member(s, DOMAIN, "102", Role::User).await);
    let (company, alice, bob) = (company_id(s, DOMAIN).await, user_id(s, &alice).await, user_id(s, &bob).await);
    let day = s.app.now().date();
    // Five days of events: each day alice fails twice and signs in once, bob signs in once.
    for _ in 0..5 {
        append(s, company, "sign_in_failed", Some(alice), None).await;
        append(s, company, "sign_in_failed", Some(alice), None).await;
        append(s, company, "sign_in", Some(alice), None).await;
        append(s, company, "sign_in", Some(bob), None).await;
        s.clock.advance(time::Duration::days(1));
    }
    s.company_with_office_manager("other.org").await;
    let other = company_id(s, "other.org").await;
    append(s, other, "sign_in_failed", None, None).await;
    // Signed in after the clock moved on: a session lasts hours, not days.
    let mut om = signed_in(s, &om_login, &om_password).await;

    let (failed, next) = events(&mut om, &format!("{AUDIT}?kind=sign_in_failed")).await;
    assert_eq!((failed.len(), next), (10, Value::Null), "this company's failures only, on one page");
    let (both, _) = events(&mut om, &format!("{AUDIT}?kind=sign_in_failed,sign_in&user=102")).await;
    assert_eq!(kinds(&both), vec!["sign_in"; 5], "bob's sign-ins; he failed none");
    let (days, _) = events(&mut om, &format!("{AUDIT}?kind=sign_in&from={}&until={}", day + time::Duration::days(1), day + time::Duration::days(2))).await;
    assert_eq!(days.len(), 4, "two days, both included, two sign-ins a day");
    let last = day + time::Duration::days(4);
    let (since, _) = events(&mut om, &format!("{AUDIT}?kind=sign_in&since={last}&until={last}")).await;
    assert_eq!(since.len(), 2, "since is the contract's name for from");

    let (every, _) = events(&mut om, &format!("{AUDIT}?limit=200")).await;
    let mut paged: Vec<Value> = Vec::new();
    let mut path = format!("{AUDIT}?limit=7");
    loop {
        let (page, next) = events(&mut om, &path).await;
        assert!(page.len() <= 7);
        paged.extend(page);
        match next.as_str() {
            Some(before) => path = format!("{AUDIT}?limit=7&before={before}"),
            None => break,
        }
    }
    let ids = |v: &[Value]| v.iter().map(|e| e["id"].as_i64().unwrap()).collect::<Vec<_>>();
    assert!(every.len() > 20);
    assert_eq!(ids(&paged), ids(&every), "the pages hold every event once, newest first");
    for _ in every.len()..60 {
        append(s, company, "sign_out", None, None).await;
    }
    let (page, next) = events(&mut om, AUDIT).await;
    assert_eq!((page.len(), next.is_string()), (50, true), "50 unless asked");

    let doc = s.browser().get("/api/openapi.json").await.json();
    for path in ["/api/v1/companies/{domain}/audit", "/api/v1/companies/{domain}/audit.csv"] {
        let params: Vec<&str> = doc["paths"][path]["get"]["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert!(["domain", "kind", "user", "from", "until"].iter().all(|p| params.contains(p)), "{path} documents its filters: {params:?}");
    }
}

async fn the_csv_quotes_disarms_formulas_and_holds_every_row(s: &TestServer) {
    let mut om = office_manager(s, DOMAIN).await;
    let alice = member(s, DOMAIN, "101", Role::User).await;
    let formula = "=HYPERLINK(\"http://evil.example\",\"Open\")";
    let quoted = "Mozilla/5.0 (X11, Linux) \"Quoted\"";
    for ua in [formula, quoted] {
        assert_eq!(browser_as(s, ua).sign_in(&alice, "Wrong-password1").await.status, StatusCode::UNAUTHORIZED);
    }
    let a = om.get(&format!("{AUDIT}.csv?kind=sign_in_failed")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.headers["content-type"], "text/csv; charset=utf-8");
    let today = s.app.now().date();
    assert_eq!(a.headers["content-disposition"].to_str().unwrap(), format!("attachment; filename=\"audit-{DOMAIN}-{today}.csv\""));
    let lines: Vec<&str> = a.body.split_terminator("\r\n").collect();
    assert_eq!(lines[0], "id,at,kind,event,actor,target,client_ip,user_agent,detail");
    assert_eq!(lines.len(), 3, "the header and the two failures only: {lines:?}");
    assert!(lines[1].ends_with(",sign_in_failed,Sign-in failed,101@organization.com,101@organization.com,127.0.0.1,\"Mozilla/5.0 (X11, Linux) \"\"Quoted\"\"\",invalid_credentials"), "{}", lines[1]);
    assert!(lines[2].contains(",\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"Open\"\")\","), "a formula starts with an apostrophe: {}", lines[2]);
    let api_csv = om.get(&format!("{AUDIT}?kind=sign_in_failed&format=csv")).await;
    assert_eq!(api_csv.body, a.body, "format=csv of the first contract is the same export");

    // More events than one store page of the export: every one is a row, once.
    let company = company_id(s, DOMAIN).await;
    for _ in 0..520 {
        append(s, company, "sign_in", None, Some("-cmd|' /C calc'!A0")).await;
    }
    let all = om.get(&format!("{AUDIT}.csv?kind=sign_in")).await;
    let rows: Vec<&str> = all.body.split_terminator("\r\n").skip(1).collect();
    let total = s.app.store.query_audit(&AuditQuery { kinds: vec!["sign_in".into()], ..AuditQuery::of_company(company, 10_000) }).await.unwrap().len();
    assert_eq!(rows.len(), total);
    let unique: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.split(',').next().unwrap()).collect();
    assert_eq!(unique.len(), total, "no row twice");
    assert!(rows.iter().filter(|r| r.contains(",operator,")).all(|r| r.contains(",'-cmd|' /C calc'!A0,")), "{}", rows[0]);
}

async fn only_the_company_s_managers_supervisors_and_tokens_read_it(s: &TestServer) {
    office_manager(s, DOMAIN).await;
    let mut supervisor = signed_in(s, &member(s, DOMAIN, "102", Role::Supervisor).await, PASSWORD).await;
    let mut user = signed_in(s, &member(s, DOMAIN, "103", Role::User).await, PASSWORD).await;
    let mut stranger = office_manager(s, "other.org").await;
    let csv = format!("{AUDIT}.csv");
    for path in [AUDIT, csv.as_str()] {
        assert_eq!(supervisor.get(path).await.status, StatusCode::OK, "a supervisor reads {path}");
        for (who, b) in [("a user", &mut user), ("another company's office manager", &mut stranger)] {
            let a = b.get(path).await;
            assert_eq!((a.status, a.json()["error"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{who}: {path}");
        }
        assert_eq!(s.browser().get(path).await.status, StatusCode::UNAUTHORIZED, "nobody signed in");
        let own = api_token(s, &format!("own{}", path.len()), Some(DOMAIN)).await;
        let foreign = api_token(s, &format!("foreign{}", path.len()), Some("other.org")).await;
        let operator = api_token(s, &format!("operator{}", path.len()), None).await;
        assert_eq!(with_token(s, &own, path).await.0, StatusCode::OK);
        assert_eq!(with_token(s, &operator, path).await.0, StatusCode::OK);
        assert_eq!(with_token(s, &foreign, path).await.0, StatusCode::NOT_FOUND);
    }
    let (events, _) = events(&mut supervisor, AUDIT).await;
    assert!(events.iter().all(|e| e["actor"] != "100@other.org"), "no event of the other company");
    assert_eq!(user.get("/console/audit").await.status, StatusCode::NOT_FOUND, "the console is not for users");
    assert_eq!(user.get("/console/audit.csv").await.status, StatusCode::NOT_FOUND);
}

async fn bad_filters_are_refused_with_a_message_each(s: &TestServer) {
    let mut om = office_manager(s, DOMAIN).await;
    let bad = om.get(&format!("{AUDIT}?kind=sign_in,teleported&user=999&from=2026-13-01&until=yesterday&before=0&limit=201")).await;
    assert_eq!((bad.status, bad.json()["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed")), "{}", bad.body);
    let fields = bad.json()["fields"].clone();
    for field in ["kind", "user", "from", "until", "before", "limit"] {
        assert!(fields[field][0].as_str().is_some_and(|m| !m.is_empty()), "{field}: {fields}");
    }
    assert!(fields["kind"][0].as_str().unwrap().contains("teleported"));
    for (query, field) in [
        ("user=abc", "user"),
        ("from=2026-05-02&until=2026-05-01", "until"),
        ("limit=0", "limit"),
        ("limit=ten", "limit"),
        ("before=-5", "before"),
        ("format=xml", "format"),
    ] {
        let a = om.get(&format!("{AUDIT}?{query}")).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert!(a.json()["fields"][field].is_array(), "{query}: {}", a.body);
    }
    let twice = om.get(&format!("{AUDIT}?kind=sign_in&kind=sign_out")).await;
    assert_eq!(twice.status, StatusCode::BAD_REQUEST, "{}", twice.body);
    let paged_csv = om.get(&format!("{AUDIT}.csv?limit=10")).await;
    assert_eq!((paged_csv.status, paged_csv.json()["fields"]["limit"].is_array()), (StatusCode::UNPROCESSABLE_ENTITY, true));
    let empty = om.get(&format!("{AUDIT}?kind=&user=&from=&until=")).await;
    assert_eq!(empty.status, StatusCode::OK, "an empty filter is no filter");
}

async fn the_console_page_shows_pages_and_exports_the_events(s: &TestServer) {
    let mut om = office_manager(s, DOMAIN).await;
    let alice = member(s, DOMAIN, "101", Role::User).await;
    assert_eq!(browser_as(s, "<script>alert(1)</script>").sign_in(&alice, "Wrong-password1").await.status, StatusCode::UNAUTHORIZED);
    let page = om.get("/console/audit").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Sign-in failed") && page.body.contains("101@organization.com") && page.body.contains("127.0.0.1"), "{}", page.body);
    assert!(page.body.contains("aria-current=\"page\">Audit log"), "the audit tab is marked");
    assert!(!page.body.contains("<script>alert(1)"), "a user agent is escaped");
    assert!(page.body.contains("<option value=\"sign_in_failed\">Sign-in failed</option>"));

    let filtered = om.get("/console/audit?kind=sign_in_failed&user=101&from=&until=").await;
    assert!(filtered.body.contains("<option value=\"sign_in_failed\" selected>"));
    let csv_href = filtered.body.split("href=\"/console/audit.csv").nth(1).unwrap().split('"').next().unwrap().replace("&amp;", "&");
    assert_eq!(csv_href, "?kind=sign_in_failed&user=101", "the export keeps the filters");
    let csv = om.get(&format!("/console/audit.csv{csv_href}")).await;
    assert_eq!((csv.status, csv.headers["content-type"].to_str().unwrap()), (StatusCode::OK, "text/csv; charset=utf-8"));
    let rows: Vec<&str> = csv.body.split_terminator("\r\n").collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[1].contains(",sign_in_failed,Sign-in failed,101@organization.com,"));

    // Past one page: "Older events" leads on, and back to the newest.
    let company = company_id(s, DOMAIN).await;
    for _ in 0..60 {
        append(s, company, "sign_out", None, None).await;
    }
    let first = om.get("/console/audit?kind=sign_out").await;
    assert_eq!(first.body.matches("<td>Signed out").count(), 50);
    let older = first.body.split("<a href=\"").filter_map(|h| h.split('"').next()).find(|h| h.contains("before=")).unwrap().replace("&amp;", "&");
    assert!(older.starts_with("/console/audit?kind=sign_out&before="), "{older}");
    let second = om.get(&older).await;
    assert_eq!(second.body.matches("<td>Signed out").count(), 10);
    assert!(second.body.contains(">Newest events</a>") && !second.body.contains(">Older events</a>"));

    let bad = om.get("/console/audit?from=2026-02-30").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("Enter a date as YYYY-MM-DD."), "{}", bad.body);

    let mut supervisor = signed_in(s, &member(s, DOMAIN, "102", Role::Supervisor).await, PASSWORD).await;
    let seen = supervisor.get("/console/audit").await;
    assert_eq!(seen.status, StatusCode::OK);
    assert!(seen.body.contains("Read-only") && seen.body.contains("Sign-in failed"));
    assert_eq!(supervisor.get("/console/audit.csv").await.status, StatusCode::OK);
    assert_eq!(s.browser().get("/console/audit").await.status, StatusCode::SEE_OTHER, "signed out: to the sign-in page");
}

async fn retention_purges_only_events_past_it(s: &TestServer) {
    s.company_with_office_manager(DOMAIN).await;
    let company = company_id(s, DOMAIN).await;
    append(s, company, "sign_in_failed", None, None).await;
    s.clock.advance(time::Duration::days(10));
    append(s, company, "sign_in", None, None).await;
    let before = s.app.store.audit_of_company(company, 100).await.unwrap().len();
    s.clock.advance(time::Duration::days(395));
    assert_eq!(s.app.config.audit.retention_days, 400);
    let purged = s.app.purge_expired_audit().await.unwrap();
    let left = s.app.store.audit_of_company(company, 100).await.unwrap();
    assert_eq!(purged as usize, before - 1, "everything written 405 days ago went");
    assert_eq!(left.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), vec!["sign_in"], "the event of 395 days ago stays");
}

/// `retention_days = 0` keeps every event, however old (SQLite: this is configuration, not SQL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_retention_keeps_every_event() {
    let s = TestServer::start_with(Backend::Sqlite, "no_retention", |c| c.audit.retention_days = 0).await.unwrap();
    s.company_with_office_manager(DOMAIN).await;
    let company = company_id(&s, DOMAIN).await;
    let before = s.app.store.audit_of_company(company, 100).await.unwrap().len();
    s.clock.advance(time::Duration::days(10_000));
    assert_eq!(s.app.purge_expired_audit().await.unwrap(), 0);
    assert_eq!(s.app.store.audit_of_company(company, 100).await.unwrap().len(), before);
}
