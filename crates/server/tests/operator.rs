//! The operator surface over HTTP, on SQLite and PostgreSQL: API tokens stored as the SHA-256 of
//! their secret and refused once revoked or malformed; an operator token runs companies and their
//! pilot switches and manages any company; a company token only its own; a session never reaches
//! the operator endpoints; the audit log names the token that acted.

#[macro_use]
#[path = "support/server.rs"]
mod server;
#[path = "support/smtp.rs"]
mod smtp;

use latchkey_server::app::Actor;
use reqwest::header::{AUTHORIZATION, COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use server::{Backend, Browser, TestServer};
use sha2::{Digest, Sha256};

on_both_stores!(
    a_token_is_stored_hashed_and_a_made_up_or_revoked_one_is_refused,
    a_malformed_authorization_header_is_refused_and_writes_nothing,
    a_bad_bearer_header_does_not_fall_back_to_the_session,
    an_operator_token_runs_companies_and_their_features_and_manages_any_company,
    a_company_token_manages_its_own_company_only,
    an_office_manager_gets_403_on_operator_endpoints,
    bad_feature_bodies_are_refused_and_change_nothing,
);

const DOMAIN: &str = "organization.com";
const OTHER: &str = "other.example";

/// A token made the way `latchkey token create` makes it; returns its id and secret.
async fn token(s: &TestServer, name: &str, company: Option<&str>) -> (i64, String) {
    let created = s.app.create_api_token(name, company, Actor::Operator, &Default::default()).await.unwrap();
    (created.token.id, created.secret)
}

/// One API call with `Authorization` set to `authorization` as given (no cookie, no CSRF header).
async fn call(s: &TestServer, authorization: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", s.base)).header(AUTHORIZATION, authorization);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, serde_json::from_str(&resp.text().await.unwrap()).unwrap_or(Value::Null))
}

async fn bearer(s: &TestServer, secret: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    call(s, &format!("Bearer {secret}"), method, path, body).await
}

async fn company(s: &TestServer, domain: &str) -> latchkey_store::Company {
    match s.app.store.company_by_domain(domain).await.unwrap() {
        Some(c) => c,
        None => s.app.create_company("Organization Inc.", domain).await.unwrap(),
    }
}

async fn audit_kinds_and_tokens(s: &TestServer, domain: &str) -> Vec<(String, Option<i64>)> {
    let c = company(s, domain).await;
    s.app.store.audit_of_company(c.id, 100).await.unwrap().into_iter().map(|a| (a.kind, a.actor_token_id)).collect()
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

async fn token_rows(s: &TestServer) -> Vec<Vec<Option<String>>> {
    latchkey_store::testing::api_token_rows(&s.app.config.database_url()).await
}

fn new_user(ext: &str) -> Value {
    json!({"extension": ext, "designated_email": format!("user{ext}@example.com")})
}

async fn a_token_is_stored_hashed_and_a_made_up_or_revoked_one_is_refused(s: &TestServer) {
    let (id, secret) = token(s, "provisioning", None).await;
    assert!(secret.starts_with("lk_"));
    let rows = token_rows(s).await;
    assert_eq!(rows.len(), 1);
    let stored: Vec<&str> = rows[0].iter().flatten().map(String::as_str).collect();
    assert!(stored.iter().all(|v| !v.contains(&secret[3..])), "the secret is nowhere in the row: {stored:?}");
    assert_eq!(rows[0][2].as_deref(), Some(sha256_hex(&secret).as_str()), "token_hash is the SHA-256 of the whole secret");

    assert_eq!(bearer(s, &secret, Method::GET, "/api/v1/tokens", None).await.0, StatusCode::OK);
    let made_up = format!("lk_{}", &sha256_hex("made up")[..43]);
    let (status, body) = bearer(s, &made_up, Method::GET, "/api/v1/tokens", None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_token")));

    // Revoked by another operator token: refused from then on; revoking again changes nothing.
    let (_, admin) = token(s, "admin", None).await;
    let (status, _) = bearer(s, &admin, Method::DELETE, &format!("/api/v1/tokens/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = bearer(s, &secret, Method::GET, "/api/v1/tokens", None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_token")), "revoked at once");
    let revoked_at = token_rows(s).await[0][6].clone();
    assert!(revoked_at.is_some());
    assert_eq!(bearer(s, &admin, Method::DELETE, &format!("/api/v1/tokens/{id}"), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(token_rows(s).await[0][6], revoked_at, "a second revocation rewrites nothing");
    assert_eq!(bearer(s, &admin, Method::DELETE, "/api/v1/tokens/999", None).await.1["error"], "token_not_found");
    assert_eq!(bearer(s, &admin, Method::DELETE, "/api/v1/tokens/abc", None).await.0, StatusCode::NOT_FOUND);

    let (status, listed) = bearer(s, &admin, Method::GET, "/api/v1/tokens", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed[0]["name"], "provisioning");
    assert_eq!(listed[0]["scope"], "operator");
    assert!(listed[0]["revoked_at"].is_string() && listed[1]["revoked_at"].is_null() && listed[1]["last_used_at"].is_string());
    let text = listed.to_string();
    assert!(!text.contains(&secret[3..]) && !text.contains(&admin[3..]) && !text.contains(&sha256_hex(&secret)), "no secret or hash listed");
}

async fn a_malformed_authorization_header_is_refused_and_writes_nothing(s: &TestServer) {
    company(s, DOMAIN).await;
    let (_, secret) = token(s, "provisioning", None).await;
    let before = token_rows(s).await;
    let long = format!("Bearer lk_{}", "a".repeat(200));
    let malformed = ["Basic dXNlcjpwYXNz".to_owned(), "Bearer".to_owned(), "Bearer ".to_owned(), format!("bearer {secret}"), secret.clone(), format!("Bearer {}", &secret[3..]), long];
    for authorization in &malformed {
        let (status, body) = call(s, authorization, Method::POST, &format!("/api/v1/companies/{DOMAIN}/users"), Some(new_user("201"))).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_token")), "{authorization}");
    }
    assert_eq!(token_rows(s).await, before, "not even last_used_at moved");
    assert!(audit_kinds_and_tokens(s, DOMAIN).await.is_empty(), "nothing audited");
    let login = latchkey_core::LoginName::parse(&format!("201@{DOMAIN}")).unwrap();
    assert!(s.app.store.user_by_login_name(&login).await.unwrap().is_none(), "no user made");
}

async fn a_bad_bearer_header_does_not_fall_back_to_the_session(s: &TestServer) {
    let (login, password) = s.company_with_office_manager(DOMAIN).await;
    let mut b = s.browser();
    assert_eq!(b.sign_in(&login, &password).await.status, StatusCode::OK);
    let policy = format!("/api/v1/companies/{DOMAIN}/policy");
    assert_eq!(b.get(&policy).await.status, StatusCode::OK, "the session alone reaches the policy");
    for authorization in ["Bearer lk_made-up", "Basic b206cGFzcw=="] {
        let resp = with_session(&b, Method::GET, &policy).header(AUTHORIZATION, authorization).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{authorization}: the header is judged alone");
    }
}

/// A request carrying the browser's cookies and CSRF token.
fn with_session(b: &Browser, method: Method, path: &str) -> reqwest::RequestBuilder {
    let cookies: Vec<String> = b.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
    b.http.request(method, format!("{}{path}", b.base)).header(COOKIE, cookies.join("; ")).header("x-csrf-token", b.csrf.clone().unwrap_or_default())
}

async fn an_operator_token_runs_companies_and_their_features_and_manages_any_company(s: &TestServer) {
    let (id, op) = token(s, "provisioning", None).await;
    let (status, created) = bearer(s, &op, Method::POST, "/api/v1/companies", Some(json!({"name": "Organization Inc.", "domain": "Organization.com"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!((created["domain"].as_str(), created["name"].as_str(), created["password_min_length"].as_i64()), (Some(DOMAIN), Some("Organization Inc."), Some(8)));
    assert_eq!(created["features"], json!({"two_factor": false, "sso": {"enabled": false, "providers": []}}));
    let (status, body) = bearer(s, &op, Method::POST, "/api/v1/companies", Some(json!({"name": "Again", "domain": DOMAIN}))).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::CONFLICT, Some("conflict")));
    let (status, body) = bearer(s, &op, Method::POST, "/api/v1/companies", Some(json!({"name": "X", "domain": "not a domain"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["fields"]["domain"].is_array(), "{body}");
    assert_eq!(bearer(s, &op, Method::POST, "/api/v1/companies", Some(json!({"name": "X"}))).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bearer(s, &op, Method::POST, "/api/v1/companies", Some(json!({"name": "Other", "domain": OTHER}))).await.0, StatusCode::CREATED);
    let (_, listed) = bearer(s, &op, Method::GET, "/api/v1/companies", None).await;
    let domains: Vec<&str> = listed.as_array().unwrap().iter().map(|c| c["domain"].as_str().unwrap()).collect();
    assert_eq!(domains, [DOMAIN, OTHER]);

    let features = format!("/api/v1/companies/{DOMAIN}/features");
    let on = json!({"two_factor": true, "sso": {"enabled": true, "providers": ["microsoft", "google", "google"]}});
    let (status, set) = bearer(s, &op, Method::PUT, &features, Some(on.clone())).await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(set, json!({"two_factor": true, "sso": {"enabled": true, "providers": ["google", "microsoft"]}}));
    assert_eq!(bearer(s, &op, Method::GET, &features, None).await.1, set);
    let (_, policy) = bearer(s, &op, Method::GET, &format!("/api/v1/companies/{DOMAIN}/policy"), None).await;
    assert_eq!(policy["two_factor_enabled"], true, "{policy}");
    let (_, sso) = bearer(s, &op, Method::GET, &format!("/api/v1/companies/{DOMAIN}/sso"), None).await;
    assert_eq!(sso["providers"], json!(["google", "microsoft"]));
    let (_, listed) = bearer(s, &op, Method::GET, "/api/v1/companies", None).await;
    assert_eq!(listed[0]["features"], set);
    assert_eq!(listed[1]["features"]["two_factor"], false, "the other company is untouched");

    // Exactly the providers named: one left out is no longer offered.
    let (_, fewer) = bearer(s, &op, Method::PUT, &features, Some(json!({"two_factor": true, "sso": {"enabled": true, "providers": ["google"]}}))).await;
    assert_eq!(fewer["sso"]["providers"], json!(["google"]));

    let (status, user) = bearer(s, &op, Method::POST, &format!("/api/v1/companies/{OTHER}/users"), Some(new_user("101"))).await;
    assert_eq!(status, StatusCode::CREATED, "no CSRF header needed with a token: {user}");
    assert_eq!((user["login_name"].as_str(), user["welcome_email_sent"].as_bool()), (Some("101@other.example"), Some(true)));

    let kinds = audit_kinds_and_tokens(s, DOMAIN).await;
    let expected = [("sso_feature_changed", Some(id)), ("sso_feature_changed", Some(id)), ("two_factor_feature_changed", Some(id))];
    assert_eq!(kinds, expected.map(|(k, t)| (k.to_owned(), t)), "newest first, each naming the token");
    assert_eq!(audit_kinds_and_tokens(s, OTHER).await, [("user_created".to_owned(), Some(id))]);
    let audited = audit_kinds_and_tokens(s, DOMAIN).await.len();
    bearer(s, &op, Method::PUT, &features, Some(json!({"two_factor": true, "sso": {"enabled": true, "providers": ["google"]}}))).await;
    assert_eq!(audit_kinds_and_tokens(s, DOMAIN).await.len(), audited, "a switch that stays is not rewritten");

    let doc: Value = reqwest::get(format!("{}/api/openapi.json", s.base)).await.unwrap().json().await.unwrap();
    assert_eq!(doc["components"]["securitySchemes"]["api_token"]["scheme"], "bearer");
    for path in ["/api/v1/companies", "/api/v1/companies/{domain}/features", "/api/v1/tokens", "/api/v1/tokens/{id}"] {
        assert!(doc["paths"][path].is_object(), "{path} in the OpenAPI document");
    }
}

async fn a_company_token_manages_its_own_company_only(s: &TestServer) {
    company(s, OTHER).await;
    company(s, DOMAIN).await;
    let (id, own) = token(s, "org bot", Some(DOMAIN)).await;
    let (status, user) = bearer(s, &own, Method::POST, &format!("/api/v1/companies/{DOMAIN}/users"), Some(new_user("101"))).await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let policy = json!({"two_factor": "optional", "allowed_methods": ["totp"], "default_method": null, "default_method_locked": false});
    let (status, set) = bearer(s, &own, Method::PUT, &format!("/api/v1/companies/{DOMAIN}/policy"), Some(policy.clone())).await;
    assert_eq!((status, set["two_factor"].as_str()), (StatusCode::OK, Some("optional")), "{set}");
    assert_eq!(bearer(s, &own, Method::GET, &format!("/api/v1/companies/{DOMAIN}/features"), None).await.0, StatusCode::OK);
    let expected = [("policy_changed", Some(id)), ("user_created", Some(id)), ("api_token_created", None)];
    assert_eq!(audit_kinds_and_tokens(s, DOMAIN).await, expected.map(|(k, t)| (k.to_owned(), t)), "the token acted; the CLI made it for this company");

    for (method, path, body) in [
        (Method::POST, format!("/api/v1/companies/{OTHER}/users"), Some(new_user("102"))),
        (Method::PUT, format!("/api/v1/companies/{OTHER}/policy"), Some(policy)),
        (Method::GET, format!("/api/v1/companies/{OTHER}/policy"), None),
        (Method::GET, format!("/api/v1/companies/{OTHER}/features"), None),
    ] {
        let (status, body) = bearer(s, &own, method.clone(), &path, body).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{method} {path}: as if it did not exist");
    }
    assert!(audit_kinds_and_tokens(s, OTHER).await.is_empty());

    let on = json!({"two_factor": true, "sso": {"enabled": true, "providers": ["google"]}});
    for (method, path, body) in operator_calls(&on) {
        let (status, answer) = bearer(s, &own, method.clone(), &path, body).await;
        assert_eq!((status, answer["error"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{method} {path}");
    }
    let (_, features) = bearer(s, &own, Method::GET, &format!("/api/v1/companies/{DOMAIN}/features"), None).await;
    assert_eq!(features["two_factor"], false, "its own switches stay the operator's");
    assert_eq!(s.app.api_tokens().await.unwrap().iter().filter(|t| t.revoked_at.is_some()).count(), 0, "and it revoked nothing");
}

/// Every operator endpoint, with a body the operator would send (a bad one for POST: the 403
/// must come before the body is read).
fn operator_calls(features: &Value) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, "/api/v1/companies".to_owned(), None),
        (Method::POST, "/api/v1/companies".to_owned(), Some(json!({"name": "New", "domain": "new.example"}))),
        (Method::POST, "/api/v1/companies".to_owned(), Some(json!({"nonsense": 1}))),
        (Method::PUT, format!("/api/v1/companies/{DOMAIN}/features"), Some(features.clone())),
        (Method::GET, "/api/v1/tokens".to_owned(), None),
        (Method::DELETE, "/api/v1/tokens/1".to_owned(), None),
    ]
}

async fn an_office_manager_gets_403_on_operator_endpoints(s: &TestServer) {
    company(s, OTHER).await;
    let (login, password) = s.company_with_office_manager(DOMAIN).await;
    token(s, "provisioning", None).await;
    let mut b = s.browser();
    assert_eq!(b.sign_in(&login, &password).await.status, StatusCode::OK);
    let on = json!({"two_factor": true, "sso": {"enabled": true, "providers": ["google"]}});
    for (method, path, body) in operator_calls(&on) {
        let a = b.send(method.clone(), &path, body).await;
        assert_eq!((a.status, a.json()["error"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{method} {path}");
    }
    assert_eq!(b.get(&format!("/api/v1/companies/{DOMAIN}/features")).await.json()["two_factor"], false, "reads its own switches, unchanged");
    assert_eq!(b.get(&format!("/api/v1/companies/{OTHER}/features")).await.status, StatusCode::NOT_FOUND);
    assert!(s.app.store.company_by_domain("new.example").await.unwrap().is_none());
    assert!(s.app.api_tokens().await.unwrap()[0].revoked_at.is_none());
}

async fn bad_feature_bodies_are_refused_and_change_nothing(s: &TestServer) {
    company(s, DOMAIN).await;
    let (_, op) = token(s, "provisioning", None).await;
    let features = format!("/api/v1/companies/{DOMAIN}/features");
    let start = json!({"two_factor": true, "sso": {"enabled": true, "providers": ["google"]}});
    assert_eq!(bearer(s, &op, Method::PUT, &features, Some(start.clone())).await.0, StatusCode::OK);
    let audited = audit_kinds_and_tokens(s, DOMAIN).await.len();

    let bad = [
        json!({"two_factor": "yes", "sso": {"enabled": false, "providers": []}}),
        json!({"two_factor": false}),
        json!({"two_factor": false, "sso": {"enabled": "no", "providers": []}}),
        json!({"two_factor": false, "sso": {"enabled": false, "providers": "google"}}),
        json!({"two_factor": false, "sso": {"enabled": false, "providers": []}, "extra": 1}),
        json!({"two_factor": false, "sso": {"enabled": false, "providers": ["microsoft", "okta"]}}),
    ];
    for body in bad {
        let (status, answer) = bearer(s, &op, Method::PUT, &features, Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
    }
    let (_, unknown) = bearer(s, &op, Method::PUT, &features, Some(json!({"two_factor": false, "sso": {"enabled": false, "providers": ["okta"]}}))).await;
    assert_eq!(unknown["error"], "unknown_provider");
    assert!(unknown["fields"]["sso.providers"][0].as_str().unwrap().contains("okta"), "{unknown}");
    let resp = reqwest::Client::new().put(format!("{}{features}", s.base)).bearer_auth(&op).header("content-type", "application/json").body("{").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "malformed JSON");
    assert_eq!(bearer(s, &op, Method::PUT, "/api/v1/companies/unknown.example/features", Some(start.clone())).await.0, StatusCode::NOT_FOUND);

    assert_eq!(bearer(s, &op, Method::GET, &features, None).await.1, start, "nothing changed");
    assert_eq!(audit_kinds_and_tokens(s, DOMAIN).await.len(), audited, "nothing audited");
}
