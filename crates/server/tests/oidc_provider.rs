//! The OpenID test provider itself (`tests/oidc`, driven by `support/oidc.rs`), exercised with
//! nothing but HTTP the way a relying party would: discovery, the authorization code flow with
//! PKCE S256 and the client secret, Microsoft's multi-tenant "common" endpoints, a denied consent,
//! key rotation and an outage. No Latchkey code: these tests show the harness the single sign-on
//! tests rely on behaves like Google and Entra ID.

#[path = "support/oidc.rs"]
mod oidc;

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use oidc::{Account, Idp, OidcOptions, OidcProvider, TENANT_A, TENANT_B};
use rand::Rng;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

const GOOGLE_CALLBACK: &str = "http://127.0.0.1:9/sso/google/callback";
const MICROSOFT_CALLBACK: &str = "http://127.0.0.1:9/sso/microsoft/callback";

fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn start() -> OidcProvider {
    OidcProvider::start_with(OidcOptions {
        redirect_uris: vec![GOOGLE_CALLBACK.into(), MICROSOFT_CALLBACK.into()],
        ..OidcOptions::default()
    })
    .await
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    let response = http.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "GET {url}");
    response.json().await.unwrap()
}

fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::thread_rng().gen::<[u8; 32]>())
}

/// One authorization request of a relying party: what it sends and must check on the way back.
struct AuthRequest {
    state: String,
    nonce: String,
    verifier: String,
    redirect_uri: String,
    /// Sent as `prompt` when set.
    prompt: Option<&'static str>,
}

impl AuthRequest {
    fn new(redirect_uri: &str) -> AuthRequest {
        AuthRequest {
            state: random_token(),
            nonce: random_token(),
            verifier: random_token(),
            redirect_uri: redirect_uri.into(),
            prompt: None,
        }
    }

    fn url(&self, authorization_endpoint: &str, client_id: &str) -> String {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(self.verifier.as_bytes()));
        let mut url = Url::parse(authorization_endpoint).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", "openid email profile")
            .append_pair("state", &self.state)
            .append_pair("nonce", &self.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        if let Some(prompt) = self.prompt {
            url.query_pairs_mut().append_pair("prompt", prompt);
        }
        url.into()
    }

    /// Sends the browser to the authorization endpoint and returns where the provider sends it
    /// back (asserting that is one redirect to our redirect URI).
    async fn send(
        &self,
        http: &reqwest::Client,
        authorization_endpoint: &str,
        client_id: &str,
    ) -> HashMap<String, String> {
        let response = http.get(self.url(authorization_endpoint, client_id)).send().await.unwrap();
        let status = response.status();
        let location = response.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
        let body = response.text().await.unwrap_or_default();
        assert!(status.is_redirection(), "the authorization endpoint answered {status}: {body}");
        let location = Url::parse(&location.expect("a Location")).unwrap();
        assert_eq!(&location[..url::Position::AfterPath], self.redirect_uri, "back to the redirect URI");
        location.query_pairs().into_owned().collect()
    }
}

/// The code for tokens at the token endpoint, authenticated with the client secret (HTTP Basic).
async fn redeem(
    http: &reqwest::Client,
    token_endpoint: &str,
    client_id: &str,
    client_secret: &str,
    request: &AuthRequest,
    code: &str,
) -> reqwest::Response {
    http.post(token_endpoint)
        .basic_auth(client_id, Some(client_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &request.redirect_uri),
            ("code_verifier", &request.verifier),
        ])
        .send()
        .await
        .unwrap()
}

/// The header and the payload of a JWS, unverified (the signature is the relying party's job).
fn jwt_parts(jwt: &str) -> (Value, Value) {
    let mut parts = jwt.split('.');
    let mut next = || -> Value {
        let part = parts.next().expect("a JWS part");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
    };
    let header = next();
    let payload = next();
    assert_eq!(jwt.split('.').count(), 3, "a compact JWS has three parts");
    (header, payload)
}

fn kids_of(jwks: &Value) -> Vec<String> {
    jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

fn strings(value: &Value) -> Vec<&str> {
    value.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

/// Signs in at the Google-like provider and returns the token response.
async fn google_sign_in(idp: &OidcProvider, http: &reqwest::Client, sub: &str) -> (AuthRequest, Value) {
    let metadata = get_json(http, &idp.google_discovery_url()).await;
    idp.next_login(Idp::Google, None, sub).await;
    let request = AuthRequest::new(GOOGLE_CALLBACK);
    let back = request.send(http, metadata["authorization_endpoint"].as_str().unwrap(), idp.google_client_id()).await;
    let code = back.get("code").unwrap_or_else(|| panic!("a code: {back:?}"));
    let token_endpoint = metadata["token_endpoint"].as_str().unwrap();
    let response =
        redeem(http, token_endpoint, idp.google_client_id(), idp.google_client_secret(), &request, code).await;
    assert_eq!(response.status(), StatusCode::OK);
    (request, response.json().await.unwrap())
}

#[tokio::test]
async fn google_discovery_describes_the_issuer() {
    let idp = start().await;
    let http = http();
    let metadata = get_json(&http, &idp.google_discovery_url()).await;

    assert_eq!(metadata["issuer"], idp.google_issuer().as_str());
    for endpoint in ["authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"] {
        let url = metadata[endpoint].as_str().unwrap_or_else(|| panic!("{endpoint}"));
        assert!(url.starts_with(&format!("{}/", idp.google_issuer())), "{endpoint} {url}");
    }
    assert_eq!(strings(&metadata["response_types_supported"]), ["code"]);
    assert_eq!(strings(&metadata["code_challenge_methods_supported"]), ["S256"]);
    assert!(strings(&metadata["id_token_signing_alg_values_supported"]).contains(&"RS256"));
    for scope in ["openid", "email", "profile"] {
        assert!(strings(&metadata["scopes_supported"]).contains(&scope), "{scope}");
    }
    for claim in ["sub", "email", "email_verified", "name"] {
        assert!(strings(&metadata["claims_supported"]).contains(&claim), "{claim}");
    }

    let jwks = get_json(&http, metadata["jwks_uri"].as_str().unwrap()).await;
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["alg"].as_str(), key["use"].as_str()),
        (Some("RSA"), Some("RS256"), Some("sig"))
    );
    assert!(key.get("d").is_none(), "no private part in the JWKS");
    assert_eq!(kids_of(&jwks), idp.kids(Idp::Google).await);
}

#[tokio::test]
async fn google_code_flow_with_pkce_gives_an_id_token_for_the_chosen_account() {
    let idp = start().await;
    let http = http();
    idp.set_accounts(&[
        Account::google("110248495921238986420", "ann@example.com", true, "Ann Example"),
        Account::google("110248495921238986421", "bob@example.com", false, "Bob Example"),
    ])
    .await;
    let metadata = get_json(&http, &idp.google_discovery_url()).await;
    let authorization_endpoint = metadata["authorization_endpoint"].as_str().unwrap();
    let token_endpoint = metadata["token_endpoint"].as_str().unwrap();

    // Without PKCE the provider refuses (policy: PKCE required), back at the client.
    let mut bare = Url::parse(authorization_endpoint).unwrap();
    bare.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", idp.google_client_id())
        .append_pair("redirect_uri", GOOGLE_CALLBACK)
        .append_pair("scope", "openid email")
        .append_pair("state", "no-pkce");
    let response = http.get(bare.as_str()).send().await.unwrap();
    let location = Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let back: HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(back.get("error").map(String::as_str), Some("invalid_request"), "{back:?}");
    assert_eq!(back.get("state").map(String::as_str), Some("no-pkce"));

    idp.next_login(Idp::Google, None, "110248495921238986421").await;
    let request = AuthRequest::new(GOOGLE_CALLBACK);
    let back = request.send(&http, authorization_endpoint, idp.google_client_id()).await;
    assert_eq!(back["state"], request.state);
    assert_eq!(back["iss"], idp.google_issuer(), "RFC 9207 issuer in the response");
    let code = back["code"].clone();

    // The wrong verifier does not redeem the code.
    let wrong = AuthRequest { verifier: random_token(), ..AuthRequest::new(GOOGLE_CALLBACK) };
    let response =
        redeem(&http, token_endpoint, idp.google_client_id(), idp.google_client_secret(), &wrong, &code).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.json::<Value>().await.unwrap()["error"], "invalid_grant");

    // A fresh login, redeemed properly.
    idp.next_login(Idp::Google, None, "110248495921238986420").await;
    let request = AuthRequest::new(GOOGLE_CALLBACK);
    let back = request.send(&http, authorization_endpoint, idp.google_client_id()).await;
    let code = &back["code"];
    let response = redeem(&http, token_endpoint, idp.google_client_id(), "not-the-secret", &request, code).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "a wrong client secret");
    let response =
        redeem(&http, token_endpoint, idp.google_client_id(), idp.google_client_secret(), &request, code).await;
    assert_eq!(response.status(), StatusCode::OK);
    let tokens: Value = response.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");

    let (header, claims) = jwt_parts(tokens["id_token"].as_str().unwrap());
    assert_eq!(header["alg"], "RS256");
    assert_eq!(idp.kids(Idp::Google).await, [header["kid"].as_str().unwrap()]);
    assert_eq!(claims["iss"], idp.google_issuer().as_str());
    assert_eq!(claims["aud"], idp.google_client_id());
    assert_eq!(claims["nonce"], request.nonce.as_str());
    assert_eq!(claims["sub"], "110248495921238986420");
    assert_eq!(claims["email"], "ann@example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["name"], "Ann Example");
    assert!(claims["exp"].as_i64().unwrap() > claims["iat"].as_i64().unwrap());

    // The access token reads the same claims at userinfo.
    let userinfo: Value = http
        .get(metadata["userinfo_endpoint"].as_str().unwrap())
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(userinfo["email"], "ann@example.com");

    // A code is good once (and its reuse revokes what it gave, as the spec advises).
    let response =
        redeem(&http, token_endpoint, idp.google_client_id(), idp.google_client_secret(), &request, code).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let userinfo =
        http.get(metadata["userinfo_endpoint"].as_str().unwrap()).bearer_auth(tokens["access_token"].as_str().unwrap());
    assert_eq!(userinfo.send().await.unwrap().status(), StatusCode::UNAUTHORIZED);

    // What the relying party sent is on record; the client secret is in no log line.
    let requests = idp.authorization_requests().await;
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[2]["params"]["code_challenge_method"], "S256");
    assert_eq!(requests[2]["outcome"], "code");
    assert!(!idp.logs().contains(idp.google_client_secret()));
    assert!(!idp.logs().contains(idp.microsoft_client_secret()));
}

#[tokio::test]
async fn microsoft_common_endpoints_sign_in_to_the_accounts_tenant() {
    let idp = start().await;
    let http = http();
    idp.set_accounts(&[
        Account::microsoft(TENANT_A, "sub-in-a", "ann@contoso.example", None),
        Account::microsoft(TENANT_B, "sub-in-b", "bob@fabrikam.example", Some(true)).claim("name", "Bob"),
    ])
    .await;

    let common = get_json(&http, &idp.microsoft_common_discovery_url()).await;
    assert_eq!(common["issuer"], idp.microsoft_issuer_template().as_str());
    assert!(common["issuer"].as_str().unwrap().ends_with("/ms/{tenantid}/v2.0"));
    for endpoint in ["authorization_endpoint", "token_endpoint", "jwks_uri"] {
        let url = common[endpoint].as_str().unwrap();
        assert!(url.starts_with(&format!("{}/ms/common/", idp.base_url)), "{endpoint} {url}");
    }
    // Each tenant also has its own metadata with its concrete issuer.
    let tenant_b =
        get_json(&http, &format!("{}/.well-known/openid-configuration", idp.microsoft_issuer(TENANT_B))).await;
    assert_eq!(tenant_b["issuer"], idp.microsoft_issuer(TENANT_B).as_str());

    idp.next_login(Idp::Microsoft, Some(TENANT_B), "sub-in-b").await;
    // The account chooser, as relying parties ask Entra for it.
    let request = AuthRequest { prompt: Some("select_account"), ..AuthRequest::new(MICROSOFT_CALLBACK) };
    let back = request.send(&http, common["authorization_endpoint"].as_str().unwrap(), idp.microsoft_client_id()).await;
    assert_eq!(back["state"], request.state);
    assert!(!back.contains_key("iss"), "no issuer parameter from the common endpoint: {back:?}");

    let token_endpoint = common["token_endpoint"].as_str().unwrap();
    let response = redeem(
        &http,
        token_endpoint,
        idp.microsoft_client_id(),
        idp.microsoft_client_secret(),
        &request,
        &back["code"],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let tokens: Value = response.json().await.unwrap();
    let (header, claims) = jwt_parts(tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["iss"], idp.microsoft_issuer(TENANT_B).as_str(), "the tenant's concrete issuer");
    assert_eq!(claims["tid"], TENANT_B);
    assert_eq!(claims["aud"], idp.microsoft_client_id());
    assert_eq!(claims["nonce"], request.nonce.as_str());
    assert_eq!(claims["sub"], "sub-in-b");
    let account = Account::microsoft(TENANT_B, "sub-in-b", "bob@fabrikam.example", Some(true));
    assert_eq!(claims["oid"].as_str(), account.oid());
    assert_eq!(claims["preferred_username"], "bob@fabrikam.example");
    assert_eq!(claims["email"], "bob@fabrikam.example");
    assert_eq!(claims["xms_edov"], true);
    assert_eq!(claims["name"], "Bob");
    // One key set for every tenant, served at the common JWKS too.
    let jwks = get_json(&http, common["jwks_uri"].as_str().unwrap()).await;
    assert!(kids_of(&jwks).contains(&header["kid"].as_str().unwrap().to_owned()));

    // The other tenant, through its own endpoints this time, with its own issuer; no xms_edov.
    let metadata_a =
        get_json(&http, &format!("{}/.well-known/openid-configuration", idp.microsoft_issuer(TENANT_A))).await;
    idp.next_login(Idp::Microsoft, Some(TENANT_A), "sub-in-a").await;
    let request = AuthRequest::new(MICROSOFT_CALLBACK);
    let back =
        request.send(&http, metadata_a["authorization_endpoint"].as_str().unwrap(), idp.microsoft_client_id()).await;
    assert_eq!(back["iss"], idp.microsoft_issuer(TENANT_A));
    let response = redeem(
        &http,
        metadata_a["token_endpoint"].as_str().unwrap(),
        idp.microsoft_client_id(),
        idp.microsoft_client_secret(),
        &request,
        &back["code"],
    )
    .await;
    let (_, claims) = jwt_parts(response.json::<Value>().await.unwrap()["id_token"].as_str().unwrap());
    assert_eq!(claims["iss"], idp.microsoft_issuer(TENANT_A).as_str());
    assert_eq!(claims["tid"], TENANT_A);
    assert!(claims.get("xms_edov").is_none());
}

#[tokio::test]
async fn a_denied_consent_comes_back_as_access_denied_with_the_state() {
    let idp = OidcProvider::start().await;
    let http = http();
    let callback = "http://127.0.0.1:9/late/callback";
    idp.set_redirect_uris(&[callback]).await;
    idp.set_accounts(&[Account::microsoft(TENANT_A, "sub-in-a", "ann@contoso.example", Some(false))]).await;
    let common = get_json(&http, &idp.microsoft_common_discovery_url()).await;
    let authorization_endpoint = common["authorization_endpoint"].as_str().unwrap();

    idp.next_denied().await;
    let request = AuthRequest::new(callback);
    let back = request.send(&http, authorization_endpoint, idp.microsoft_client_id()).await;
    assert_eq!(back.get("error").map(String::as_str), Some("access_denied"), "{back:?}");
    assert_eq!(back["state"], request.state);
    assert!(!back.contains_key("code"));

    // No login chosen: the user never finishes, the provider says so.
    let request = AuthRequest::new(callback);
    let response = http.get(request.url(authorization_endpoint, idp.microsoft_client_id())).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(response.json::<Value>().await.unwrap()["error"], "login_not_planned");

    // The redirect URI registered at the start is gone; an unregistered one is never redirected to.
    let request = AuthRequest::new(oidc::PLACEHOLDER_REDIRECT_URI);
    idp.next_login(Idp::Microsoft, Some(TENANT_A), "sub-in-a").await;
    let response = http.get(request.url(authorization_endpoint, idp.microsoft_client_id())).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get("location").is_none());

    let outcomes: Vec<Value> = idp.authorization_requests().await.into_iter().map(|r| r["outcome"].clone()).collect();
    assert_eq!(outcomes, ["access_denied", "status 409", "status 400"]);
}

#[tokio::test]
async fn key_rotation_changes_the_signing_kid() {
    let idp = start().await;
    let http = http();
    idp.set_accounts(&[Account::google("g-1", "ann@example.com", true, "Ann")]).await;
    let metadata = get_json(&http, &idp.google_discovery_url()).await;
    let jwks_uri = metadata["jwks_uri"].as_str().unwrap();
    let first = kids_of(&get_json(&http, jwks_uri).await);
    assert_eq!(first.len(), 1);

    idp.rotate_keys(true).await;
    let both = kids_of(&get_json(&http, jwks_uri).await);
    assert_eq!(both.len(), 2);
    assert_ne!(both[0], first[0], "a new kid");
    assert_eq!(both[1], first[0], "the old key is still served");
    let (_, tokens) = google_sign_in(&idp, &http, "g-1").await;
    let (header, _) = jwt_parts(tokens["id_token"].as_str().unwrap());
    assert_eq!(header["kid"], both[0].as_str(), "the new key signs");

    idp.rotate_keys(false).await;
    let only_new = kids_of(&get_json(&http, jwks_uri).await);
    assert_eq!(only_new.len(), 1);
    assert!(!both.contains(&only_new[0]));
    let (_, tokens) = google_sign_in(&idp, &http, "g-1").await;
    let (header, _) = jwt_parts(tokens["id_token"].as_str().unwrap());
    assert_eq!(header["kid"], only_new[0].as_str());

    // Microsoft's keys rotated too, and for Google alone when asked.
    let ms_jwks = format!("{}/ms/common/discovery/v2.0/keys", idp.base_url);
    let ms_before = kids_of(&get_json(&http, &ms_jwks).await);
    idp.rotate_keys_of(Idp::Google, false).await;
    assert_eq!(kids_of(&get_json(&http, &ms_jwks).await), ms_before);
    assert_ne!(kids_of(&get_json(&http, jwks_uri).await), only_new);
}

#[tokio::test]
async fn down_answers_503_until_it_is_back() {
    let idp = start().await;
    let http = http();
    let google = idp.google_discovery_url();
    let common = idp.microsoft_common_discovery_url();
    let google_auth = format!("{}/auth?client_id={}", idp.google_issuer(), idp.google_client_id());
    assert_eq!(http.get(&google).send().await.unwrap().status(), StatusCode::OK);

    idp.set_down(true).await;
    for url in [&google, &common, &google_auth, &format!("{}/jwks", idp.microsoft_issuer(TENANT_B))] {
        assert_eq!(http.get(url).send().await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE, "{url}");
    }
    let token =
        http.post(format!("{}/token", idp.google_issuer())).form(&[("grant_type", "authorization_code")]).send();
    assert_eq!(token.await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);

    idp.set_down(false).await;
    assert_eq!(http.get(&google).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(http.get(&common).send().await.unwrap().status(), StatusCode::OK);

    // One provider alone.
    idp.set_down_of(Idp::Microsoft, true).await;
    assert_eq!(http.get(&google).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(http.get(&common).send().await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
}
