//! The console's security policy and email review pages over HTTP, on SQLite and PostgreSQL: an
//! office manager saves the two-factor rules, the minimum password length and the SSO setting
//! with plain form posts (CSRF checked, bad input refused with its message and nothing written);
//! a supervisor reads the same rules without a form and cannot post; a user finds no console.

#[macro_use]
#[path = "support/server.rs"]
mod server;
#[path = "support/smtp.rs"]
mod smtp;

use latchkey_core::flows::activation::CompleteSetupForm;
use latchkey_core::flows::sso::Provider;
use latchkey_core::Role;
use latchkey_server::app::Actor;
use reqwest::StatusCode;
use serde_json::json;
use server::{csrf_in, token_of, Backend, Browser, TestServer};

on_both_stores!(
    an_office_manager_sets_the_policy_from_the_console,
    bad_policy_input_is_refused_with_its_message_and_nothing_changes,
    supervisors_read_the_policy_and_users_find_no_console,
    the_email_review_page_names_the_accounts_and_the_fix,
);

const DOMAIN: &str = "organization.com";
const PASSWORD: &str = "Welcome2Sonar";

/// An active member of the company with `role`, signed in.
async fn member(s: &TestServer, ext: &str, email: &str, role: Role) -> Browser {
    if s.app.store.company_by_domain(DOMAIN).await.unwrap().is_none() {
        s.app.create_company("Organization Inc.", DOMAIN).await.unwrap();
    }
    let created = s.app.create_user(DOMAIN, ext, email, role, Actor::Operator, &Default::default()).await.unwrap();
    let form = CompleteSetupForm { password: PASSWORD.into(), password_confirmation: PASSWORD.into(), pin: "2580".into() };
    s.app.complete_setup(&token_of(&created.complete_setup_url), &form, &Default::default()).await.unwrap();
    let mut b = s.browser();
    assert_eq!(b.sign_in(&format!("{ext}@{DOMAIN}"), PASSWORD).await.json()["state"], "signed_in");
    b
}

async fn policy_json(b: &mut Browser) -> serde_json::Value {
    let p = b.get(&format!("/api/v1/companies/{DOMAIN}/policy")).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    p.json()
}

async fn an_office_manager_sets_the_policy_from_the_console(s: &TestServer) {
    let mut om = member(s, "100", "om@example.com", Role::OfficeManager).await;
    s.app.set_two_factor_feature(DOMAIN, true, Actor::Operator, &Default::default()).await.unwrap();
    s.app.set_sso_feature(DOMAIN, true, &[Provider::Google, Provider::Microsoft], Actor::Operator, &Default::default()).await.unwrap();
    let page = om.get("/console/policy").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("action=\"/console/policy/two-factor\"") && page.body.contains("Office 365"), "{}", page.body);
    let csrf = csrf_in(&page.body);

    let saved = om
        .form("/console/policy/two-factor", &[("csrf_token", &csrf), ("two_factor", "required"), ("allow_totp", "on"), ("allow_email", "on"), ("default_method", "email"), ("default_method_locked", "on")])
        .await;
    assert_eq!((saved.status, saved.location()), (StatusCode::SEE_OTHER, Some("/console/policy?done=two-factor".into())), "{}", saved.body);
    let p = policy_json(&mut om).await;
    assert_eq!((p["two_factor"].clone(), p["allowed_methods"].clone(), p["default_method"].clone(), p["default_method_locked"].clone()), (json!("required"), json!(["totp", "email"]), json!("email"), json!(true)));

    let saved = om.form("/console/policy/password", &[("csrf_token", &csrf), ("password_min_length", "12")]).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(policy_json(&mut om).await["password_min_length"], 12);
    assert_eq!(policy_json(&mut om).await["two_factor"], "required", "the password form leaves the two-factor rules alone");
    // The new minimum holds for every new password of the company.
    let short = om.post("/api/v1/me/password", json!({"current_password": PASSWORD, "password": "Short2So!", "password_confirmation": "Short2So!"})).await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", short.body);
    assert!(short.body.contains("12"), "{}", short.body);

    let saved = om.form("/console/policy/sso", &[("csrf_token", &csrf), ("mfa_microsoft", "on")]).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let company = s.app.store.company_by_domain(DOMAIN).await.unwrap().unwrap();
    assert_eq!(s.app.store.sso_settings(company.id).await.unwrap().mfa_sufficient, vec![Provider::Microsoft]);
    let after = om.get("/console/policy?done=sso").await.body;
    assert!(after.contains("The single sign-on setting was saved."), "{after}");

    // Each change is in the audit log, by the office manager.
    let audit = s.app.store.audit_of_company(company.id, 10).await.unwrap();
    let kinds: Vec<&str> = audit.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(&kinds[..3], ["sso_policy_changed", "policy_changed", "policy_changed"], "{kinds:?}");
    assert!(audit[1].detail.contains("password_min_length=12"), "{}", audit[1].detail);
    assert!(audit[..3].iter().all(|a| a.actor_user_id.is_some()));
}

async fn bad_policy_input_is_refused_with_its_message_and_nothing_changes(s: &TestServer) {
    let mut om = member(s, "100", "om@example.com", Role::OfficeManager).await;
    s.app.set_sso_feature(DOMAIN, true, &[Provider::Google], Actor::Operator, &Default::default()).await.unwrap();
    let csrf = csrf_in(&om.get("/console/policy").await.body);
    let before = policy_json(&mut om).await;

    // (form, its fields besides the CSRF token, what the refusal says)
    type Case = (&'static str, Vec<(&'static str, &'static str)>, &'static str);
    let cases: Vec<Case> = vec![
        ("/console/policy/two-factor", vec![("two_factor", "required")], "Allow at least one method."),
        ("/console/policy/two-factor", vec![("two_factor", "sometimes"), ("allow_totp", "on")], "Choose off, optional or required."),
        ("/console/policy/two-factor", vec![("two_factor", "optional"), ("allow_totp", "on"), ("default_method", "sms")], "one of the allowed methods"),
        ("/console/policy/two-factor", vec![("two_factor", "optional"), ("allow_totp", "on"), ("default_method_locked", "on")], "Choose a default method to lock."),
        ("/console/policy/password", vec![("password_min_length", "7")], "8 to 64"),
        ("/console/policy/password", vec![("password_min_length", "65")], "8 to 64"),
        ("/console/policy/password", vec![("password_min_length", "twelve")], "Enter a number"),
        ("/console/policy/sso", vec![("mfa_microsoft", "on")], "not enabled for this company"),
    ];
    for (path, fields, message) in cases {
        let mut all = vec![("csrf_token", csrf.as_str())];
        all.extend(fields.iter().copied());
        let refused = om.form(path, &all).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{path} {fields:?}: {}", refused.body);
        assert!(refused.body.contains(message), "{path} {fields:?} should say {message:?}");
    }
    let forged = om.form("/console/policy/password", &[("csrf_token", "forged"), ("password_min_length", "20")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let no_field = om.form("/console/policy/password", &[("password_min_length", "20")]).await;
    assert!(no_field.status.is_client_error(), "{}", no_field.status);
    let api = om
        .send(reqwest::Method::PUT, &format!("/api/v1/companies/{DOMAIN}/policy"), Some(json!({"two_factor": "optional", "allowed_methods": ["totp"], "password_min_length": 100})))
        .await;
    assert_eq!(api.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", api.body);
    assert!(api.json()["fields"]["password_min_length"][0].as_str().unwrap().contains("8 to 64"), "{}", api.body);
    assert_eq!(policy_json(&mut om).await, before, "nothing was written");
    let company = s.app.store.company_by_domain(DOMAIN).await.unwrap().unwrap();
    assert!(s.app.store.sso_settings(company.id).await.unwrap().mfa_sufficient.is_empty());
}

async fn supervisors_read_the_policy_and_users_find_no_console(s: &TestServer) {
    let mut om = member(s, "100", "om@example.com", Role::OfficeManager).await;
    let mut supervisor = member(s, "200", "sup@example.com", Role::Supervisor).await;
    let mut user = member(s, "101", "u101@example.com", Role::User).await;
    let csrf_om = csrf_in(&om.get("/console/policy").await.body);
    om.form("/console/policy/password", &[("csrf_token", &csrf_om), ("password_min_length", "14")]).await;

    let page = supervisor.get("/console/policy").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Read-only") && page.body.contains("14 characters"), "{}", page.body);
    assert!(!page.body.contains("action=\"/console/policy/"), "no form for a supervisor");
    let csrf = csrf_in(&page.body);
    let denied = supervisor.form("/console/policy/password", &[("csrf_token", &csrf), ("password_min_length", "8")]).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(policy_json(&mut supervisor).await["password_min_length"], 14, "unchanged");

    for path in ["/console", "/console/policy", "/console/email-review"] {
        let page = user.get(path).await;
        assert!(page.status == StatusCode::NOT_FOUND || (path == "/console" && page.status.is_redirection()), "{path}: {}", page.status);
    }
    assert_eq!(user.get("/console/policy").await.status, StatusCode::NOT_FOUND);
    let csrf = csrf_in(&user.get("/account").await.body);
    assert_eq!(user.form("/console/policy/password", &[("csrf_token", &csrf), ("password_min_length", "8")]).await.status, StatusCode::NOT_FOUND);
    let signed_out = s.browser().get("/console/policy").await;
    assert_eq!((signed_out.status, signed_out.location()), (StatusCode::SEE_OTHER, Some("/sign-in".into())));
}

async fn the_email_review_page_names_the_accounts_and_the_fix(s: &TestServer) {
    let mut om = member(s, "100", "om@example.com", Role::OfficeManager).await;
    member(s, "101", "front.desk@example.com", Role::User).await;
    member(s, "102", "Front.Desk@example.com", Role::User).await;
    let page = om.get("/console/email-review").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("One email on several accounts"), "{}", page.body);
    assert!(page.body.contains("href=\"/console/users/101\"") && page.body.contains("href=\"/console/users/102\""));
    assert!(page.body.contains("distribution group"), "the fix is shown");
    assert!(page.body.contains("Single sign-on is not turned on"), "with SSO off the findings are tomorrow's risks");
    let mut supervisor = member(s, "200", "sup@example.com", Role::Supervisor).await;
    assert!(supervisor.get("/console/email-review").await.body.contains("One email on several accounts"));
}
