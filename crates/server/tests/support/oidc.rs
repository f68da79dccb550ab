//! A real OpenID provider on loopback for the single sign-on tests: panva's `oidc-provider` (the
//! certified Node.js implementation) run by `tests/oidc/provider.mjs`, playing a Google-like issuer
//! and a Microsoft-like multi-tenant one (per-tenant issuers plus Entra's "common" endpoints whose
//! metadata carries the `{tenantid}` issuer template). Logins are non-interactive: the test chooses
//! who the next authorization request signs in as (or that the user denies), and the provider's
//! authorization endpoint answers at once with one 302 to the client's redirect URI.
//!
//! Self-contained so any test file can use it:
//! `#[path = "support/oidc.rs"] mod oidc;`, then
//! ```ignore
//! let idp = oidc::OidcProvider::start().await;
//! idp.set_redirect_uris(&[&format!("{}/sso/google/callback", server.base)]).await;
//! idp.set_accounts(&[oidc::Account::google("1080", "ann@example.com", true, "Ann")]).await;
//! idp.next_login(oidc::Idp::Google, None, "1080").await;
//! // … the browser goes to Latchkey, is sent to `idp.google_issuer()`'s authorization endpoint,
//! // gets a 302 straight back to Latchkey's callback with `code` and `state` …
//! ```
//! The Node process runs once per `OidcProvider` and is killed when it is dropped; its log (stderr)
//! is kept, shown when a test panics, and at hand through `logs()`. Needs `node` and the npm
//! packages of `tests/oidc` (`bash scripts/setup.sh` installs them).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// The Microsoft tenants a provider has unless told otherwise.
pub const TENANT_A: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
pub const TENANT_B: &str = "bbbbbbbb-0000-4000-8000-00000000000b";

/// The redirect URI registered when a test gives none (nothing listens there): replace it with
/// `set_redirect_uris` once Latchkey's address is known.
pub const PLACEHOLDER_REDIRECT_URI: &str = "http://127.0.0.1:9/sso/callback";

/// How long the provider may take to start (Node, the module, two RSA keys).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Which identity provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idp {
    Google,
    Microsoft,
}

impl Idp {
    pub fn as_str(self) -> &'static str {
        match self {
            Idp::Google => "google",
            Idp::Microsoft => "microsoft",
        }
    }
}

/// One account at a provider (for Microsoft, in one tenant): its `sub` and the claims the ID token
/// carries when the scopes ask for them (see `tests/oidc/provider.mjs` for the claims per scope;
/// others are dropped).
#[derive(Clone, Debug)]
pub struct Account {
    pub provider: Idp,
    /// The tenant id, for Microsoft only.
    pub tenant: Option<String>,
    pub sub: String,
    pub claims: Map<String, Value>,
}

impl Account {
    /// A Google account: `email`, `email_verified`, `name`.
    pub fn google(sub: &str, email: &str, email_verified: bool, name: &str) -> Account {
        let mut claims = Map::new();
        claims.insert("email".into(), json!(email));
        claims.insert("email_verified".into(), json!(email_verified));
        claims.insert("name".into(), json!(name));
        Account { provider: Idp::Google, tenant: None, sub: sub.to_owned(), claims }
    }

    /// A Microsoft work account in `tenant`: `email`, `preferred_username` (the email), an `oid`
    /// derived from tenant and sub (a GUID, stable), `xms_edov` when given; `tid` is added by the
    /// provider (the tenant; set the claim to override it).
    pub fn microsoft(tenant: &str, sub: &str, email: &str, xms_edov: Option<bool>) -> Account {
        let mut claims = Map::new();
        claims.insert("email".into(), json!(email));
        claims.insert("preferred_username".into(), json!(email));
        claims.insert("oid".into(), json!(guid_from(&format!("{tenant}/{sub}"))));
        if let Some(edov) = xms_edov {
            claims.insert("xms_edov".into(), json!(edov));
        }
        Account { provider: Idp::Microsoft, tenant: Some(tenant.to_owned()), sub: sub.to_owned(), claims }
    }

    /// Sets (or replaces) a claim.
    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Account {
        self.claims.insert(name.to_owned(), value.into());
        self
    }

    /// Removes a claim.
    pub fn without(mut self, name: &str) -> Account {
        self.claims.remove(name);
        self
    }

    /// The `oid` claim, if any.
    pub fn oid(&self) -> Option<&str> {
        self.claims.get("oid").and_then(Value::as_str)
    }

    fn to_json(&self) -> Value {
        json!({ "provider": self.provider.as_str(), "tenant": self.tenant, "sub": self.sub, "claims": self.claims })
    }
}

/// How to start the provider.
#[derive(Clone, Debug)]
pub struct OidcOptions {
    /// Registered for both clients (Google's and Microsoft's).
    pub redirect_uris: Vec<String>,
    /// The Microsoft tenants, each an issuer of its own.
    pub tenants: Vec<String>,
    /// `client_secret_basic` (the default, and the `openidconnect` crate's) or `client_secret_post`.
    pub token_endpoint_auth_method: String,
}

impl Default for OidcOptions {
    fn default() -> Self {
        OidcOptions {
            redirect_uris: vec![PLACEHOLDER_REDIRECT_URI.to_owned()],
            tenants: vec![TENANT_A.to_owned(), TENANT_B.to_owned()],
            token_endpoint_auth_method: "client_secret_basic".to_owned(),
        }
    }
}

/// The registered client of one provider.
#[derive(Clone, Debug)]
struct ClientCredentials {
    id: String,
    secret: String,
}

/// The running provider; the Node process is killed when this is dropped.
pub struct OidcProvider {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub base_url: String,
    pub port: u16,
    google: ClientCredentials,
    microsoft: ClientCredentials,
    tenants: Vec<String>,
    http: reqwest::Client,
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl OidcProvider {
    /// Tenants `TENANT_A` and `TENANT_B`, `PLACEHOLDER_REDIRECT_URI`, `client_secret_basic`.
    pub async fn start() -> OidcProvider {
        Self::start_with(OidcOptions::default()).await
    }

    pub async fn start_with(options: OidcOptions) -> OidcProvider {
        let package = package_dir();
        if !package.join("node_modules/oidc-provider/package.json").is_file() {
            panic!(
                "the OpenID test provider's npm packages are missing ({}): run `bash scripts/setup.sh`",
                package.join("node_modules").display()
            );
        }
        let google = ClientCredentials {
            id: format!("{}-latchkey.apps.googleusercontent.com", random_hex(6)),
            secret: format!("GOCSPX-{}", random_hex(14)),
        };
        let microsoft = ClientCredentials { id: guid_from(&random_hex(16)), secret: format!("lk~{}", random_hex(18)) };
        let client = |c: &ClientCredentials| {
            json!({
                "client_id": c.id,
                "client_secret": c.secret,
                "redirect_uris": options.redirect_uris,
                "token_endpoint_auth_method": options.token_endpoint_auth_method,
            })
        };
        let mut ms = client(&microsoft);
        ms["tenants"] = json!(options.tenants);
        let config = json!({ "google": client(&google), "microsoft": ms });

        let dir = tempfile::tempdir().expect("a temporary directory for the OpenID provider's config");
        let config_path = dir.path().join("oidc-provider.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).expect("write the provider's config");

        let node = std::env::var("NODE").unwrap_or_else(|_| "node".to_owned());
        let mut child = Command::new(&node)
            .arg(package.join("provider.mjs"))
            .arg("--config")
            .arg(&config_path)
            // Test-only RSA keys, reused across runs: making them is most of the start-up time.
            .arg("--key-cache")
            .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("oidc-provider-keys.json"))
            .arg("--exit-on-stdin-close")
            .current_dir(&package)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{node}` for the OpenID test provider ({e}): install Node.js 20+ and run `bash scripts/setup.sh`"));

        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("the provider's stderr");
        let stderr_logs = logs.clone();
        let stderr_thread = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                stderr_logs.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let stdout = child.stdout.take().expect("the provider's stdout");
        let (first_line, port_line) = mpsc::channel::<Option<String>>();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = first_line.send(lines.next().and_then(Result::ok));
            // Nothing else is printed there; drain it all the same until the process ends.
            for _ in lines {}
        });
        let line = tokio::task::spawn_blocking(move || port_line.recv_timeout(START_TIMEOUT).ok().flatten())
            .await
            .expect("wait for the provider's port");

        let port = line.as_deref().and_then(|l| serde_json::from_str::<Value>(l).ok()).and_then(|v| v["port"].as_u64());
        let Some(port) = port.and_then(|p| u16::try_from(p).ok()) else {
            let _ = child.kill();
            let _ = child.wait();
            let _ = stderr_thread.join();
            let log = logs.lock().unwrap_or_else(|p| p.into_inner()).join("\n");
            panic!("the OpenID test provider did not start (first stdout line {line:?}); its log:\n{log}");
        };

        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client");
        OidcProvider {
            base_url: format!("http://127.0.0.1:{port}"),
            port,
            google,
            microsoft,
            tenants: options.tenants,
            http,
            child,
            logs,
            _dir: dir,
        }
    }

    // --- Where things are -----------------------------------------------------------------

    /// `http://127.0.0.1:PORT/google`; its metadata is at `{issuer}/.well-known/openid-configuration`.
    pub fn google_issuer(&self) -> String {
        format!("{}/google", self.base_url)
    }

    pub fn google_discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.google_issuer())
    }

    /// A tenant's concrete issuer, `http://127.0.0.1:PORT/ms/<tid>/v2.0` (its ID tokens' `iss`).
    pub fn microsoft_issuer(&self, tid: &str) -> String {
        format!("{}/ms/{tid}/v2.0", self.base_url)
    }

    /// `http://127.0.0.1:PORT/ms/{tenantid}/v2.0`, literally: the `issuer` of the common metadata.
    pub fn microsoft_issuer_template(&self) -> String {
        format!("{}/ms/{{tenantid}}/v2.0", self.base_url)
    }

    /// The multi-tenant ("common") metadata, as at `login.microsoftonline.com/common/v2.0/…`.
    pub fn microsoft_common_discovery_url(&self) -> String {
        format!("{}/ms/common/v2.0/.well-known/openid-configuration", self.base_url)
    }

    pub fn tenants(&self) -> &[String] {
        &self.tenants
    }

    pub fn client_id(&self, idp: Idp) -> &str {
        &self.credentials(idp).id
    }

    pub fn client_secret(&self, idp: Idp) -> &str {
        &self.credentials(idp).secret
    }

    pub fn google_client_id(&self) -> &str {
        &self.google.id
    }

    pub fn google_client_secret(&self) -> &str {
        &self.google.secret
    }

    pub fn microsoft_client_id(&self) -> &str {
        &self.microsoft.id
    }

    pub fn microsoft_client_secret(&self) -> &str {
        &self.microsoft.secret
    }

    fn credentials(&self, idp: Idp) -> &ClientCredentials {
        match idp {
            Idp::Google => &self.google,
            Idp::Microsoft => &self.microsoft,
        }
    }

    // --- What the test controls -----------------------------------------------------------

    /// Replaces the redirect URIs registered for both clients.
    pub async fn set_redirect_uris(&self, uris: &[&str]) {
        self.admin(Method::PUT, "/admin/redirect-uris", json!({ "redirect_uris": uris })).await;
    }

    /// Replaces the redirect URIs registered for one provider's client.
    pub async fn set_redirect_uris_of(&self, idp: Idp, uris: &[&str]) {
        self.admin(Method::PUT, "/admin/redirect-uris", json!({ "provider": idp.as_str(), "redirect_uris": uris }))
            .await;
    }

    /// Replaces every account of every provider and tenant.
    pub async fn set_accounts(&self, accounts: &[Account]) {
        let list: Vec<Value> = accounts.iter().map(Account::to_json).collect();
        self.admin(Method::PUT, "/admin/accounts", Value::Array(list)).await;
    }

    /// The next authorization request that reaches a login signs in as `sub` (at Microsoft, in
    /// `tenant`, which the common endpoints then dispatch to) and consents to the requested scopes.
    /// Used once; a later login needs another call.
    pub async fn next_login(&self, idp: Idp, tenant: Option<&str>, sub: &str) {
        self.admin(
            Method::POST,
            "/admin/next-login",
            json!({ "provider": idp.as_str(), "tenant": tenant, "sub": sub }),
        )
        .await;
    }

    /// The user at the next authorization request (any provider) cancels: the provider redirects
    /// back with `error=access_denied` and the `state`.
    pub async fn next_denied(&self) {
        self.admin(Method::POST, "/admin/next-login", json!({ "deny": true })).await;
    }

    /// Forgets a planned login: the next authorization request is answered 409
    /// `login_not_planned` (a user who never finishes signing in).
    pub async fn clear_next_login(&self) {
        self.admin(Method::DELETE, "/admin/next-login", Value::Null).await;
    }

    /// A new signing key (new `kid`) for both providers, which signs from now on; the JWKS serve
    /// the new and the old keys with `keep_old`, else only the new one.
    pub async fn rotate_keys(&self, keep_old: bool) {
        self.admin(Method::POST, "/admin/rotate-keys", json!({ "keep_old": keep_old })).await;
    }

    /// `rotate_keys` for one provider (at Microsoft: every tenant, they share the keys).
    pub async fn rotate_keys_of(&self, idp: Idp, keep_old: bool) {
        self.admin(Method::POST, "/admin/rotate-keys", json!({ "provider": idp.as_str(), "keep_old": keep_old })).await;
    }

    /// The `kid`s a provider's JWKS serves, the signing one first.
    pub async fn kids(&self, idp: Idp) -> Vec<String> {
        let status = self.admin(Method::GET, "/admin/status", Value::Null).await;
        status[idp.as_str()]["kids"]
            .as_array()
            .map(|kids| kids.iter().filter_map(|k| k.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    /// While down, both providers answer 503 to everything but the admin API.
    pub async fn set_down(&self, down: bool) {
        self.admin(Method::POST, "/admin/down", json!({ "down": down })).await;
    }

    /// `set_down` for one provider.
    pub async fn set_down_of(&self, idp: Idp, down: bool) {
        self.admin(Method::POST, "/admin/down", json!({ "provider": idp.as_str(), "down": down })).await;
    }

    /// Every authorization request that came from outside, oldest first: `provider`, `tenant`,
    /// `endpoint` (`issuer`, `tenant` or `common`), `params` (its query, e.g. `nonce`,
    /// `code_challenge_method`, `scope`, `prompt`), and `outcome` (`code`, an error code such as
    /// `access_denied`, or `status 409`).
    pub async fn authorization_requests(&self) -> Vec<Value> {
        match self.admin(Method::GET, "/admin/authorizations", Value::Null).await {
            Value::Array(list) => list,
            other => panic!("unexpected answer from the provider: {other}"),
        }
    }

    /// The provider's log so far (its stderr), one line per entry.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).join("\n")
    }

    async fn admin(&self, method: Method, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base_url);
        let mut request = self.http.request(method.clone(), &url);
        if !body.is_null() {
            request = request.json(&body);
        }
        let response =
            request.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}\nprovider log:\n{}", self.logs()));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status != StatusCode::OK {
            panic!("{method} {url} answered {status}: {text}\nprovider log:\n{}", self.logs());
        }
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- OpenID test provider log ---\n{}\n--- end of the provider log ---", self.logs());
        }
    }
}

/// `tests/oidc` in the workspace.
fn package_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().unwrap_or(root);
    root.join("tests/oidc")
}

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..bytes).map(|_| format!("{:02x}", rng.gen::<u8>())).collect()
}

/// A GUID-shaped id (version 4 layout) derived from `seed`.
fn guid_from(seed: &str) -> String {
    let hash = Sha256::digest(seed.as_bytes());
    let hex: String = hash.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-4{}-8{}-{}", &hex[0..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32])
}
