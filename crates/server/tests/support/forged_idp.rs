//! A forging OpenID provider on loopback for the single sign-on refusal tests: it plays Google
//! (`/google`) and Microsoft's multi-tenant "common" endpoints (`/ms/common/v2.0`, whose discovery
//! names the `{tenantid}` issuer template), and answers the token endpoint with whatever ID token
//! the test set beforehand, signed however the test asked: with the published key, with a key it
//! never published (under an unknown key id, or under the published one), HS256 with the client
//! secret, or not at all (`alg: none`). It counts JWKS fetches, so a test can see the relying
//! party's refetch on an unknown key id, and keeps every token request.
//!
//! Much faster than the real provider of `support/oidc.rs` (no Node, no logins), and it can sign
//! what no honest provider would. The RSA keys are fixed (below); generating keys at test time is
//! slow in debug builds.
//!
//! ```ignore
//! let idp = ForgedIdp::start().await;
//! let s = TestServer::start_with(backend, name, |c| idp.configure(c)).await;
//! // GET /sso/google/start → the nonce from the Location, then:
//! idp.answer_next(claims_with_that_nonce, Signing::Good);
//! // GET /sso/google/callback?code=…&state=… → Latchkey fetches that token from the forger.
//! ```
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use latchkey_core::flows::sso::Provider;
use latchkey_server::config::OidcProviderConfig;
use latchkey_server::Config;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use sha2::Sha256;

/// The client Latchkey is registered as, with both providers.
pub const CLIENT_ID: &str = "latchkey-test-client";
pub const CLIENT_SECRET: &str = "latchkey-test-client-secret-0123456789";

/// The key id the JWKS publishes (with [`GOOD_KEY_PEM`]).
pub const GOOD_KID: &str = "good";
/// A key id the JWKS never publishes.
pub const UNKNOWN_KID: &str = "not-in-the-jwks";
/// The key id of [`OTHER_KEY_PEM`] once [`ForgedIdp::publish_rotated_key`] was called.
pub const ROTATED_KID: &str = "rotated";

/// Two Microsoft tenants.
pub const TENANT_A: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
pub const TENANT_B: &str = "bbbbbbbb-0000-4000-8000-00000000000b";

/// The key the JWKS publishes under [`GOOD_KID`] (`openssl genrsa 2048`; a test key, nothing else).
const GOOD_KEY_PEM: &str = "
-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCTCa+AwkUwoW1C
6QKnYwGmv4dSVaGogyI1AalNqet9FMxxhAsbmvNWSUz9tP42SUNH1LwgCwqiAcMN
5niGIB6WvN2jCNwsyupcA0UBp8CVbgbg7XwO3iGltPHjhVlml8MkS0JM70889SxL
mPNKPGstkQvspWNyGvrkadEXc2RYPNk+bYoynvgNVaPjO+Dfh0XmH2fGys+hojtT
lXdbyCjJyPEmSHpGvdiJKZp90KVudof3PcqKFd4VuGBmZeGLu3ONHWDTfyHP6KNW
x4k/+xFyUQCSGx7JM/CtUxFTtBsvzjZz0P8FfATg7WNst9XwRbbUOcqEq9hSWiqi
gwwhOqLVAgMBAAECggEAIBRPojmgQ08gyaWREuhmmpT0RtoQYjWz75kccSmGi1xP
i1+Z1cy9VMC6x6pmgP0EbQZEggAusnBMeDqlZmvZCJ2NhG2hLbOapHcBJe6NtXxT
C108wPilIiRDVtaHzfqD1GYIAcV/ReceoiKtR6+9WWxpC9j8hI9O2Cke+W0PQjG1
hlSc9FkPFqmf6xwg07jM6TXxt/+ZPnZdbAjD3JokSZOf5nZN9zsgNO5TApqYS2z/
Sr9e/bQ/GQgKIU0P95FLiqHP2EdiTVSb6VXIjnkwnUNm4/UKO6gdVm7HsQlhh14J
/uD8v6RditWW29cUAuNGG4fspdNeHbAIhe+8GxRV4QKBgQDOzTeMOFJHaGC7w+bv
yWxFCfg5h0uTtHGfg+kDdxwYBp7/9EkfRXwaE7sm94b0OyQQQTw92hUjg+eHAy1/
aRtmmzjh/bxpg0C7kaZAtAcI2lCWpqq2dr6scIldiU3A7T6u+hR8BfzggKnPB6MK
S60m6WaX6ouDFr4mo5sl/Q7UYQKBgQC2BLDHckoWCW+qgUtWVC6Nbkpa2mY0Oybz
i0aiBF8h+leKUxy+AGZ2WkdvNNkrhtTbLsyEazpsp3NgfwbRyLkbDOB/rMTl+C0T
3WVSVfMS+X/HEuEGzGOWDygeTC2BWqLgkr6XPtcJEYObPpe1txziR89yr5x1vv0K
Jp808iSi9QKBgC2BYMi9F/XYlPicOfPnuahTckiOaeX9nccBCsQVcJwk0NX3liOI
ca93SgZgD1UsslnVUQE3PNGM0+SUoW1Y3ousek7YO55oIFVlzlSMiMO87mDIGeZ+
qKRfOwrXDMH4MoPkSZ+k3ak1BqikwI6ial6Wm1mwZbSZy4vLEnfAgIPhAoGAN3xS
j1oNr44M1kM3vgdHcaGvVObCxSVLCG7qhzUh8u+ng+k2F81zbpyyrfnEQfqGJJKt
kahGVRzulPnkEEtJ8i8IuKLoGtp+k1GoM2M0CBK6mursYfAoY3QXXLUIIiiJAkB5
jQ2A66jFH6wC/0fkrC4L1QAnh9VCubdwTOmLtYkCgYAsUfbpxI7oZ2DvuwM/xcbx
21cC1wNFQAhZz+0cg6nP7G6LEesOURXKmq3elIXlHbCdxS7e0H3TvoPl3FaWZaou
/vVMUqrTVClYoxcE6g8EbBhhD8Hm1QOX8erqbiCjNOlkmcuS8Tn9WYWdA+Pf3MYA
d01aJ3bLCcOrZ44i/dqQGQ==
-----END PRIVATE KEY-----
";

/// A key the JWKS does not publish (unless a test rotates it in as [`ROTATED_KID`]).
const OTHER_KEY_PEM: &str = "
-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQDGC8qIBT+zU8Or
QNgnX6keCdKucdtBF7u5yTUEprls8N3+Of/uHXoVLrEBRV7p6Y+fYX/QBw9S8DHF
ubYra7mQjMWNN1sbVTRaoGIvwik+QtjA38AVrK0iP+BcG9d0BUMJX4/SP4he8+Cq
tZZRzn1CAuPqp+O4iKYU+qGeU4Z7Wn7gEC9JdX1PaLlgimNXIV0n/Fy+LMchbKMS
Klc4RCCQb4PPaZAEWrWpDD6V8ivUdOtexvS7wI9Ax2Zcg11Jzmn9LlxYMJ0ZXZ9c
w6+sL2j0lsBNH3hJ4dbBS634wH+d6w9Rn1XL7BF4+qGgQnlQllS5sWoz2jRAgrdr
ix9ewb4JAgMBAAECggEABpYSzLY7+ZdCDRpxddHBGo4iEwoXTBFhfVq7KCXxSbWy
9Ebyg3U4f6bXXR70+pt5WsgPy5fIgy4YwaYc8FG7UJrV4Q3jukN5o7/stADlhTwM
4FEwnqfo9Bgiun10i1e3dILYkhnpy5qZsKOsVZkj4kOdV8rwkEz/FPiG0nCdqtF3
GTRicLPJ/01wpiOogcm9ZzuEZSP0HjQP+yll7WFwoR+jnucTqae/2n622wgxtFcT
duHy8V4AhOgWwnem74UfdgiJ2J+REIoJaO07vxEXOHdLmETY+FfsOLUwXz9+UYZ9
ZVrVT7Ht4rZJbgPfSFFPHlzLmcfzESlaYwr2IW/SAQKBgQD1oteLKZrD4yH/DGuD
5NclonKzVjgvVlKz1/jTFvk8drcr3OsOftXrckg4lXjrSGdWk37ZSFdr6KGrz1cR
0pYhEVy/l/2MVr0B/i2Eotm//7WtgofTQJeCIgLkT5Kn9rctvaiiVegGOIZYYUwL
ns/6y5lFalCM8lkbaNZ0r0/SiQKBgQDOZuu/bFn3fSOOCZ2132EoUGW0XrGrkQ5I
0lDd8+kbH0SPUudydawUIAeUVQmjnnYGQ3OWVWgYI0dNXhUqu7/zgsCnXJrvY8Sf
IrmPuLf/VyGM/7+6gjng+CbkRcQ9XqLUYddC7ssROb0m+K/rLRhYNO6CVWyowrC9
Q3FmznWvgQKBgBdIbC3gr67JpLtMLhS+aDZFA6JEFedGw2gQnKFFmDJG/m3F7vHc
y+IZXwceA+wpXMI0EN3/oWm1Dz391T73Owu/XY87lOjsf9XkheQAm6s7Tbk4mi9H
/BR1rNh/QmNxW0OWqplYkzmjufg+oLqpPwWCrvCJd0Ek55VVhp5gz6whAoGAdIpQ
WklHkyIpTS3IysRSC305r9o333OL6To3RttNp27EO1jILiya+NIM9Yf+ZVA3u9mi
DiQzHk3tGJYixXo1K72MIfN71+cxQdlNhQT7f0UnQIG3NAwLuibjbsilwTEKJ3kH
HlfOeO9tCfApBFT2Bff9I8IwFCm5uWO3SCES+gECgYBgmvRoguB1PU9a65XaHT32
2TVDBTsSKKCxdMQ8yzqBwz6C59B42eZndMlzudyh0EOuG0kWXU1tGbbfZd6D2DiT
inORG41s8vGetDwJ2vdVH0MfoppT/h6Iv/j4Vc+gUYlS0tPVfg8RDeeKcOpAuNss
x0RZLk3TlV/1C2xappoDrw==
-----END PRIVATE KEY-----
";

fn good_key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| RsaPrivateKey::from_pkcs8_pem(GOOD_KEY_PEM.trim()).expect("the good test key"))
}

fn other_key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| RsaPrivateKey::from_pkcs8_pem(OTHER_KEY_PEM.trim()).expect("the other test key"))
}

/// How the next ID token is signed.
#[derive(Debug, Clone)]
pub enum Signing {
    /// RS256 with the published key, under its key id: what the real provider does.
    Good,
    /// RS256 with a key the JWKS does not have, under a key id it does not have either.
    UnknownKey,
    /// RS256 with a key the JWKS does not have, under the published key id.
    RogueKeyUnderGoodKid,
    /// RS256 with the second key under [`ROTATED_KID`] (published only after a rotation).
    Rotated,
    /// HS256 keyed with this secret (the client secret, which the attacker may know).
    Hs256(String),
    /// `alg: none` and an empty signature.
    AlgNone,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rs256(key: &RsaPrivateKey, input: &str) -> Vec<u8> {
    SigningKey::<Sha256>::new(key.clone()).sign(input.as_bytes()).to_vec()
}

/// A compact JWS of `claims`, signed as asked.
pub fn sign(claims: &Value, signing: &Signing) -> String {
    let (alg, kid) = match signing {
        Signing::Good | Signing::RogueKeyUnderGoodKid => ("RS256", Some(GOOD_KID)),
        Signing::UnknownKey => ("RS256", Some(UNKNOWN_KID)),
        Signing::Rotated => ("RS256", Some(ROTATED_KID)),
        Signing::Hs256(_) => ("HS256", None),
        Signing::AlgNone => ("none", None),
    };
    let mut header = json!({"alg": alg, "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let signature = match signing {
        Signing::Good => rs256(good_key(), &input),
        Signing::UnknownKey | Signing::RogueKeyUnderGoodKid | Signing::Rotated => rs256(other_key(), &input),
        Signing::Hs256(secret) => {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Signing::AlgNone => Vec::new(),
    };
    format!("{input}.{}", b64(&signature))
}

fn jwk(key: &RsaPrivateKey, kid: &str) -> Value {
    json!({
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "kid": kid,
        "n": b64(&key.n().to_bytes_be()),
        "e": b64(&key.e().to_bytes_be()),
    })
}

/// One call to a token endpoint, as the forger received it.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub provider: Provider,
    /// The `Authorization` header (client_secret_basic), if any.
    pub authorization: Option<String>,
    pub form: HashMap<String, String>,
}

struct Shared {
    base: String,
    next_id_token: Mutex<Option<String>>,
    google_jwks_fetches: AtomicUsize,
    microsoft_jwks_fetches: AtomicUsize,
    rotated: AtomicBool,
    token_requests: Mutex<Vec<TokenRequest>>,
}

type Forger = State<Arc<Shared>>;

pub struct ForgedIdp {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    shared: Arc<Shared>,
}

impl ForgedIdp {
    pub async fn start() -> ForgedIdp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            base: base.clone(),
            next_id_token: Mutex::new(None),
            google_jwks_fetches: AtomicUsize::new(0),
            microsoft_jwks_fetches: AtomicUsize::new(0),
            rotated: AtomicBool::new(false),
            token_requests: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/google/.well-known/openid-configuration", get(google_discovery))
            .route("/google/jwks", get(google_jwks))
            .route("/google/token", post(google_token))
            .route("/ms/common/v2.0/.well-known/openid-configuration", get(microsoft_discovery))
            .route("/ms/common/discovery/v2.0/keys", get(microsoft_jwks))
            .route("/ms/common/oauth2/v2.0/token", post(microsoft_token))
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        ForgedIdp { base, shared }
    }

    /// Google's issuer (fixed).
    pub fn google_issuer(&self) -> String {
        format!("{}/google", self.base)
    }

    /// Where Microsoft's multi-tenant discovery starts (its issuer is the `{tenantid}` template).
    pub fn microsoft_common(&self) -> String {
        format!("{}/ms/common/v2.0", self.base)
    }

    /// The issuer of one Microsoft tenant: the template with its id put in.
    pub fn tenant_issuer(&self, tenant: &str) -> String {
        format!("{}/ms/{tenant}/v2.0", self.base)
    }

    /// Registers Latchkey with both forged providers.
    pub fn configure(&self, c: &mut Config) {
        let registration = |issuer: String| OidcProviderConfig {
            issuer,
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            trusted_tenants: String::new(),
        };
        c.sso.google = Some(registration(self.google_issuer()));
        c.sso.microsoft = Some(registration(self.microsoft_common()));
    }

    /// The ID token the next token request gets (once), made of `claims` and signed as asked.
    pub fn answer_next(&self, claims: &Value, signing: Signing) {
        *self.shared.next_id_token.lock().unwrap() = Some(sign(claims, &signing));
    }

    /// How often the provider's JWKS was fetched so far.
    pub fn jwks_fetches(&self, provider: Provider) -> usize {
        match provider {
            Provider::Google => self.shared.google_jwks_fetches.load(Ordering::SeqCst),
            Provider::Microsoft => self.shared.microsoft_jwks_fetches.load(Ordering::SeqCst),
        }
    }

    /// Every token request so far, oldest first.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.shared.token_requests.lock().unwrap().clone()
    }

    /// Key rotation: from now on both JWKS also publish the second key, as [`ROTATED_KID`].
    pub fn publish_rotated_key(&self) {
        self.shared.rotated.store(true, Ordering::SeqCst);
    }
}

fn discovery(issuer: &str, endpoints: &str) -> Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{endpoints}/authorize"),
        "token_endpoint": format!("{endpoints}/token"),
        "jwks_uri": format!("{endpoints}/keys"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile"],
    })
}

async fn google_discovery(State(f): Forger) -> Json<Value> {
    let mut d = discovery(&format!("{}/google", f.base), &format!("{}/google", f.base));
    d["jwks_uri"] = json!(format!("{}/google/jwks", f.base));
    Json(d)
}

async fn microsoft_discovery(State(f): Forger) -> Json<Value> {
    let mut d = discovery(&format!("{}/ms/{{tenantid}}/v2.0", f.base), &format!("{}/ms/common/oauth2/v2.0", f.base));
    d["jwks_uri"] = json!(format!("{}/ms/common/discovery/v2.0/keys", f.base));
    Json(d)
}

fn jwks(f: &Shared) -> Json<Value> {
    let mut keys = vec![jwk(good_key(), GOOD_KID)];
    if f.rotated.load(Ordering::SeqCst) {
        keys.push(jwk(other_key(), ROTATED_KID));
    }
    Json(json!({ "keys": keys }))
}

async fn google_jwks(State(f): Forger) -> Json<Value> {
    f.google_jwks_fetches.fetch_add(1, Ordering::SeqCst);
    jwks(&f)
}

async fn microsoft_jwks(State(f): Forger) -> Json<Value> {
    f.microsoft_jwks_fetches.fetch_add(1, Ordering::SeqCst);
    jwks(&f)
}

/// Any client authentication is accepted (it is recorded); the answer carries the ID token the
/// test set, once. Without one, the code is refused as a provider would refuse a used code.
fn token(f: &Shared, provider: Provider, headers: &HeaderMap, form: HashMap<String, String>) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    f.token_requests.lock().unwrap().push(TokenRequest { provider, authorization, form });
    match f.next_id_token.lock().unwrap().take() {
        Some(id_token) => Json(json!({"access_token": "x", "token_type": "Bearer", "expires_in": 3600, "id_token": id_token})).into_response(),
        None => (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"}))).into_response(),
    }
}

async fn google_token(State(f): Forger, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    token(&f, Provider::Google, &headers, form)
}

async fn microsoft_token(State(f): Forger, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    token(&f, Provider::Microsoft, &headers, form)
}
