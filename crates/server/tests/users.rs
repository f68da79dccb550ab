//! The office manager's users over HTTP, on SQLite and PostgreSQL: the list and its search, what
//! it shows of each account, disable and enable (and every door a disabled account finds shut), a
//! new designated email (both addresses told, links to the old one dead, an invited user invited
//! again), who may read and change, bad input, and the console pages that do the same without
//! JavaScript.

#[macro_use]
#[path = "support/server.rs"]
mod server;
#[path = "support/smtp.rs"]
mod smtp;

use std::time::Duration;

use latchkey_core::{LoginName, Role, UserState};
use latchkey_server::app::{rfc3339, Actor};
use latchkey_store::{AuditEntry, StoredMethod, User};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use server::{csrf_in, links_in, token_of, Answer, Backend, Browser, TestServer};
use smtp::ReceivedMail;

on_both_stores!(
    the_list_finds_users_and_shows_what_each_signs_in_with,
    disabling_ends_sessions_and_shuts_every_door_until_enabled,
    an_office_manager_cannot_disable_themselves_and_no_change_is_made_twice,
    a_new_designated_email_tells_both_addresses_and_kills_the_old_links,
    supervisors_read_users_and_strangers_find_nothing,
    bad_input_is_refused_and_nothing_is_written,
    the_console_lets_an_office_manager_do_it_all_without_javascript,
    the_console_shows_supervisors_no_form_and_refuses_forged_posts,
    the_console_pages_through_a_long_list_keeping_the_search,
);

const DOMAIN: &str = "organization.com";
const PASSWORD: &str = "Welcome2Sonar";

fn users_path(rest: &str) -> String {
    format!("/api/v1/companies/{DOMAIN}/users{rest}")
}

/// An invited user and the token of its welcome link.
async fn invited(s: &TestServer, ext: &str, email: &str, role: Role) -> String {
    token_of(&s.app.create_user(DOMAIN, ext, email, role, Actor::Operator, &Default::default()).await.unwrap().complete_setup_url)
}

async fn user(s: &TestServer, ext: &str) -> User {
    s.app.store.user_by_login_name(&LoginName::parse(&format!("{ext}@{DOMAIN}")).unwrap()).await.unwrap().unwrap()
}

async fn audit_kinds(s: &TestServer) -> Vec<String> {
    let company = s.app.store.company_by_domain(DOMAIN).await.unwrap().unwrap();
    s.app.store.audit_of_company(company.id, 500).await.unwrap().into_iter().map(|a| a.kind).collect()
}

async fn mails_to(s: &TestServer, to: &str, subject: &str, n: usize) -> Vec<ReceivedMail> {
    s.smtp.wait_for_mail_to(to, subject, n, Duration::from_secs(10)).await
}

/// The token of the last link (Complete Setup or reset) in the `n`th email to `to` about `subject`.
async fn emailed_token(s: &TestServer, to: &str, subject: &str, n: usize) -> String {
    let mails = mails_to(s, to, subject, n).await;
    assert_eq!(mails.len(), n, "emails to {to} about {subject}");
    token_of(links_in(&mails[n - 1].text).last().expect("a link in the email"))
}

fn error_of(a: &Answer) -> (StatusCode, String) {
    (a.status, a.json()["error"].as_str().unwrap_or_default().to_owned())
}

fn extensions(list: &Value) -> Vec<&str> {
    list.as_array().unwrap().iter().map(|u| u["extension"].as_str().unwrap()).collect()
}

async fn listed(b: &mut Browser, query: &str) -> Value {
    let a = b.get(&users_path(query)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.json()
}

fn audit(s: &TestServer, kind: &'static str) -> AuditEntry {
    AuditEntry { company_id: None, actor_user_id: None, actor_token_id: None, target_user_id: None, kind, detail: String::new(), client_ip: None, user_agent: None, at: s.app.now() }
}

async fn the_list_finds_users_and_shows_what_each_signs_in_with(s: &TestServer) {
    let mut om = s.signed_in_office_manager(DOMAIN).await;
    s.signed_in_member(DOMAIN, "101", "Front.Desk@example.com", Role::User).await;
    invited(s, "205", "boss@example.com", Role::Supervisor).await;
    s.signed_in_office_manager("other.org").await;
    s.signed_in_member("other.org", "102", "front.desk@example.com", Role::User).await;
    // What 101 signs in with, put straight into the store: the list only reads it.
    let front = user(s, "101").await;
    let totp = StoredMethod { method: latchkey_core::two_factor::Method::Totp, detail: None, totp_sealed: Some("x".into()), totp_key_id: Some("k".into()), totp_last_step: None, enabled_at: s.app.now() };
    s.app.store.enable_method(front.id, &totp, &["h".into()], &audit(s, "two_factor_enabled")).await.unwrap();
    use latchkey_core::flows::sso::Provider::{Google, Microsoft};
    for (provider, subject) in [(Microsoft, "m-1"), (Google, "g-1"), (Google, "g-2")] {
        s.app.store.add_sso_link(front.id, provider, subject, None, s.app.now(), &audit(s, "sso_linked")).await.unwrap();
    }
    assert_eq!(om.post(&users_path("/205/emails"), json!({"email": "Assistant@example.com"})).await.status, StatusCode::CREATED);

    let everyone = listed(&mut om, "").await;
    assert_eq!(extensions(&everyone), vec!["100", "101", "205"], "this company's users, by extension");
    let front = user(s, "101").await;
    let expected_front = json!({
        "extension": "101", "login_name": "101@organization.com", "role": "user", "status": "active",
        "designated_email": "Front.Desk@example.com", "email_verified": true, "emails": [],
        "two_factor_methods": ["totp"], "sso_providers": ["google", "microsoft"],
        "last_sign_in_at": rfc3339(front.last_sign_in_at.expect("101 signed in")), "created_at": rfc3339(front.created_at),
    });
    assert_eq!(everyone[1], expected_front);
    let boss = &everyone[2];
    assert_eq!((boss["status"].as_str(), boss["role"].as_str(), boss["email_verified"].as_bool()), (Some("invited"), Some("supervisor"), Some(false)));
    assert_eq!(boss["emails"], json!([{"email": "Assistant@example.com", "verified": false}]));
    assert_eq!((&boss["last_sign_in_at"], &boss["two_factor_methods"], &boss["sso_providers"]), (&Value::Null, &json!([]), &json!([])));

    assert_eq!(extensions(&listed(&mut om, "?q=10").await), vec!["100", "101"], "part of an extension");
    assert_eq!(extensions(&listed(&mut om, "?q=FRONT.desk%40").await), vec!["101"], "a designated email, any case, this company only");
    assert_eq!(extensions(&listed(&mut om, "?q=assistant").await), vec!["205"], "an additional email");
    assert_eq!(extensions(&listed(&mut om, "?q=205%40organization").await), vec!["205"], "a login name");
    assert_eq!(listed(&mut om, "?q=nobody").await, json!([]));
    assert_eq!(extensions(&listed(&mut om, "?limit=2").await), vec!["100", "101"]);
    assert_eq!(extensions(&listed(&mut om, "?limit=2&offset=2").await), vec!["205"]);

    let one = om.get(&users_path("/101")).await;
    assert_eq!((one.status, one.json()), (StatusCode::OK, expected_front));
    assert_eq!(error_of(&om.get(&users_path("/999")).await), (StatusCode::NOT_FOUND, "not_found".into()));
    let doc = s.browser().get("/api/openapi.json").await.json();
    for p in ["/api/v1/companies/{domain}/users", "/api/v1/companies/{domain}/users/{extension}", "/api/v1/companies/{domain}/users/{extension}/disable",
        "/api/v1/companies/{domain}/users/{extension}/enable", "/api/v1/companies/{domain}/users/{extension}/designated-email"] {
        assert!(doc["paths"][p].is_object(), "{p} is in the OpenAPI document");
    }
}

async fn disabling_ends_sessions_and_shuts_every_door_until_enabled(s: &TestServer) {
    let mut om = s.signed_in_office_manager(DOMAIN).await;
    let mut phone = s.signed_in_member(DOMAIN, "101", "u101@example.com", Role::User).await;
    let mut desk = s.browser();
    assert_eq!(desk.sign_in("101@organization.com", PASSWORD).await.status, StatusCode::OK);
    assert_eq!(s.browser().post("/api/v1/password/forgot", json!({"login_name": "101@organization.com"})).await.status, StatusCode::ACCEPTED);
    let reset = emailed_token(s, "u101@example.com", "reset your password", 1).await;

    let disabled = om.post(&users_path("/101/disable"), json!({})).await;
    assert_eq!((disabled.status, disabled.json()["status"].as_str()), (StatusCode::OK, Some("disabled")), "{}", disabled.body);
    let id = user(s, "101").await.id;
    assert!(s.app.store.sessions_of_user(id).await.unwrap().is_empty(), "every session ended");
    for b in [&mut phone, &mut desk] {
        assert_eq!(b.get("/api/v1/me").await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(error_of(&s.browser().sign_in("101@organization.com", PASSWORD).await), (StatusCode::FORBIDDEN, "account_disabled".into()));
    let refused = s.browser().get(&format!("/api/v1/password/reset/{reset}")).await;
    assert_eq!(error_of(&refused), (StatusCode::CONFLICT, "account_not_active".into()));
    let new_password = json!({"password": "Another2Sonar", "password_confirmation": "Another2Sonar"});
    assert_eq!(s.browser().post(&format!("/api/v1/password/reset/{reset}"), new_password.clone()).await.status, StatusCode::CONFLICT);
    assert_eq!(s.browser().post("/api/v1/password/forgot", json!({"login_name": "101@organization.com"})).await.status, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mails_to(s, "u101@example.com", "reset your password", 2).await.len(), 1, "a disabled account gets no new link");
    assert!(audit_kinds(s).await.contains(&"user_disabled".to_owned()));

    let enabled = om.post(&users_path("/101/enable"), json!({})).await;
    assert_eq!((enabled.status, enabled.json()["status"].as_str()), (StatusCode::OK, Some("active")), "{}", enabled.body);
    assert_eq!(s.browser().sign_in("101@organization.com", PASSWORD).await.json()["state"], "signed_in", "the password is the one it had");
    assert!(audit_kinds(s).await.contains(&"user_enabled".to_owned()));

    // An account never set up goes back to invited, and its welcome link works again.
    let welcome = invited(s, "102", "u102@example.com", Role::User).await;
    assert_eq!(om.post(&users_path("/102/disable"), json!({})).await.status, StatusCode::OK);
    assert_eq!(error_of(&s.browser().get(&format!("/api/v1/activation/{welcome}")).await), (StatusCode::CONFLICT, "account_not_invited".into()));
    let back = om.post(&users_path("/102/enable"), json!({})).await;
    assert_eq!(back.json()["status"], "invited", "{}", back.body);
    assert_eq!(s.browser().get(&format!("/api/v1/activation/{welcome}")).await.status, StatusCode::OK);
}

async fn an_office_manager_cannot_disable_themselves_and_no_change_is_made_twice(s: &TestServer) {
    let mut om = s.signed_in_office_manager(DOMAIN).await;
    s.signed_in_member(DOMAIN, "101", "u101@example.com", Role::User).await;
    let before = audit_kinds(s).await.len();
    let own = om.post(&users_path("/100/disable"), json!({})).await;
    assert_eq!(error_of(&own), (StatusCode::CONFLICT, "cannot_disable_yourself".into()));
    assert!(own.json()["message"].as_str().unwrap().contains("another office manager"), "{}", own.body);
    assert_eq!(user(s, "100").await.state, UserState::Active);
    assert_eq!(om.get("/api/v1/me").await.status, StatusCode::OK, "still signed in");
    assert_eq!(error_of(&om.post(&users_path("/101/enable"), json!({})).await), (StatusCode::CONFLICT, "not_disabled".into()));
    assert_eq!(audit_kinds(s).await.len(), before, "refusals write nothing");

    assert_eq!(om.post(&users_path("/101/disable"), json!({})).await.status, StatusCode::OK);
    assert_eq!(error_of(&om.post(&users_path("/101/disable"), json!({})).await), (StatusCode::CONFLICT, "already_disabled".into()));
    assert_eq!(audit_kinds(s).await.iter().filter(|k| *k == "user_disabled").count(), 1);
    // Another office manager can disable this one.
    let mut second = s.signed_in_member(DOMAIN, "102", "om2@example.com", Role::OfficeManager).await;
    assert_eq!(second.post(&users_path("/100/disable"), json!({})).await.json()["status"], "disabled");
}

async fn a_new_designated_email_tells_both_addresses_and_kills_the_old_links(s: &TestServer) {
    let mut om = s.signed_in_office_manager(DOMAIN).await;
    s.signed_in_member(DOMAIN, "101", "old101@example.com", Role::User).await;
    assert_eq!(s.browser().post("/api/v1/password/forgot", json!({"login_name": "101@organization.com"})).await.status, StatusCode::ACCEPTED);
    let reset = emailed_token(s, "old101@example.com", "reset your password", 1).await;

    let changed = om.send(Method::PUT, &users_path("/101/designated-email"), Some(json!({"email": " Nora.New@Example.com "}))).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!((changed.json()["designated_email"].as_str(), changed.json()["email_verified"].as_bool()), (Some("Nora.New@Example.com"), Some(false)));
    let old = mails_to(s, "old101@example.com", "your designated email was changed", 1).await;
    assert_eq!(old.len(), 1, "the old address is told");
    for part in [&old[0].text, &old[0].html] {
        assert!(part.contains("N***@Example.com") && part.contains("Organization Inc.") && part.contains("101@organization.com"), "{part}");
        assert!(!part.to_lowercase().contains("nora.new"), "the new address is masked: {part}");
    }
    let new = mails_to(s, "nora.new@example.com", "this is now your designated email", 1).await;
    assert_eq!(new.len(), 1, "the new address gets a notice");
    assert!(new[0].text.contains("Organization Inc.") && new[0].html.contains("Organization Inc."));
    let dead = s.browser().get(&format!("/api/v1/password/reset/{reset}")).await;
    assert_eq!(error_of(&dead), (StatusCode::GONE, "link_replaced".into()), "a reset link sent to the old address dies");
    let entry = s.app.store.audit_of_company(user(s, "101").await.company_id, 1).await.unwrap().remove(0);
    assert_eq!((entry.kind.as_str(), entry.detail.as_str()), ("designated_email_changed", "old101@example.com to Nora.New@Example.com"));

    // Not set up yet: the welcome email goes again, to the new address; the old link is dead.
    let first = invited(s, "102", "old102@example.com", Role::User).await;
    let changed = om.send(Method::PUT, &users_path("/102/designated-email"), Some(json!({"email": "new102@example.com"}))).await;
    assert_eq!((changed.status, changed.json()["status"].as_str()), (StatusCode::OK, Some("invited")), "{}", changed.body);
    let second = emailed_token(s, "new102@example.com", "complete your account setup", 1).await;
    assert_eq!(mails_to(s, "old102@example.com", "your designated email was changed", 1).await.len(), 1);
    assert_eq!(error_of(&s.browser().get(&format!("/api/v1/activation/{first}")).await), (StatusCode::GONE, "link_replaced".into()));
    let setup = json!({"password": PASSWORD, "password_confirmation": PASSWORD, "pin": "2580"});
    let done = s.browser().post(&format!("/api/v1/activation/{second}"), setup).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(user(s, "102").await.designated_email_verified_at.is_some(), "the used welcome link verifies the new address");
}

async fn supervisors_read_users_and_strangers_find_nothing(s: &TestServer) {
    s.signed_in_office_manager(DOMAIN).await;
    s.signed_in_member(DOMAIN, "101", "u101@example.com", Role::User).await;
    let mut supervisor = s.signed_in_member(DOMAIN, "102", "sup@example.com", Role::Supervisor).await;
    let mut plain = s.signed_in_member(DOMAIN, "103", "u103@example.com", Role::User).await;
    let mut stranger = s.signed_in_office_manager("other.org").await;
    let before = audit_kinds(s).await.len();
    let changes = [
        (Method::POST, users_path("/101/disable"), json!({})),
        (Method::POST, users_path("/101/enable"), json!({})),
        (Method::PUT, users_path("/101/designated-email"), json!({"email": "x@example.com"})),
    ];

    for path in [users_path(""), users_path("/101")] {
        assert_eq!(supervisor.get(&path).await.status, StatusCode::OK, "a supervisor reads {path}");
        assert_eq!(plain.get(&path).await.status, StatusCode::NOT_FOUND, "a user: {path}");
        assert_eq!(stranger.get(&path).await.status, StatusCode::NOT_FOUND, "another company's office manager: {path}");
        assert_eq!(s.browser().get(&path).await.status, StatusCode::UNAUTHORIZED);
    }
    for (method, path, body) in changes {
        assert_eq!(error_of(&supervisor.send(method.clone(), &path, Some(body.clone())).await), (StatusCode::FORBIDDEN, "forbidden".into()), "{path}");
        assert_eq!(plain.send(method.clone(), &path, Some(body.clone())).await.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(stranger.send(method, &path, Some(body)).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(user(s, "101").await.state, UserState::Active);
    assert_eq!(user(s, "101").await.designated_email, "u101@example.com");
    assert_eq!(audit_kinds(s).await.len(), before, "nothing was written");
    assert_eq!(mails_to(s, "x@example.com", "", 0).await.len(), 0);
}

async fn bad_input_is_refused_and_nothing_is_written(s: &TestServer) {
    let mut om = s.signed_in_office_manager(DOMAIN).await;
    s.signed_in_member(DOMAIN, "101", "u101@example.com", Role::User).await;
    assert_eq!(om.post(&users_path("/101/emails"), json!({"email": "desk@example.com"})).await.status, StatusCode::CREATED);
    let before = (audit_kinds(s).await.len(), s.smtp.messages().await.len());

    let long = format!("?q={}", "x".repeat(255));
    for (query, field) in [("?limit=0", "limit"), ("?limit=201", "limit"), ("?limit=ten", "limit"), ("?offset=-1", "offset"), (long.as_str(), "q")] {
        let a = om.get(&users_path(query)).await;
        assert_eq!(error_of(&a), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed".into()), "{query}");
        assert!(!a.json()["fields"][field][0].as_str().unwrap_or_default().is_empty(), "{query}: {}", a.body);
    }
    let path = users_path("/101/designated-email");
    for (body, code) in [
        (json!({"email": "not an email"}), "validation_failed"),
        (json!({"email": "U101@Example.com"}), "same_email"),
        (json!({"email": "DESK@example.com"}), "email_is_additional"),
        (json!({"email": "x@example.com", "verified": true}), "invalid_body"),
        (json!({}), "invalid_body"),
    ] {
        let a = om.send(Method::PUT, &path, Some(body.clone())).await;
        assert_eq!(error_of(&a), (StatusCode::UNPROCESSABLE_ENTITY, code.into()), "{body:?}: {}", a.body);
        if code != "invalid_body" {
            assert!(!a.json()["fields"]["email"][0].as_str().unwrap().is_empty(), "{}", a.body);
        }
    }
    assert_eq!(om.raw(Method::PUT, &path, "application/json", b"{not json".to_vec()).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(om.send(Method::PUT, &users_path("/999/designated-email"), Some(json!({"email": "x@example.com"}))).await.status, StatusCode::NOT_FOUND);
    assert_eq!(om.post(&users_path("/abc/disable"), json!({})).await.status, StatusCode::NOT_FOUND);

    assert_eq!(user(s, "101").await.designated_email, "u101@example.com");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!((audit_kinds(s).await.len(), s.smtp.messages().await.len()), before, "no audit entry and no email for a refused request");
}

/// The page's CSRF token and body, after checking it answered 200.
async fn page(b: &mut Browser, path: &str) -> (String, String) {
    let a = b.get(path).await;
    assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
    (csrf_in(&a.body), a.body)
}

/// Posts a console form and follows its redirect; returns the page it led to.
async fn submit(b: &mut Browser, path: &str, fields: &[(&str, &str)]) -> String {
    let a = b.form(path, fields).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{path}: {}", a.body);
    let to = a.headers["location"].to_str().unwrap().to_owned();
    page(b, &to).await.1
}

async fn the_console_lets_an_office_manager_do_it_all_without_javascript(s: &TestServer) {
    let mut om = s.signed_in_office_manager(DOMAIN).await;
    s.signed_in_member(DOMAIN, "101", "u101@example.com", Role::User).await;
    let (csrf, list) = page(&mut om, "/console/users").await;
    assert!(list.contains("href=\"/console/users/101\"") && list.contains("u101@example.com"), "{list}");
    assert!(list.contains("method=\"post\" action=\"/console/users"), "an office manager gets the Create user form");
    let (_, found) = page(&mut om, "/console/users?q=U101%40").await;
    assert!(found.contains("/console/users/101") && !found.contains("href=\"/console/users/100\""), "{found}");
    let account = om.get("/account").await.body;
    assert!(account.contains("href=\"/console\""), "My Account links the console");

    // Create user: errors stand next to their fields, the form keeps what was typed.
    let bad = om.form("/console/users", &[("csrf_token", &csrf), ("extension", "1a"), ("designated_email", "nope"), ("role", "user")]).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("id=\"extension-errors\"") && bad.body.contains("id=\"designated_email-errors\"") && bad.body.contains("value=\"1a\""), "{}", bad.body);
    let taken = om.form("/console/users", &[("csrf_token", &csrf), ("extension", "101"), ("designated_email", "x@example.com"), ("role", "user")]).await;
    assert_eq!(taken.status, StatusCode::CONFLICT);
    assert!(taken.body.contains("id=\"extension-errors\"") && taken.body.contains("already taken"), "{}", taken.body);
    let created = submit(&mut om, "/console/users", &[("csrf_token", &csrf), ("extension", "105"), ("designated_email", "new105@example.com"), ("role", "supervisor")]).await;
    assert!(created.contains("The user was created and the welcome email was sent to new105@example.com."), "{created}");
    assert_eq!(user(s, "105").await.role, Role::Supervisor);
    assert_eq!(mails_to(s, "new105@example.com", "complete your account setup", 1).await.len(), 1);
    let resent = submit(&mut om, "/console/users/105/welcome", &[("csrf_token", &csrf)]).await;
    assert!(resent.contains("A new welcome email was sent to new105@example.com"), "{resent}");

    // The user's page: every change, then its notice.
    let (_, detail) = page(&mut om, "/console/users/101").await;
    for action in ["disable", "designated-email", "add-email", "reset-two-factor"] {
        assert!(detail.contains(&format!("action=\"/console/users/101/{action}\"")), "{action}");
    }
    assert!(!detail.contains("/console/users/101/welcome"), "an active account is not invited again");
    let wrong = om.form("/console/users/101/designated-email", &[("csrf_token", &csrf), ("designated_email", "nope")]).await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.body.contains("id=\"designated_email-errors\"") && wrong.body.contains("value=\"nope\""), "{}", wrong.body);
    let moved = submit(&mut om, "/console/users/101/designated-email", &[("csrf_token", &csrf), ("designated_email", "moved@example.com")]).await;
    assert!(moved.contains("The designated email is now moved@example.com."), "{moved}");
    let added = submit(&mut om, "/console/users/101/add-email", &[("csrf_token", &csrf), ("additional_email", "desk@example.com")]).await;
    assert!(added.contains("desk@example.com") && added.contains("Not confirmed"), "{added}");
    assert!(submit(&mut om, "/console/users/101/remove-email", &[("csrf_token", &csrf), ("email", "desk@example.com")]).await.contains("The additional email was removed."));
    assert!(s.app.store.additional_emails(user(s, "101").await.id).await.unwrap().is_empty());
    let reset = submit(&mut om, "/console/users/101/reset-two-factor", &[("csrf_token", &csrf)]).await;
    assert!(reset.contains("Two-factor authentication was reset"), "{reset}");
    let disabled = submit(&mut om, "/console/users/101/disable", &[("csrf_token", &csrf)]).await;
    assert!(disabled.contains("The account is disabled") && disabled.contains("action=\"/console/users/101/enable\""), "{disabled}");
    assert_eq!(user(s, "101").await.state, UserState::Disabled);
    assert!(submit(&mut om, "/console/users/101/enable", &[("csrf_token", &csrf)]).await.contains("The account is enabled again."));
    assert_eq!(user(s, "101").await.state, UserState::Active);

    // Their own page offers no Disable; a post anyway is refused with the reason.
    let (_, own) = page(&mut om, "/console/users/100").await;
    assert!(!own.contains("/console/users/100/disable"), "{own}");
    let refused = om.form("/console/users/100/disable", &[("csrf_token", &csrf)]).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(refused.body.contains("You cannot disable your own account"), "{}", refused.body);
    let kinds = audit_kinds(s).await;
    for kind in ["user_created", "welcome_resent", "designated_email_changed", "additional_email_added", "additional_email_removed", "two_factor_reset", "user_disabled", "user_enabled"] {
        assert!(kinds.contains(&kind.to_owned()), "{kind} in {kinds:?}");
    }
}

async fn the_console_shows_supervisors_no_form_and_refuses_forged_posts(s: &TestServer) {
    let mut om = s.signed_in_office_manager(DOMAIN).await;
    s.signed_in_member(DOMAIN, "101", "u101@example.com", Role::User).await;
    let mut supervisor = s.signed_in_member(DOMAIN, "102", "sup@example.com", Role::Supervisor).await;
    let mut plain = s.signed_in_member(DOMAIN, "103", "u103@example.com", Role::User).await;
    let mut stranger = s.signed_in_office_manager("other.org").await;
    let mut second_session = office_manager_session(s).await;
    let before = audit_kinds(s).await.len();

    let (sup_csrf, list) = page(&mut supervisor, "/console/users").await;
    assert!(list.contains("/console/users/101") && list.contains("Read-only"), "{list}");
    let (_, detail) = page(&mut supervisor, "/console/users/101").await;
    assert!(detail.contains("u101@example.com"), "{detail}");
    for body in [&list, &detail] {
        assert!(!body.contains("method=\"post\" action=\"/console/users"), "a supervisor sees no form: {body}");
    }
    assert!(supervisor.get("/account").await.body.contains("href=\"/console\""));
    let refused = supervisor.form("/console/users/101/disable", &[("csrf_token", &sup_csrf)]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let created = supervisor.form("/console/users", &[("csrf_token", &sup_csrf), ("extension", "109"), ("designated_email", "x@example.com"), ("role", "user")]).await;
    assert_eq!(created.status, StatusCode::FORBIDDEN);

    for path in ["/console/users", "/console/users/101"] {
        assert_eq!(plain.get(path).await.status, StatusCode::NOT_FOUND, "a user: {path}");
        let signed_out = s.browser().get(path).await;
        assert_eq!((signed_out.status, signed_out.headers["location"].to_str().unwrap()), (StatusCode::SEE_OTHER, "/sign-in"));
    }
    assert!(!plain.get("/account").await.body.contains("href=\"/console\""), "a user has no console");
    assert_eq!(stranger.get("/console/users/101").await.status, StatusCode::NOT_FOUND, "another company's 101 does not exist there");
    assert!(!page(&mut stranger, "/console/users").await.1.contains("u101@example.com"));

    // An office manager's post without its CSRF token, or with another browser's, changes nothing.
    let (csrf, _) = page(&mut om, "/console/users/101").await;
    let create = [("extension", "109"), ("designated_email", "x@example.com"), ("role", "user")];
    for (other_session, token) in [(false, None), (false, Some("forged")), (true, Some(csrf.as_str()))] {
        let b = if other_session { &mut second_session } else { &mut om };
        let token: Vec<(&str, &str)> = token.map(|t| ("csrf_token", t)).into_iter().collect();
        assert_eq!(b.form("/console/users/101/disable", &token).await.status, StatusCode::FORBIDDEN, "{token:?}");
        assert_eq!(b.form("/console/users", &[token.as_slice(), &create].concat()).await.status, StatusCode::FORBIDDEN, "{token:?}");
    }
    assert_eq!(user(s, "101").await.state, UserState::Active);
    assert!(s.app.store.user_by_login_name(&LoginName::parse("109@organization.com").unwrap()).await.unwrap().is_none());
    assert_eq!(audit_kinds(s).await.len(), before, "nothing was written");
}

/// A second session of the office manager 100, with a CSRF token of its own.
async fn office_manager_session(s: &TestServer) -> Browser {
    let mut b = s.browser();
    assert_eq!(b.sign_in("100@organization.com", "Manager2Sonar").await.status, StatusCode::OK);
    b
}

async fn the_console_pages_through_a_long_list_keeping_the_search(s: &TestServer) {
    let mut om = s.signed_in_office_manager(DOMAIN).await;
    let company = s.app.store.company_by_domain(DOMAIN).await.unwrap().unwrap();
    // 60 invited users straight into the store: the pages only read them.
    for ext in 300..360 {
        let ext = latchkey_core::Extension::parse(&ext.to_string()).unwrap();
        let new = latchkey_store::NewUser {
            company_id: company.id,
            login_name: LoginName::new(&ext, &latchkey_core::CompanyDomain::parse(DOMAIN).unwrap()),
            extension: ext,
            designated_email: latchkey_core::Email::parse("desk@example.com").unwrap(),
            role: Role::User,
            created_at: s.app.now(),
        };
        let token = latchkey_core::secret::Token::generate();
        let link = latchkey_store::NewLink { token_hash: token.hash(), link: latchkey_core::flows::email_link::EmailLink::issue(latchkey_core::flows::email_link::LinkPurpose::Welcome, s.app.now()) };
        s.app.store.create_user(&new, &link, &audit(s, "user_created")).await.unwrap();
    }
    let (_, first) = page(&mut om, "/console/users?q=desk%40").await;
    assert!(first.contains("/console/users/300\"") && first.contains("/console/users/349\"") && !first.contains("/console/users/350\""), "50 a page");
    assert!(first.contains("href=\"/console/users?q=desk%40&amp;offset=50\"") && !first.contains("rel=\"prev\""), "{first}");
    let (_, second) = page(&mut om, "/console/users?q=desk%40&offset=50").await;
    assert!(second.contains("/console/users/359\"") && !second.contains("/console/users/349\"") && !second.contains("rel=\"next\""), "{second}");
    assert!(second.contains("href=\"/console/users?q=desk%40\" rel=\"prev\""), "{second}");
    let bad = om.get("/console/users?offset=-5").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("The offset is a whole number"), "{}", bad.body);
}
