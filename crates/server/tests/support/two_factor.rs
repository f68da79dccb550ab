//! Helpers for the two-factor HTTP tests: a user of a company with the pilot on, the
//! authenticator app enrolled with `oathtool` codes, and sign-ins that stop at the second factor.
#![allow(dead_code)]

use std::process::{Command, Stdio};

use latchkey_core::flows::sso::Provider;
use latchkey_core::Role;
use latchkey_server::app::Actor;
use reqwest::{Method, StatusCode};
use serde_json::json;
use time::OffsetDateTime;

use crate::server::{self, token_of, Browser, TestServer};

/// A code from `oathtool` for `at`.
pub fn oathtool(secret: &str, at: OffsetDateTime) -> String {
    let out = Command::new("oathtool")
        .args(["--totp", "--base32", "--digits=6", "--time-step-size=30s", &format!("--now=@{}", at.unix_timestamp()), secret])
        .stderr(Stdio::inherit())
        .output()
        .expect("oathtool is installed (Debian package oathtool)");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// An active user of a company with the two-factor pilot on; returns a signed-in browser.
pub async fn user_with_2fa_feature(s: &TestServer, ext: &str) -> Browser {
    if s.app.store.company_by_domain("organization.com").await.unwrap().is_none() {
        s.app.create_company("Organization Inc.", "organization.com").await.unwrap();
        s.app.set_two_factor_feature("organization.com", true, Actor::Operator, &Default::default()).await.unwrap();
    }
    let created = s.app.create_user("organization.com", ext, &format!("u{ext}@example.com"), Role::User, Actor::Operator, &Default::default()).await.unwrap();
    let mut b = s.browser();
    let a = b.post(&format!("/api/v1/activation/{}", token_of(&created.complete_setup_url)), json!({"password": "Welcome2Sonar", "password_confirmation": "Welcome2Sonar", "pin": "2580"})).await;
    assert_eq!(a.status, StatusCode::OK);
    let signed = b.sign_in(&format!("{ext}@organization.com"), "Welcome2Sonar").await;
    assert_eq!(signed.json()["state"], "signed_in");
    b
}

/// Enrols the authenticator app; returns the base32 secret and the recovery codes.
pub async fn enrol_totp(s: &TestServer, b: &mut Browser) -> (String, Vec<String>) {
    let setup = b.send(Method::POST, "/api/v1/me/2fa/totp", None).await;
    assert_eq!(setup.status, StatusCode::OK, "{}", setup.body);
    let setup = setup.json();
    let secret = setup["secret"].as_str().unwrap().to_owned();
    let uri = setup["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/") && uri.contains(&format!("secret={secret}")), "{uri}");
    assert!(setup["qr_svg"].as_str().unwrap().contains("<svg"));
    let code = oathtool(&secret, s.app.now());
    let ok = b.post("/api/v1/me/2fa/totp/confirm", json!({"code": code, "current_password": "Welcome2Sonar"})).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let codes: Vec<String> = ok.json()["recovery_codes"].as_array().expect("recovery codes with the first method").iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    (secret, codes)
}

pub async fn second_factor_flow(s: &TestServer, login: &str) -> (Browser, String) {
    let mut b = s.browser();
    let a = b.sign_in(login, "Welcome2Sonar").await;
    assert_eq!(a.status, StatusCode::OK);
    let body = a.json();
    assert_eq!(body["state"], "second_factor", "{body}");
    assert!(!b.cookies.contains_key("__Host-latchkey_session"), "no session before the second factor");
    (b, body["flow"].as_str().unwrap().to_owned())
}

pub async fn verify(b: &mut Browser, flow: &str, method: &str, code: &str) -> server::Answer {
    b.post(&format!("/api/v1/sign-in/{flow}/verify"), json!({"method": method, "code": code})).await
}


/// Waits up to 10 s for an email whose subject contains `needle` (any case).
pub async fn wait_for_subject(s: &TestServer, needle: &str) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if s.smtp.messages().await.iter().any(|m| m.subject.to_lowercase().contains(needle)) {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Links a provider identity straight in the store (the sign-in trip itself is tested against a
/// real provider in sso_sign_in.rs); returns the link's id.
pub async fn sso_link(s: &TestServer, login: &str, provider: Provider, subject: &str, email: &str) -> i64 {
    let user = s.app.store.user_by_login_name(&latchkey_core::LoginName::parse(login).unwrap()).await.unwrap().unwrap();
    let audit = latchkey_store::AuditEntry {
        company_id: Some(user.company_id),
        actor_user_id: Some(user.id),
        actor_token_id: None,
        target_user_id: Some(user.id),
        kind: "sso_linked",
        detail: String::new(),
        client_ip: None,
        user_agent: None,
        at: s.app.now(),
    };
    s.app.store.add_sso_link(user.id, provider, subject, Some(email), s.app.now(), &audit).await.unwrap();
    s.app.store.sso_links_of_user(user.id).await.unwrap().into_iter().find(|l| l.subject == subject).unwrap().id
}
