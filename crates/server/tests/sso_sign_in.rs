//! Signing in with Google and Microsoft 365 against a real OpenID provider on loopback (npm
//! `oidc-provider`, `tests/oidc`), on SQLite and PostgreSQL: direct sign-in by a trusted email,
//! linking with the account's password (and second factor), the account chooser that remembers,
//! the company's second factor after SSO, key rotation, and the provider's errors.

#[allow(unused_macros)]
#[macro_use]
#[path = "support/server.rs"]
mod server;
#[path = "support/smtp.rs"]
mod smtp;
#[path = "support/two_factor.rs"]
mod two_factor;
#[path = "support/oidc.rs"]
mod oidc;

use latchkey_core::flows::sso::Provider;
use latchkey_core::LoginName;
use latchkey_server::app::Actor;
use latchkey_server::config::OidcProviderConfig;
use latchkey_store::{SsoSettings, User};
use oidc::{Account, Idp, OidcOptions, OidcProvider, TENANT_A, TENANT_B};
use reqwest::{Method, StatusCode};
use serde_json::json;
use server::{csrf_in, Answer, Backend, Browser, TestServer};
use two_factor::{enrol_totp, oathtool, user_with_2fa_feature, wait_for_subject};

/// Latchkey's public address in these tests: the provider redirects the browser there, and the
/// test's browser follows the redirect to the real server by path.
const PUBLIC_URL: &str = "http://127.0.0.1:9";

macro_rules! on_both_stores_with_idp {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() {
                let (s, idp) = super::start(super::Backend::Sqlite, stringify!($name), "").await.unwrap();
                super::$name(&s, &idp).await
            } )*
        }
        mod on_postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() {
                if let Some((s, idp)) = super::start(super::Backend::Postgres, stringify!($name), "").await { super::$name(&s, &idp).await }
            } )*
        }
    };
}

on_both_stores_with_idp!(
    a_verified_google_email_signs_in_directly,
    an_unverified_identity_is_linked_once_with_the_password_then_signs_in_directly,
    microsoft_emails_count_only_with_xms_edov,
    a_shared_email_shows_the_chooser_which_remembers_the_choice,
    the_companys_second_factor_follows_sso_unless_the_providers_mfa_is_enough,
    linking_an_account_with_a_second_factor_asks_for_it_before_the_link_is_made,
    a_link_waiting_on_the_second_factor_is_made_while_the_flow_lives,
    linking_needs_a_company_that_enabled_the_provider,
    rotated_provider_keys_are_fetched_again,
    denied_consent_replays_and_an_outage_lead_back_to_the_password_sign_in,
    an_additional_email_signs_in_only_once_its_confirmation_link_was_opened,
);

async fn start(backend: Backend, test: &str, trusted_tenants: &str) -> Option<(TestServer, OidcProvider)> {
    let idp = OidcProvider::start_with(OidcOptions {
        redirect_uris: vec![format!("{PUBLIC_URL}/sso/google/callback"), format!("{PUBLIC_URL}/sso/microsoft/callback")],
        ..OidcOptions::default()
    })
    .await;
    let google = OidcProviderConfig {
        issuer: idp.google_issuer(),
        client_id: idp.google_client_id().into(),
        client_secret: idp.google_client_secret().into(),
        trusted_tenants: String::new(),
    };
    let microsoft = OidcProviderConfig {
        issuer: idp.microsoft_common_discovery_url().trim_end_matches("/.well-known/openid-configuration").to_owned(),
        client_id: idp.microsoft_client_id().into(),
        client_secret: idp.microsoft_client_secret().into(),
        trusted_tenants: trusted_tenants.to_owned(),
    };
    let s = TestServer::start_with(backend, test, move |c| {
        c.public_url = PUBLIC_URL.into();
        c.sso.google = Some(google);
        c.sso.microsoft = Some(microsoft);
    })
    .await?;
    Some((s, idp))
}

async fn enable_sso(s: &TestServer) {
    s.app.set_sso_feature("organization.com", true, &[Provider::Google, Provider::Microsoft], Actor::Operator, &Default::default()).await.unwrap();
}

async fn user(s: &TestServer, login: &str) -> User {
    s.app.store.user_by_login_name(&LoginName::parse(login).unwrap()).await.unwrap().unwrap()
}

fn audit(s: &TestServer, company_id: i64, kind: &'static str) -> latchkey_store::AuditEntry {
    latchkey_store::AuditEntry { company_id: Some(company_id), actor_user_id: None, actor_token_id: None, target_user_id: None, kind, detail: String::new(), client_ip: None, user_agent: None, at: s.app.now() }
}

fn location(a: &Answer) -> String {
    a.headers.get("location").unwrap_or_else(|| panic!("a redirect, got {}: {}", a.status, a.body)).to_str().unwrap().to_owned()
}

/// A trip to the provider and back: the start link, the provider (which signs in whoever the test
/// planned), and the callback, followed by path on the real server. Returns the callback's answer.
async fn trip(b: &mut Browser, provider: &str) -> Answer {
    let started = b.get(&format!("/sso/{provider}/start")).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let at_provider = location(&started);
    assert!(at_provider.contains("code_challenge_method=S256") && at_provider.contains("nonce=") && at_provider.contains("state="), "{at_provider}");
    let answer = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap().get(&at_provider).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::FOUND, "the provider answers with a redirect: {}", answer.text().await.unwrap_or_default());
    let back = answer.headers()["location"].to_str().unwrap().to_owned();
    let path = back.strip_prefix(PUBLIC_URL).unwrap_or_else(|| panic!("back to Latchkey: {back}"));
    b.get(path).await
}

/// The state of a signed-in browser: who `/api/v1/me` says it is.
async fn signed_in_as(b: &mut Browser) -> Option<String> {
    let me = b.get("/api/v1/me").await;
    (me.status == StatusCode::OK).then(|| me.json()["login_name"].as_str().unwrap().to_owned())
}

async fn a_verified_google_email_signs_in_directly(s: &TestServer, idp: &OidcProvider) {
    user_with_2fa_feature(s, "101").await;
    enable_sso(s).await;
    idp.set_accounts(&[Account::google("g-101", "U101@example.com", true, "Alice")]).await;
    idp.next_login(Idp::Google, None, "g-101").await;

    let mut b = s.browser();
    let back = trip(&mut b, "google").await;
    assert_eq!((back.status, location(&back).as_str()), (StatusCode::SEE_OTHER, "/account"), "{}", back.body);
    assert_eq!(signed_in_as(&mut b).await.as_deref(), Some("101@organization.com"));
    assert!(s.app.store.sso_links_of_user(user(s, "101@organization.com").await.id).await.unwrap().is_empty(), "an email match stores no link");

    // The sign-in page offers both providers; the account page works in that session.
    let page = s.browser().get("/sign-in").await.body;
    assert!(page.contains("href=\"/sso/google/start\"") && page.contains("Sign in with Office 365"), "{page}");
    assert_eq!(b.get("/account").await.status, StatusCode::OK);
}

async fn an_unverified_identity_is_linked_once_with_the_password_then_signs_in_directly(s: &TestServer, idp: &OidcProvider) {
    user_with_2fa_feature(s, "101").await;
    enable_sso(s).await;
    // The same address as the account's, but Google does not vouch for it: no match, linking.
    idp.set_accounts(&[Account::google("g-unverified", "u101@example.com", false, "Alice")]).await;
    idp.next_login(Idp::Google, None, "g-unverified").await;
    let mut b = s.browser();
    let back = trip(&mut b, "google").await;
    let to = location(&back);
    assert!(to.starts_with("/sso/link?waiting="), "{to}");
    assert_eq!(signed_in_as(&mut b).await, None, "nobody is signed in before the link");

    let page = b.get(&to).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Link your Google sign-in") && page.body.contains("u101@example.com"), "{}", page.body);
    let csrf = csrf_in(&page.body);
    let waiting = to.trim_start_matches("/sso/link?waiting=").to_owned();
    let wrong = b.form("/sso/link", &[("csrf_token", &csrf), ("waiting", &waiting), ("login_name", "101@organization.com"), ("password", "not-it")]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.body);
    assert!(wrong.body.contains("Link your Google sign-in"), "the form again");
    let forged = b.form("/sso/link", &[("csrf_token", "forged"), ("waiting", &waiting), ("login_name", "101@organization.com"), ("password", "Welcome2Sonar")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "CSRF");
    let done = b.form("/sso/link", &[("csrf_token", &csrf), ("waiting", &waiting), ("login_name", "101@organization.com"), ("password", "Welcome2Sonar")]).await;
    assert_eq!((done.status, location(&done).as_str()), (StatusCode::SEE_OTHER, "/account"), "{}", done.body);
    assert_eq!(signed_in_as(&mut b).await.as_deref(), Some("101@organization.com"));
    let again = b.form("/sso/link", &[("csrf_token", &csrf), ("waiting", &waiting), ("login_name", "101@organization.com"), ("password", "Welcome2Sonar")]).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "a waiting identity is used once");

    let alice = user(s, "101@organization.com").await;
    let links = s.app.store.sso_links_of_user(alice.id).await.unwrap();
    assert_eq!((links.len(), links[0].subject.as_str(), links[0].email.as_deref()), (1, "g-unverified", Some("u101@example.com")));
    assert!(wait_for_subject(s, "single sign-on link added").await, "the user is told");
    let audit = s.app.store.audit_of_company(alice.company_id, 50).await.unwrap();
    assert!(audit.iter().any(|a| a.kind == "sso_linked" && a.detail.starts_with("google")), "audited");
    let account = b.get("/account").await.body;
    assert!(account.contains("u101@example.com"), "Account Security lists the link");

    // The second sign-in goes straight through, and the link records its use.
    idp.next_login(Idp::Google, None, "g-unverified").await;
    let mut fresh = s.browser();
    let back = trip(&mut fresh, "google").await;
    assert_eq!(location(&back), "/account");
    assert!(s.app.store.sso_links_of_user(alice.id).await.unwrap()[0].last_used_at.is_some());

    // Removing the link sends the identity back to linking.
    b.csrf = b.get("/api/v1/csrf").await.json()["csrf_token"].as_str().map(str::to_owned);
    let removed = b.send(Method::DELETE, &format!("/api/v1/me/sso-links/{}", links[0].id), None).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.body);
    idp.next_login(Idp::Google, None, "g-unverified").await;
    let back = trip(&mut s.browser(), "google").await;
    assert!(location(&back).starts_with("/sso/link?waiting="));
}

async fn microsoft_emails_count_only_with_xms_edov(s: &TestServer, idp: &OidcProvider) {
    user_with_2fa_feature(s, "101").await;
    enable_sso(s).await;
    idp.set_accounts(&[
        // nOAuth: an attacker's tenant can set any email; without xms_edov it proves nothing.
        Account::microsoft(TENANT_B, "m-attacker", "u101@example.com", None),
        Account::microsoft(TENANT_A, "m-101", "u101@example.com", Some(true)),
    ])
    .await;
    idp.next_login(Idp::Microsoft, Some(TENANT_B), "m-attacker").await;
    let mut b = s.browser();
    let back = trip(&mut b, "microsoft").await;
    assert!(location(&back).starts_with("/sso/link?waiting="), "an unverified Microsoft email goes to linking");
    assert_eq!(signed_in_as(&mut b).await, None);

    idp.next_login(Idp::Microsoft, Some(TENANT_A), "m-101").await;
    let back = trip(&mut b, "microsoft").await;
    assert_eq!(location(&back), "/account", "xms_edov: the tenant verified the domain");
    assert_eq!(signed_in_as(&mut b).await.as_deref(), Some("101@organization.com"));
}

async fn a_shared_email_shows_the_chooser_which_remembers_the_choice(s: &TestServer, idp: &OidcProvider) {
    user_with_2fa_feature(s, "101").await;
    user_with_2fa_feature(s, "102").await;
    user_with_2fa_feature(s, "103").await;
    enable_sso(s).await;
    // 102 and 103 share the group address (the seed's "Beware of Group Email Addresses").
    for login in ["102@organization.com", "103@organization.com"] {
        let u = user(s, login).await;
        let email = latchkey_core::Email::parse("sales@example.com").unwrap();
        s.app.store.change_designated_email(u.id, &email, &audit(s, u.company_id, "email_changed")).await.unwrap();
        s.app.store.mark_email_verified(u.id, "sales@example.com", s.app.now()).await.unwrap();
    }
    idp.set_accounts(&[Account::google("g-sales", "sales@example.com", true, "Sales")]).await;

    idp.next_login(Idp::Google, None, "g-sales").await;
    let mut b = s.browser();
    let back = trip(&mut b, "google").await;
    let to = location(&back);
    assert!(to.starts_with("/sso/choose?waiting="), "{to}");
    let page = b.get(&to).await.body;
    assert!(page.contains("102@organization.com") && page.contains("103@organization.com") && !page.contains("101@organization.com"), "{page}");
    assert!(page.contains("Use another account"));
    let waiting = to.trim_start_matches("/sso/choose?waiting=").to_owned();
    let csrf = csrf_in(&page);
    let third = user(s, "101@organization.com").await.id.to_string();
    let tampered = b.form("/sso/choose", &[("csrf_token", &csrf), ("waiting", &waiting), ("user", &third)]).await;
    assert_eq!(tampered.status, StatusCode::UNPROCESSABLE_ENTITY, "an account not offered: {}", tampered.body);
    let chosen = user(s, "103@organization.com").await.id.to_string();
    let done = b.form("/sso/choose", &[("csrf_token", &csrf), ("waiting", &waiting), ("user", &chosen)]).await;
    assert_eq!(location(&done), "/account");
    assert_eq!(signed_in_as(&mut b).await.as_deref(), Some("103@organization.com"));

    // Next time the chooser pre-selects the remembered account.
    idp.next_login(Idp::Google, None, "g-sales").await;
    let mut b = s.browser();
    let to = location(&trip(&mut b, "google").await);
    let page = b.get(&to).await.body;
    let checked = page.split("<li>").find(|item| item.contains(" checked")).unwrap_or_default().to_owned();
    assert!(checked.contains("103@organization.com") && checked.contains("last used"), "{page}");

    // The same through the JSON API: the callback says `choose`; a choice signs in.
    idp.next_login(Idp::Google, None, "g-sales").await;
    let mut api = s.browser();
    let started = api.post("/api/v1/sso/google/start", json!({})).await;
    let url = started.json()["authorization_url"].as_str().unwrap().to_owned();
    let answer = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap().get(&url).send().await.unwrap();
    let back = url::Url::parse(answer.headers()["location"].to_str().unwrap()).unwrap();
    let param = |k: &str| back.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned());
    let step = api.post("/api/v1/sso/google/callback", json!({"code": param("code"), "state": param("state")})).await;
    let step = step.json();
    assert_eq!((step["state"].as_str(), step["preselected"].as_i64()), (Some("choose"), Some(chosen.parse().unwrap())), "{step}");
    assert_eq!(step["candidates"].as_array().unwrap().len(), 2);
    let signed = api.post(&format!("/api/v1/sso/waiting/{}/choose", step["waiting"].as_str().unwrap()), json!({"user_id": chosen.parse::<i64>().unwrap()})).await;
    assert_eq!(signed.json()["state"], "signed_in", "{}", signed.body);
}

async fn the_companys_second_factor_follows_sso_unless_the_providers_mfa_is_enough(s: &TestServer, idp: &OidcProvider) {
    let mut alice = user_with_2fa_feature(s, "101").await;
    let (secret, _) = enrol_totp(s, &mut alice).await;
    s.clock.advance(time::Duration::seconds(30)); // the enrolment spent this step's code
    enable_sso(s).await;
    idp.set_accounts(&[Account::google("g-101", "u101@example.com", true, "Alice")]).await;

    idp.next_login(Idp::Google, None, "g-101").await;
    let mut b = s.browser();
    let back = trip(&mut b, "google").await;
    assert_eq!(location(&back), "/sign-in/second-factor", "the second factor after SSO");
    assert_eq!(signed_in_as(&mut b).await, None);
    let page = b.get("/sign-in/second-factor").await.body;
    let done = b.form("/sign-in/second-factor", &[("csrf_token", &csrf_in(&page)), ("method", "totp"), ("code", &oathtool(&secret, s.app.now()))]).await;
    assert_eq!(location(&done), "/account", "{}", done.body);
    assert_eq!(signed_in_as(&mut b).await.as_deref(), Some("101@organization.com"));

    // The office manager counts Google's own MFA as enough.
    let company = s.app.store.company_by_domain("organization.com").await.unwrap().unwrap();
    let mut settings: SsoSettings = s.app.store.sso_settings(company.id).await.unwrap();
    settings.mfa_sufficient = vec![Provider::Google];
    s.app.store.set_sso_settings(company.id, &settings, &audit(s, company.id, "sso_policy_changed")).await.unwrap();
    idp.next_login(Idp::Google, None, "g-101").await;
    let mut b = s.browser();
    assert_eq!(location(&trip(&mut b, "google").await), "/account");
}

/// Alice, with the authenticator app, comes back from Google with an identity no account has:
/// the browser at the link page, her TOTP secret, the page and the waiting identity's token.
async fn alice_at_the_link_page(s: &TestServer, idp: &OidcProvider) -> (Browser, String, String, String) {
    let mut alice = user_with_2fa_feature(s, "101").await;
    let (secret, _) = enrol_totp(s, &mut alice).await;
    s.clock.advance(time::Duration::seconds(30)); // the enrolment spent this step's code
    enable_sso(s).await;
    idp.set_accounts(&[Account::google("g-other", "alice.personal@example.net", true, "Alice")]).await;
    idp.next_login(Idp::Google, None, "g-other").await;
    let mut b = s.browser();
    let to = location(&trip(&mut b, "google").await);
    let page = b.get(&to).await.body;
    (b, secret, page, to.trim_start_matches("/sso/link?waiting=").to_owned())
}

/// The link page's form, with Alice's password: she goes on to the second-factor step.
async fn link_with_the_password(b: &mut Browser, page: &str, waiting: &str) {
    let step = b.form("/sso/link", &[("csrf_token", &csrf_in(page)), ("waiting", waiting), ("login_name", "101@organization.com"), ("password", "Welcome2Sonar")]).await;
    assert_eq!(location(&step), "/sign-in/second-factor");
}

async fn linking_an_account_with_a_second_factor_asks_for_it_before_the_link_is_made(s: &TestServer, idp: &OidcProvider) {
    let (mut b, secret, page, waiting) = alice_at_the_link_page(s, idp).await;
    link_with_the_password(&mut b, &page, &waiting).await;
    let alice_id = user(s, "101@organization.com").await.id;
    assert!(s.app.store.sso_links_of_user(alice_id).await.unwrap().is_empty(), "no link before the second factor");

    let page = b.get("/sign-in/second-factor").await.body;
    let wrong = b.form("/sign-in/second-factor", &[("csrf_token", &csrf_in(&page)), ("method", "totp"), ("code", "000000")]).await;
    assert_ne!(wrong.status, StatusCode::SEE_OTHER);
    assert!(s.app.store.sso_links_of_user(alice_id).await.unwrap().is_empty(), "a wrong code links nothing");
    let done = b.form("/sign-in/second-factor", &[("csrf_token", &csrf_in(&page)), ("method", "totp"), ("code", &oathtool(&secret, s.app.now()))]).await;
    assert_eq!(location(&done), "/account", "{}", done.body);
    let links = s.app.store.sso_links_of_user(alice_id).await.unwrap();
    assert_eq!(links.len(), 1, "linked once the second factor was verified");

    // From now on the identity signs in directly to the second-factor step.
    idp.next_login(Idp::Google, None, "g-other").await;
    assert_eq!(location(&trip(&mut s.browser(), "google").await), "/sign-in/second-factor");
}

/// The waiting identity's own 10 minutes run from the provider's answer, the flow's from the
/// password: a second factor entered after the first ran out, while the flow lives, still links
/// (before, the code was spent and the sign-in went through without the link it was for).
async fn a_link_waiting_on_the_second_factor_is_made_while_the_flow_lives(s: &TestServer, idp: &OidcProvider) {
    let (mut b, secret, page, waiting) = alice_at_the_link_page(s, idp).await;
    s.clock.advance(time::Duration::minutes(6));
    link_with_the_password(&mut b, &page, &waiting).await;
    s.clock.advance(time::Duration::minutes(5));
    let page = b.get("/sign-in/second-factor").await.body;
    let done = b.form("/sign-in/second-factor", &[("csrf_token", &csrf_in(&page)), ("method", "totp"), ("code", &oathtool(&secret, s.app.now()))]).await;
    assert_eq!(location(&done), "/account", "{}", done.body);
    let links = s.app.store.sso_links_of_user(user(s, "101@organization.com").await.id).await.unwrap();
    assert_eq!(links.len(), 1, "linked when the second factor completed the flow");
}

async fn linking_needs_a_company_that_enabled_the_provider(s: &TestServer, idp: &OidcProvider) {
    user_with_2fa_feature(s, "101").await;
    s.app.set_sso_feature("organization.com", true, &[Provider::Microsoft], Actor::Operator, &Default::default()).await.unwrap();
    s.app.set_sso_feature("organization.com", false, &[Provider::Google], Actor::Operator, &Default::default()).await.unwrap();
    // Google is not enabled for the company: its verified email matches nobody.
    idp.set_accounts(&[Account::google("g-101", "u101@example.com", true, "Alice")]).await;
    idp.next_login(Idp::Google, None, "g-101").await;
    let mut b = s.browser();
    let to = location(&trip(&mut b, "google").await);
    assert!(to.starts_with("/sso/link?waiting="), "{to}");
    let page = b.get(&to).await.body;
    let waiting = to.trim_start_matches("/sso/link?waiting=").to_owned();
    let refused = b.form("/sso/link", &[("csrf_token", &csrf_in(&page)), ("waiting", &waiting), ("login_name", "101@organization.com"), ("password", "Welcome2Sonar")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(refused.body.contains("href=\"/sign-in\""));
    assert_eq!(signed_in_as(&mut b).await, None, "a refused link leaves no session");
    assert!(s.app.store.sso_links_of_user(user(s, "101@organization.com").await.id).await.unwrap().is_empty());
}

async fn rotated_provider_keys_are_fetched_again(s: &TestServer, idp: &OidcProvider) {
    user_with_2fa_feature(s, "101").await;
    enable_sso(s).await;
    idp.set_accounts(&[Account::google("g-101", "u101@example.com", true, "Alice")]).await;
    idp.next_login(Idp::Google, None, "g-101").await;
    assert_eq!(location(&trip(&mut s.browser(), "google").await), "/account");
    let before = idp.kids(Idp::Google).await;
    idp.rotate_keys(false).await;
    assert_ne!(idp.kids(Idp::Google).await, before);
    // Past the floor between two fetches of the keys.
    tokio::time::sleep(latchkey_server::oidc::JWKS_REFRESH_MIN + std::time::Duration::from_millis(200)).await;
    idp.next_login(Idp::Google, None, "g-101").await;
    let mut b = s.browser();
    assert_eq!(location(&trip(&mut b, "google").await), "/account", "a token signed with the new key is accepted");
}

async fn denied_consent_replays_and_an_outage_lead_back_to_the_password_sign_in(s: &TestServer, idp: &OidcProvider) {
    user_with_2fa_feature(s, "101").await;
    enable_sso(s).await;
    idp.set_accounts(&[Account::google("g-101", "u101@example.com", true, "Alice")]).await;

    idp.next_denied().await;
    let mut b = s.browser();
    let denied = trip(&mut b, "google").await;
    assert_eq!(denied.status, StatusCode::BAD_REQUEST);
    assert!(denied.body.contains("You were not signed in") && denied.body.contains("href=\"/sign-in\""), "{}", denied.body);

    // A callback replayed, or carried to another browser, is refused.
    idp.next_login(Idp::Google, None, "g-101").await;
    let started = b.get("/sso/google/start").await;
    let answer = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap().get(location(&started)).send().await.unwrap();
    let path = answer.headers()["location"].to_str().unwrap().strip_prefix(PUBLIC_URL).unwrap().to_owned();
    let elsewhere = s.browser().get(&path).await;
    assert_eq!(elsewhere.status, StatusCode::BAD_REQUEST, "another browser: {}", elsewhere.body);
    let mut other = s.browser();
    other.get("/sso/google/start").await; // has a binding of its own, not this one
    assert_eq!(other.get(&path).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(location(&b.get(&path).await), "/account", "the browser that started it");
    let replay = b.get(&path).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST, "used once");
    assert!(replay.body.contains("This sign-in cannot continue"));

    // A signed-in browser is not sent on a trip: it would sign in again beside its session.
    assert_eq!(location(&b.get("/sso/google/start").await), "/account");

    // The provider goes down between the trip out and the way back: the code cannot be exchanged.
    let mut b = s.browser();
    idp.next_login(Idp::Google, None, "g-101").await;
    let started = b.get("/sso/google/start").await;
    let answer = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap().get(location(&started)).send().await.unwrap();
    let path = answer.headers()["location"].to_str().unwrap().strip_prefix(PUBLIC_URL).unwrap().to_owned();
    idp.set_down(true).await;
    let down = b.get(&path).await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE, "{}", down.body);
    assert!(down.body.contains("Sign in with your password") && down.body.contains("href=\"/sign-in\""));
    // Down before the trip (Microsoft's metadata was never fetched): the start says so.
    let down = s.browser().get("/sso/microsoft/start").await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE, "{}", down.body);
    assert!(down.body.contains("The sign-in provider is unavailable"));
    // The password keeps working.
    assert_eq!(s.browser().sign_in("101@organization.com", "Welcome2Sonar").await.json()["state"], "signed_in");
    idp.set_down(false).await;
}

async fn an_additional_email_signs_in_only_once_its_confirmation_link_was_opened(s: &TestServer, idp: &OidcProvider) {
    user_with_2fa_feature(s, "101").await;
    let (om, password) = s.company_with_office_manager("organization.com").await;
    enable_sso(s).await;
    let mut manager = s.browser();
    assert_eq!(manager.sign_in(&om, &password).await.json()["state"], "signed_in");
    // The seed's assistant who receives the manager's voicemail.
    let added = manager.post("/api/v1/companies/organization.com/users/101/emails", json!({"email": "assistant@example.com"})).await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    idp.set_accounts(&[Account::google("g-assistant", "assistant@example.com", true, "Assistant")]).await;

    idp.next_login(Idp::Google, None, "g-assistant").await;
    let back = trip(&mut s.browser(), "google").await;
    assert!(location(&back).starts_with("/sso/link?waiting="), "an unconfirmed additional email goes to linking");

    let review = manager.get("/api/v1/companies/organization.com/email-review").await.json();
    assert!(!review["findings"].as_array().unwrap().iter().any(|f| f["kind"] == "additional_email_can_sign_in"), "{review}");
    let mail = s.smtp.messages().await.into_iter().rev().find(|m| m.to.iter().any(|t| t == "assistant@example.com")).expect("a confirmation email");
    let link = mail.text.split_whitespace().find(|w| w.contains("/confirm-email/")).unwrap().to_owned();
    let confirmed = s.browser().post(&format!("/api/v1/email-confirmation/{}", server::token_of(&link)), json!({})).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);

    idp.next_login(Idp::Google, None, "g-assistant").await;
    let mut b = s.browser();
    assert_eq!(location(&trip(&mut b, "google").await), "/account", "a confirmed additional email signs in (the seed's warning)");
    assert_eq!(signed_in_as(&mut b).await.as_deref(), Some("101@organization.com"));
    let review = manager.get("/api/v1/companies/organization.com/email-review").await.json();
    assert!(review["findings"].as_array().unwrap().iter().any(|f| f["kind"] == "additional_email_can_sign_in"), "the review names it: {review}");

    // The office manager counts Google's MFA as enough through the API; the setting is audited.
    let put = manager.send(Method::PUT, "/api/v1/companies/organization.com/sso", Some(json!({"mfa_sufficient": ["google"]}))).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    let removed = manager.send(Method::DELETE, "/api/v1/companies/organization.com/users/101/emails/assistant@example.com", None).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.body);
    idp.next_login(Idp::Google, None, "g-assistant").await;
    assert!(location(&trip(&mut s.browser(), "google").await).starts_with("/sso/link?waiting="), "a removed email signs in no more");
}
