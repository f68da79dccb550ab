//! Preparing the accounts the load signs in with: a company and its users made through the
//! library on the node's own store (as the CLI does beside a running server), then activated,
//! signed in and enrolled over HTTP like any client.

use std::sync::Arc;

use anyhow::{bail, Context};
use latchkey_core::two_factor::totp::{code_now, TotpSecret};
use latchkey_core::{Role, SystemClock};
use latchkey_server::app::{Actor, RequestContext};
use reqwest::header::SET_COOKIE;
use serde_json::{json, Value};

use crate::load;
use crate::node::Node;

pub const DOMAIN: &str = "bench.example";
pub const PASSWORD: &str = "Bench-Pass-2026";
const PIN: &str = "4826";
const SESSION_COOKIE: &str = "__Host-latchkey_session";

/// A signed-in client: the session cookie and the CSRF token that goes with it.
#[derive(Clone)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

pub enum SignedIn {
    Session(Session),
    /// A sign-in flow waiting for its second factor.
    Flow(String),
}

/// Makes the company (with the two-factor pilot when asked) and `n` active users; returns their
/// login names.
pub async fn active_users(node: &Node, n: usize, two_factor: bool) -> anyhow::Result<Vec<String>> {
    let app = latchkey_server::open(node.config(), Arc::new(SystemClock)).await?;
    let ctx = RequestContext::default();
    app.create_company("Bench Company", DOMAIN).await.map_err(|e| anyhow::anyhow!(e.message))?;
    if two_factor {
        app.set_two_factor_feature(DOMAIN, true, Actor::Operator, &ctx).await.map_err(|e| anyhow::anyhow!(e.message))?;
    }
    let tokens = load::for_each(n, 4, move |i| {
        let app = app.clone();
        async move {
            let ctx = RequestContext::default();
            let created = app
                .create_user(DOMAIN, &(10_000 + i).to_string(), &format!("user{i}@{DOMAIN}"), Role::User, Actor::Operator, &ctx)
                .await
                .map_err(|e| anyhow::anyhow!(e.message))?;
            let token = created.complete_setup_url.rsplit('/').next().unwrap_or_default().to_owned();
            Ok((created.user.login_name.to_string(), token))
        }
    })
    .await?;
    let client = load::client();
    let base = node.base.clone();
    load::for_each(n, 8, move |i| {
        let (login_name, token) = tokens[i].clone();
        let (client, base) = (client.clone(), base.clone());
        async move {
            let body = json!({"password": PASSWORD, "password_confirmation": PASSWORD, "pin": PIN});
            let resp = client.post(format!("{base}/api/v1/activation/{token}")).json(&body).send().await?;
            expect_ok(resp, "Complete Setup").await?;
            Ok(login_name)
        }
    })
    .await
}

pub async fn sign_in(client: &reqwest::Client, base: &str, login_name: &str) -> anyhow::Result<SignedIn> {
    let resp = client
        .post(format!("{base}/api/v1/sign-in"))
        .json(&json!({"login_name": login_name, "password": PASSWORD}))
        .send()
        .await?;
    let cookie = session_cookie(&resp);
    let body = expect_ok(resp, "sign-in").await?;
    match body["state"].as_str() {
        Some("signed_in") => Ok(SignedIn::Session(Session {
            cookie: cookie.context("no session cookie")?,
            csrf: body["csrf_token"].as_str().unwrap_or_default().to_owned(),
        })),
        Some("second_factor") => Ok(SignedIn::Flow(body["flow"].as_str().unwrap_or_default().to_owned())),
        other => bail!("sign-in answered state {other:?}"),
    }
}

pub async fn session(client: &reqwest::Client, base: &str, login_name: &str) -> anyhow::Result<Session> {
    match sign_in(client, base, login_name).await? {
        SignedIn::Session(s) => Ok(s),
        SignedIn::Flow(_) => bail!("{login_name} was asked for a second factor"),
    }
}

pub async fn flow(client: &reqwest::Client, base: &str, login_name: &str) -> anyhow::Result<String> {
    match sign_in(client, base, login_name).await? {
        SignedIn::Flow(f) => Ok(f),
        SignedIn::Session(_) => bail!("{login_name} was signed in without a second factor"),
    }
}

/// Enrols an authenticator app for a signed-in user; returns its secret and the recovery codes.
pub async fn enrol_totp(client: &reqwest::Client, base: &str, s: &Session) -> anyhow::Result<(TotpSecret, Vec<String>)> {
    let resp = client
        .post(format!("{base}/api/v1/me/2fa/totp"))
        .header("cookie", &s.cookie)
        .header("x-csrf-token", &s.csrf)
        .json(&json!({}))
        .send()
        .await?;
    let body = expect_ok(resp, "TOTP enrolment").await?;
    let encoded = body["secret"].as_str().context("no secret")?.replace(' ', "");
    let bytes = base32::decode(base32::Alphabet::Rfc4648 { padding: false }, &encoded).context("a base32 secret")?;
    let secret = TotpSecret::from_bytes(&bytes)?;
    let code = code_now(&secret, time::OffsetDateTime::now_utc()).context("a TOTP code")?;
    let resp = client
        .post(format!("{base}/api/v1/me/2fa/totp/confirm"))
        .header("cookie", &s.cookie)
        .header("x-csrf-token", &s.csrf)
        .json(&json!({"code": code, "current_password": PASSWORD}))
        .send()
        .await?;
    let body = expect_ok(resp, "TOTP confirmation").await?;
    let codes = body["recovery_codes"].as_array().context("no recovery codes")?;
    Ok((secret, codes.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect()))
}

fn session_cookie(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(SESSION_COOKIE))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

async fn expect_ok(resp: reqwest::Response, what: &str) -> anyhow::Result<Value> {
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("{what} answered {status}: {text}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}
