//! Hostile input, table-driven over every operation of the served OpenAPI document that takes a
//! JSON body, on SQLite and PostgreSQL (issue 7, item 6). Each body from the table — over the
//! size limit, invalid UTF-8, a NUL byte or a 100 kB string in each string field, wrong JSON types,
//! duplicated keys, not JSON, empty, the wrong content type — is sent as the strongest callers (a
//! signed-in office manager with CSRF, and the operator token), so the refusal comes from reading
//! the body, not from authentication. Every answer is a 4xx with a JSON `message`; nothing is
//! written (audit log outside sign-in failures and wrong codes, users, sessions, companies, tokens).
//!
//! Odd Unicode on the fields where it matters: full-width digits in a PIN and an extension,
//! right-to-left and zero-width marks and NUL in a login name, an RTL override in an email.
//!
//! Every path parameter of every operation as `%FF` (not UTF-8 once decoded): a 4xx in JSON that
//! the document lists for the operation.

#[macro_use]
#[path = "support/server.rs"]
mod server;
#[path = "support/smtp.rs"]
mod smtp;

use std::time::Duration;

use latchkey_core::Role;
use latchkey_server::app::Actor;
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};
use server::{token_of, Backend, Browser, TestServer};

on_both_stores!(every_json_body_refuses_hostile_input, odd_unicode_is_refused, path_parameters_that_are_not_text_are_refused_in_json);

const A: &str = "organization.com";
const PASSWORD: &str = "Manager2Sonar";

/// One hostile request body.
struct Case {
    name: String,
    content_type: &'static str,
    body: Vec<u8>,
}

fn case(name: impl Into<String>, content_type: &'static str, body: Vec<u8>) -> Case {
    Case { name: name.into(), content_type, body }
}

fn json_case(name: impl Into<String>, body: &Value) -> Case {
    case(name, "application/json", serde_json::to_vec(body).unwrap())
}

/// One operation of the document with a JSON body.
struct Operation {
    method: Method,
    template: String,
    /// Required by the document: an empty body is then a mistake.
    body_required: bool,
    /// Top-level fields: name, schema (references resolved), required.
    fields: Vec<(String, Value, bool)>,
}

/// A plausible value for each path parameter, so a request reaches the body where it can.
fn path(template: &str) -> String {
    template
        .replace("{domain}", A)
        .replace("{extension}", "101")
        .replace("{email}", "assistant@example.com")
        .replace("{provider}", "google")
        .replace("{method}", "email")
        .replace("{id}", "1")
        .replace("{token}", "made-up-token-0123456789abcdef")
        .replace("{flow}", "made-up-flow-0123456789abcdef")
        .replace("{waiting}", "made-up-waiting-0123456789abcdef")
}

/// Follows `$ref` (and the first branch of `oneOf`/`anyOf`/`allOf` with one) to the schema.
fn resolve(doc: &Value, schema: &Value) -> Value {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap();
        return resolve(doc, &doc["components"]["schemas"][name]);
    }
    for combinator in ["oneOf", "anyOf", "allOf"] {
        if let Some(branch) = schema[combinator].as_array().and_then(|b| b.iter().find(|s| s.get("$ref").is_some() || s.get("properties").is_some())) {
            return resolve(doc, branch);
        }
    }
    schema.clone()
}

/// The JSON types a schema allows (`type` may be a list in OpenAPI 3.1).
fn types(schema: &Value) -> Vec<String> {
    match &schema["type"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect(),
        _ => vec![],
    }
}

fn is_string(schema: &Value) -> bool {
    types(schema).iter().any(|t| t == "string")
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    for (template, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let Some(body) = op.get("requestBody") else { continue };
            let Some(schema) = body["content"]["application/json"].get("schema") else { continue };
            let schema = resolve(doc, schema);
            let required: Vec<&str> = schema["required"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            let fields = schema["properties"]
                .as_object()
                .map(|p| p.iter().map(|(name, s)| (name.clone(), resolve(doc, s), required.contains(&name.as_str()))).collect())
                .unwrap_or_default();
            out.push(Operation {
                method: Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                template: template.clone(),
                body_required: body["required"].as_bool().unwrap_or(false),
                fields,
            });
        }
    }
    out
}

/// A plausible value for a field, so that only the hostile part of a body is wrong.
fn plausible(doc: &Value, name: &str, schema: &Value) -> Value {
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    let kinds = types(schema);
    let has = |t: &str| kinds.iter().any(|k| k == t);
    if has("boolean") {
        json!(true)
    } else if has("integer") || has("number") {
        json!(1)
    } else if has("array") {
        json!([])
    } else if has("object") || schema.get("properties").is_some() {
        let inner = resolve(doc, schema);
        let props = inner["properties"].as_object().cloned().unwrap_or_default();
        Value::Object(props.iter().map(|(k, s)| (k.clone(), plausible(doc, k, &resolve(doc, s)))).collect())
    } else {
        json!(plausible_text(name))
    }
}

fn plausible_text(name: &str) -> &'static str {
    match name {
        n if n.contains("email") => "new555@example.com",
        n if n.contains("password") => "Welcome2Sonar",
        "pin" => "2580",
        "extension" => "555",
        "login_name" => "100@organization.com",
        "domain" => "new.example",
        "name" => "New Company",
        "phone" | "number" => "+15555550100",
        "via" => "email",
        _ => "123456",
    }
}

fn base_body(doc: &Value, op: &Operation) -> Map<String, Value> {
    op.fields.iter().map(|(name, schema, _)| (name.clone(), plausible(doc, name, schema))).collect()
}

fn with_field(base: &Map<String, Value>, field: &str, value: Value) -> Value {
    let mut body = base.clone();
    body.insert(field.to_owned(), value);
    Value::Object(body)
}

/// The hostile bodies for one operation.
fn cases(doc: &Value, op: &Operation, limit: usize) -> Vec<Case> {
    let base = base_body(doc, op);
    let mut out = vec![
        json_case("over the body limit", &with_field(&base, "padding", json!("x".repeat(limit + 4096)))),
        case("not JSON", "application/json", b"this is not json".to_vec()),
        case("truncated JSON", "application/json", b"{\"a\": ".to_vec()),
        case("a JSON array", "application/json", b"[1, 2, 3]".to_vec()),
        case("wrong content type", "text/plain", serde_json::to_vec(&Value::Object(base.clone())).unwrap()),
        case("form content type", "application/x-www-form-urlencoded", b"a=b".to_vec()),
    ];
    if op.body_required {
        out.push(case("empty body", "application/json", Vec::new()));
    }
    for (name, schema, required) in &op.fields {
        out.extend(field_cases(&base, name, schema, *required));
    }
    out
}

fn field_cases(base: &Map<String, Value>, name: &str, schema: &Value, required: bool) -> Vec<Case> {
    let mut out = Vec::new();
    let mut wrong: Vec<(&str, Value)> = Vec::new();
    if is_string(schema) {
        let text = base[name].as_str().unwrap_or("x").to_owned();
        let (head, tail) = text.split_at(text.len() / 2);
        out.push(json_case(format!("NUL byte in {name}"), &with_field(base, name, json!(format!("{head}\u{0}{tail}")))));
        out.push(json_case(format!("100 kB string in {name}"), &with_field(base, name, json!("7".repeat(100 * 1024)))));
        out.push(invalid_utf8(base, name));
        out.push(duplicated_key(base, name));
        wrong.extend([("a number", json!(7)), ("an array", json!(["x"])), ("an object", json!({"a": "x"})), ("a bool", json!(false))]);
    } else if types(schema).iter().any(|t| t == "boolean") {
        wrong.extend([("a string", json!("true")), ("a number", json!(1))]);
    } else if types(schema).iter().any(|t| t == "array") {
        wrong.extend([("a string", json!("x")), ("an object", json!({}))]);
    } else {
        wrong.extend([("a string", json!("x")), ("a number", json!(7))]);
    }
    if required {
        wrong.push(("null", Value::Null));
        let mut missing = base.clone();
        missing.remove(name);
        out.push(json_case(format!("{name} missing"), &Value::Object(missing)));
    }
    for (what, value) in wrong {
        out.push(json_case(format!("{what} as {name}"), &with_field(base, name, value)));
    }
    out
}

/// The body with the field's value replaced by bytes that are not UTF-8.
fn invalid_utf8(base: &Map<String, Value>, name: &str) -> Case {
    let marker = "MARKER-0f3a9c";
    let text = serde_json::to_vec(&with_field(base, name, json!(marker))).unwrap();
    let at = text.windows(marker.len()).position(|w| w == marker.as_bytes()).unwrap();
    let mut body = text[..at].to_vec();
    body.extend_from_slice(b"\xff\xfe\xc3\x28");
    body.extend_from_slice(&text[at + marker.len()..]);
    case(format!("invalid UTF-8 in {name}"), "application/json", body)
}

/// `{"f": "x", "f": <plausible>, ...}`: the first of two values could slip past a check.
fn duplicated_key(base: &Map<String, Value>, name: &str) -> Case {
    let rest = serde_json::to_string(&Value::Object(base.clone())).unwrap();
    let body = format!("{{\"{name}\": \"x\", {}", &rest[1..]);
    case(format!("duplicated key {name}"), "application/json", body.into_bytes())
}

/// Who sends: the office manager's session (cookies and CSRF) or the operator token.
enum Caller<'a> {
    Session(&'a Browser),
    Token(&'a str),
}

impl Caller<'_> {
    fn label(&self) -> &'static str {
        match self {
            Caller::Session(_) => "office manager",
            Caller::Token(_) => "operator token",
        }
    }
}

/// Sends one case; its status, or `Err` saying what was wrong with the answer.
async fn send(http: &reqwest::Client, base: &str, caller: &Caller<'_>, method: &Method, path: &str, c: &Case) -> Result<StatusCode, String> {
    let mut req = http.request(method.clone(), format!("{base}{path}")).header("content-type", c.content_type).body(c.body.clone());
    req = match caller {
        Caller::Session(b) => {
            let cookies: Vec<String> = b.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req.header("cookie", cookies.join("; ")).header("x-csrf-token", b.csrf.clone().unwrap_or_default())
        }
        Caller::Token(secret) => req.bearer_auth(secret),
    };
    let resp = req.send().await.map_err(|e| format!("no answer: {}", error_chain(&e)))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| format!("{status}, body not read: {e}"))?;
    let message = serde_json::from_str::<Value>(&text).ok().and_then(|v| v["message"].as_str().map(str::to_owned)).unwrap_or_default();
    if !status.is_client_error() || message.trim().is_empty() {
        return Err(format!("{status} {}", text.chars().take(200).collect::<String>()));
    }
    Ok(status)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    out
}

/// What the hostile table must not change.
#[derive(Debug, PartialEq)]
struct Snapshot {
    audit_outside_sign_in: Vec<String>,
    users: usize,
    sessions: usize,
    companies: usize,
    tokens: usize,
}

async fn snapshot(s: &TestServer) -> Snapshot {
    let store = &s.app.store;
    let company = store.company_by_domain(A).await.unwrap().unwrap();
    let audit = store.audit_of_company(company.id, 100_000).await.unwrap();
    let users = store.company_users(company.id, None, 100_000, 0).await.unwrap();
    let mut sessions = 0;
    for u in &users {
        sessions += store.sessions_of_user(u.id).await.unwrap().len();
    }
    Snapshot {
        // Refused sign-ins and wrong two-factor codes (a code with a NUL in it is a wrong code)
        // are audited by design, to count attempts; nothing else may be.
        audit_outside_sign_in: audit.into_iter().map(|r| r.kind).filter(|k| !k.starts_with("sign_in") && !["throttled", "second_factor_failed"].contains(&k.as_str())).collect(),
        users: users.len(),
        sessions,
        companies: store.list_companies().await.unwrap().len(),
        tokens: store.list_api_tokens().await.unwrap().len(),
    }
}

async fn every_json_body_refuses_hostile_input(s: &TestServer) {
    let om = s.signed_in_office_manager(A).await;
    s.app.create_user(A, "101", "invited101@example.com", Role::User, Actor::Operator, &Default::default()).await.unwrap();
    let operator = s.app.create_api_token("ops", None, Actor::Operator, &Default::default()).await.unwrap().secret;
    let doc: Value = reqwest::get(format!("{}/api/openapi.json", s.base)).await.unwrap().json().await.unwrap();
    let operations = operations(&doc);
    assert!(operations.len() >= 20, "the document lists the JSON-body operations: {}", operations.len());
    let limit = s.app.config.body_limit_bytes;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let callers = [Caller::Session(&om), Caller::Token(&operator)];

    let before = snapshot(s).await;
    let mut failures = Vec::new();
    let mut sent = 0;
    for op in &operations {
        let path = path(&op.template);
        for c in cases(&doc, op, limit) {
            for caller in &callers {
                sent += 1;
                if let Err(e) = send(&http, &s.base, caller, &op.method, &path, &c).await {
                    failures.push(format!("{} {} {} as {}: {e}", op.method, op.template, c.name, caller.label()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {sent} hostile requests not refused with a 4xx and a message:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(snapshot(s).await, before, "a refused request wrote something");
    // The session survived the table (nothing above signed it out or revoked it).
    let mut om = om;
    assert_eq!(om.get("/api/v1/me").await.status, StatusCode::OK);
}

/// Found by the API fuzzing's probes (tests/fuzz): `/api/v1/activation/%FF` and every other path
/// with a parameter that is not UTF-8 once decoded got axum's plain-text 400, which the document
/// did not list. Each operation with a path parameter, as both callers: a 4xx with a JSON message,
/// with a status the operation documents.
async fn path_parameters_that_are_not_text_are_refused_in_json(s: &TestServer) {
    let om = s.signed_in_office_manager(A).await;
    let operator = s.app.create_api_token("ops", None, Actor::Operator, &Default::default()).await.unwrap().secret;
    let doc: Value = reqwest::get(format!("{}/api/openapi.json", s.base)).await.unwrap().json().await.unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let before = snapshot(s).await;
    let (mut failures, mut sent) = (Vec::new(), 0);
    for (template, ops) in doc["paths"].as_object().unwrap().iter().filter(|(t, _)| t.contains('{')) {
        let path = undecodable_parameters(template);
        for (method, op) in ops.as_object().unwrap() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            for caller in [Caller::Session(&om), Caller::Token(&operator)] {
                sent += 1;
                match send(&http, &s.base, &caller, &method, &path, &json_case("{}", &json!({}))).await {
                    Ok(status) if op["responses"].get(status.as_str()).is_some() => {}
                    Ok(status) => failures.push(format!("{method} {template} as {}: {status}, not in the document", caller.label())),
                    Err(e) => failures.push(format!("{method} {template} as {}: {e}", caller.label())),
                }
            }
        }
    }
    assert!(sent >= 40, "the document lists the operations with path parameters: {sent} requests");
    assert!(failures.is_empty(), "{} of {sent} requests not refused with a documented 4xx in JSON:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(snapshot(s).await, before, "a refused request wrote something");
}

/// `template` with every `{parameter}` segment as `%FF`, a byte that is no UTF-8 on its own.
fn undecodable_parameters(template: &str) -> String {
    template.split('/').map(|segment| if segment.starts_with('{') { "%FF" } else { segment }).collect::<Vec<_>>().join("/")
}

/// Odd Unicode where a field has a strict shape: refused with a 4xx and a message, nothing written.
async fn odd_unicode_is_refused(s: &TestServer) {
    let mut om = s.signed_in_office_manager(A).await;
    let invited = s.app.create_user(A, "102", "invited102@example.com", Role::User, Actor::Operator, &Default::default()).await.unwrap();
    let before = snapshot(s).await;
    let mut failures = Vec::new();
    let mut expect = |what: &str, got: server::Answer, allowed: &[StatusCode]| {
        let message = got.json()["message"].as_str().unwrap_or_default().to_owned();
        if !allowed.contains(&got.status) || message.trim().is_empty() {
            failures.push(format!("{what}: {} {}", got.status, got.body));
        }
    };
    let unprocessable = [StatusCode::UNPROCESSABLE_ENTITY];

    let activation = format!("/api/v1/activation/{}", token_of(&invited.complete_setup_url));
    let full_width_pin = json!({"password": "Welcome2Sonar", "password_confirmation": "Welcome2Sonar", "pin": "２５８０"});
    expect("full-width PIN at activation", om.post(&activation, full_width_pin).await, &unprocessable);
    let change_pin = json!({"current_password": PASSWORD, "pin": "２５８０"});
    expect("full-width PIN at PIN change", om.post("/api/v1/me/pin", change_pin).await, &unprocessable);

    let users = format!("/api/v1/companies/{A}/users");
    expect("full-width extension", om.post(&users, json!({"extension": "５５５", "designated_email": "new555@example.com"})).await, &unprocessable);
    expect("RTL override in an email", om.post(&users, json!({"extension": "555", "designated_email": "new\u{202e}lmth.@example.com"})).await, &unprocessable);
    expect("RTL mark in an email", om.post(&users, json!({"extension": "556", "designated_email": "\u{200f}new556@example.com"})).await, &unprocessable);

    let sign_in = [StatusCode::UNPROCESSABLE_ENTITY, StatusCode::UNAUTHORIZED];
    for (what, login) in [
        ("RTL mark in a login name", "\u{200f}100@organization.com"),
        ("zero-width joiner in a login name", "10\u{200d}0@organization.com"),
        ("NUL in a login name", "100\u{0}@organization.com"),
        ("full-width digits in a login name", "１００@organization.com"),
    ] {
        let mut stranger = s.browser();
        expect(what, stranger.post("/api/v1/sign-in", json!({"login_name": login, "password": PASSWORD})).await, &sign_in);
    }
    assert!(failures.is_empty(), "odd Unicode not refused:\n{}", failures.join("\n"));
    assert_eq!(snapshot(s).await, before, "a refused request wrote something");
    // The PIN is unchanged: the welcome link still completes with an ASCII PIN.
    let ascii_pin = json!({"password": "Welcome2Sonar", "password_confirmation": "Welcome2Sonar", "pin": "2580"});
    assert_eq!(om.post(&activation, ascii_pin).await.status, StatusCode::OK);
}
