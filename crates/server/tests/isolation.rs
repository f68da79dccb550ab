//! Tenant isolation, table-driven over every company endpoint of the API, on SQLite and
//! PostgreSQL. Two companies, each with an office manager, a call center supervisor and a user,
//! and an API token of each company plus an operator token. For every endpoint of company A:
//! - B's office manager and B's token get 404, as if A did not exist;
//! - A's user gets 404 (no office manager endpoint exists for a user);
//! - A's supervisor reads (2xx) but gets 403 on every change;
//! - a caller with neither session nor token gets 401;
//! - A's token and the operator token are let through (never 401, 403 or 404).
//!
//! Every operator endpoint refuses everyone but the operator token with 403 (401 anonymous).
//! Nothing a refused call asked for is written: A's audit log does not grow.
//!
//! The table is checked against the served OpenAPI document, so a company endpoint added without
//! a row here fails this test.

#[macro_use]
#[path = "support/server.rs"]
mod server;
#[path = "support/smtp.rs"]
mod smtp;

use std::collections::BTreeSet;

use latchkey_core::flows::activation::CompleteSetupForm;
use latchkey_core::flows::sso::Provider;
use latchkey_core::Role;
use latchkey_server::app::Actor;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use server::{token_of, Backend, Browser, TestServer};

on_both_stores!(every_company_endpoint_is_isolated);

const A: &str = "organization.com";
const B: &str = "other.org";
const PASSWORD: &str = "Welcome2Sonar";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Access {
    /// Office managers and supervisors of the company, its tokens, the operator.
    Read,
    /// Office managers of the company, its tokens, the operator.
    Change,
    /// The operator token only.
    Operator,
}

struct Endpoint {
    method: Method,
    /// As in the OpenAPI document, with `{domain}` and `{extension}` etc. left in.
    template: &'static str,
    access: Access,
    body: Option<Value>,
}

fn endpoint(method: Method, template: &'static str, access: Access, body: Option<Value>) -> Endpoint {
    Endpoint { method, template, access, body }
}

/// Every endpoint under `/api/v1/companies` and every operator endpoint. Bodies are valid, so a
/// caller who is let through reaches the handler's own checks.
fn table() -> Vec<Endpoint> {
    use Access::*;
    vec![
        endpoint(Method::GET, "/api/v1/companies/{domain}/policy", Read, None),
        endpoint(Method::PUT, "/api/v1/companies/{domain}/policy", Change, Some(json!({"two_factor": "optional", "allowed_methods": ["totp"]}))),
        endpoint(Method::POST, "/api/v1/companies/{domain}/users", Change, Some(json!({"extension": "555", "designated_email": "new555@example.com"}))),
        endpoint(Method::POST, "/api/v1/companies/{domain}/users/{extension}/welcome", Change, None),
        endpoint(Method::POST, "/api/v1/companies/{domain}/users/{extension}/2fa/reset", Change, None),
        endpoint(Method::GET, "/api/v1/companies/{domain}/users", Read, None),
        endpoint(Method::GET, "/api/v1/companies/{domain}/users/{extension}", Read, None),
        endpoint(Method::POST, "/api/v1/companies/{domain}/users/{extension}/disable", Change, None),
        endpoint(Method::POST, "/api/v1/companies/{domain}/users/{extension}/enable", Change, None),
        endpoint(Method::PUT, "/api/v1/companies/{domain}/users/{extension}/designated-email", Change, Some(json!({"email": "moved300@example.com"}))),
        endpoint(Method::GET, "/api/v1/companies/{domain}/users/{extension}/emails", Read, None),
        endpoint(Method::POST, "/api/v1/companies/{domain}/users/{extension}/emails", Change, Some(json!({"email": "extra@example.com"}))),
        endpoint(Method::DELETE, "/api/v1/companies/{domain}/users/{extension}/emails/{email}", Change, None),
        endpoint(Method::GET, "/api/v1/companies/{domain}/sso", Read, None),
        endpoint(Method::PUT, "/api/v1/companies/{domain}/sso", Change, Some(json!({"mfa_sufficient": []}))),
        endpoint(Method::GET, "/api/v1/companies/{domain}/email-review", Read, None),
        endpoint(Method::GET, "/api/v1/companies/{domain}/features", Read, None),
        endpoint(Method::GET, "/api/v1/companies/{domain}/audit", Read, None),
        endpoint(Method::GET, "/api/v1/companies/{domain}/audit.csv", Read, None),
        endpoint(Method::PUT, "/api/v1/companies/{domain}/features", Operator, Some(json!({"two_factor": true, "sso": {"enabled": true, "providers": ["google"]}}))),
        endpoint(Method::GET, "/api/v1/companies", Operator, None),
        endpoint(Method::POST, "/api/v1/companies", Operator, Some(json!({"name": "New Company", "domain": "new.example"}))),
        endpoint(Method::GET, "/api/v1/tokens", Operator, None),
        endpoint(Method::DELETE, "/api/v1/tokens/{id}", Operator, None),
    ]
}

/// The concrete path of an endpoint for company `domain`: the invited user 300 (so welcome can be
/// resent), an additional email that exists.
fn path(template: &str, domain: &str) -> String {
    template
        .replace("{domain}", domain)
        .replace("{extension}", "300")
        .replace("{email}", "assistant@example.com")
        .replace("{id}", "1")
}

/// Who calls.
enum Caller {
    Member(Browser),
    Token(String),
    Anonymous,
}

struct Callers {
    http: reqwest::Client,
    base: String,
}

impl Callers {
    async fn call(&self, who: &mut Caller, e: &Endpoint, domain: &str) -> StatusCode {
        let path = path(e.template, domain);
        match who {
            Caller::Member(b) => b.send(e.method.clone(), &path, e.body.clone()).await.status,
            Caller::Token(secret) => {
                let mut req = self.http.request(e.method.clone(), format!("{}{}", self.base, path)).bearer_auth(secret.as_str());
                if let Some(body) = &e.body {
                    req = req.json(body);
                }
                req.send().await.unwrap().status()
            }
            Caller::Anonymous => {
                let mut req = self.http.request(e.method.clone(), format!("{}{}", self.base, path));
                if let Some(body) = &e.body {
                    req = req.json(body);
                }
                req.send().await.unwrap().status()
            }
        }
    }
}

async fn company(s: &TestServer, domain: &str) -> (Browser, Browser, Browser) {
    s.app.create_company(&format!("Company {domain}"), domain).await.unwrap();
    s.app.set_sso_feature(domain, true, &[Provider::Google], Actor::Operator, &Default::default()).await.unwrap();
    let om = member(s, domain, "100", Role::OfficeManager).await;
    let supervisor = member(s, domain, "200", Role::Supervisor).await;
    let user = member(s, domain, "101", Role::User).await;
    s.app.create_user(domain, "300", &format!("invited@{domain}"), Role::User, Actor::Operator, &Default::default()).await.unwrap();
    s.app.add_additional_email(domain, "300", "assistant@example.com", Actor::Operator, &Default::default()).await.unwrap();
    (om, supervisor, user)
}

async fn member(s: &TestServer, domain: &str, ext: &str, role: Role) -> Browser {
    let created = s.app.create_user(domain, ext, &format!("m{ext}@{domain}"), role, Actor::Operator, &Default::default()).await.unwrap();
    let form = CompleteSetupForm { password: PASSWORD.into(), password_confirmation: PASSWORD.into(), pin: "2580".into() };
    s.app.complete_setup(&token_of(&created.complete_setup_url), &form, &Default::default()).await.unwrap();
    let mut b = s.browser();
    assert_eq!(b.sign_in(&format!("{ext}@{domain}"), PASSWORD).await.json()["state"], "signed_in");
    b
}

async fn api_token(s: &TestServer, name: &str, domain: Option<&str>) -> String {
    s.app.create_api_token(name, domain, Actor::Operator, &Default::default()).await.unwrap().secret
}

async fn audit_len(s: &TestServer, domain: &str) -> usize {
    let c = s.app.store.company_by_domain(domain).await.unwrap().unwrap();
    s.app.store.audit_of_company(c.id, 100_000).await.unwrap().len()
}

fn let_through(status: StatusCode) -> bool {
    !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND) && !status.is_server_error()
}

async fn every_company_endpoint_is_isolated(s: &TestServer) {
    let (_om_a, supervisor_a, user_a) = company(s, A).await;
    let (om_b, _, _) = company(s, B).await;
    let token_a = api_token(s, "a", Some(A)).await;
    let token_b = api_token(s, "b", Some(B)).await;
    let operator = api_token(s, "ops", None).await;
    let callers = Callers { http: reqwest::Client::new(), base: s.base.clone() };
    let table = table();
    covers_the_openapi_document(s, &table).await;

    // Refusals first: none of them may write anything.
    let before = audit_len(s, A).await;
    let mut refused: Vec<(&str, Caller)> = vec![
        ("B's office manager", Caller::Member(om_b)),
        ("B's token", Caller::Token(token_b)),
        ("A's user", Caller::Member(user_a)),
        ("A's supervisor", Caller::Member(supervisor_a)),
        ("anonymous", Caller::Anonymous),
    ];
    let mut failures = Vec::new();
    for e in &table {
        for (name, who) in refused.iter_mut() {
            let got = callers.call(who, e, A).await;
            let expected = match (*name, e.access) {
                ("anonymous", _) => Some(StatusCode::UNAUTHORIZED),
                ("A's supervisor", Access::Read) => None,
                ("A's supervisor", _) | (_, Access::Operator) => Some(StatusCode::FORBIDDEN),
                _ => Some(StatusCode::NOT_FOUND),
            };
            match expected {
                Some(want) if got != want => failures.push(format!("{} {} as {name}: {got}, expected {want}", e.method, e.template)),
                None if !got.is_success() => failures.push(format!("{} {} as {name}: {got}, expected to read it", e.method, e.template)),
                _ => {}
            }
        }
    }
    assert!(failures.is_empty(), "isolation broken:\n{}", failures.join("\n"));
    assert_eq!(audit_len(s, A).await, before, "a refused call wrote nothing");

    // A's own token and the operator's are let through (reads before changes, so each finds its
    // data; the email removed by the first is put back for the second).
    for (name, secret, is_operator) in [("A's token", token_a, false), ("the operator token", operator, true)] {
        let mut who = Caller::Token(secret);
        let _ = s.app.add_additional_email(A, "300", "assistant@example.com", Actor::Operator, &Default::default()).await;
        let (reads, changes): (Vec<&Endpoint>, Vec<&Endpoint>) = table.iter().partition(|e| e.method == Method::GET);
        for e in reads.into_iter().chain(changes) {
            let got = callers.call(&mut who, e, A).await;
            if e.template == "/api/v1/tokens/{id}" && is_operator {
                // Token 1 is A's, revoked here by the operator: the last call of the test.
                assert_eq!(got, StatusCode::NO_CONTENT, "{} {} as {name}", e.method, e.template);
            } else if e.access == Access::Operator && !is_operator {
                assert_eq!(got, StatusCode::FORBIDDEN, "{} {} as {name}", e.method, e.template);
            } else {
                assert!(let_through(got), "{} {} as {name}: {got}", e.method, e.template);
            }
        }
    }
}

/// Every `(method, path)` of the document under `/api/v1/companies` or `/api/v1/tokens` has a row.
async fn covers_the_openapi_document(s: &TestServer, table: &[Endpoint]) {
    let doc: Value = reqwest::get(format!("{}/api/openapi.json", s.base)).await.unwrap().json().await.unwrap();
    let rows: BTreeSet<(String, String)> = table.iter().map(|e| (e.method.as_str().to_lowercase(), e.template.to_owned())).collect();
    let mut missing = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/companies") && !path.starts_with("/api/v1/tokens") {
            continue;
        }
        for method in ops.as_object().unwrap().keys() {
            if !rows.contains(&(method.clone(), path.clone())) {
                missing.push(format!("{method} {path}"));
            }
        }
    }
    assert!(missing.is_empty(), "company endpoints without a row in the isolation table:\n{}", missing.join("\n"));
}
