//! Two-factor authentication over HTTP on SQLite and PostgreSQL: the authenticator app enrolled
//! and used with codes from `oathtool` (an independent implementation), recovery codes, replay,
//! the per-account lock across flows, races, and the company policy with enforced enrolment.

#[macro_use]
#[path = "support/server.rs"]
mod server;
#[path = "support/smtp.rs"]
mod smtp;
#[path = "support/two_factor.rs"]
mod two_factor;

use latchkey_core::Role;
use latchkey_server::app::Actor;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use server::{links_in, token_of, Backend, TestServer};
use time::Duration;
use two_factor::{enrol_totp, oathtool, second_factor_flow, user_with_2fa_feature, verify};


on_both_stores!(
    the_authenticator_app_is_enrolled_and_asked_for_at_sign_in,
    a_totp_code_is_never_accepted_twice,
    recovery_codes_work_once,
    wrong_codes_lock_the_account_across_flows,
    twenty_racing_uses_of_one_totp_code_succeed_once,
    twenty_racing_uses_of_one_recovery_code_succeed_once,
    different_recovery_codes_racing_on_one_flow_spend_one,
    a_required_policy_makes_users_enrol_before_the_session_starts,
    the_policy_belongs_to_office_managers_of_the_company,
    without_the_pilot_feature_there_are_no_two_factor_settings,
    an_office_manager_resets_a_users_two_factor,
    a_locked_default_method_cannot_be_changed_by_the_user,
);

async fn the_authenticator_app_is_enrolled_and_asked_for_at_sign_in(s: &TestServer) {
    let mut b = user_with_2fa_feature(s, "101").await;
    b.send(Method::POST, "/api/v1/me/2fa/totp", None).await;
    let wrong = b.post("/api/v1/me/2fa/totp/confirm", json!({"code": "000000", "current_password": "Welcome2Sonar"})).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let (secret, codes) = enrol_totp(s, &mut b).await;
    assert_eq!(codes.len(), 10);
    assert_eq!(codes.iter().collect::<std::collections::HashSet<_>>().len(), 10);
    let me = b.get("/api/v1/me").await.json();
    assert_eq!(me["second_factors"][0]["method"], "totp", "{me}");
    assert_eq!(me["recovery_codes_left"], 10);
    // The security notification went to the designated email.
    let mails = s.smtp.wait_for(2, std::time::Duration::from_secs(10)).await;
    assert!(mails.iter().any(|m| m.subject.to_lowercase().contains("two-factor")), "{:?}", mails.iter().map(|m| &m.subject).collect::<Vec<_>>());

    let (mut b2, flow) = second_factor_flow(s, "101@organization.com").await;
    let (methods, default) = {
        let a = b2.sign_in("101@organization.com", "Welcome2Sonar").await.json();
        (a["methods"].clone(), a["default_method"].clone())
    };
    assert_eq!((methods, default), (json!(["totp"]), json!("totp")));
    s.clock.advance(Duration::seconds(30));
    let ok = verify(&mut b2, &flow, "totp", &oathtool(&secret, s.app.now())).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.json()["state"], "signed_in");
    assert_eq!(b2.get("/api/v1/me").await.status, StatusCode::OK);
    let used_flow = verify(&mut b2, &flow, "totp", &oathtool(&secret, s.app.now() + Duration::seconds(30))).await;
    assert_eq!(used_flow.status, StatusCode::GONE, "a completed flow cannot be used again");
}

async fn a_totp_code_is_never_accepted_twice(s: &TestServer) {
    let mut b = user_with_2fa_feature(s, "101").await;
    let (secret, _) = enrol_totp(s, &mut b).await;
    // The code that confirmed the app is spent too.
    let (mut x, flow) = second_factor_flow(s, "101@organization.com").await;
    let same = verify(&mut x, &flow, "totp", &oathtool(&secret, s.app.now())).await;
    assert_eq!((same.status, same.json()["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_code")));
    s.clock.advance(Duration::seconds(30));
    let code = oathtool(&secret, s.app.now());
    assert_eq!(verify(&mut x, &flow, "totp", &code).await.status, StatusCode::OK);
    let (mut y, flow2) = second_factor_flow(s, "101@organization.com").await;
    let replay = verify(&mut y, &flow2, "totp", &code).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED, "the same code on a new sign-in is a replay");
    // The previous step's code, still inside the window, is older than the used one: refused.
    let older = verify(&mut y, &flow2, "totp", &oathtool(&secret, s.app.now() - Duration::seconds(30))).await;
    assert_eq!(older.status, StatusCode::UNAUTHORIZED);
    let next = verify(&mut y, &flow2, "totp", &oathtool(&secret, s.app.now() + Duration::seconds(30))).await;
    assert_eq!(next.status, StatusCode::OK, "one step ahead is accepted (clock drift)");
}

async fn recovery_codes_work_once(s: &TestServer) {
    let mut b = user_with_2fa_feature(s, "101").await;
    let (_, codes) = enrol_totp(s, &mut b).await;
    let (mut x, flow) = second_factor_flow(s, "101@organization.com").await;
    let shouted = codes[0].to_uppercase().replace('-', " ");
    let ok = verify(&mut x, &flow, "recovery_code", &shouted).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.json()["recovery_codes_left"], 9);
    let (mut y, flow2) = second_factor_flow(s, "101@organization.com").await;
    assert_eq!(verify(&mut y, &flow2, "recovery_code", &codes[0]).await.status, StatusCode::UNAUTHORIZED, "once only");
    assert_eq!(verify(&mut y, &flow2, "recovery_code", &codes[1]).await.status, StatusCode::OK);
    let mails = s.smtp.messages().await;
    assert!(mails.iter().any(|m| m.subject.to_lowercase().contains("recovery code was used")));
}

async fn wrong_codes_lock_the_account_across_flows(s: &TestServer) {
    let mut b = user_with_2fa_feature(s, "101").await;
    let (secret, _) = enrol_totp(s, &mut b).await;
    s.clock.advance(Duration::seconds(60));
    let (mut x, flow) = second_factor_flow(s, "101@organization.com").await;
    for _ in 0..3 {
        assert_eq!(verify(&mut x, &flow, "totp", "000000").await.status, StatusCode::UNAUTHORIZED);
    }
    // A new sign-in does not reset the count.
    let (mut y, flow2) = second_factor_flow(s, "101@organization.com").await;
    assert_eq!(verify(&mut y, &flow2, "recovery_code", "aaaa-bbbb-cccc").await.status, StatusCode::UNAUTHORIZED);
    let fifth = verify(&mut y, &flow2, "totp", "111111").await;
    assert_eq!(fifth.status, StatusCode::TOO_MANY_REQUESTS);
    let right = verify(&mut y, &flow2, "totp", &oathtool(&secret, s.app.now())).await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS, "a right code during the lock is refused too");
    assert!(right.headers.contains_key("retry-after"));
    let (mut z, flow3) = second_factor_flow(s, "101@organization.com").await;
    assert_eq!(verify(&mut z, &flow3, "totp", &oathtool(&secret, s.app.now())).await.status, StatusCode::TOO_MANY_REQUESTS);
    s.clock.advance(Duration::minutes(15));
    let (mut w, flow4) = second_factor_flow(s, "101@organization.com").await;
    assert_eq!(verify(&mut w, &flow4, "totp", &oathtool(&secret, s.app.now())).await.status, StatusCode::OK);
}

async fn twenty_racing_uses_of_one_totp_code_succeed_once(s: &TestServer) {
    let mut b = user_with_2fa_feature(s, "101").await;
    let (secret, _) = enrol_totp(s, &mut b).await;
    s.clock.advance(Duration::seconds(30));
    let mut flows = Vec::new();
    for _ in 0..20 {
        flows.push(second_factor_flow(s, "101@organization.com").await);
    }
    let code = oathtool(&secret, s.app.now());
    let tasks: Vec<_> = flows
        .into_iter()
        .map(|(mut br, flow)| {
            let code = code.clone();
            tokio::spawn(async move { verify(&mut br, &flow, "totp", &code).await.status })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let status = t.await.unwrap();
        assert!(matches!(status, StatusCode::OK | StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS), "{status}");
        ok += usize::from(status == StatusCode::OK);
    }
    assert_eq!(ok, 1);
}

async fn twenty_racing_uses_of_one_recovery_code_succeed_once(s: &TestServer) {
    let mut b = user_with_2fa_feature(s, "101").await;
    let (_, codes) = enrol_totp(s, &mut b).await;
    let mut flows = Vec::new();
    for _ in 0..20 {
        flows.push(second_factor_flow(s, "101@organization.com").await);
    }
    let tasks: Vec<_> = flows
        .into_iter()
        .map(|(mut br, flow)| {
            let code = codes[5].clone();
            tokio::spawn(async move { verify(&mut br, &flow, "recovery_code", &code).await.status })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap() == StatusCode::OK);
    }
    assert_eq!(ok, 1);
}

/// Different right recovery codes on one flow at once: one signs in, the others find the flow
/// completed (410) and keep their codes: one code spent, one audit event, one email. Two racers,
/// then the eight codes left after one more.
async fn different_recovery_codes_racing_on_one_flow_spend_one(s: &TestServer) {
    let mut b = user_with_2fa_feature(s, "101").await;
    let (_, codes) = enrol_totp(s, &mut b).await;
    let user = s.app.store.user_by_login_name(&latchkey_core::LoginName::parse("101@organization.com").unwrap()).await.unwrap().unwrap();
    for (round, racers) in [(1, &codes[0..2]), (2, &codes[2..10])] {
        let (_, flow) = second_factor_flow(s, "101@organization.com").await;
        let tasks: Vec<_> = racers
            .iter()
            .map(|code| {
                let (mut br, flow, code) = (s.browser(), flow.clone(), code.clone());
                tokio::spawn(async move {
                    let a = verify(&mut br, &flow, "recovery_code", &code).await;
                    (a.status, a.json()["error"].as_str().map(str::to_owned))
                })
            })
            .collect();
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        let signed_in = answers.iter().filter(|(status, _)| *status == StatusCode::OK).count();
        let expired = answers.iter().filter(|a| **a == (StatusCode::GONE, Some("flow_expired".to_owned()))).count();
        assert_eq!((signed_in, expired), (1, racers.len() - 1), "round {round}: {answers:?}");
        assert_eq!(s.app.store.recovery_codes_left(user.id).await.unwrap(), 10 - round, "round {round}: only the winner's code is spent");
        let events = s.app.store.audit_of_company(user.company_id, 500).await.unwrap();
        let used: Vec<String> = events.into_iter().filter(|e| e.kind == "recovery_code_used").map(|e| e.detail).collect();
        assert_eq!(used.len(), round as usize, "round {round}: one audit event per sign-in: {used:?}");
        // Each request sends its email before it answers: every one that will come is in.
        let mails = s.smtp.messages().await;
        let told = mails.iter().filter(|m| m.subject.to_lowercase().contains("recovery code was used")).count();
        assert_eq!(told, round as usize, "round {round}: one email per sign-in");
    }
}

async fn a_required_policy_makes_users_enrol_before_the_session_starts(s: &TestServer) {
    let (om, pw) = s.company_with_office_manager("organization.com").await;
    s.app.set_two_factor_feature("organization.com", true, Actor::Operator, &Default::default()).await.unwrap();
    let mut manager = s.browser();
    manager.sign_in(&om, &pw).await;
    let set = manager.send(Method::PUT, "/api/v1/companies/organization.com/policy", Some(json!({
        "two_factor": "required", "allowed_methods": ["totp", "email"], "default_method": "totp", "default_method_locked": true
    }))).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(set.json()["two_factor"], "required");

    let created = s.app.create_user("organization.com", "101", "u101@example.com", Role::User, Actor::Operator, &Default::default()).await.unwrap();
    let mut b = s.browser();
    b.post(&format!("/api/v1/activation/{}", token_of(&created.complete_setup_url)), json!({"password": "Welcome2Sonar", "password_confirmation": "Welcome2Sonar", "pin": "2580"})).await;
    let a = b.sign_in("101@organization.com", "Welcome2Sonar").await;
    let body: Value = a.json();
    assert_eq!(body["state"], "enrollment_required", "{body}");
    assert_eq!(body["allowed_methods"], json!(["totp", "email"]));
    let restricted = b.get("/api/v1/me").await;
    assert_eq!((restricted.status, restricted.json()["error"].as_str()), (StatusCode::FORBIDDEN, Some("enrollment_required")));
    enrol_totp(s, &mut b).await;
    assert_eq!(b.get("/api/v1/me").await.status, StatusCode::OK, "enrolling completes the sign-in");
    let _ = links_in("");
}

async fn the_policy_belongs_to_office_managers_of_the_company(s: &TestServer) {
    let (om, pw) = s.company_with_office_manager("organization.com").await;
    let (other_om, other_pw) = s.company_with_office_manager("other.org").await;
    let mut manager = s.browser();
    manager.sign_in(&om, &pw).await;
    let bad = manager.send(Method::PUT, "/api/v1/companies/organization.com/policy", Some(json!({
        "two_factor": "required", "allowed_methods": ["totp"], "default_method": "sms", "default_method_locked": true
    }))).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.json()["fields"]["default_method"].is_array());
    let mut other = s.browser();
    other.sign_in(&other_om, &other_pw).await;
    assert_eq!(other.get("/api/v1/companies/organization.com/policy").await.status, StatusCode::NOT_FOUND);
    let put = other.send(Method::PUT, "/api/v1/companies/organization.com/policy", Some(json!({"two_factor": "off", "allowed_methods": []}))).await;
    assert_eq!(put.status, StatusCode::NOT_FOUND, "another company's policy does not exist for this office manager");
    assert_eq!(manager.get("/api/v1/companies/organization.com/policy").await.json()["two_factor_enabled"], false);
}

async fn without_the_pilot_feature_there_are_no_two_factor_settings(s: &TestServer) {
    let (om, pw) = s.company_with_office_manager("organization.com").await;
    let mut b = s.browser();
    b.sign_in(&om, &pw).await;
    let refused = b.send(Method::POST, "/api/v1/me/2fa/totp", None).await;
    assert_eq!((refused.status, refused.json()["error"].as_str()), (StatusCode::FORBIDDEN, Some("two_factor_unavailable")));
    assert_eq!(b.get("/api/v1/me").await.json()["two_factor_available"], false);
}

async fn an_office_manager_resets_a_users_two_factor(s: &TestServer) {
    let mut b = user_with_2fa_feature(s, "101").await;
    enrol_totp(s, &mut b).await;
    // An office manager of the same company (made after the company exists).
    s.app.create_user("organization.com", "100", "om@example.com", Role::OfficeManager, Actor::Operator, &Default::default()).await.unwrap();
    let url = s.app.resend_welcome("organization.com", "100", Actor::Operator, &Default::default()).await.unwrap().complete_setup_url;
    let mut om = s.browser();
    om.post(&format!("/api/v1/activation/{}", token_of(&url)), json!({"password": "Manager2Sonar", "password_confirmation": "Manager2Sonar", "pin": "2580"})).await;
    assert_eq!(om.sign_in("100@organization.com", "Manager2Sonar").await.json()["state"], "signed_in");
    assert_eq!(b.send(Method::POST, "/api/v1/companies/organization.com/users/100/2fa/reset", None).await.status, StatusCode::NOT_FOUND, "a user cannot reset anyone (no office manager endpoint exists for them)");
    let reset = om.send(Method::POST, "/api/v1/companies/organization.com/users/101/2fa/reset", None).await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.body);
    let me = b.get("/api/v1/me").await.json();
    assert_eq!(me["second_factors"], json!([]));
    assert!(me["recovery_codes_left"].is_null());
    assert_eq!(s.browser().sign_in("101@organization.com", "Welcome2Sonar").await.json()["state"], "signed_in", "no second factor asked any more");
    let mails = s.smtp.messages().await;
    assert!(mails.iter().any(|m| m.to == vec!["u101@example.com".to_owned()] && m.subject.to_lowercase().contains("reset")), "the user is told");
    let audit = s.app.store.audit_of_company(s.app.store.company_by_domain("organization.com").await.unwrap().unwrap().id, 50).await.unwrap();
    assert!(audit.iter().any(|a| a.kind == "two_factor_reset"));
    assert_eq!(om.send(Method::POST, "/api/v1/companies/organization.com/users/999/2fa/reset", None).await.status, StatusCode::NOT_FOUND);
}

async fn a_locked_default_method_cannot_be_changed_by_the_user(s: &TestServer) {
    let mut b = user_with_2fa_feature(s, "101").await;
    enrol_totp(s, &mut b).await;
    let ok = b.send(Method::PUT, "/api/v1/me/2fa/preferred", Some(json!({"method": "totp"}))).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(b.get("/api/v1/me").await.json()["preferred_method"], "totp");
    assert!(two_factor::wait_for_subject(s, "default two-factor method changed").await, "the user is told");
    assert_eq!(b.send(Method::PUT, "/api/v1/me/2fa/preferred", Some(json!({"method": "sms"}))).await.status, StatusCode::UNPROCESSABLE_ENTITY, "not set up");
    s.app
        .set_two_factor_policy("organization.com", latchkey_core::two_factor::TwoFactorMode::Optional, &[latchkey_core::two_factor::Method::Totp, latchkey_core::two_factor::Method::Email], Some(latchkey_core::two_factor::Method::Email), true, Actor::Operator, &Default::default())
        .await
        .unwrap();
    let locked = b.send(Method::PUT, "/api/v1/me/2fa/preferred", Some(json!({"method": "totp"}))).await;
    assert_eq!((locked.status, locked.json()["error"].as_str()), (StatusCode::CONFLICT, Some("locked_by_company")));
    assert_eq!(locked.json()["message"], "Set by your administrator as default.");
}
