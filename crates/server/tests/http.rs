//! The foundation's flows over HTTP, against a real server on an ephemeral port, on SQLite and on
//! PostgreSQL: activation by welcome email, sign-in and sessions, password reset, forgotten login
//! name, CSRF, throttling and bad input. Mail goes through a real SMTP server on loopback.

#[macro_use]
#[path = "support/server.rs"]
mod server;
#[path = "support/smtp.rs"]
mod smtp;

use latchkey_core::Role;
use latchkey_server::app::Actor;
use reqwest::{Method, StatusCode};
use serde_json::json;
use server::{csrf_in, links_in, token_of, Backend, TestServer};
use time::Duration;


on_both_stores!(
    a_welcome_email_activates_the_account_once,
    activation_reports_every_broken_rule_and_writes_nothing,
    welcome_links_expire_after_24_hours,
    resending_the_welcome_email_kills_the_old_link,
    sign_in_sets_a_fresh_host_cookie_and_sign_out_ends_it,
    sessions_are_listed_and_others_signed_out,
    sessions_end_after_idle_and_absolute_timeouts,
    forgot_password_answers_the_same_and_lists_every_account_of_an_address,
    a_completed_reset_ends_every_session,
    reset_links_expire_after_3_hours,
    forgot_login_name_lists_the_login_names,
    a_look_alike_address_gets_no_mail,
    wrong_passwords_are_throttled_per_account,
    cookie_authenticated_changes_need_the_csrf_token,
    changing_password_and_pin_checks_the_current_password,
    office_managers_create_users_in_their_own_company_only,
    bad_input_gets_a_4xx_and_writes_nothing,
    pages_complete_setup_and_sign_in_with_forms,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_are_throttled_per_client_address_on_sqlite() {
    let s = TestServer::start_with(Backend::Sqlite, "client_throttle", |c| c.throttle.client_max_failures = 3).await.unwrap();
    wrong_passwords_are_throttled_per_client_address(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_are_throttled_per_client_address_on_postgres() {
    if let Some(s) = TestServer::start_with(Backend::Postgres, "client_throttle", |c| c.throttle.client_max_failures = 3).await {
        wrong_passwords_are_throttled_per_client_address(&s).await;
    }
}

/// Credential stuffing tries many names from one address: the per-address limit stops it even
/// though no single name reaches its own limit.
async fn wrong_passwords_are_throttled_per_client_address(s: &TestServer) {
    activate(s, &invite(s, "organization.com", "101", "alice@example.com").await).await;
    let mut b = s.browser();
    for ext in ["201", "202", "203"] {
        let a = b.sign_in(&format!("{ext}@organization.com"), "Guess2Password").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    let blocked = b.sign_in("101@organization.com", "Welcome2Sonar").await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(blocked.headers.contains_key("retry-after"));
    s.clock.advance(Duration::minutes(15));
    assert_eq!(b.sign_in("101@organization.com", "Welcome2Sonar").await.status, StatusCode::OK);
}

/// Creates a company and an invited user; returns the welcome email's link.
async fn invite(s: &TestServer, domain: &str, ext: &str, email: &str) -> String {
    if s.app.store.company_by_domain(domain).await.unwrap().is_none() {
        s.app.create_company("Organization Inc.", domain).await.unwrap();
    }
    let before = s.smtp.messages().await.len();
    s.app.create_user(domain, ext, email, Role::User, Actor::Operator, &Default::default()).await.unwrap();
    let mails = s.mails(before + 1).await;
    let mail = mails.last().unwrap();
    assert_eq!(mail.to, vec![email.to_owned()]);
    links_in(&mail.text).into_iter().next().expect("a Complete Setup link in the welcome email")
}

fn setup_body() -> serde_json::Value {
    json!({"password": "Welcome2Sonar", "password_confirmation": "Welcome2Sonar", "pin": "2580"})
}

async fn activate(s: &TestServer, link: &str) {
    let mut b = s.browser();
    let a = b.post(&format!("/api/v1/activation/{}", token_of(link)), setup_body()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

async fn a_welcome_email_activates_the_account_once(s: &TestServer) {
    let link = invite(s, "organization.com", "101", "alice@example.com").await;
    let mail = s.smtp.messages().await.pop().unwrap();
    assert!(mail.subject.contains("Organization Inc."));
    assert!(mail.html.contains("Complete Setup"));
    assert!(mail.text.contains("101@organization.com"));
    let token = token_of(&link);
    let mut b = s.browser();
    let info = b.get(&format!("/api/v1/activation/{token}")).await;
    assert_eq!(info.status, StatusCode::OK);
    assert_eq!(info.json()["login_name"], "101@organization.com");
    assert_eq!(info.json()["company"], "Organization Inc.");

    let done = b.post(&format!("/api/v1/activation/{token}"), setup_body()).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.json()["login_name"], "101@organization.com");

    let again = b.post(&format!("/api/v1/activation/{token}"), setup_body()).await;
    assert_eq!((again.status, again.json()["error"].as_str()), (StatusCode::GONE, Some("link_used")));
    assert_eq!(b.get(&format!("/api/v1/activation/{token}")).await.status, StatusCode::GONE);

    assert_eq!(b.sign_in("101@ORGANIZATION.com", "Welcome2Sonar").await.status, StatusCode::OK);
    let me = b.get("/api/v1/me").await.json();
    assert_eq!(me["login_name"], "101@organization.com");
    assert_eq!(me["email_verified"], true, "the used welcome link verifies the designated email");
    assert_eq!(me["company"]["domain"], "organization.com");
    // The voicemail PIN was stored as a hash, never as given.
    let user = s.app.store.user_by_login_name(&latchkey_core::LoginName::parse("101@organization.com").unwrap()).await.unwrap().unwrap();
    assert!(user.pin_hash.unwrap().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    assert!(user.password_hash.unwrap().starts_with("$argon2id$"));
    assert_eq!(b.get("/api/v1/activation/not-a-token").await.status, StatusCode::NOT_FOUND);
}

async fn activation_reports_every_broken_rule_and_writes_nothing(s: &TestServer) {
    let link = invite(s, "organization.com", "101", "alice@example.com").await;
    let mut b = s.browser();
    let a = b
        .post(&format!("/api/v1/activation/{}", token_of(&link)), json!({"password": "short", "password_confirmation": "other", "pin": "1234"}))
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    let f = &a.json()["fields"];
    assert_eq!(f["password"].as_array().unwrap().len(), 3, "{f}");
    assert_eq!(f["password_confirmation"].as_array().unwrap().len(), 1);
    assert!(f["pin"][0].as_str().unwrap().contains("sequential"));
    let pins = b.post(&format!("/api/v1/activation/{}", token_of(&link)), json!({"password": "Welcome2Sonar", "password_confirmation": "Welcome2Sonar", "pin": "1111"})).await;
    assert!(pins.json()["fields"]["pin"][0].as_str().unwrap().contains("different numbers"));
    // Nothing was written: the link still works.
    assert_eq!(b.get(&format!("/api/v1/activation/{}", token_of(&link))).await.status, StatusCode::OK);
    activate(s, &link).await;
}

async fn welcome_links_expire_after_24_hours(s: &TestServer) {
    let link = invite(s, "organization.com", "101", "alice@example.com").await;
    s.clock.advance(Duration::hours(24));
    let mut b = s.browser();
    let a = b.post(&format!("/api/v1/activation/{}", token_of(&link)), setup_body()).await;
    assert_eq!((a.status, a.json()["error"].as_str()), (StatusCode::GONE, Some("link_expired")));
    assert!(a.json()["message"].as_str().unwrap().contains("24 hours"));
    let page = b.get(&format!("/complete-setup/{}", token_of(&link))).await;
    assert_eq!(page.status, StatusCode::GONE);
    assert!(page.body.contains("expired") && page.body.contains("office manager"), "the page says what to do next");
}

async fn resending_the_welcome_email_kills_the_old_link(s: &TestServer) {
    let old = invite(s, "organization.com", "101", "alice@example.com").await;
    s.app.resend_welcome("organization.com", "101", Actor::Operator, &Default::default()).await.unwrap();
    let mails = s.mails(2).await;
    let new = links_in(&mails[1].text).remove(0);
    assert_ne!(old, new);
    let mut b = s.browser();
    let a = b.post(&format!("/api/v1/activation/{}", token_of(&old)), setup_body()).await;
    assert_eq!((a.status, a.json()["error"].as_str()), (StatusCode::GONE, Some("link_replaced")));
    activate(s, &new).await;
}

async fn sign_in_sets_a_fresh_host_cookie_and_sign_out_ends_it(s: &TestServer) {
    activate(s, &invite(s, "organization.com", "101", "alice@example.com").await).await;
    let mut b = s.browser();
    let first = b.sign_in("101@organization.com", "Welcome2Sonar").await;
    assert_eq!(first.json()["state"], "signed_in");
    let cookie = first.set_cookies().into_iter().find(|c| c.starts_with("__Host-latchkey_session=")).expect("session cookie");
    for attr in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(!cookie.contains("Domain="), "__Host- cookies carry no Domain");
    let first_id = b.cookies["__Host-latchkey_session"].clone();
    // A new id at every sign-in, even from the same browser.
    assert_eq!(b.sign_in("101@organization.com", "Welcome2Sonar").await.status, StatusCode::OK);
    assert_ne!(b.cookies["__Host-latchkey_session"], first_id);
    assert_eq!(b.get("/api/v1/me").await.status, StatusCode::OK);

    let out = b.send(Method::POST, "/api/v1/sign-out", None).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(!b.cookies.contains_key("__Host-latchkey_session"));
    // The ended session does not come back with its old cookie either.
    let mut stale = s.browser();
    stale.cookies.insert("__Host-latchkey_session".into(), first_id);
    assert_eq!(stale.get("/api/v1/me").await.status, StatusCode::OK, "the first session is separate and still live");
    let wrong = s.browser().sign_in("101@organization.com", "Wrong2Password").await;
    assert_eq!((wrong.status, wrong.json()["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_credentials")));
    let unknown = s.browser().sign_in("999@organization.com", "Wrong2Password").await;
    assert_eq!(unknown.body, wrong.body, "unknown and wrong look the same");
}

async fn sessions_are_listed_and_others_signed_out(s: &TestServer) {
    activate(s, &invite(s, "organization.com", "101", "alice@example.com").await).await;
    let mut phone = s.browser();
    let mut desk = s.browser();
    let mut laptop = s.browser();
    for b in [&mut phone, &mut desk, &mut laptop] {
        assert_eq!(b.sign_in("101@organization.com", "Welcome2Sonar").await.status, StatusCode::OK);
    }
    let list = desk.get("/api/v1/me/sessions").await.json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
    let phone_id = phone.get("/api/v1/me/sessions").await.json().as_array().unwrap().iter().find(|s| s["current"] == true).unwrap()["id"].clone();
    let del = desk.send(Method::DELETE, &format!("/api/v1/me/sessions/{}", phone_id.as_str().unwrap()), None).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_eq!(phone.get("/api/v1/me").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(desk.send(Method::POST, "/api/v1/me/sessions/revoke-others", None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(laptop.get("/api/v1/me").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(desk.get("/api/v1/me").await.status, StatusCode::OK);
    assert_eq!(desk.send(Method::DELETE, "/api/v1/me/sessions/nope", None).await.status, StatusCode::NOT_FOUND);
}

async fn sessions_end_after_idle_and_absolute_timeouts(s: &TestServer) {
    activate(s, &invite(s, "organization.com", "101", "alice@example.com").await).await;
    let mut b = s.browser();
    b.sign_in("101@organization.com", "Welcome2Sonar").await;
    s.clock.advance(Duration::minutes(29));
    assert_eq!(b.get("/api/v1/me").await.status, StatusCode::OK);
    s.clock.advance(Duration::minutes(29));
    assert_eq!(b.get("/api/v1/me").await.status, StatusCode::OK, "activity keeps the session alive");
    s.clock.advance(Duration::minutes(31));
    assert_eq!(b.get("/api/v1/me").await.status, StatusCode::UNAUTHORIZED, "idle timeout");

    b.sign_in("101@organization.com", "Welcome2Sonar").await;
    for _ in 0..25 {
        s.clock.advance(Duration::minutes(29));
        b.get("/api/v1/me").await;
    }
    assert_eq!(b.get("/api/v1/me").await.status, StatusCode::UNAUTHORIZED, "absolute timeout after 12 hours");
}

async fn forgot_password_answers_the_same_and_lists_every_account_of_an_address(s: &TestServer) {
    activate(s, &invite(s, "organization.com", "101", "front.desk@example.com").await).await;
    activate(s, &invite(s, "organization.com", "102", "Front.Desk@example.com").await).await;
    let mut b = s.browser();
    let known = b.post("/api/v1/password/forgot", json!({"email": "FRONT.DESK@example.com"})).await;
    let unknown = b.post("/api/v1/password/forgot", json!({"email": "nobody@example.com"})).await;
    assert_eq!(known.status, StatusCode::ACCEPTED);
    assert_eq!((unknown.status, &unknown.body), (known.status, &known.body));
    let mails = s.mails(3).await;
    let reset = &mails[2];
    // To the address as the accounts store it (the first account's spelling), not as typed.
    assert_eq!(reset.to, vec!["front.desk@example.com".to_owned()]);
    assert!(reset.text.contains("101@organization.com") && reset.text.contains("102@organization.com"));
    let links = links_in(&reset.text);
    assert_eq!(links.len(), 2, "one link per login name");
    assert!(reset.text.contains("3 hours"));
    // Give it time: nothing goes to the unknown address.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(s.smtp.messages().await.len(), 3);

    for link in &links {
        let info = b.get(&format!("/api/v1/password/reset/{}", token_of(link))).await;
        assert_eq!(info.status, StatusCode::OK);
    }
    let by_login = b.post("/api/v1/password/forgot", json!({"login_name": "101@organization.com"})).await;
    assert_eq!(by_login.status, StatusCode::ACCEPTED);
    let mails = s.mails(4).await;
    assert_eq!(links_in(&mails[3].text).len(), 1);
    assert_eq!(b.post("/api/v1/password/forgot", json!({})).await.status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// Issue 18 item 3: "mi\u{212A}e@…" (a Kelvin sign, which lower-cases to "k") finds mike's accounts;
/// the reset link and the login names still go only to the address the account stores.
async fn a_look_alike_address_gets_no_mail(s: &TestServer) {
    activate(s, &invite(s, "organization.com", "101", "mike@a.example").await).await;
    let mut b = s.browser();
    let look_alike = "mi\u{212A}e@a.example";
    assert_eq!(b.post("/api/v1/password/forgot", json!({"email": look_alike})).await.status, StatusCode::ACCEPTED);
    assert_eq!(b.post("/api/v1/login-name/forgot", json!({"email": look_alike})).await.status, StatusCode::ACCEPTED);
    let mails = s.mails(3).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(s.smtp.messages().await.len(), 3, "the welcome email, then a reset email and a login-name email, nothing else");
    for mail in &mails[1..] {
        assert_eq!(mail.to, vec!["mike@a.example".to_owned()], "{}", mail.subject);
    }
}

async fn a_completed_reset_ends_every_session(s: &TestServer) {
    activate(s, &invite(s, "organization.com", "101", "alice@example.com").await).await;
    let mut old = s.browser();
    old.sign_in("101@organization.com", "Welcome2Sonar").await;
    let mut b = s.browser();
    b.post("/api/v1/password/forgot", json!({"email": "alice@example.com"})).await;
    let link = links_in(&s.mails(2).await[1].text).remove(0);
    let bad = b.post(&format!("/api/v1/password/reset/{}", token_of(&link)), json!({"password": "nocaps1", "password_confirmation": "nocaps1"})).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let ok = b.post(&format!("/api/v1/password/reset/{}", token_of(&link)), json!({"password": "Brand2NewPass", "password_confirmation": "Brand2NewPass"})).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(old.get("/api/v1/me").await.status, StatusCode::UNAUTHORIZED, "the reset ended the old session");
    let used = b.post(&format!("/api/v1/password/reset/{}", token_of(&link)), json!({"password": "Other2NewPass", "password_confirmation": "Other2NewPass"})).await;
    assert_eq!((used.status, used.json()["error"].as_str()), (StatusCode::GONE, Some("link_used")));
    assert_eq!(b.sign_in("101@organization.com", "Welcome2Sonar").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(b.sign_in("101@organization.com", "Brand2NewPass").await.status, StatusCode::OK);
    let notice = &s.mails(3).await[2];
    assert!(notice.subject.to_lowercase().contains("password"), "a security notification follows the reset: {}", notice.subject);
}

async fn reset_links_expire_after_3_hours(s: &TestServer) {
    activate(s, &invite(s, "organization.com", "101", "alice@example.com").await).await;
    let mut b = s.browser();
    b.post("/api/v1/password/forgot", json!({"login_name": "101@organization.com"})).await;
    let link = links_in(&s.mails(2).await[1].text).remove(0);
    s.clock.advance(Duration::hours(3));
    let a = b.post(&format!("/api/v1/password/reset/{}", token_of(&link)), json!({"password": "Brand2NewPass", "password_confirmation": "Brand2NewPass"})).await;
    assert_eq!((a.status, a.json()["error"].as_str()), (StatusCode::GONE, Some("link_expired")));
    assert!(a.json()["message"].as_str().unwrap().contains("3 hours"));
}

async fn forgot_login_name_lists_the_login_names(s: &TestServer) {
    invite(s, "organization.com", "101", "shared@example.com").await;
    invite(s, "organization.com", "102", "shared@example.com").await;
    let mut b = s.browser();
    let a = b.post("/api/v1/login-name/forgot", json!({"email": "shared@example.com"})).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let unknown = b.post("/api/v1/login-name/forgot", json!({"email": "none@example.com"})).await;
    assert_eq!((unknown.status, unknown.body), (a.status, a.body));
    let mail = &s.mails(3).await[2];
    assert!(mail.text.contains("101@organization.com") && mail.text.contains("102@organization.com"));
    assert_eq!(b.post("/api/v1/login-name/forgot", json!({"email": "not an email"})).await.status, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn wrong_passwords_are_throttled_per_account(s: &TestServer) {
    activate(s, &invite(s, "organization.com", "101", "alice@example.com").await).await;
    let mut b = s.browser();
    for _ in 0..5 {
        assert_eq!(b.sign_in("101@organization.com", "Wrong2Password").await.status, StatusCode::UNAUTHORIZED);
    }
    let locked = b.sign_in("101@organization.com", "Welcome2Sonar").await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS, "even the right password waits");
    let retry: u64 = locked.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry));
    // Another node reading the same store sees the same lock: the lock lives in the store.
    let now = s.app.now();
    assert!(s.app.store.throttle_locked_until(&["sign_in:login:101@organization.com".into()], now).await.unwrap().is_some());
    s.clock.advance(Duration::minutes(15));
    assert_eq!(b.sign_in("101@organization.com", "Welcome2Sonar").await.status, StatusCode::OK);
}

async fn cookie_authenticated_changes_need_the_csrf_token(s: &TestServer) {
    activate(s, &invite(s, "organization.com", "101", "alice@example.com").await).await;
    let mut b = s.browser();
    b.sign_in("101@organization.com", "Welcome2Sonar").await;
    let token = b.csrf.take();
    let refused = b.send(Method::POST, "/api/v1/sign-out", None).await;
    assert_eq!((refused.status, refused.json()["error"].as_str()), (StatusCode::FORBIDDEN, Some("csrf_failed")));
    b.csrf = Some("forged".into());
    assert_eq!(b.send(Method::POST, "/api/v1/sign-out", None).await.status, StatusCode::FORBIDDEN);
    // The token from /api/v1/csrf is the session's token.
    b.csrf = None;
    let fetched = b.get("/api/v1/csrf").await.json()["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(Some(fetched.clone()), token);
    b.csrf = Some(fetched);
    assert_eq!(b.send(Method::POST, "/api/v1/sign-out", None).await.status, StatusCode::NO_CONTENT);
    // A page form without its token is refused too.
    let mut page = s.browser();
    let form = page.form("/sign-in", &[("csrf_token", "x"), ("login_name", "101@organization.com"), ("password", "Welcome2Sonar")]).await;
    assert_eq!(form.status, StatusCode::FORBIDDEN);
}

async fn changing_password_and_pin_checks_the_current_password(s: &TestServer) {
    activate(s, &invite(s, "organization.com", "101", "alice@example.com").await).await;
    let mut other = s.browser();
    other.sign_in("101@organization.com", "Welcome2Sonar").await;
    let mut b = s.browser();
    b.sign_in("101@organization.com", "Welcome2Sonar").await;
    let wrong = b.post("/api/v1/me/password", json!({"current_password": "Nope2Nope", "password": "Brand2NewPass", "password_confirmation": "Brand2NewPass"})).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let weak = b.post("/api/v1/me/password", json!({"current_password": "Welcome2Sonar", "password": "weak", "password_confirmation": "weak"})).await;
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY);
    let ok = b.post("/api/v1/me/password", json!({"current_password": "Welcome2Sonar", "password": "Brand2NewPass", "password_confirmation": "Brand2NewPass"})).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(b.get("/api/v1/me").await.status, StatusCode::OK, "this session stays");
    assert_eq!(other.get("/api/v1/me").await.status, StatusCode::UNAUTHORIZED, "other sessions end");
    let pin = b.post("/api/v1/me/pin", json!({"current_password": "Brand2NewPass", "pin": "9876"})).await;
    assert_eq!(pin.status, StatusCode::UNPROCESSABLE_ENTITY);
    let pin = b.post("/api/v1/me/pin", json!({"current_password": "Brand2NewPass", "pin": "4682"})).await;
    assert_eq!(pin.status, StatusCode::OK);
}

async fn office_managers_create_users_in_their_own_company_only(s: &TestServer) {
    let (om, pw) = s.company_with_office_manager("organization.com").await;
    s.company_with_office_manager("other.org").await;
    let mut b = s.browser();
    b.sign_in(&om, &pw).await;
    let created = b.post("/api/v1/companies/organization.com/users", json!({"extension": "201", "designated_email": "new@example.com"})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.json()["login_name"], "201@organization.com");
    let taken = b.post("/api/v1/companies/organization.com/users", json!({"extension": "201", "designated_email": "new@example.com"})).await;
    assert_eq!((taken.status, taken.json()["error"].as_str()), (StatusCode::CONFLICT, Some("extension_taken")));
    let elsewhere = b.post("/api/v1/companies/other.org/users", json!({"extension": "201", "designated_email": "x@example.com"})).await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND, "another company's endpoints do not exist for this office manager");
    assert_eq!(b.send(Method::POST, "/api/v1/companies/organization.com/users/201/welcome", None).await.status, StatusCode::ACCEPTED);
    assert_eq!(b.send(Method::POST, "/api/v1/companies/other.org/users/100/welcome", None).await.status, StatusCode::NOT_FOUND);

    let link = links_in(&s.smtp.messages().await.last().unwrap().text).remove(0);
    activate(s, &link).await;
    let mut user = s.browser();
    user.sign_in("201@organization.com", "Welcome2Sonar").await;
    let denied = user.post("/api/v1/companies/organization.com/users", json!({"extension": "202", "designated_email": "y@example.com"})).await;
    assert_eq!(denied.status, StatusCode::NOT_FOUND, "a user reaches no office manager endpoint, even of their own company");
}

async fn bad_input_gets_a_4xx_and_writes_nothing(s: &TestServer) {
    let link = invite(s, "organization.com", "101", "alice@example.com").await;
    let path = format!("/api/v1/activation/{}", token_of(&link));
    let mut b = s.browser();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", b"{not json".to_vec()),
        ("application/json", b"{\"password\": 5, \"password_confirmation\": [], \"pin\": null}".to_vec()),
        ("application/json", vec![b'{', 0xff, 0xfe, b'}']),
        ("application/json", br#"{"password":"Welcome2Sonar","password":"Other2Sonar","password_confirmation":"Welcome2Sonar","pin":"2580"}"#.to_vec()),
        ("application/json", format!(r#"{{"password":"{}","password_confirmation":"x","pin":"2580"}}"#, "A1".repeat(10_000)).into_bytes()),
        ("application/json", "{\"password\":\"Welcome2Sonar\u{0000}\",\"password_confirmation\":\"Welcome2Sonar\u{0000}\",\"pin\":\"2580\"}".replace('\u{0}', "\\u0000").into_bytes()),
        ("application/json", r#"{"password":"Welcome2Sonar","password_confirmation":"Welcome2Sonar","pin":"２５８０"}"#.as_bytes().to_vec()),
        ("text/plain", setup_body().to_string().into_bytes()),
    ];
    for (ct, body) in cases {
        let a = b.raw(Method::POST, &path, ct, body.clone()).await;
        assert!(a.status.is_client_error(), "{} for {:?}", a.status, String::from_utf8_lossy(&body[..body.len().min(80)]));
        assert!(a.json()["message"].is_string(), "every 4xx has a message: {}", a.body);
    }
    // Oversized cases stay at 20 kB (over the 16 kB limit): a far larger body can race the early 413
    // with the client still writing, which shows as a reset connection rather than an answer.
    let names = ["'; DROP TABLE users; --@organization.com", "101\u{200f}@organization.com", "１０１@organization.com", &"9".repeat(20_000), "101@org\0.com"];
    for name in names {
        let a = b.post("/api/v1/sign-in", json!({"login_name": name, "password": "Welcome2Sonar"})).await;
        assert!(a.status.is_client_error(), "{} for a login name of {} chars", a.status, name.len());
    }
    // Nothing was written by any of it: the link is unused and the store still answers.
    assert_eq!(b.get(&path).await.status, StatusCode::OK);
    activate(s, &link).await;
}

async fn pages_complete_setup_and_sign_in_with_forms(s: &TestServer) {
    let link = invite(s, "organization.com", "101", "alice@example.com").await;
    let path = format!("/complete-setup/{}", token_of(&link));
    let mut b = s.browser();
    let page = b.get(&path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("101@organization.com") && page.body.contains("Voicemail PIN"));
    let csrf = csrf_in(&page.body);
    let bad = b.form(&path, &[("csrf_token", &csrf), ("password", "short"), ("password_confirmation", "short"), ("pin", "1111")]).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("Must have at least 1 capital letter.") && bad.body.contains("aria-invalid=\"true\""));
    let ok = b.form(&path, &[("csrf_token", &csrf), ("password", "Welcome2Sonar"), ("password_confirmation", "Welcome2Sonar"), ("pin", "2580")]).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    let used = b.get(&path).await;
    assert_eq!(used.status, StatusCode::GONE);
    assert!(used.body.contains("already used"));

    let sign_in = b.get("/sign-in?done=setup").await;
    assert!(sign_in.body.contains("Your account is set up"));
    let csrf = csrf_in(&sign_in.body);
    let wrong = b.form("/sign-in", &[("csrf_token", &csrf), ("login_name", "101@organization.com"), ("password", "nope")]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("not right"));
    let ok = b.form("/sign-in", &[("csrf_token", &csrf), ("login_name", "101@organization.com"), ("password", "Welcome2Sonar")]).await;
    assert_eq!((ok.status, ok.headers["location"].to_str().unwrap()), (StatusCode::SEE_OTHER, "/account"));
    let account = b.get("/account").await;
    assert!(account.body.contains("Account Security") && account.body.contains("This session"));
    let out = b.form("/sign-out", &[("csrf_token", &csrf_in(&account.body))]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(b.get("/account").await.status, StatusCode::SEE_OTHER);
    let spec = b.get("/api/openapi.json").await.json();
    assert!(spec["paths"]["/api/v1/sign-in"]["post"].is_object());
}
