//! The office manager's side of single sign-on over HTTP, on SQLite and PostgreSQL: additional
//! emails confirmed by an emailed link (opening the page does not use it; Confirm with CSRF does,
//! once), who may see and change them, the providers whose MFA is enough, and the email
//! association review with its exact findings.

#[macro_use]
#[path = "support/server.rs"]
mod server;
#[path = "support/smtp.rs"]
mod smtp;

use std::time::Duration;

use latchkey_core::email_review::FindingKind;
use latchkey_core::flows::sso::Provider;
use latchkey_core::Role;
use latchkey_server::app::Actor;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use server::{csrf_in, token_of, Backend, Browser, TestServer};
use smtp::ReceivedMail;

on_both_stores!(
    an_added_email_is_confirmed_by_its_link_once,
    removing_an_email_kills_its_pending_link,
    bad_input_is_refused_and_nothing_is_written,
    only_the_office_manager_of_the_company_changes_emails,
    the_mfa_setting_is_a_subset_of_the_enabled_providers,
    the_email_review_lists_each_finding_with_its_fix,
);

const DOMAIN: &str = "organization.com";

fn emails_path(ext: &str) -> String {
    format!("/api/v1/companies/{DOMAIN}/users/{ext}/emails")
}

/// Every message to `to` whose subject contains `subject` (any case), once at least `n` arrived
/// (or 10 s passed: the caller asserts the count).
async fn mails_to(s: &TestServer, to: &str, subject: &str, n: usize) -> Vec<ReceivedMail> {
    s.smtp.wait_for_mail_to(to, subject, n, Duration::from_secs(10)).await
}

/// The token of the `n`th confirmation email to `to`, checked to be in both parts.
async fn confirmation_token(s: &TestServer, to: &str, n: usize) -> String {
    let mails = mails_to(s, to, "confirm your email address", n).await;
    assert_eq!(mails.len(), n, "confirmation emails to {to}");
    let mail = &mails[n - 1];
    let link = mail.text.split_whitespace().find(|w| w.contains("/confirm-email/")).expect("a confirmation link").to_owned();
    assert!(mail.html.contains(&link), "the HTML part has the same link");
    token_of(&link)
}

async fn listed(b: &mut Browser, ext: &str) -> Value {
    let a = b.get(&emails_path(ext)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.json()
}

async fn audit_kinds(s: &TestServer) -> Vec<String> {
    let company = s.app.store.company_by_domain(DOMAIN).await.unwrap().unwrap();
    s.app.store.audit_of_company(company.id, 200).await.unwrap().into_iter().map(|a| a.kind).collect()
}

async fn an_added_email_is_confirmed_by_its_link_once(s: &TestServer) {
    let mut om = s.signed_in_office_manager(DOMAIN).await;
    s.signed_in_member(DOMAIN, "101", "boss@example.com", Role::User).await;
    let added = om.post(&emails_path("101"), json!({"email": "Assistant@Example.com"})).await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    assert_eq!(added.json(), json!({"email": "Assistant@Example.com", "verified": false, "confirmation_email_sent": true}));
    assert_eq!(listed(&mut om, "101").await, json!([{"email": "Assistant@Example.com", "verified": false}]));
    let notice = mails_to(s, "boss@example.com", "email added to your account", 1).await;
    assert!(notice[0].text.contains("Assistant@Example.com"), "the owner is told: {}", notice[0].text);
    let token = confirmation_token(s, "assistant@example.com", 1).await;

    // Opening the link (a person, a mail scanner) shows it and uses nothing.
    let mut assistant = s.browser();
    let page = assistant.get(&format!("/confirm-email/{token}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Assistant@Example.com") && page.body.contains("101@organization.com"), "{}", page.body);
    assert!(page.body.contains(&format!("action=\"/confirm-email/{token}\"")));
    let api = assistant.get(&format!("/api/v1/email-confirmation/{token}")).await.json();
    assert_eq!((api["email"].as_str(), api["verified"].as_bool()), (Some("Assistant@Example.com"), Some(false)), "{api}");
    assert_eq!(listed(&mut om, "101").await[0]["verified"], false, "a GET does not confirm");

    // The form needs its CSRF token, bound to this browser.
    let csrf = csrf_in(&page.body);
    assert_eq!(assistant.form(&format!("/confirm-email/{token}"), &[("csrf_token", "forged")]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(s.browser().form(&format!("/confirm-email/{token}"), &[("csrf_token", &csrf)]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(listed(&mut om, "101").await[0]["verified"], false, "a refused form confirms nothing");

    let done = assistant.form(&format!("/confirm-email/{token}"), &[("csrf_token", &csrf)]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("Email confirmed"), "{}", done.body);
    assert_eq!(listed(&mut om, "101").await, json!([{"email": "Assistant@Example.com", "verified": true}]));

    // Once: the page, the JSON call and another form all refuse the used link.
    let again = assistant.post(&format!("/api/v1/email-confirmation/{token}"), json!({})).await;
    assert_eq!((again.status, again.json()["error"].as_str()), (StatusCode::GONE, Some("link_used")));
    assert_eq!(assistant.form(&format!("/confirm-email/{token}"), &[("csrf_token", &csrf)]).await.status, StatusCode::GONE);
    assert_eq!(assistant.get(&format!("/confirm-email/{token}")).await.status, StatusCode::GONE);
    let kinds = audit_kinds(s).await;
    assert!(kinds.contains(&"additional_email_added".into()) && kinds.contains(&"additional_email_confirmed".into()), "{kinds:?}");

    // The JSON confirmation works the same, and a link expires after 24 hours.
    assert_eq!(om.post(&emails_path("101"), json!({"email": "desk@example.com"})).await.status, StatusCode::CREATED);
    assert_eq!(om.post(&emails_path("101"), json!({"email": "late@example.com"})).await.status, StatusCode::CREATED);
    let desk = confirmation_token(s, "desk@example.com", 1).await;
    let confirmed = s.browser().post(&format!("/api/v1/email-confirmation/{desk}"), json!({})).await;
    assert_eq!((confirmed.status, confirmed.json()["verified"].as_bool()), (StatusCode::OK, Some(true)), "{}", confirmed.body);
    let late = confirmation_token(s, "late@example.com", 1).await;
    s.clock.advance(time::Duration::hours(24));
    let expired = s.browser().post(&format!("/api/v1/email-confirmation/{late}"), json!({})).await;
    assert_eq!((expired.status, expired.json()["error"].as_str()), (StatusCode::GONE, Some("link_expired")));
}

async fn removing_an_email_kills_its_pending_link(s: &TestServer) {
    let mut om = s.signed_in_office_manager(DOMAIN).await;
    s.signed_in_member(DOMAIN, "101", "boss@example.com", Role::User).await;
    assert_eq!(om.post(&emails_path("101"), json!({"email": "assistant@example.com"})).await.status, StatusCode::CREATED);
    let old = confirmation_token(s, "assistant@example.com", 1).await;

    let missing = om.send(Method::DELETE, &format!("{}/nobody@example.com", emails_path("101")), None).await;
    assert_eq!((missing.status, missing.json()["error"].as_str()), (StatusCode::NOT_FOUND, Some("email_not_found")));
    let removed = om.send(Method::DELETE, &format!("{}/ASSISTANT@example.com", emails_path("101")), None).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.body);
    assert_eq!(listed(&mut om, "101").await, json!([]));
    assert_eq!(mails_to(s, "boss@example.com", "email removed from your account", 1).await.len(), 1, "the owner is told");
    assert!(audit_kinds(s).await.contains(&"additional_email_removed".into()));

    let dead = s.browser().post(&format!("/api/v1/email-confirmation/{old}"), json!({})).await;
    assert_eq!((dead.status, dead.json()["error"].as_str()), (StatusCode::GONE, Some("link_replaced")), "{}", dead.body);
    assert_eq!(s.browser().get(&format!("/confirm-email/{old}")).await.status, StatusCode::GONE);

    // Added again, the address gets a new link; the old one stays dead.
    assert_eq!(om.post(&emails_path("101"), json!({"email": "assistant@example.com"})).await.status, StatusCode::CREATED);
    let new = confirmation_token(s, "assistant@example.com", 2).await;
    assert_ne!(new, old);
    assert_eq!(s.browser().post(&format!("/api/v1/email-confirmation/{old}"), json!({})).await.status, StatusCode::GONE);
    assert_eq!(listed(&mut om, "101").await[0]["verified"], false);
    assert_eq!(s.browser().post(&format!("/api/v1/email-confirmation/{new}"), json!({})).await.status, StatusCode::OK);
    assert_eq!(listed(&mut om, "101").await[0]["verified"], true);
}

async fn bad_input_is_refused_and_nothing_is_written(s: &TestServer) {
    let mut om = s.signed_in_office_manager(DOMAIN).await;
    s.signed_in_member(DOMAIN, "101", "boss@example.com", Role::User).await;
    assert_eq!(om.post(&emails_path("101"), json!({"email": "assistant@example.com"})).await.status, StatusCode::CREATED);
    let before = audit_kinds(s).await.len();

    let malformed = om.post(&emails_path("101"), json!({"email": "not an email"})).await;
    assert_eq!(malformed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!malformed.json()["fields"]["email"][0].as_str().unwrap().is_empty(), "{}", malformed.body);
    for duplicate in ["assistant@example.com", "ASSISTANT@Example.com", "Boss@example.com"] {
        let refused = om.post(&emails_path("101"), json!({"email": duplicate})).await;
        assert_eq!((refused.status, refused.json()["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("email_already_added")), "{duplicate}");
        assert!(refused.json()["message"].as_str().unwrap().contains("101@organization.com already has"), "{}", refused.body);
    }
    let extra_field = om.post(&emails_path("101"), json!({"email": "x@example.com", "verified": true})).await;
    assert_eq!(extra_field.status, StatusCode::UNPROCESSABLE_ENTITY, "nobody marks an address verified by saying so");
    assert_eq!(om.post(&emails_path("999"), json!({"email": "x@example.com"})).await.status, StatusCode::NOT_FOUND);

    assert_eq!(listed(&mut om, "101").await, json!([{"email": "assistant@example.com", "verified": false}]));
    assert_eq!(audit_kinds(s).await.len(), before, "no audit entry for a refused request");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mails_to(s, "assistant@example.com", "confirm", 1).await.len(), 1, "no email for a refused request");
    assert_eq!(mails_to(s, "x@example.com", "confirm", 0).await.len(), 0);

    for token in ["unknown-token", "a".repeat(500).as_str()] {
        let a = s.browser().post(&format!("/api/v1/email-confirmation/{token}"), json!({})).await;
        assert_eq!((a.status, a.json()["error"].as_str()), (StatusCode::NOT_FOUND, Some("link_not_found")));
        assert_eq!(s.browser().get(&format!("/confirm-email/{token}")).await.status, StatusCode::NOT_FOUND);
    }
    // A welcome link is not a confirmation link.
    let created = s.app.create_user(DOMAIN, "102", "new@example.com", Role::User, Actor::Operator, &Default::default()).await.unwrap();
    let welcome = token_of(&created.complete_setup_url);
    assert_eq!(s.browser().post(&format!("/api/v1/email-confirmation/{welcome}"), json!({})).await.status, StatusCode::NOT_FOUND);
}

async fn only_the_office_manager_of_the_company_changes_emails(s: &TestServer) {
    let mut om = s.signed_in_office_manager(DOMAIN).await;
    s.signed_in_member(DOMAIN, "101", "boss@example.com", Role::User).await;
    let mut supervisor = s.signed_in_member(DOMAIN, "102", "sup@example.com", Role::Supervisor).await;
    let mut user = s.signed_in_member(DOMAIN, "103", "user@example.com", Role::User).await;
    let mut stranger = s.signed_in_office_manager("other.org").await;
    let body = json!({"email": "x@example.com"});
    let one = format!("{}/boss@example.com", emails_path("101"));
    let reads = [emails_path("101"), format!("/api/v1/companies/{DOMAIN}/sso"), format!("/api/v1/companies/{DOMAIN}/email-review")];

    for path in &reads {
        assert_eq!(stranger.get(path).await.status, StatusCode::NOT_FOUND, "another company's office manager: {path}");
        assert_eq!(user.get(path).await.status, StatusCode::NOT_FOUND, "a user: {path}");
        assert_eq!(supervisor.get(path).await.status, StatusCode::OK, "a supervisor reads: {path}");
        assert_eq!(om.get(path).await.status, StatusCode::OK, "{path}");
    }
    assert_eq!(stranger.post(&emails_path("101"), body.clone()).await.status, StatusCode::NOT_FOUND);
    assert_eq!(stranger.send(Method::DELETE, &one, None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(stranger.send(Method::PUT, &format!("/api/v1/companies/{DOMAIN}/sso"), Some(json!({"mfa_sufficient": []}))).await.status, StatusCode::NOT_FOUND);
    // A supervisor reads but cannot change (403); a user has no office manager endpoint at all (404).
    for (who, b, status) in [("supervisor", &mut supervisor, StatusCode::FORBIDDEN), ("user", &mut user, StatusCode::NOT_FOUND)] {
        assert_eq!(b.post(&emails_path("101"), body.clone()).await.status, status, "{who}");
        assert_eq!(b.send(Method::DELETE, &one, None).await.status, status, "{who}");
        assert_eq!(b.send(Method::PUT, &format!("/api/v1/companies/{DOMAIN}/sso"), Some(json!({"mfa_sufficient": []}))).await.status, status, "{who}");
    }
    assert_eq!(s.browser().get(&emails_path("101")).await.status, StatusCode::UNAUTHORIZED);
    om.csrf = Some("forged".into());
    let forged = om.post(&emails_path("101"), body.clone()).await;
    assert_eq!((forged.status, forged.json()["error"].as_str()), (StatusCode::FORBIDDEN, Some("csrf_failed")));
    assert_eq!(listed(&mut supervisor, "101").await, json!([]), "nothing was written");
    assert_eq!(mails_to(s, "x@example.com", "confirm", 0).await.len(), 0);
}

async fn the_mfa_setting_is_a_subset_of_the_enabled_providers(s: &TestServer) {
    let mut om = s.signed_in_office_manager(DOMAIN).await;
    let mut supervisor = s.signed_in_member(DOMAIN, "102", "sup@example.com", Role::Supervisor).await;
    let path = format!("/api/v1/companies/{DOMAIN}/sso");
    assert_eq!(om.get(&path).await.json(), json!({"enabled": false, "providers": [], "mfa_sufficient": []}));
    let off = om.send(Method::PUT, &path, Some(json!({"mfa_sufficient": ["google"]}))).await;
    assert_eq!((off.status, off.json()["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("provider_not_enabled")), "{}", off.body);

    s.app.set_sso_feature(DOMAIN, true, &[Provider::Google], Actor::Operator, &Default::default()).await.unwrap();
    let microsoft = om.send(Method::PUT, &path, Some(json!({"mfa_sufficient": ["google", "microsoft"]}))).await;
    assert_eq!(microsoft.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(microsoft.json()["message"].as_str().unwrap().contains("Office 365 is not enabled"), "{}", microsoft.body);
    let unknown = om.send(Method::PUT, &path, Some(json!({"mfa_sufficient": ["okta"]}))).await;
    assert_eq!(unknown.json()["error"], "unknown_provider");
    let providers = om.send(Method::PUT, &path, Some(json!({"mfa_sufficient": [], "providers": ["microsoft"]}))).await;
    assert_eq!(providers.status, StatusCode::UNPROCESSABLE_ENTITY, "providers stay the operator's");
    assert!(!audit_kinds(s).await.contains(&"sso_policy_changed".into()), "refusals change nothing");

    let set = om.send(Method::PUT, &path, Some(json!({"mfa_sufficient": ["google"]}))).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    let expected = json!({"enabled": true, "providers": ["google"], "mfa_sufficient": ["google"]});
    assert_eq!(set.json(), expected);
    assert_eq!(supervisor.get(&path).await.json(), expected, "supervisors read it");
    let company = s.app.store.company_by_domain(DOMAIN).await.unwrap().unwrap();
    assert_eq!(s.app.store.sso_settings(company.id).await.unwrap().mfa_sufficient, vec![Provider::Google]);
    assert!(audit_kinds(s).await.contains(&"sso_policy_changed".into()));

    let doc = s.browser().get("/api/openapi.json").await.json();
    for p in ["/api/v1/companies/{domain}/sso", "/api/v1/companies/{domain}/email-review", "/api/v1/email-confirmation/{token}",
        "/api/v1/companies/{domain}/users/{extension}/emails", "/api/v1/companies/{domain}/users/{extension}/emails/{email}"] {
        assert!(doc["paths"][p].is_object(), "{p} is in the OpenAPI document");
    }
}

/// Adds `email` to `ext` and, when `confirm`, uses its link.
async fn additional(s: &TestServer, om: &mut Browser, ext: &str, email: &str, confirm: bool) {
    assert_eq!(om.post(&emails_path(ext), json!({"email": email})).await.status, StatusCode::CREATED);
    if confirm {
        let token = confirmation_token(s, email, 1).await;
        assert_eq!(s.browser().post(&format!("/api/v1/email-confirmation/{token}"), json!({})).await.status, StatusCode::OK);
    }
}

fn involved(ext: &str, role: &str, can_sign_in: bool) -> Value {
    json!({"login_name": format!("{ext}@{DOMAIN}"), "extension": ext, "role": role, "can_sign_in": can_sign_in})
}

async fn the_email_review_lists_each_finding_with_its_fix(s: &TestServer) {
    let mut om = s.signed_in_office_manager(DOMAIN).await;
    s.signed_in_member(DOMAIN, "101", "front@example.com", Role::User).await;
    s.signed_in_member(DOMAIN, "102", "Front@Example.com", Role::Supervisor).await;
    s.signed_in_member(DOMAIN, "103", "boss@example.com", Role::User).await;
    s.app.create_user(DOMAIN, "104", "desk@example.com", Role::User, Actor::Operator, &Default::default()).await.unwrap();
    s.signed_in_office_manager("other.org").await;
    s.signed_in_member("other.org", "101", "front@example.com", Role::User).await;
    additional(s, &mut om, "103", "assistant@example.com", true).await;
    additional(s, &mut om, "103", "desk@example.com", false).await;

    let path = format!("/api/v1/companies/{DOMAIN}/email-review");
    let review = om.get(&path).await.json();
    let fix = |k: FindingKind| k.fix();
    let findings = json!([
        {"kind": "shared_email", "emails": ["desk@example.com"], "can_sign_in": false,
         "accounts": [involved("103", "user", false), involved("104", "user", false)], "fix": fix(FindingKind::SharedEmail)},
        {"kind": "shared_email", "emails": ["front@example.com"], "can_sign_in": true,
         "accounts": [involved("101", "user", true), involved("102", "supervisor", true)], "fix": fix(FindingKind::SharedEmail)},
        {"kind": "several_sso_emails", "emails": ["assistant@example.com", "boss@example.com"], "can_sign_in": true,
         "accounts": [involved("103", "user", true)], "fix": fix(FindingKind::SeveralSsoEmails)},
        {"kind": "additional_email_can_sign_in", "emails": ["assistant@example.com"], "can_sign_in": true,
         "accounts": [involved("103", "user", true)], "fix": fix(FindingKind::AdditionalEmailCanSignIn)},
    ]);
    assert_eq!(review, json!({"sso_enabled": false, "findings": findings}), "another company's front@ is not this company's business");

    s.app.set_sso_feature(DOMAIN, true, &[], Actor::Operator, &Default::default()).await.unwrap();
    assert_eq!(om.get(&path).await.json()["sso_enabled"], true);
    // Removing the voicemail address is the fix: its findings go.
    assert_eq!(om.send(Method::DELETE, &format!("{}/assistant@example.com", emails_path("103")), None).await.status, StatusCode::NO_CONTENT);
    let kinds: Vec<Value> = om.get(&path).await.json()["findings"].as_array().unwrap().iter().map(|f| f["kind"].clone()).collect();
    assert_eq!(kinds, vec![json!("shared_email"), json!("shared_email")]);
}
