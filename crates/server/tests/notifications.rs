//! Every email of C9, driven through the JSON API on SQLite and PostgreSQL and read back from a
//! real SMTP server: the welcome, reset, forgot-login-name and code emails, and each security
//! notification (password and PIN changed, a method added and removed, new recovery codes, a
//! recovery code used, the office manager's reset, a single sign-on link removed). Each must
//! arrive at the designated email with an HTML and a plain-text part that both name the company.

#[macro_use]
#[path = "support/server.rs"]
mod server;
#[path = "support/smtp.rs"]
mod smtp;
#[path = "support/two_factor.rs"]
mod two_factor;

use std::time::Duration as StdDuration;

use latchkey_server::app::Actor;
use reqwest::{Method, StatusCode};
use serde_json::json;
use server::{Backend, TestServer};
use smtp::ReceivedMail;
use time::Duration;
use two_factor::{enrol_totp, oathtool, second_factor_flow, sso_link, user_with_2fa_feature, verify};

on_both_stores!(every_notification_has_both_parts_and_the_company_name);

const COMPANY: &str = "Organization Inc.";

/// The emails of C9, each by a phrase of its subject (any case).
const EXPECTED: &[(&str, &str)] = &[
    ("welcome", "complete your account setup"),
    ("password changed", "password was changed"),
    ("PIN changed", "voicemail pin was changed"),
    ("method added", "two-factor authentication method added"),
    ("new recovery codes", "new recovery codes"),
    ("recovery code used", "recovery code was used"),
    ("method removed", "two-factor authentication method removed"),
    ("email code", "verification code"),
    ("2FA reset", "two-factor authentication was reset"),
    ("SSO link removed", "single sign-on link removed"),
    ("password reset", "reset your password"),
    ("forgot login name", "login name"),
];

async fn every_notification_has_both_parts_and_the_company_name(s: &TestServer) {
    let mut b = user_with_2fa_feature(s, "101").await;

    ok(&b.post("/api/v1/me/password", json!({"current_password": "Welcome2Sonar", "password": "Welcome3Sonar!", "password_confirmation": "Welcome3Sonar!"})).await);
    ok(&b.post("/api/v1/me/pin", json!({"current_password": "Welcome3Sonar!", "pin": "3691"})).await);
    // Back to the helpers' password, so they can sign in again.
    ok(&b.post("/api/v1/me/password", json!({"current_password": "Welcome3Sonar!", "password": "Welcome2Sonar", "password_confirmation": "Welcome2Sonar"})).await);

    let (secret, codes) = enrol_totp(s, &mut b).await;
    s.clock.advance(Duration::seconds(30));
    let renewed = b.post("/api/v1/me/recovery-codes", json!({"code": oathtool(&secret, s.app.now())})).await;
    ok(&renewed);
    let fresh = renewed.json()["codes"][0].as_str().unwrap().to_owned();
    assert_ne!(fresh, codes[0]);
    let (mut other, flow) = second_factor_flow(s, "101@organization.com").await;
    ok(&verify(&mut other, &flow, "recovery_code", &fresh).await);
    // The app cannot vouch for its own removal: an emailed verification code does.
    let before = s.smtp.messages().await.len();
    ok(&b.send(Method::POST, "/api/v1/me/2fa/verification-code", None).await);
    let mails = s.smtp.wait_for(before + 1, StdDuration::from_secs(10)).await;
    let code = mails.last().and_then(|m| m.text.lines().map(str::trim).find(|l| l.len() == 6 && l.bytes().all(|c| c.is_ascii_digit()))).expect("the code email").to_owned();
    ok(&b.send(Method::DELETE, "/api/v1/me/2fa/totp", Some(json!({"code": code}))).await);
    s.clock.advance(Duration::seconds(30));
    enrol_totp(s, &mut b).await;
    s.app.reset_two_factor("organization.com", "101", Actor::Operator, &Default::default()).await.unwrap();

    let id = sso_link(s, "101@organization.com", latchkey_core::flows::sso::Provider::Google, "g-101", "u101@gmail.example").await;
    let mut again = s.browser();
    assert_eq!(again.sign_in("101@organization.com", "Welcome2Sonar").await.json()["state"], "signed_in");
    assert_eq!(again.send(Method::DELETE, &format!("/api/v1/me/sso-links/{id}"), None).await.status, StatusCode::NO_CONTENT);

    let mut anonymous = s.browser();
    assert_eq!(anonymous.post("/api/v1/password/forgot", json!({"login_name": "101@organization.com"})).await.status, StatusCode::ACCEPTED);
    assert_eq!(anonymous.post("/api/v1/login-name/forgot", json!({"email": "u101@example.com"})).await.status, StatusCode::ACCEPTED);

    let mails = wait_for_all(s).await;
    for (what, phrase) in EXPECTED {
        let mail = mails.iter().find(|m| m.subject.to_lowercase().contains(phrase)).unwrap_or_else(|| {
            panic!("no {what} email ({phrase:?}) among {:?}", mails.iter().map(|m| &m.subject).collect::<Vec<_>>())
        });
        assert_eq!(mail.to, vec!["u101@example.com".to_owned()], "{what} goes to the designated email");
        assert!(mail.text.contains(COMPANY), "{what}: the text part names the company:\n{}", mail.text);
        assert!(mail.html.contains(COMPANY), "{what}: the HTML part names the company:\n{}", mail.html);
        assert!(mail.html.contains("<html") && !mail.text.contains("<html"), "{what}: an HTML part and a plain-text part");
    }
    for mail in &mails {
        assert!(!mail.text.contains(&secret), "no TOTP secret in any email");
    }
}


/// Waits until every expected email arrived (the forgot emails are sent in the background).
async fn wait_for_all(s: &TestServer) -> Vec<ReceivedMail> {
    let deadline = std::time::Instant::now() + StdDuration::from_secs(15);
    loop {
        let mails = s.smtp.messages().await;
        let all = EXPECTED.iter().all(|(_, p)| mails.iter().any(|m| m.subject.to_lowercase().contains(p)));
        if all || std::time::Instant::now() >= deadline {
            return mails;
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
}

#[track_caller]
fn ok(a: &server::Answer) {
    assert!(a.status.is_success(), "{} {}", a.status, a.body);
}
