//! Single sign-on over HTTP on SQLite and PostgreSQL. So far: managing linked identities in
//! Account Security (listed with provider, email, when linked and last used; removed by their
//! owner only; audited; the user is emailed).

#[macro_use]
#[path = "support/server.rs"]
mod server;
#[path = "support/smtp.rs"]
mod smtp;
#[path = "support/two_factor.rs"]
mod two_factor;

use latchkey_core::flows::sso::Provider;
use latchkey_server::app::Actor;
use reqwest::{Method, StatusCode};
use server::{Backend, TestServer};
use two_factor::{sso_link as link, user_with_2fa_feature, wait_for_subject};

on_both_stores!(linked_identities_are_listed_and_removed_by_their_owner_only);


async fn linked_identities_are_listed_and_removed_by_their_owner_only(s: &TestServer) {
    let mut alice = user_with_2fa_feature(s, "101").await;
    let mut bob = user_with_2fa_feature(s, "102").await;
    s.app.set_sso_feature("organization.com", true, &[Provider::Google, Provider::Microsoft], Actor::Operator, &Default::default()).await.unwrap();
    let google = link(s, "101@organization.com", Provider::Google, "g-sub", "alice@gmail.example").await;
    link(s, "101@organization.com", Provider::Microsoft, "m-sub", "alice@org.example").await;
    let bobs = link(s, "102@organization.com", Provider::Google, "g-bob", "bob@gmail.example").await;

    let me = alice.get("/api/v1/me").await.json();
    let links = me["sso_links"].as_array().unwrap();
    assert_eq!(links.len(), 2, "{me}");
    assert_eq!(links[0]["provider"], "google");
    assert_eq!(links[0]["email"], "alice@gmail.example");
    assert!(links[0]["linked_at"].as_str().unwrap().ends_with('Z'));
    assert!(links[0]["last_used_at"].is_null());
    assert_eq!(alice.get("/api/v1/me/sso-links").await.json().as_array().unwrap().len(), 2);

    let foreign = alice.send(Method::DELETE, &format!("/api/v1/me/sso-links/{bobs}"), None).await;
    assert_eq!((foreign.status, foreign.json()["error"].as_str()), (StatusCode::NOT_FOUND, Some("link_not_found")), "not another user's link");
    assert_eq!(alice.send(Method::DELETE, "/api/v1/me/sso-links/abc", None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(bob.get("/api/v1/me/sso-links").await.json().as_array().unwrap().len(), 1, "bob's link is still there");

    let removed = alice.send(Method::DELETE, &format!("/api/v1/me/sso-links/{google}"), None).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.body);
    let left = alice.get("/api/v1/me/sso-links").await.json();
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert_eq!(left[0]["provider"], "microsoft");
    assert_eq!(alice.send(Method::DELETE, &format!("/api/v1/me/sso-links/{google}"), None).await.status, StatusCode::NOT_FOUND, "once");
    assert!(wait_for_subject(s, "single sign-on link removed").await, "the user is told");
    let company = s.app.store.company_by_domain("organization.com").await.unwrap().unwrap();
    let audit = s.app.store.audit_of_company(company.id, 50).await.unwrap();
    assert!(audit.iter().any(|a| a.kind == "sso_unlinked" && a.detail.contains("google")));

    // Without the session's CSRF token nothing is removed.
    alice.csrf = Some("forged".into());
    assert_eq!(alice.send(Method::DELETE, &format!("/api/v1/me/sso-links/{}", left[0]["id"]), None).await.status, StatusCode::FORBIDDEN);
}
