//! The OpenID Connect relying party for Google and Microsoft 365 (C7).
//!
//! The `openidconnect` crate builds the authorization request (PKCE S256, state, nonce), exchanges
//! the code and checks the ID token: signature against the provider's JWKS (RS256 only), audience
//! (several audiences are refused), expiry and nonce. What it leaves out is done here: `azp`, when
//! present, must be our client (the crate does not compare it); an `iat` more than five minutes
//! ahead is refused; and two more:
//!
//! * **Discovery** is read by hand, because Microsoft's multi-tenant metadata publishes an issuer
//!   template (`https://login.microsoftonline.com/{tenantid}/v2.0`) that the crate's discovery
//!   refuses (Keycloak issue 28662 is the same limitation). The issuer check is then ours:
//!   [`issuer_matches`] puts the token's own `tid` into the template.
//! * **Key rotation**: keys are cached; a token signed with a key id not in the cache makes one
//!   fresh JWKS fetch (at most every [`JWKS_REFRESH_MIN`]), so a rotated key works at once and a
//!   flood of forged key ids cannot turn into a flood of fetches.
//!
//! Nothing here decides which account signs in; it only turns a provider's answer into a checked
//! [`ProviderIdentity`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use latchkey_core::flows::sso::{issuer_matches, Provider, ProviderIdentity};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm, CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthType, AuthUrl, AuthenticationFlow, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken,
    EmptyExtraTokenFields, EndpointNotSet, EndpointSet, IdTokenFields, IdTokenVerifier, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, SignatureVerificationError, StandardErrorResponse, StandardTokenResponse, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::config::OidcProviderConfig;

/// How long discovery metadata and keys are trusted before they are fetched again.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// The shortest time between two JWKS fetches caused by an unknown key id. ID tokens arrive over
/// the back channel from the provider's own token endpoint, so an unknown key id means a rotation,
/// not an attacker's choice; the floor only stops a misbehaving provider from making every
/// callback a fetch.
pub const JWKS_REFRESH_MIN: Duration = Duration::from_secs(5);
/// Every call to a provider; a provider that hangs must not hold a sign-in longer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Microsoft's claims beyond the standard ones. Google sends neither.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EntraClaims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tid: Option<String>,
    /// Sent as a boolean, by some tenants as `1` / `"true"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    xms_edov: Option<serde_json::Value>,
}

impl AdditionalClaims for EntraClaims {}

impl EntraClaims {
    fn domain_verified(&self) -> Option<bool> {
        self.xms_edov.as_ref().map(|v| match v {
            serde_json::Value::Bool(b) => *b,
            serde_json::Value::Number(n) => n.as_i64() == Some(1),
            serde_json::Value::String(s) => s == "1" || s.eq_ignore_ascii_case("true"),
            _ => false,
        })
    }
}

type IdTokenResponse = StandardTokenResponse<
    IdTokenFields<EntraClaims, EmptyExtraTokenFields, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>,
    CoreTokenType,
>;
type IdToken = openidconnect::IdToken<EntraClaims, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;

type OidcClient = openidconnect::Client<
    EntraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    IdTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointNotSet,
>;

/// Why a trip to the provider did not produce an identity. The text is for the log, never for the
/// page: it names what failed, not any secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    #[error("provider unreachable or answering badly: {0}")]
    Unavailable(String),
    #[error("the provider's answer was refused: {0}")]
    Refused(String),
}

/// The part of a provider's discovery document Latchkey uses.
#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Vec<String>,
}

struct Cached {
    discovery: Discovery,
    jwks: CoreJsonWebKeySet,
    fetched_at: Instant,
    jwks_fetched_at: Instant,
}

/// What the browser carries to the provider, and what must be kept until it comes back.
pub struct Authorization {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// One provider Latchkey is registered with.
pub struct RelyingParty {
    provider: Provider,
    config: OidcProviderConfig,
    redirect_uri: String,
    http: reqwest::Client,
    cache: Mutex<Option<Cached>>,
}

impl RelyingParty {
    pub fn new(provider: Provider, config: OidcProviderConfig, redirect_uri: String) -> anyhow::Result<Self> {
        check_endpoint(&config.issuer).map_err(|e| anyhow::anyhow!("sso.{}.issuer: {e}", provider.as_str()))?;
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            // A provider's answers are read where they are asked for: following a redirect would
            // let a compromised endpoint point the server anywhere (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { provider, config, redirect_uri, http, cache: Mutex::new(None) })
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    pub fn trusted_tenants(&self) -> Vec<String> {
        self.config.trusted_tenants()
    }

    /// The authorization request: a fresh state, nonce and PKCE verifier, and the provider's URL.
    pub async fn authorize(&self) -> Result<Authorization, OidcError> {
        let (discovery, jwks) = self.metadata(false).await?;
        let client = self.client(&discovery, jwks)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(AuthenticationFlow::<openidconnect::core::CoreResponseType>::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .add_prompt(CoreAuthPrompt::SelectAccount)
            .set_pkce_challenge(challenge)
            .url();
        Ok(Authorization {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges the code (with the PKCE verifier) and checks the ID token against the nonce of the
    /// attempt, at `now` by the service's clock.
    pub async fn finish(&self, code: &str, pkce_verifier: String, nonce: &str, now: OffsetDateTime) -> Result<ProviderIdentity, OidcError> {
        let (discovery, jwks) = self.metadata(false).await?;
        let client = self.client(&discovery, jwks.clone())?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| exchange_error(&e))?;
        let token = response.id_token().ok_or_else(|| OidcError::Refused("the token response has no ID token".into()))?;
        match self.check(token, &discovery, &jwks, nonce, now) {
            Err(OidcError::Refused(reason)) if reason == NO_MATCHING_KEY => {
                // Perhaps the provider rotated its keys since we fetched them.
                let (_, fresh) = self.metadata(true).await?;
                self.check(token, &discovery, &fresh, nonce, now)
            }
            other => other,
        }
    }

    fn check(&self, token: &IdToken, discovery: &Discovery, jwks: &CoreJsonWebKeySet, nonce: &str, now: OffsetDateTime) -> Result<ProviderIdentity, OidcError> {
        let now = chrono::DateTime::from_timestamp(now.unix_timestamp(), 0).unwrap_or_default();
        // The issuer is checked below with the tenant rule; the crate checks everything else.
        let verifier = IdTokenVerifier::new_public_client(ClientId::new(self.config.client_id.clone()), issuer_url(&discovery.issuer)?, jwks.clone())
            .require_issuer_match(false)
            .set_allowed_algs([CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256])
            .set_issue_time_verifier_fn(move |iat| {
                if iat > now + chrono::Duration::minutes(5) { Err("issued in the future".to_owned()) } else { Ok(()) }
            })
            .set_time_fn(move || now);
        let expected = Nonce::new(nonce.to_owned());
        let claims = token.claims(&verifier, &expected).map_err(|e| OidcError::Refused(claims_error(&e)))?;
        if claims.authorized_party().is_some_and(|azp| azp.as_str() != self.config.client_id) {
            return Err(OidcError::Refused("the token was issued to another client (azp)".into()));
        }
        let extra = claims.additional_claims();
        if !issuer_matches(&discovery.issuer, claims.issuer().as_str(), extra.tid.as_deref()) {
            return Err(OidcError::Refused(format!("issuer {} is not {}", claims.issuer().as_str(), discovery.issuer)));
        }
        Ok(ProviderIdentity {
            provider: self.provider,
            subject: claims.subject().as_str().to_owned(),
            email: claims.email().map(|e| e.as_str().to_owned()),
            email_verified: claims.email_verified(),
            tenant: extra.tid.clone(),
            email_domain_verified: extra.domain_verified(),
        })
    }

    fn client(&self, discovery: &Discovery, jwks: CoreJsonWebKeySet) -> Result<OidcClient, OidcError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| OidcError::Unavailable(format!("discovery {what}: {e}"));
        let auth = AuthUrl::new(discovery.authorization_endpoint.clone()).map_err(|e| bad("authorization_endpoint", &e))?;
        let token = TokenUrl::new(discovery.token_endpoint.clone()).map_err(|e| bad("token_endpoint", &e))?;
        let redirect = RedirectUrl::new(self.redirect_uri.clone()).map_err(|e| bad("redirect uri", &e))?;
        // client_secret_basic is the default of the standard; use the body only where the provider
        // says it takes nothing else.
        let methods = &discovery.token_endpoint_auth_methods_supported;
        let auth_type = if methods.is_empty() || methods.iter().any(|m| m == "client_secret_basic") { AuthType::BasicAuth } else { AuthType::RequestBody };
        let client: OidcClient = openidconnect::Client::new(ClientId::new(self.config.client_id.clone()), issuer_url(&discovery.issuer)?, jwks)
            .set_client_secret(ClientSecret::new(self.config.client_secret.clone()))
            .set_auth_uri(auth)
            .set_token_uri(token)
            .set_redirect_uri(redirect)
            .set_auth_type(auth_type);
        Ok(client)
    }

    /// The cached metadata and keys, fetched when missing or old; `refresh_keys` asks for the keys
    /// again (not more often than [`JWKS_REFRESH_MIN`]).
    async fn metadata(&self, refresh_keys: bool) -> Result<(Discovery, CoreJsonWebKeySet), OidcError> {
        let mut cache = self.cache.lock().await;
        let fresh = cache.as_ref().is_some_and(|c| c.fetched_at.elapsed() < METADATA_TTL);
        if !fresh {
            let discovery = self.discover().await?;
            let jwks = self.fetch_keys(&discovery.jwks_uri).await?;
            let now = Instant::now();
            *cache = Some(Cached { discovery, jwks, fetched_at: now, jwks_fetched_at: now });
        } else if let Some(c) = cache.as_mut().filter(|c| refresh_keys && c.jwks_fetched_at.elapsed() >= JWKS_REFRESH_MIN) {
            c.jwks = self.fetch_keys(&c.discovery.jwks_uri).await?;
            c.jwks_fetched_at = Instant::now();
        }
        let c = cache.as_ref().ok_or_else(|| OidcError::Unavailable("no metadata".into()))?;
        Ok((c.discovery.clone(), c.jwks.clone()))
    }

    async fn discover(&self) -> Result<Discovery, OidcError> {
        let url = format!("{}/.well-known/openid-configuration", self.config.issuer.trim_end_matches('/'));
        let discovery: Discovery = self.get_json(&url).await?;
        if !discovery_issuer_fits(&self.config.issuer, &discovery.issuer) {
            return Err(OidcError::Unavailable(format!("discovery at {url} names the issuer {}", discovery.issuer)));
        }
        for endpoint in [&discovery.authorization_endpoint, &discovery.token_endpoint, &discovery.jwks_uri] {
            check_endpoint(endpoint).map_err(OidcError::Unavailable)?;
        }
        Ok(discovery)
    }

    async fn fetch_keys(&self, jwks_uri: &str) -> Result<CoreJsonWebKeySet, OidcError> {
        self.get_json(jwks_uri).await
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, OidcError> {
        let response = self.http.get(url).send().await.map_err(|e| OidcError::Unavailable(format!("GET {url}: {}", without_url(&e))))?;
        if !response.status().is_success() {
            return Err(OidcError::Unavailable(format!("GET {url}: HTTP {}", response.status().as_u16())));
        }
        response.json().await.map_err(|e| OidcError::Unavailable(format!("GET {url}: {}", without_url(&e))))
    }
}

const NO_MATCHING_KEY: &str = "no key of the provider's key set matches the token";

fn claims_error(e: &ClaimsVerificationError) -> String {
    match e {
        ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey) => NO_MATCHING_KEY.into(),
        other => other.to_string(),
    }
}

fn exchange_error<RE: std::error::Error + 'static>(e: &openidconnect::RequestTokenError<RE, StandardErrorResponse<CoreErrorResponseType>>) -> OidcError {
    match e {
        // RFC 6749's two codes for a provider that cannot answer now (sent with a 5xx).
        openidconnect::RequestTokenError::ServerResponse(r) if matches!(r.error().as_ref(), "temporarily_unavailable" | "server_error") => {
            OidcError::Unavailable(format!("token endpoint: {}", r.error()))
        }
        // The provider answered and refused the code (used, expired, wrong verifier).
        openidconnect::RequestTokenError::ServerResponse(r) => OidcError::Refused(format!("token endpoint: {}", r.error())),
        // A token response that is JSON with an ID token the crate could not read (a claim missing
        // or of the wrong type) is a refused token, not an outage.
        openidconnect::RequestTokenError::Parse(err, body) if serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v.get("id_token").is_some()) => {
            OidcError::Refused(format!("the ID token could not be read: {err}"))
        }
        openidconnect::RequestTokenError::Parse(err, _) => OidcError::Unavailable(format!("token endpoint answer: {err}")),
        other => OidcError::Unavailable(format!("token endpoint: {other}")),
    }
}

fn issuer_url(issuer: &str) -> Result<IssuerUrl, OidcError> {
    IssuerUrl::new(issuer.to_owned()).map_err(|e| OidcError::Unavailable(format!("issuer {issuer}: {e}")))
}

/// reqwest's errors name the URL, query and all; ours name it once, without the error's copy.
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(&format!(" ({url})"), "").replace(url.as_str(), "");
    }
    text
}

/// Providers speak HTTPS; plain HTTP only on the loopback (a test provider on this machine).
fn check_endpoint(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url} is not a URL: {e}"))?;
    let loopback = matches!(parsed.host(), Some(url::Host::Domain("localhost")))
        || matches!(parsed.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(parsed.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!("{url} must be https")),
    }
}

/// The issuer a discovery document names must be the one it was fetched for; a `{tenantid}`
/// template fits a configured URL that has a tenant segment (`common`, `organizations` or an id)
/// in its place.
fn discovery_issuer_fits(configured: &str, discovered: &str) -> bool {
    let configured = configured.trim_end_matches('/');
    let discovered = discovered.trim_end_matches('/');
    match discovered.split_once("{tenantid}") {
        None => configured == discovered,
        Some((prefix, suffix)) => configured
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(suffix))
            .is_some_and(|segment| !segment.is_empty() && segment.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')),
    }
}

/// The providers the operator registered, by name.
#[derive(Default, Clone)]
pub struct RelyingParties {
    parties: Vec<Arc<RelyingParty>>,
}

impl RelyingParties {
    pub fn from_config(config: &crate::config::Config) -> anyhow::Result<Self> {
        let mut parties = Vec::new();
        for (provider, registration) in [(Provider::Google, &config.sso.google), (Provider::Microsoft, &config.sso.microsoft)] {
            if let Some(registration) = registration {
                let redirect = format!("{}/sso/{}/callback", config.public_url(), provider.as_str());
                parties.push(Arc::new(RelyingParty::new(provider, registration.clone(), redirect)?));
            }
        }
        Ok(Self { parties })
    }

    pub fn get(&self, provider: Provider) -> Option<&Arc<RelyingParty>> {
        self.parties.iter().find(|p| p.provider == provider)
    }

    /// The providers offered on the sign-in page.
    pub fn providers(&self) -> Vec<Provider> {
        self.parties.iter().map(|p| p.provider).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_discovery_document_must_name_the_issuer_it_was_fetched_for() {
        assert!(discovery_issuer_fits("https://accounts.google.com", "https://accounts.google.com"));
        assert!(discovery_issuer_fits("https://accounts.google.com/", "https://accounts.google.com"));
        assert!(!discovery_issuer_fits("https://accounts.google.com", "https://evil.example"));
        let template = "https://login.microsoftonline.com/{tenantid}/v2.0";
        assert!(discovery_issuer_fits("https://login.microsoftonline.com/organizations/v2.0", template));
        assert!(discovery_issuer_fits("https://login.microsoftonline.com/common/v2.0", template));
        assert!(!discovery_issuer_fits("https://login.microsoftonline.com/v2.0", template), "no tenant segment");
        assert!(!discovery_issuer_fits("https://login.microsoftonline.com/a/b/v2.0", template), "one segment only");
        assert!(!discovery_issuer_fits("https://evil.example/common/v2.0", template));
    }

    #[test]
    fn providers_are_reached_over_https_except_on_the_loopback() {
        assert!(check_endpoint("https://accounts.google.com").is_ok());
        assert!(check_endpoint("http://127.0.0.1:4000/google").is_ok());
        assert!(check_endpoint("http://localhost:4000/google").is_ok());
        assert!(check_endpoint("http://accounts.google.com").is_err());
        assert!(check_endpoint("ftp://127.0.0.1/x").is_err());
        assert!(check_endpoint("not a url").is_err());
    }

    #[test]
    fn xms_edov_is_read_in_each_form_microsoft_sends() {
        let with = |v: serde_json::Value| EntraClaims { tid: None, xms_edov: Some(v) }.domain_verified();
        assert_eq!(with(serde_json::json!(true)), Some(true));
        assert_eq!(with(serde_json::json!(1)), Some(true));
        assert_eq!(with(serde_json::json!("true")), Some(true));
        assert_eq!(with(serde_json::json!(false)), Some(false));
        assert_eq!(with(serde_json::json!("0")), Some(false));
        assert_eq!(EntraClaims::default().domain_verified(), None);
    }
}
