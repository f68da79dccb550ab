//! Single sign-on refusals over HTTP, on SQLite and PostgreSQL, against a forging OpenID provider
//! on loopback (`support/forged_idp.rs`): every ID token check of the relying party (signature
//! against the published keys, RS256 only, audience, expiry, nonce, the tenant's own issuer), the
//! trust in provider emails (Google's `email_verified`, Microsoft's `xms_edov`: nOAuth), and the
//! trip's state (once, this browser, this provider).
//!
//! Each refused token is a good one with exactly one thing wrong, and each test also shows the good
//! one signing in on the same server: so each refusal is the named check's doing, and would turn
//! into a sign-in without it.

#[path = "support/forged_idp.rs"]
mod forged_idp;
#[macro_use]
#[path = "support/server.rs"]
mod server;
#[path = "support/smtp.rs"]
mod smtp;
#[path = "support/two_factor.rs"]
mod two_factor;

use std::collections::HashMap;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use forged_idp::{ForgedIdp, Signing, CLIENT_ID, CLIENT_SECRET, TENANT_A, TENANT_B};
use latchkey_core::flows::sso::Provider;
use latchkey_server::app::Actor;
use latchkey_server::oidc::JWKS_REFRESH_MIN;
use reqwest::header::LOCATION;
use reqwest::StatusCode;
use serde_json::{json, Value};
use server::{Answer, Backend, Browser, TestServer};
use sha2::{Digest, Sha256};

/// `on_both_stores!` with the forger: each `async fn(&TestServer, &ForgedIdp)` runs on SQLite and
/// on a fresh PostgreSQL database, with Latchkey registered at both forged providers (the shared
/// macro has no way to change the server's configuration).
macro_rules! on_both_stores_with_idp {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite_with_idp {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() {
                let idp = super::ForgedIdp::start().await;
                let s = super::TestServer::start_with(super::Backend::Sqlite, stringify!($name), |c| idp.configure(c)).await.unwrap();
                super::$name(&s, &idp).await
            } )*
        }
        mod on_postgres_with_idp {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() {
                let idp = super::ForgedIdp::start().await;
                if let Some(s) = super::TestServer::start_with(super::Backend::Postgres, stringify!($name), |c| idp.configure(c)).await {
                    super::$name(&s, &idp).await
                }
            } )*
        }
    };
}

on_both_stores_with_idp!(
    a_good_google_token_signs_in,
    google_tokens_with_one_thing_wrong_are_refused,
    a_key_id_not_in_the_jwks_makes_one_refetch_then_the_token_is_refused,
    a_rotated_key_is_fetched_once_and_accepted,
    a_microsoft_token_must_come_from_the_issuer_of_its_own_tenant,
    an_email_the_provider_does_not_vouch_for_goes_to_linking,
    a_state_is_used_once,
    a_state_works_only_in_the_browser_that_started_it,
    a_state_works_only_at_the_provider_it_was_made_for,
    an_unknown_provider_is_not_offered,
    the_json_api_refuses_the_same_way,
);
on_both_stores!(a_provider_without_a_registration_is_not_offered);

const LOGIN: &str = "101@organization.com";
/// User 101's designated email, verified at activation.
const EMAIL: &str = "u101@example.com";
const SESSION_COOKIE: &str = "__Host-latchkey_session";

/// The company with single sign-on on for both providers, and its user 101.
async fn company_with_sso(s: &TestServer) {
    two_factor::user_with_2fa_feature(s, "101").await;
    s.app.set_sso_feature("organization.com", true, &[Provider::Google, Provider::Microsoft], Actor::Operator, &Default::default()).await.unwrap();
}

/// What a good Google ID token for user 101 says, for the trip with this nonce.
fn google_claims(s: &TestServer, idp: &ForgedIdp, nonce: &str) -> Value {
    let now = s.app.now().unix_timestamp();
    json!({
        "iss": idp.google_issuer(), "sub": "g-1080", "aud": CLIENT_ID, "iat": now, "exp": now + 600, "nonce": nonce,
        "email": EMAIL, "email_verified": true,
    })
}

/// What a good Microsoft ID token of tenant A for user 101 says (its domain verified for the tenant).
fn microsoft_claims(s: &TestServer, idp: &ForgedIdp, nonce: &str) -> Value {
    let now = s.app.now().unix_timestamp();
    json!({
        "iss": idp.tenant_issuer(TENANT_A), "tid": TENANT_A, "sub": "m-1080", "aud": CLIENT_ID, "iat": now, "exp": now + 600, "nonce": nonce,
        "email": EMAIL, "xms_edov": true,
    })
}

fn good_claims(s: &TestServer, idp: &ForgedIdp, provider: Provider, nonce: &str) -> Value {
    match provider {
        Provider::Google => google_claims(s, idp, nonce),
        Provider::Microsoft => microsoft_claims(s, idp, nonce),
    }
}

/// A change to the good claims.
type Tamper = Box<dyn FnOnce(&mut Value)>;

fn tamper(f: impl FnOnce(&mut Value) + 'static) -> Tamper {
    Box::new(f)
}

/// The good claims without this one.
fn without(claim: &'static str) -> Tamper {
    tamper(move |c| drop(c.as_object_mut().unwrap().remove(claim)))
}

/// A trip started: what Latchkey sent the browser to the provider with.
struct Trip {
    state: String,
    nonce: String,
    query: HashMap<String, String>,
}

/// GET /sso/{provider}/start: a 303 to the provider's authorization endpoint with PKCE S256 and a
/// forced account choice.
async fn start(b: &mut Browser, provider: &str) -> Trip {
    let a = b.get(&format!("/sso/{provider}/start")).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let location = a.headers[LOCATION].to_str().unwrap();
    let query: HashMap<String, String> = url::Url::parse(location).unwrap().query_pairs().into_owned().collect();
    assert_eq!(query.get("code_challenge_method").map(String::as_str), Some("S256"), "{location}");
    assert!(query.get("code_challenge").is_some_and(|c| c.len() >= 43), "{location}");
    assert_eq!(query.get("prompt").map(String::as_str), Some("select_account"), "{location}");
    let state = query.get("state").cloned().expect("a state");
    let nonce = query.get("nonce").cloned().expect("a nonce");
    Trip { state, nonce, query }
}

/// The provider sends the browser back with a code (any code: the forger takes them all).
async fn callback(b: &mut Browser, provider: &str, state: &str) -> Answer {
    let query = url::form_urlencoded::Serializer::new(String::new()).append_pair("code", "forged-code").append_pair("state", state).finish();
    b.get(&format!("/sso/{provider}/callback?{query}")).await
}

/// A whole trip in a new browser: the forger answers with the good claims for the trip's nonce,
/// changed by `change`, signed as `signing`.
async fn trip(s: &TestServer, idp: &ForgedIdp, provider: Provider, change: impl FnOnce(&mut Value), signing: Signing) -> (Browser, Answer) {
    let mut b = s.browser();
    let t = start(&mut b, provider.as_str()).await;
    let mut claims = good_claims(s, idp, provider, &t.nonce);
    change(&mut claims);
    idp.answer_next(&claims, signing);
    let a = callback(&mut b, provider.as_str(), &t.state).await;
    (b, a)
}

/// Signed in to user 101: to the account page with a session that works.
async fn assert_signed_in(b: &mut Browser, a: &Answer, what: &str) {
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{what}: {}", a.body);
    assert_eq!(a.headers[LOCATION], "/account", "{what}");
    assert!(b.cookies.contains_key(SESSION_COOKIE), "{what}: a session cookie");
    let me = b.get("/api/v1/me").await;
    assert_eq!(me.status, StatusCode::OK, "{what}: {}", me.body);
    assert_eq!(me.json()["login_name"], LOGIN, "{what}");
}

/// Nobody is signed in in this browser.
async fn assert_no_session(b: &mut Browser, what: &str) {
    assert!(!b.cookies.contains_key(SESSION_COOKIE), "{what}: no session cookie");
    assert_eq!(b.get("/api/v1/me").await.status, StatusCode::UNAUTHORIZED, "{what}: nobody is signed in");
}

/// An error page with this status and title that leads back to the password sign-in, and no session.
async fn assert_error_page(b: &mut Browser, a: &Answer, status: StatusCode, title: &str, what: &str) {
    assert_eq!(a.status, status, "{what}: {}", a.body);
    assert!(a.body.contains(&format!("<h1>{title}</h1>")), "{what}: the page says {title:?}: {}", a.body);
    assert!(a.body.contains("href=\"/sign-in\""), "{what}: the way back to the password sign-in: {}", a.body);
    assert_no_session(b, what).await;
}

const REFUSED: &str = "The sign-in could not be verified";
const BAD_STATE: &str = "This sign-in cannot continue";

async fn a_good_google_token_signs_in(s: &TestServer, idp: &ForgedIdp) {
    company_with_sso(s).await;
    let mut b = s.browser();
    let t = start(&mut b, "google").await;
    let redirect_uri = format!("{}/sso/google/callback", s.base);
    assert_eq!(t.query["client_id"], CLIENT_ID);
    assert_eq!(t.query["response_type"], "code");
    assert_eq!(t.query["redirect_uri"], redirect_uri);
    assert!(t.query["scope"].split(' ').any(|x| x == "openid") && t.query["scope"].split(' ').any(|x| x == "email"), "{:?}", t.query);
    assert!(b.cookies.contains_key("__Host-latchkey_sso"), "the trip is bound to this browser: {:?}", b.cookies);

    idp.answer_next(&google_claims(s, idp, &t.nonce), Signing::Good);
    let a = callback(&mut b, "google", &t.state).await;
    assert_signed_in(&mut b, &a, "a good Google token").await;

    // The code went to the token endpoint with the PKCE verifier of this trip and the client's secret.
    let requests = idp.token_requests();
    assert_eq!(requests.len(), 1);
    let form = &requests[0].form;
    assert_eq!(form["grant_type"], "authorization_code");
    assert_eq!(form["code"], "forged-code");
    assert_eq!(form["redirect_uri"], redirect_uri);
    assert_eq!(URL_SAFE_NO_PAD.encode(Sha256::digest(form["code_verifier"].as_bytes())), t.query["code_challenge"], "the verifier of the challenge sent");
    let basic = format!("Basic {}", STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}")));
    assert_eq!(requests[0].authorization.as_deref(), Some(basic.as_str()), "client_secret_basic");
}

async fn google_tokens_with_one_thing_wrong_are_refused(s: &TestServer, idp: &ForgedIdp) {
    company_with_sso(s).await;
    let now = s.app.now().unix_timestamp();
    let other_issuer = idp.tenant_issuer(TENANT_A);
    let cases = vec![
        ("wrong nonce", tamper(|c| c["nonce"] = json!("not-the-nonce-of-this-trip")), Signing::Good),
        ("no nonce", without("nonce"), Signing::Good),
        ("another key under the published key id", tamper(|_| {}), Signing::RogueKeyUnderGoodKid),
        ("HS256 keyed with the client secret", tamper(|_| {}), Signing::Hs256(CLIENT_SECRET.into())),
        ("alg none", tamper(|_| {}), Signing::AlgNone),
        ("another audience", tamper(|c| c["aud"] = json!("another-client")), Signing::Good),
        ("several audiences, no azp", tamper(|c| c["aud"] = json!([CLIENT_ID, "another-client"])), Signing::Good),
        (
            "expired two minutes ago",
            tamper(move |c| {
                c["iat"] = json!(now - 720);
                c["exp"] = json!(now - 120);
            }),
            Signing::Good,
        ),
        ("another issuer", tamper(move |c| c["iss"] = json!(other_issuer)), Signing::Good),
        ("issued to another client (azp)", tamper(|c| c["azp"] = json!("another-client")), Signing::Good),
        ("issued a day ahead", tamper(move |c| c["iat"] = json!(now + 86_400)), Signing::Good),
        // Refused as a bad token (401), not shown as an outage (503).
        ("no expiry", without("exp"), Signing::Good),
        ("email_verified of the wrong type", tamper(|c| c["email_verified"] = json!("true")), Signing::Good),
    ];
    for (what, change, signing) in cases {
        let exchanged = idp.token_requests().len();
        let (mut b, a) = trip(s, idp, Provider::Google, change, signing).await;
        assert_eq!(idp.token_requests().len(), exchanged + 1, "{what}: the code was exchanged, the token refused");
        assert_error_page(&mut b, &a, StatusCode::UNAUTHORIZED, REFUSED, what).await;
        assert!(a.body.contains("The answer from Google could not be verified"), "{what}: {}", a.body);
    }

    // The same token, untouched, signs in.
    let (mut b, a) = trip(s, idp, Provider::Google, |_| {}, Signing::Good).await;
    assert_signed_in(&mut b, &a, "the good token").await;
}

async fn a_key_id_not_in_the_jwks_makes_one_refetch_then_the_token_is_refused(s: &TestServer, idp: &ForgedIdp) {
    company_with_sso(s).await;
    // Keys fetched just now (by the first start) are not fetched again at once.
    let (mut b, a) = trip(s, idp, Provider::Google, |_| {}, Signing::UnknownKey).await;
    assert_error_page(&mut b, &a, StatusCode::UNAUTHORIZED, REFUSED, "an unknown key id right after the first fetch").await;
    assert_eq!(idp.jwks_fetches(Provider::Google), 1, "no refetch within {JWKS_REFRESH_MIN:?} of the last fetch");

    tokio::time::sleep(JWKS_REFRESH_MIN + std::time::Duration::from_millis(200)).await;
    let (mut b, a) = trip(s, idp, Provider::Google, |_| {}, Signing::UnknownKey).await;
    assert_error_page(&mut b, &a, StatusCode::UNAUTHORIZED, REFUSED, "an unknown key id").await;
    assert_eq!(idp.jwks_fetches(Provider::Google), 2, "exactly one refetch for the unknown key id");

    let (mut b, a) = trip(s, idp, Provider::Google, |_| {}, Signing::UnknownKey).await;
    assert_error_page(&mut b, &a, StatusCode::UNAUTHORIZED, REFUSED, "another unknown key id at once").await;
    assert_eq!(idp.jwks_fetches(Provider::Google), 2, "no second refetch within {JWKS_REFRESH_MIN:?}");

    let (mut b, a) = trip(s, idp, Provider::Google, |_| {}, Signing::Good).await;
    assert_signed_in(&mut b, &a, "a token signed with the published key").await;
    assert_eq!(idp.jwks_fetches(Provider::Google), 2, "a known key id needs no fetch");
}

async fn a_rotated_key_is_fetched_once_and_accepted(s: &TestServer, idp: &ForgedIdp) {
    company_with_sso(s).await;
    let mut b = s.browser();
    let t = start(&mut b, "google").await;
    assert_eq!(idp.jwks_fetches(Provider::Google), 1);
    idp.publish_rotated_key();
    tokio::time::sleep(JWKS_REFRESH_MIN + std::time::Duration::from_millis(200)).await;
    idp.answer_next(&google_claims(s, idp, &t.nonce), Signing::Rotated);
    let a = callback(&mut b, "google", &t.state).await;
    assert_signed_in(&mut b, &a, "a token signed with the provider's new key").await;
    assert_eq!(idp.jwks_fetches(Provider::Google), 2, "one refetch found the new key");
}

async fn a_microsoft_token_must_come_from_the_issuer_of_its_own_tenant(s: &TestServer, idp: &ForgedIdp) {
    company_with_sso(s).await;
    let tenant_b = idp.tenant_issuer(TENANT_B);
    let (mut b, a) = trip(s, idp, Provider::Microsoft, |c| c["iss"] = json!(tenant_b), Signing::Good).await;
    assert_error_page(&mut b, &a, StatusCode::UNAUTHORIZED, REFUSED, "tid of tenant A, iss of tenant B").await;
    assert!(a.body.contains("The answer from Office 365 could not be verified"), "{}", a.body);

    let (mut b, a) = trip(s, idp, Provider::Microsoft, without("tid"), Signing::Good).await;
    assert_error_page(&mut b, &a, StatusCode::UNAUTHORIZED, REFUSED, "iss of tenant A, no tid").await;

    let (mut b, a) = trip(s, idp, Provider::Microsoft, |_| {}, Signing::Good).await;
    assert_signed_in(&mut b, &a, "tid and iss of tenant A, domain verified").await;
}

async fn an_email_the_provider_does_not_vouch_for_goes_to_linking(s: &TestServer, idp: &ForgedIdp) {
    company_with_sso(s).await;
    let cases = vec![
        ("Google, email_verified false", Provider::Google, tamper(|c| c["email_verified"] = json!(false))),
        ("Google, no email_verified", Provider::Google, without("email_verified")),
        ("Microsoft, no xms_edov (nOAuth)", Provider::Microsoft, without("xms_edov")),
        ("Microsoft, xms_edov false", Provider::Microsoft, tamper(|c| c["xms_edov"] = json!(false))),
        (
            "Microsoft, no xms_edov but Google's email_verified",
            Provider::Microsoft,
            tamper(|c| {
                c.as_object_mut().unwrap().remove("xms_edov");
                c["email_verified"] = json!(true);
            }),
        ),
    ];
    for (what, provider, change) in cases {
        let (mut b, a) = trip(s, idp, provider, change, Signing::Good).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{what}: {}", a.body);
        let location = a.headers[LOCATION].to_str().unwrap();
        assert!(location.starts_with("/sso/link?waiting="), "{what}: to the link page, not signed in: {location}");
        assert_no_session(&mut b, what).await;
        let page = b.get(location).await;
        assert_eq!(page.status, StatusCode::OK, "{what}: {}", page.body);
        assert!(page.body.contains("name=\"password\""), "{what}: the link page asks for the password");
    }
}

async fn a_state_is_used_once(s: &TestServer, idp: &ForgedIdp) {
    company_with_sso(s).await;
    let mut b = s.browser();
    let t = start(&mut b, "google").await;
    idp.answer_next(&google_claims(s, idp, &t.nonce), Signing::Good);
    let first = callback(&mut b, "google", &t.state).await;
    assert_signed_in(&mut b, &first, "the first callback").await;

    // The same answer again, even with a token waiting at the provider, in the same browser.
    idp.answer_next(&google_claims(s, idp, &t.nonce), Signing::Good);
    let mut replayer = s.browser();
    replayer.cookies.insert("__Host-latchkey_sso".into(), b.cookies["__Host-latchkey_sso"].clone());
    let again = callback(&mut replayer, "google", &t.state).await;
    assert_error_page(&mut replayer, &again, StatusCode::BAD_REQUEST, BAD_STATE, "a replayed callback").await;
    assert_eq!(idp.token_requests().len(), 1, "a used state is refused before any code exchange");
}

async fn a_state_works_only_in_the_browser_that_started_it(s: &TestServer, idp: &ForgedIdp) {
    company_with_sso(s).await;
    let mut victim = s.browser();
    let t = start(&mut victim, "google").await;
    idp.answer_next(&google_claims(s, idp, &t.nonce), Signing::Good);

    let mut cookieless = s.browser();
    let a = callback(&mut cookieless, "google", &t.state).await;
    assert_error_page(&mut cookieless, &a, StatusCode::BAD_REQUEST, BAD_STATE, "a browser without the binding cookie").await;

    let mut attacker = s.browser();
    start(&mut attacker, "google").await;
    assert!(attacker.cookies.contains_key("__Host-latchkey_sso"));
    assert_ne!(attacker.cookies["__Host-latchkey_sso"], victim.cookies["__Host-latchkey_sso"]);
    let a = callback(&mut attacker, "google", &t.state).await;
    assert_error_page(&mut attacker, &a, StatusCode::BAD_REQUEST, BAD_STATE, "a browser with its own binding cookie").await;
    assert!(idp.token_requests().is_empty(), "a foreign state is refused before any code exchange");

    // The browser that started the trip can still finish it.
    let a = callback(&mut victim, "google", &t.state).await;
    assert_signed_in(&mut victim, &a, "the browser that started the trip").await;
}

async fn a_state_works_only_at_the_provider_it_was_made_for(s: &TestServer, idp: &ForgedIdp) {
    company_with_sso(s).await;
    let mut b = s.browser();
    let t = start(&mut b, "google").await;
    idp.answer_next(&microsoft_claims(s, idp, &t.nonce), Signing::Good);
    let a = callback(&mut b, "microsoft", &t.state).await;
    assert_error_page(&mut b, &a, StatusCode::BAD_REQUEST, BAD_STATE, "a Google state at the Microsoft callback").await;
    assert!(idp.token_requests().is_empty(), "refused before any code exchange");
}

async fn an_unknown_provider_is_not_offered(s: &TestServer, _idp: &ForgedIdp) {
    let mut b = s.browser();
    let a = b.get("/sso/github/start").await;
    assert_error_page(&mut b, &a, StatusCode::NOT_FOUND, "This sign-in is not offered", "/sso/github/start").await;
    assert!(!b.cookies.contains_key("__Host-latchkey_sso"), "no trip was started");
}

async fn a_provider_without_a_registration_is_not_offered(s: &TestServer) {
    company_with_sso(s).await;
    let mut b = s.browser();
    let a = b.get("/sso/google/start").await;
    assert_error_page(&mut b, &a, StatusCode::NOT_FOUND, "This sign-in is not offered", "Google, not registered").await;
    let a = b.post("/api/v1/sso/microsoft/start", json!({})).await;
    assert_eq!((a.status, a.json()["error"].as_str()), (StatusCode::NOT_FOUND, Some("sso_not_offered")), "{}", a.body);
}

/// POST /api/v1/sso/google/start: the provider's URL (and the binding cookie) as JSON.
async fn api_start(b: &mut Browser) -> Trip {
    let a = b.post("/api/v1/sso/google/start", json!({})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(b.cookies.contains_key("__Host-latchkey_sso"), "the binding cookie");
    let url = a.json()["authorization_url"].as_str().expect("authorization_url").to_owned();
    let query: HashMap<String, String> = url::Url::parse(&url).unwrap().query_pairs().into_owned().collect();
    assert_eq!(query.get("code_challenge_method").map(String::as_str), Some("S256"), "{url}");
    Trip { state: query["state"].clone(), nonce: query["nonce"].clone(), query }
}

async fn api_callback(b: &mut Browser, state: &str) -> Answer {
    b.post("/api/v1/sso/google/callback", json!({"code": "forged-code", "state": state})).await
}

async fn the_json_api_refuses_the_same_way(s: &TestServer, idp: &ForgedIdp) {
    company_with_sso(s).await;
    let mut b = s.browser();

    let t = api_start(&mut b).await;
    idp.answer_next(&google_claims(s, idp, "not-the-nonce-of-this-trip"), Signing::Good);
    let a = api_callback(&mut b, &t.state).await;
    assert_eq!((a.status, a.json()["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("sso_refused")), "wrong nonce: {}", a.body);
    assert_no_session(&mut b, "wrong nonce").await;

    idp.answer_next(&google_claims(s, idp, &t.nonce), Signing::Good);
    let a = api_callback(&mut b, &t.state).await;
    assert_eq!((a.status, a.json()["error"].as_str()), (StatusCode::BAD_REQUEST, Some("sso_state_invalid")), "the same state again: {}", a.body);
    assert_no_session(&mut b, "the same state again").await;

    let t = api_start(&mut b).await;
    let a = api_callback(&mut s.browser(), &t.state).await;
    assert_eq!((a.status, a.json()["error"].as_str()), (StatusCode::BAD_REQUEST, Some("sso_state_invalid")), "another browser: {}", a.body);

    idp.answer_next(&google_claims(s, idp, &t.nonce), Signing::UnknownKey);
    let a = api_callback(&mut b, &t.state).await;
    assert_eq!((a.status, a.json()["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("sso_refused")), "an unknown key: {}", a.body);

    let t = api_start(&mut b).await;
    idp.answer_next(&google_claims(s, idp, &t.nonce), Signing::Good);
    let a = api_callback(&mut b, &t.state).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.json()["state"], "signed_in", "{}", a.body);
    assert_eq!(b.get("/api/v1/me").await.json()["login_name"], LOGIN);
}
