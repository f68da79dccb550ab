//! Texted and emailed codes over HTTP on SQLite and PostgreSQL (C6): SMS through a Twilio-style
//! gateway on loopback that records the calls, email through a real SMTP server; the designated
//! email verified first; the send limits; removing a method and new recovery codes after a
//! verification code; codes are single use, replaced by newer ones, and expire.

#[macro_use]
#[path = "support/server.rs"]
mod server;
#[path = "support/sms_gateway.rs"]
mod sms_gateway;
#[path = "support/smtp.rs"]
mod smtp;
#[path = "support/two_factor.rs"]
mod two_factor;

use std::time::Duration as StdDuration;

use latchkey_core::two_factor::{Method as TfMethod, TwoFactorMode};
use latchkey_core::{Email, LoginName, Role};
use latchkey_server::app::Actor;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use server::{csrf_in, token_of, Backend, Browser, TestServer};
use sms_gateway::RecordingGateway;
use time::Duration;
use two_factor::{enrol_totp, oathtool, second_factor_flow, user_with_2fa_feature, verify};

on_both_stores!(with_sms:
    sms_is_enrolled_by_a_texted_code_and_asked_for_at_sign_in,
    a_newer_code_replaces_the_older_and_codes_expire,
    wrong_texted_codes_count_towards_the_lock,
    twenty_racing_uses_of_one_texted_code_succeed_once,
    email_codes_need_the_designated_email_verified_first,
    removing_a_method_asks_for_a_verification_code,
    the_last_method_stays_where_the_company_requires_two_factor,
    new_recovery_codes_replace_the_whole_set,
    codes_are_sent_only_for_the_users_own_allowed_methods,
    a_restricted_session_can_enrol_sms,
    the_second_factor_page_texts_a_code_and_accepts_it,
    the_code_pages_refuse_forms_without_the_csrf_token,
    the_enrolment_page_offers_the_companys_methods_and_enrolling_signs_in,
);

const PHONE: &str = "+1 555 010 4477";

/// The code of the latest text to `to` (E.164), waiting for the `n`th call in all.
async fn texted_code(gateway: &RecordingGateway, n: usize) -> String {
    let calls = gateway.wait_for(n, StdDuration::from_secs(10)).await;
    assert!(calls.len() >= n, "expected {n} texts, got {}", calls.len());
    calls[n - 1].code().expect("a six-digit code in the text")
}

/// Sends with `send` and returns the code of the email it made.
async fn emailed_code(s: &TestServer, send: impl std::future::Future<Output = server::Answer>) -> (server::Answer, String) {
    let before = s.smtp.messages().await.len();
    let answer = send.await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    let mails = s.smtp.wait_for(before + 1, StdDuration::from_secs(10)).await;
    let mail = mails.last().expect("the code email");
    let code = mail
        .text
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 6 && l.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no code line in {}", mail.text))
        .to_owned();
    assert!(mail.html.contains(&code), "the HTML part carries the code too");
    assert!(!mail.subject.contains(&code), "the subject (logged on failure) never carries the code");
    (answer, code)
}

/// Enrols SMS for a signed-in user; returns the recovery codes when it was the first method.
async fn enrol_sms(b: &mut Browser, gateway: &RecordingGateway) -> Option<Vec<String>> {
    let before = gateway.calls().await.len();
    let sent = b.post("/api/v1/me/2fa/sms", json!({"phone": PHONE})).await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.body);
    assert_eq!(sent.json()["sent_to"], "•••• 4477");
    let code = texted_code(gateway, before + 1).await;
    let ok = b.post("/api/v1/me/2fa/sms/confirm", json!({"code": code})).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    ok.json()["recovery_codes"].as_array().map(|a| a.iter().map(|c| c.as_str().unwrap().to_owned()).collect())
}

async fn send_sms(x: &mut Browser, flow: &str) -> server::Answer {
    x.post(&format!("/api/v1/sign-in/{flow}/send"), json!({"method": "sms"})).await
}

async fn start(b: &mut Browser, phone: &str) -> server::Answer {
    b.post("/api/v1/me/2fa/sms", json!({"phone": phone})).await
}

fn error_of(a: &server::Answer) -> (StatusCode, String) {
    (a.status, a.json()["error"].as_str().unwrap_or_default().to_owned())
}

async fn sms_is_enrolled_by_a_texted_code_and_asked_for_at_sign_in(s: &TestServer, gateway: &RecordingGateway) {
    let mut b = user_with_2fa_feature(s, "101").await;
    let bad = b.post("/api/v1/me/2fa/sms", json!({"phone": "555 0104"})).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.json()["fields"]["phone"].is_array(), "{}", bad.body);
    assert!(gateway.calls().await.is_empty(), "nothing texted for a bad number");

    let sent = b.post("/api/v1/me/2fa/sms", json!({"phone": PHONE})).await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.body);
    let calls = gateway.wait_for(1, StdDuration::from_secs(5)).await;
    assert_eq!(calls[0].to, "+15550104477", "sent in E.164");
    assert!(calls[0].body.contains("verify this phone number"), "{}", calls[0].body);
    let code = calls[0].code().unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert_eq!(error_of(&b.post("/api/v1/me/2fa/sms/confirm", json!({"code": wrong})).await), (StatusCode::UNAUTHORIZED, "invalid_code".into()));
    let ok = b.post("/api/v1/me/2fa/sms/confirm", json!({"code": code})).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.json()["recovery_codes"].as_array().map(Vec::len), Some(10), "the first method brings recovery codes");
    let me = b.get("/api/v1/me").await.json();
    assert_eq!(me["second_factors"][0]["method"], "sms");
    assert_eq!(me["second_factors"][0]["detail"], "•••• 4477", "the number is shown masked");

    let (mut x, flow) = second_factor_flow(s, "101@organization.com").await;
    let send = x.post(&format!("/api/v1/sign-in/{flow}/send"), json!({"method": "sms"})).await;
    assert_eq!(send.status, StatusCode::ACCEPTED, "{}", send.body);
    let code = texted_code(gateway, 2).await;
    assert!(gateway.calls().await[1].body.contains("sign-in code"));
    let signed = verify(&mut x, &flow, "sms", &code).await;
    assert_eq!(signed.status, StatusCode::OK, "{}", signed.body);
    assert_eq!(x.get("/api/v1/me").await.status, StatusCode::OK);

    // Single use: the same code on a new sign-in is refused.
    let (mut y, flow2) = second_factor_flow(s, "101@organization.com").await;
    assert_eq!(error_of(&verify(&mut y, &flow2, "sms", &code).await), (StatusCode::UNAUTHORIZED, "code_used".into()));
    let audit = s.app.store.audit_of_company(b_company(s).await, 100).await.unwrap();
    assert!(audit.iter().any(|a| a.kind == "code_sent" && a.detail.contains("4477") && !a.detail.contains("0104477")), "audited, masked");
}

async fn b_company(s: &TestServer) -> i64 {
    s.app.store.company_by_domain("organization.com").await.unwrap().unwrap().id
}

async fn a_newer_code_replaces_the_older_and_codes_expire(s: &TestServer, gateway: &RecordingGateway) {
    let mut b = user_with_2fa_feature(s, "101").await;
    enrol_sms(&mut b, gateway).await;
    let (mut x, flow) = second_factor_flow(s, "101@organization.com").await;
    assert_eq!(send_sms(&mut x, &flow).await.status, StatusCode::ACCEPTED);
    let first = texted_code(gateway, 2).await;
    assert_eq!(send_sms(&mut x, &flow).await.status, StatusCode::ACCEPTED);
    let second = texted_code(gateway, 3).await;
    if first != second {
        assert_eq!(verify(&mut x, &flow, "sms", &first).await.status, StatusCode::UNAUTHORIZED, "the newer code replaced it");
    }
    // Ten minutes later the live code has expired.
    s.clock.advance(Duration::minutes(10));
    let (mut y, flow2) = second_factor_flow(s, "101@organization.com").await;
    assert_eq!(error_of(&verify(&mut y, &flow2, "sms", &second).await), (StatusCode::UNAUTHORIZED, "code_expired".into()));
    assert_eq!(send_sms(&mut y, &flow2).await.status, StatusCode::ACCEPTED);
    let fresh = texted_code(gateway, 4).await;
    assert_eq!(verify(&mut y, &flow2, "sms", &fresh).await.status, StatusCode::OK);
}

async fn wrong_texted_codes_count_towards_the_lock(s: &TestServer, gateway: &RecordingGateway) {
    let mut b = user_with_2fa_feature(s, "101").await;
    enrol_sms(&mut b, gateway).await;
    let (mut x, flow) = second_factor_flow(s, "101@organization.com").await;
    x.post(&format!("/api/v1/sign-in/{flow}/send"), json!({"method": "sms"})).await;
    let code = texted_code(gateway, 2).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..4 {
        assert_eq!(verify(&mut x, &flow, "sms", wrong).await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(verify(&mut x, &flow, "sms", wrong).await.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(verify(&mut x, &flow, "sms", &code).await.status, StatusCode::TOO_MANY_REQUESTS, "the right code is refused during the lock");
    let locked_send = x.post(&format!("/api/v1/sign-in/{flow}/send"), json!({"method": "sms"})).await;
    assert_eq!(locked_send.status, StatusCode::TOO_MANY_REQUESTS, "no texts while locked");
    assert_eq!(gateway.calls().await.len(), 2);
    // A malformed code is a typo, not a guess: 422, and it does not count.
    s.clock.advance(Duration::minutes(15));
    let (mut y, flow2) = second_factor_flow(s, "101@organization.com").await;
    y.post(&format!("/api/v1/sign-in/{flow2}/send"), json!({"method": "sms"})).await;
    let code = texted_code(gateway, 3).await;
    for _ in 0..6 {
        assert_eq!(verify(&mut y, &flow2, "sms", "12ab").await.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    assert_eq!(verify(&mut y, &flow2, "sms", &code).await.status, StatusCode::OK);
}

async fn twenty_racing_uses_of_one_texted_code_succeed_once(s: &TestServer, gateway: &RecordingGateway) {
    let mut b = user_with_2fa_feature(s, "101").await;
    enrol_sms(&mut b, gateway).await;
    let mut flows = Vec::new();
    for _ in 0..20 {
        flows.push(second_factor_flow(s, "101@organization.com").await);
    }
    let (x, flow) = &mut flows[0];
    x.post(&format!("/api/v1/sign-in/{flow}/send"), json!({"method": "sms"})).await;
    let code = texted_code(gateway, 2).await;
    let tasks: Vec<_> = flows
        .into_iter()
        .map(|(mut br, flow)| {
            let code = code.clone();
            tokio::spawn(async move { verify(&mut br, &flow, "sms", &code).await.status })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let status = t.await.unwrap();
        assert!(matches!(status, StatusCode::OK | StatusCode::UNAUTHORIZED), "{status}");
        ok += usize::from(status == StatusCode::OK);
    }
    assert_eq!(ok, 1, "one code, one sign-in");
}

async fn email_codes_need_the_designated_email_verified_first(s: &TestServer, _gateway: &RecordingGateway) {
    let mut b = user_with_2fa_feature(s, "101").await;
    assert_eq!(b.get("/api/v1/me").await.json()["email_verified"], true, "the welcome link verified it");
    let already = b.send(Method::POST, "/api/v1/me/email-verification", None).await;
    assert_eq!(error_of(&already), (StatusCode::CONFLICT, "email_already_verified".into()));

    // The designated email changes (an office manager's action): it is unverified again.
    let user = s.app.store.user_by_login_name(&LoginName::parse("101@organization.com").unwrap()).await.unwrap().unwrap();
    let audit = latchkey_store::AuditEntry {
        company_id: Some(user.company_id),
        actor_user_id: None,
        actor_token_id: None,
        target_user_id: Some(user.id),
        kind: "designated_email_changed",
        detail: String::new(),
        client_ip: None,
        user_agent: None,
        at: s.app.now(),
    };
    s.app.store.change_designated_email(user.id, &Email::parse("new101@example.com").unwrap(), &audit).await.unwrap();
    assert_eq!(b.get("/api/v1/me").await.json()["email_verified"], false);
    let refused = b.send(Method::POST, "/api/v1/me/2fa/email", None).await;
    assert_eq!(error_of(&refused), (StatusCode::CONFLICT, "email_not_verified".into()));

    let (sent, code) = emailed_code(s, b.send(Method::POST, "/api/v1/me/email-verification", None)).await;
    assert_eq!(sent.json()["sent_to"], "new101@example.com");
    let mails = s.smtp.messages().await;
    assert_eq!(mails.last().unwrap().to, vec!["new101@example.com".to_owned()]);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert_eq!(b.post("/api/v1/me/email-verification/confirm", json!({"code": wrong})).await.status, StatusCode::UNAUTHORIZED);
    let ok = b.post("/api/v1/me/email-verification/confirm", json!({"code": code})).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(b.get("/api/v1/me").await.json()["email_verified"], true);

    let (_, code) = emailed_code(s, b.send(Method::POST, "/api/v1/me/2fa/email", None)).await;
    let enrolled = b.post("/api/v1/me/2fa/email/confirm", json!({"code": code})).await;
    assert_eq!(enrolled.status, StatusCode::OK, "{}", enrolled.body);
    assert_eq!(enrolled.json()["recovery_codes"].as_array().map(Vec::len), Some(10));

    let (mut x, flow) = second_factor_flow(s, "101@organization.com").await;
    let (sent, code) = emailed_code(s, x.post(&format!("/api/v1/sign-in/{flow}/send"), json!({"method": "email"}))).await;
    assert_eq!(sent.json()["sent_to"], "new101@example.com");
    assert_eq!(verify(&mut x, &flow, "email", &code).await.status, StatusCode::OK);
}

async fn removing_a_method_asks_for_a_verification_code(s: &TestServer, gateway: &RecordingGateway) {
    let mut b = user_with_2fa_feature(s, "101").await;
    let (secret, _) = enrol_totp(s, &mut b).await;
    assert!(enrol_sms(&mut b, gateway).await.is_none(), "recovery codes come with the first method only");
    assert_eq!(b.send(Method::PUT, "/api/v1/me/2fa/preferred", Some(json!({"method": "sms"}))).await.status, StatusCode::OK);

    let none = b.send(Method::DELETE, "/api/v1/me/2fa/sms", Some(json!({"code": "123456"}))).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED, "no code was sent and 123456 is not the app's");
    assert_eq!(b.send(Method::DELETE, "/api/v1/me/2fa/fax", Some(json!({"code": "123456"}))).await.status, StatusCode::NOT_FOUND);

    // A code from the app, which stays, confirms removing SMS.
    s.clock.advance(Duration::seconds(30));
    let removed = b.send(Method::DELETE, "/api/v1/me/2fa/sms", Some(json!({"code": oathtool(&secret, s.app.now())}))).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.body);
    let me = b.get("/api/v1/me").await.json();
    assert_eq!(me["second_factors"].as_array().unwrap().len(), 1);
    assert!(me["preferred_method"].is_null(), "the preference went with the method");
    assert_eq!(me["recovery_codes_left"], 10);

    // The app cannot vouch for its own removal; the emailed verification code can.
    s.clock.advance(Duration::seconds(30));
    let own = b.send(Method::DELETE, "/api/v1/me/2fa/totp", Some(json!({"code": oathtool(&secret, s.app.now())}))).await;
    assert_eq!(own.status, StatusCode::UNAUTHORIZED);
    let (sent, code) = emailed_code(s, b.send(Method::POST, "/api/v1/me/2fa/verification-code", None)).await;
    assert_eq!(sent.json()["sent_to"], "u101@example.com");
    let off = b.send(Method::DELETE, "/api/v1/me/2fa/totp", Some(json!({"code": code}))).await;
    assert_eq!(off.status, StatusCode::NO_CONTENT, "{}", off.body);
    let me = b.get("/api/v1/me").await.json();
    assert_eq!(me["second_factors"], json!([]));
    assert!(me["recovery_codes_left"].is_null(), "the recovery codes went with the last method");
    assert_eq!(s.browser().sign_in("101@organization.com", "Welcome2Sonar").await.json()["state"], "signed_in");
    let mails = s.smtp.messages().await;
    assert!(mails.iter().any(|m| m.subject.to_lowercase().contains("method removed") && m.text.contains("turned off")), "the user is told");
}

async fn the_last_method_stays_where_the_company_requires_two_factor(s: &TestServer, gateway: &RecordingGateway) {
    let mut b = user_with_2fa_feature(s, "101").await;
    enrol_sms(&mut b, gateway).await;
    s.app
        .set_two_factor_policy("organization.com", TwoFactorMode::Required, &[TfMethod::Totp, TfMethod::Sms], None, false, Actor::Operator, &Default::default())
        .await
        .unwrap();
    let (_, code) = emailed_code(s, b.send(Method::POST, "/api/v1/me/2fa/verification-code", None)).await;
    let refused = b.send(Method::DELETE, "/api/v1/me/2fa/sms", Some(json!({"code": code}))).await;
    assert_eq!(error_of(&refused), (StatusCode::CONFLICT, "required_by_company".into()));
    assert_eq!(b.get("/api/v1/me").await.json()["second_factors"].as_array().unwrap().len(), 1, "nothing changed");
    // A texted verification code cannot vouch for removing SMS itself, even with another method.
    let (secret, _) = {
        let setup = b.send(Method::POST, "/api/v1/me/2fa/totp", None).await.json();
        let secret = setup["secret"].as_str().unwrap().to_owned();
        let ok = b.post("/api/v1/me/2fa/totp/confirm", json!({"code": oathtool(&secret, s.app.now()), "current_password": "Welcome2Sonar"})).await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
        (secret, ())
    };
    let texted = b.post("/api/v1/me/2fa/verification-code", json!({"via": "sms"})).await;
    assert_eq!(texted.status, StatusCode::ACCEPTED, "{}", texted.body);
    let code = texted_code(gateway, 2).await;
    assert_eq!(b.send(Method::DELETE, "/api/v1/me/2fa/sms", Some(json!({"code": code}))).await.status, StatusCode::UNAUTHORIZED);
    s.clock.advance(Duration::seconds(30));
    let ok = b.send(Method::DELETE, "/api/v1/me/2fa/sms", Some(json!({"code": oathtool(&secret, s.app.now())}))).await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "with another method left, SMS may go");
}

async fn new_recovery_codes_replace_the_whole_set(s: &TestServer, _gateway: &RecordingGateway) {
    let mut b = user_with_2fa_feature(s, "101").await;
    let (secret, old) = enrol_totp(s, &mut b).await;
    let wrong = b.post("/api/v1/me/recovery-codes", json!({"code": "000000"})).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let typo = b.post("/api/v1/me/recovery-codes", json!({"code": "12"})).await;
    assert_eq!(typo.status, StatusCode::UNPROCESSABLE_ENTITY);
    s.clock.advance(Duration::seconds(30));
    let new = b.post("/api/v1/me/recovery-codes", json!({"code": oathtool(&secret, s.app.now())})).await;
    assert_eq!(new.status, StatusCode::OK, "{}", new.body);
    let new: Vec<String> = new.json()["codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    assert_eq!(new.len(), 10);
    assert!(new.iter().all(|c| !old.contains(c)));
    let (mut x, flow) = second_factor_flow(s, "101@organization.com").await;
    assert_eq!(verify(&mut x, &flow, "recovery_code", &old[0]).await.status, StatusCode::UNAUTHORIZED, "the old set is gone");
    let ok = verify(&mut x, &flow, "recovery_code", &new[0]).await;
    assert_eq!((ok.status, ok.json()["recovery_codes_left"].clone()), (StatusCode::OK, json!(9)));
    let mails = s.smtp.messages().await;
    assert!(mails.iter().any(|m| m.subject.to_lowercase().contains("new recovery codes")), "the user is told");
    // Without any method there are no recovery codes to renew.
    let mut other = user_with_2fa_feature(s, "102").await;
    let (_, code) = emailed_code(s, other.send(Method::POST, "/api/v1/me/2fa/verification-code", None)).await;
    assert_eq!(error_of(&other.post("/api/v1/me/recovery-codes", json!({"code": code})).await), (StatusCode::CONFLICT, "no_two_factor".into()));
}

async fn codes_are_sent_only_for_the_users_own_allowed_methods(s: &TestServer, gateway: &RecordingGateway) {
    let mut b = user_with_2fa_feature(s, "101").await;
    enrol_totp(s, &mut b).await;
    let (mut x, flow) = second_factor_flow(s, "101@organization.com").await;
    let sms = x.post(&format!("/api/v1/sign-in/{flow}/send"), json!({"method": "sms"})).await;
    assert_eq!(error_of(&sms), (StatusCode::UNPROCESSABLE_ENTITY, "method_unavailable".into()));
    assert_eq!(x.post(&format!("/api/v1/sign-in/{flow}/send"), json!({"method": "totp"})).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_of(&verify(&mut x, &flow, "email", "123456").await), (StatusCode::UNPROCESSABLE_ENTITY, "method_unavailable".into()));
    assert_eq!(x.post("/api/v1/sign-in/not-a-flow/send", json!({"method": "sms"})).await.status, StatusCode::GONE);
    assert!(gateway.calls().await.is_empty());

    // A method the company stops allowing is no longer offered or accepted.
    enrol_sms(&mut b, gateway).await;
    s.app
        .set_two_factor_policy("organization.com", TwoFactorMode::Optional, &[TfMethod::Totp], None, false, Actor::Operator, &Default::default())
        .await
        .unwrap();
    let (mut y, flow2) = second_factor_flow(s, "101@organization.com").await;
    let a = y.post(&format!("/api/v1/sign-in/{flow2}/send"), json!({"method": "sms"})).await;
    assert_eq!(error_of(&a), (StatusCode::UNPROCESSABLE_ENTITY, "method_unavailable".into()));
    assert_eq!(s.browser().sign_in("101@organization.com", "Welcome2Sonar").await.json()["methods"], json!(["totp"]));
}

async fn a_restricted_session_can_enrol_sms(s: &TestServer, gateway: &RecordingGateway) {
    s.app.create_company("Organization Inc.", "organization.com").await.unwrap();
    s.app.set_two_factor_feature("organization.com", true, Actor::Operator, &Default::default()).await.unwrap();
    s.app
        .set_two_factor_policy("organization.com", TwoFactorMode::Required, &[TfMethod::Sms], Some(TfMethod::Sms), true, Actor::Operator, &Default::default())
        .await
        .unwrap();
    let created = s.app.create_user("organization.com", "101", "u101@example.com", Role::User, Actor::Operator, &Default::default()).await.unwrap();
    let mut b = s.browser();
    b.post(&format!("/api/v1/activation/{}", token_of(&created.complete_setup_url)), json!({"password": "Welcome2Sonar", "password_confirmation": "Welcome2Sonar", "pin": "2580"})).await;
    let a: Value = b.sign_in("101@organization.com", "Welcome2Sonar").await.json();
    assert_eq!(a["state"], "enrollment_required", "{a}");
    assert_eq!(error_of(&b.send(Method::POST, "/api/v1/me/2fa/verification-code", None).await).1, "enrollment_required", "only enrolment");
    enrol_sms(&mut b, gateway).await;
    assert_eq!(b.get("/api/v1/me").await.status, StatusCode::OK, "enrolling completed the sign-in");
}

/// The send limits per user, per number and per company hold (and are counted in the store).
async fn send_limits(backend: Backend) {
    let gateway = RecordingGateway::start().await;
    let config = gateway.config();
    let Some(s) = TestServer::start_with(backend, "send_limits", move |c| {
        c.sms = Some(config);
        c.two_factor.sends_per_user_per_hour = 3;
        c.two_factor.sends_per_number_per_hour = 2;
        c.two_factor.sends_per_company_per_hour = 4;
    })
    .await
    else {
        return;
    };
    let mut a = user_with_2fa_feature(&s, "101").await;
    let mut b = user_with_2fa_feature(&s, "102").await;
    let mut c = user_with_2fa_feature(&s, "103").await;
    assert_eq!(start(&mut a, "+15550100001").await.status, StatusCode::ACCEPTED);
    assert_eq!(start(&mut a, "+15550100001").await.status, StatusCode::ACCEPTED);
    let number = start(&mut a, "+15550100001").await;
    assert_eq!(number.status, StatusCode::TOO_MANY_REQUESTS, "per number");
    let secs: u64 = number.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&secs), "{secs}");
    assert_eq!(start(&mut b, "+15550100001").await.status, StatusCode::TOO_MANY_REQUESTS, "per number, whoever asks");
    assert_eq!(start(&mut b, "+15550100002").await.status, StatusCode::ACCEPTED);
    assert_eq!(start(&mut b, "+15550100003").await.status, StatusCode::ACCEPTED);
    assert_eq!(start(&mut c, "+15550100004").await.status, StatusCode::TOO_MANY_REQUESTS, "per company");
    assert_eq!(start(&mut a, "+15550100005").await.status, StatusCode::TOO_MANY_REQUESTS, "per user");
    assert_eq!(gateway.calls().await.len(), 4, "only the allowed sends reached the gateway");
    // The next hour opens new windows.
    s.clock.advance(Duration::hours(1));
    let mut c = s.browser();
    c.sign_in("103@organization.com", "Welcome2Sonar").await;
    assert_eq!(start(&mut c, "+15550100004").await.status, StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_limits_on_sqlite() {
    send_limits(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_limits_on_postgres() {
    send_limits(Backend::Postgres).await
}

async fn the_second_factor_page_texts_a_code_and_accepts_it(s: &TestServer, gateway: &RecordingGateway) {
    let mut b = user_with_2fa_feature(s, "101").await;
    enrol_sms(&mut b, gateway).await;
    let mut page = s.browser();
    let csrf = csrf_in(&page.get("/sign-in").await.body);
    let signed = page.form("/sign-in", &[("csrf_token", &csrf), ("login_name", "101@organization.com"), ("password", "Welcome2Sonar")]).await;
    assert_eq!((signed.status, signed.headers["location"].to_str().unwrap()), (StatusCode::SEE_OTHER, "/sign-in/second-factor"));
    let challenge = page.get("/sign-in/second-factor").await;
    assert!(challenge.body.contains("Text me a code"), "{}", challenge.body);
    let csrf = csrf_in(&challenge.body);
    let sent = page.form("/sign-in/second-factor/send", &[("csrf_token", &csrf), ("method", "sms")]).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    assert!(sent.body.contains("We sent a code to •••• 4477"), "{}", sent.body);
    let code = texted_code(gateway, 2).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let refused = page.form("/sign-in/second-factor", &[("csrf_token", &csrf), ("method", "sms"), ("code", wrong)]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.body.contains("not right"), "{}", refused.body);
    let ok = page.form("/sign-in/second-factor", &[("csrf_token", &csrf), ("method", "sms"), ("code", &code)]).await;
    assert_eq!((ok.status, ok.headers["location"].to_str().unwrap()), (StatusCode::SEE_OTHER, "/account"));
    let account = page.get("/account").await;
    assert!(account.body.contains("•••• 4477") && account.body.contains("Get new recovery codes"), "{}", account.body);
}

async fn the_code_pages_refuse_forms_without_the_csrf_token(s: &TestServer, gateway: &RecordingGateway) {
    let mut b = user_with_2fa_feature(s, "101").await;
    enrol_totp(s, &mut b).await;
    let mails_before = s.smtp.messages().await.len();
    let forged = "forged";
    let forms: [(&str, Vec<(&str, &str)>); 9] = [
        ("/account/email-verification", vec![]),
        ("/account/email-verification/confirm", vec![("code", "123456")]),
        ("/account/two-factor/sms", vec![("phone", PHONE)]),
        ("/account/two-factor/email", vec![]),
        ("/account/two-factor/remove/totp/send", vec![]),
        ("/account/two-factor/remove/totp", vec![("code", "123456")]),
        ("/account/recovery-codes/send", vec![]),
        ("/account/recovery-codes", vec![("code", "123456")]),
        ("/account/two-factor/preferred", vec![("method", "totp")]),
    ];
    for (path, fields) in forms {
        let mut all = vec![("csrf_token", forged)];
        all.extend(fields);
        let a = b.form(path, &all).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{path} took a forged CSRF token");
    }
    assert!(gateway.calls().await.is_empty(), "nothing texted");
    assert_eq!(s.smtp.messages().await.len(), mails_before, "nothing emailed");
    assert_eq!(b.get("/api/v1/me").await.json()["second_factors"].as_array().unwrap().len(), 1, "nothing removed");
}

async fn the_enrolment_page_offers_the_companys_methods_and_enrolling_signs_in(s: &TestServer, gateway: &RecordingGateway) {
    s.app.create_company("Organization Inc.", "organization.com").await.unwrap();
    s.app.set_two_factor_feature("organization.com", true, Actor::Operator, &Default::default()).await.unwrap();
    s.app
        .set_two_factor_policy("organization.com", TwoFactorMode::Required, &[TfMethod::Sms, TfMethod::Email], None, false, Actor::Operator, &Default::default())
        .await
        .unwrap();
    for ext in ["101", "102"] {
        let created = s.app.create_user("organization.com", ext, &format!("u{ext}@example.com"), Role::User, Actor::Operator, &Default::default()).await.unwrap();
        let mut b = s.browser();
        b.post(&format!("/api/v1/activation/{}", token_of(&created.complete_setup_url)), json!({"password": "Welcome2Sonar", "password_confirmation": "Welcome2Sonar", "pin": "2580"})).await;
    }
    let sign_in = |login: &'static str| async move {
        let mut page = s.browser();
        let csrf = csrf_in(&page.get("/sign-in").await.body);
        let a = page.form("/sign-in", &[("csrf_token", &csrf), ("login_name", login), ("password", "Welcome2Sonar")]).await;
        assert_eq!((a.status, a.headers["location"].to_str().unwrap()), (StatusCode::SEE_OTHER, "/account/two-factor/enroll"));
        page
    };
    let mut page = sign_in("101@organization.com").await;
    let account = page.get("/account").await;
    assert_eq!((account.status, account.headers["location"].to_str().unwrap()), (StatusCode::SEE_OTHER, "/account/two-factor/enroll"), "only enrolment");
    let enroll = page.get("/account/two-factor/enroll").await;
    assert_eq!(enroll.status, StatusCode::OK);
    assert!(enroll.body.contains("requires two-factor authentication"), "{}", enroll.body);
    assert!(enroll.body.contains("/account/two-factor/sms") && enroll.body.contains("/account/two-factor/email"));
    assert!(!enroll.body.contains("/account/two-factor/setup"), "the app is not allowed here");

    let sms = page.get("/account/two-factor/sms").await;
    let csrf = csrf_in(&sms.body);
    let sent = page.form("/account/two-factor/sms", &[("csrf_token", &csrf), ("phone", PHONE)]).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    assert!(sent.body.contains("We sent a code to •••• 4477"));
    let code = texted_code(gateway, 1).await;
    let done = page.form("/account/two-factor/sms/confirm", &[("csrf_token", &csrf), ("code", &code)]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("Save your recovery codes"), "the first method shows the recovery codes");
    assert_eq!(page.get("/account").await.status, StatusCode::OK, "enrolling completed the sign-in");

    // Someone who cannot enrol now can still sign out.
    let mut other = sign_in("102@organization.com").await;
    let csrf = csrf_in(&other.get("/account/two-factor/enroll").await.body);
    let out = other.form("/sign-out", &[("csrf_token", &csrf)]).await;
    assert_eq!((out.status, out.headers["location"].to_str().unwrap()), (StatusCode::SEE_OTHER, "/sign-in?done=signed-out"));
    assert_eq!(other.get("/account/two-factor/enroll").await.headers["location"].to_str().unwrap(), "/sign-in");
}
