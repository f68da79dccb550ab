//! A Twilio-style SMS gateway on loopback for tests: an axum server inside the test process that
//! implements `POST /2010-04-01/Accounts/{account_id}/Messages.json`, checks HTTP Basic auth,
//! answers like Twilio, and records every call.
//!
//! Self-contained so any test file can use it:
//! `#[path = "support/sms_gateway.rs"] mod sms_gateway;`, then
//! `let gateway = sms_gateway::RecordingGateway::start().await;` and give the server
//! `gateway.config()` as its SMS gateway settings. The texted code is `calls[i].code()`.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use latchkey_server::sms::SmsGatewayConfig;
use serde_json::json;

/// The credentials the gateway accepts, in Twilio's shapes.
pub const ACCOUNT_ID: &str = "AC00000000000000000000000000000001";
pub const AUTH_TOKEN: &str = "test-auth-token-0123456789abcdef";
pub const FROM: &str = "+15550100000";

/// One call to the Messages endpoint, as the gateway saw it (rejected ones too: see `status`).
#[derive(Clone, Debug)]
pub struct RecordedSms {
    pub to: String,
    pub from: String,
    pub body: String,
    /// From the path.
    pub account_id: String,
    /// The user name of the Basic auth header; empty when there was none.
    pub auth_user: String,
    /// Whether the Basic auth matched the configured account and token.
    pub authorized: bool,
    pub content_type: String,
    /// What the gateway answered.
    pub status: u16,
}

impl RecordedSms {
    /// The first run of exactly six digits in the body: the code Latchkey texted.
    pub fn code(&self) -> Option<String> {
        let chars: Vec<char> = self.body.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if chars[i].is_ascii_digit() {
                let start = i;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
                if i - start == 6 {
                    return Some(chars[start..i].iter().collect());
                }
            } else {
                i += 1;
            }
        }
        None
    }

    pub fn delivered(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Default)]
struct Behaviour {
    /// Answered to every call while set.
    status: Option<u16>,
    /// Answered to the next calls, one each, before `status`.
    fail_next: VecDeque<u16>,
    /// Waited before answering (to test timeouts).
    delay: Duration,
}

struct Shared {
    account_id: String,
    auth_token: String,
    calls: Mutex<Vec<RecordedSms>>,
    behaviour: Mutex<Behaviour>,
    next_sid: AtomicU64,
}

/// The running gateway; the server stops when this is dropped.
pub struct RecordingGateway {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub base_url: String,
    shared: Arc<Shared>,
    handle: tokio::task::JoinHandle<()>,
}

impl RecordingGateway {
    /// Accepts `ACCOUNT_ID` with `AUTH_TOKEN`.
    pub async fn start() -> Self {
        Self::start_with(ACCOUNT_ID, AUTH_TOKEN).await
    }

    pub async fn start_with(account_id: &str, auth_token: &str) -> Self {
        let shared = Arc::new(Shared {
            account_id: account_id.to_owned(),
            auth_token: auth_token.to_owned(),
            calls: Mutex::new(Vec::new()),
            behaviour: Mutex::new(Behaviour::default()),
            next_sid: AtomicU64::new(1),
        });
        let router = Router::new()
            .route("/2010-04-01/Accounts/{account_id}/Messages.json", post(messages))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the SMS gateway");
        let addr = listener.local_addr().expect("SMS gateway address");
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        RecordingGateway { base_url: format!("http://{addr}"), shared, handle }
    }

    /// Settings for `HttpSmsGateway` that reach this gateway with the right credentials.
    pub fn config(&self) -> SmsGatewayConfig {
        SmsGatewayConfig {
            base_url: self.base_url.clone(),
            account_id: self.shared.account_id.clone(),
            auth_token: self.shared.auth_token.clone(),
            from: FROM.to_owned(),
            timeout_secs: Some(5),
        }
    }

    /// Answers every later call with `status` (and a Twilio-like error body when it is not 2xx).
    pub fn with_status(self, status: u16) -> Self {
        self.set_status(Some(status));
        self
    }

    /// Like `with_status`, on a shared gateway; `None` goes back to accepting.
    pub fn set_status(&self, status: Option<u16>) {
        self.behaviour().status = status;
    }

    /// The next call (one per call of this) gets `status`; later ones are answered as before.
    pub fn fail_next(&self, status: u16) {
        self.behaviour().fail_next.push_back(status);
    }

    /// Waits this long before answering each call.
    pub fn with_delay(self, delay: Duration) -> Self {
        self.behaviour().delay = delay;
        self
    }

    /// Every call so far, oldest first, rejected ones included.
    pub async fn calls(&self) -> Vec<RecordedSms> {
        self.shared.calls.lock().map(|calls| calls.clone()).unwrap_or_default()
    }

    /// The calls that were answered 2xx: what a phone would have received.
    pub async fn delivered(&self) -> Vec<RecordedSms> {
        self.calls().await.into_iter().filter(RecordedSms::delivered).collect()
    }

    /// Waits until at least `n` calls arrived or `timeout` passed, and returns what is there either
    /// way (the caller asserts the count, so "nothing is sent" can be tested too).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<RecordedSms> {
        let deadline = Instant::now() + timeout;
        loop {
            let calls = self.calls().await;
            if calls.len() >= n || Instant::now() >= deadline {
                return calls;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn behaviour(&self) -> std::sync::MutexGuard<'_, Behaviour> {
        self.shared.behaviour.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for RecordingGateway {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

async fn messages(
    State(shared): State<Arc<Shared>>,
    Path(account_id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    // The last of a repeated name wins, as in Twilio.
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let (auth_user, auth_password) = basic_auth(&headers).unwrap_or_default();
    let authorized =
        auth_user == shared.account_id && auth_password == shared.auth_token && account_id == shared.account_id;

    let (forced, delay) = {
        let mut behaviour = shared.behaviour.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let forced = behaviour.fail_next.pop_front().or(behaviour.status);
        (forced, behaviour.delay)
    };

    // Twilio's checks, in its order: credentials, then the request.
    let (status, answer) = if !authorized {
        (401, twilio_error(20003, "Authenticate", 401))
    } else if !content_type.starts_with("application/x-www-form-urlencoded") {
        (415, twilio_error(20001, "Unsupported media type", 415))
    } else if field("To").is_empty() {
        (400, twilio_error(21604, "A 'To' phone number is required.", 400))
    } else if field("From").is_empty() {
        (400, twilio_error(21603, "A 'From' phone number is required.", 400))
    } else if field("Body").is_empty() {
        (400, twilio_error(21602, "Message body is required.", 400))
    } else if !field("To").starts_with('+') {
        (400, twilio_error(21211, "The 'To' number is not a valid phone number.", 400))
    } else if let Some(status) = forced {
        let code = match status {
            400 => 21211,
            429 => 20429,
            500..=599 => 20500,
            _ => 20001,
        };
        (status, twilio_error(code, "Forced by the test", status))
    } else {
        let sid = format!("SM{:032x}", shared.next_sid.fetch_add(1, Ordering::Relaxed));
        let answer = json!({
            "sid": sid,
            "account_sid": account_id,
            "to": field("To"),
            "from": field("From"),
            "body": field("Body"),
            "status": "queued",
            "num_segments": "1",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "uri": format!("/2010-04-01/Accounts/{account_id}/Messages/{sid}.json"),
        });
        (201, answer)
    };

    if let Ok(mut calls) = shared.calls.lock() {
        calls.push(RecordedSms {
            to: field("To"),
            from: field("From"),
            body: field("Body"),
            account_id,
            auth_user,
            authorized,
            content_type,
            status,
        });
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(answer)).into_response()
}

fn twilio_error(code: u32, message: &str, status: u16) -> serde_json::Value {
    json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    })
}

/// `Authorization: Basic base64(user:password)`.
fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}
