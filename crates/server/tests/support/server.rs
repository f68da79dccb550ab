//! A Latchkey server on an ephemeral port for HTTP tests: on SQLite or on a fresh PostgreSQL
//! database, with a manual clock, mail through a real SMTP server on loopback, and a tiny browser
//! that keeps cookies the way a browser would.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use latchkey_core::ManualClock;
use latchkey_server::mail::{SmtpConfig, SmtpSecurity};
use latchkey_server::{Config, Latchkey};
use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::smtp::{ReceivedMail, SmtpSink};

/// Runs each named `async fn(&TestServer)` twice: on SQLite, and on a fresh PostgreSQL database
/// (skipped with a reason where none is reachable, a failure with CI=true).
macro_rules! on_both_stores {
    // Each test also gets a Twilio-style gateway on loopback as the server's SMS gateway:
    // `async fn(&TestServer, &RecordingGateway)`; needs `mod sms_gateway` in the test file.
    (with_sms: $($name:ident),* $(,)?) => {
        mod on_sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() {
                let gateway = super::sms_gateway::RecordingGateway::start().await;
                let config = gateway.config();
                let s = super::TestServer::start_with(super::Backend::Sqlite, stringify!($name), move |c| c.sms = Some(config)).await.unwrap();
                super::$name(&s, &gateway).await
            } )*
        }
        mod on_postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() {
                let gateway = super::sms_gateway::RecordingGateway::start().await;
                let config = gateway.config();
                if let Some(s) = super::TestServer::start_with(super::Backend::Postgres, stringify!($name), move |c| c.sms = Some(config)).await {
                    super::$name(&s, &gateway).await
                }
            } )*
        }
    };
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() {
                let s = super::TestServer::start(super::Backend::Sqlite, stringify!($name)).await.unwrap();
                super::$name(&s).await
            } )*
        }
        mod on_postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() {
                if let Some(s) = super::TestServer::start(super::Backend::Postgres, stringify!($name)).await { super::$name(&s).await }
            } )*
        }
    };
}


#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestServer {
    pub base: String,
    pub app: Arc<Latchkey>,
    pub clock: Arc<ManualClock>,
    pub smtp: SmtpSink,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// `None` where PostgreSQL is wanted but not reachable (and CI is not set).
    pub async fn start(backend: Backend, test: &str) -> Option<TestServer> {
        Self::start_with(backend, test, |_| {}).await
    }

    pub async fn start_with(backend: Backend, test: &str, tweak: impl FnOnce(&mut Config)) -> Option<TestServer> {
        let database_url = match backend {
            Backend::Sqlite => String::new(),
            Backend::Postgres => latchkey_store::testing::fresh_postgres_url(test).await?,
        };
        let dir = tempfile::tempdir().unwrap();
        let smtp = SmtpSink::start().await;
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            database_url,
            database_max_connections: 8,
            smtp: Some(SmtpConfig {
                host: "127.0.0.1".into(),
                port: smtp.port,
                security: SmtpSecurity::None,
                username: None,
                password: None,
                from: "Latchkey <no-reply@latchkey.test>".into(),
                timeout_secs: Some(5),
            }),
            ..Config::default()
        };
        tweak(&mut config);
        let clock = Arc::new(ManualClock::starting_now());
        let server = latchkey_server::start(config, clock.clone(), std::future::pending()).await.unwrap();
        Some(TestServer { base: format!("http://{}", server.addr), app: server.app, clock, smtp, _dir: dir })
    }

    pub fn browser(&self) -> Browser {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Browser { base: self.base.clone(), http, cookies: BTreeMap::new(), csrf: None }
    }

    /// A company (made unless it exists) with an office manager, activated and ready to sign in.
    pub async fn company_with_office_manager(&self, domain: &str) -> (String, String) {
        if self.app.store.company_by_domain(domain).await.unwrap().is_none() {
            self.app.create_company("Organization Inc.", domain).await.unwrap();
        }
        let ctx = Default::default();
        let created = self
            .app
            .create_user(domain, "100", &format!("om@{domain}"), latchkey_core::Role::OfficeManager, latchkey_server::app::Actor::Operator, &ctx)
            .await
            .unwrap();
        let token = token_of(&created.complete_setup_url);
        let form = latchkey_core::flows::activation::CompleteSetupForm {
            password: "Manager2Sonar".into(),
            password_confirmation: "Manager2Sonar".into(),
            pin: "2580".into(),
        };
        self.app.complete_setup(&token, &form, &ctx).await.unwrap();
        (created.user.login_name, "Manager2Sonar".into())
    }

    /// Creates and activates an account (password `Welcome2Sonar`, PIN 2580); returns a browser
    /// signed in to it.
    pub async fn signed_in_member(&self, domain: &str, ext: &str, email: &str, role: latchkey_core::Role) -> Browser {
        let ctx = Default::default();
        let created = self.app.create_user(domain, ext, email, role, latchkey_server::app::Actor::Operator, &ctx).await.unwrap();
        let password = "Welcome2Sonar";
        let form = latchkey_core::flows::activation::CompleteSetupForm { password: password.into(), password_confirmation: password.into(), pin: "2580".into() };
        self.app.complete_setup(&token_of(&created.complete_setup_url), &form, &ctx).await.unwrap();
        let mut b = self.browser();
        let signed = b.sign_in(&format!("{ext}@{domain}"), password).await;
        assert_eq!(signed.json()["state"], "signed_in", "{}", signed.body);
        b
    }

    /// The company (made unless it exists) with its office manager (100), signed in.
    pub async fn signed_in_office_manager(&self, domain: &str) -> Browser {
        let (login, password) = self.company_with_office_manager(domain).await;
        let mut b = self.browser();
        assert_eq!(b.sign_in(&login, &password).await.status, StatusCode::OK);
        b
    }

    /// Waits for `n` messages in all and returns the last `n - already` ones.
    pub async fn mails(&self, n: usize) -> Vec<ReceivedMail> {
        self.smtp.wait_for(n, Duration::from_secs(10)).await
    }
}

/// The token at the end of a link.
pub fn token_of(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_owned()
}

/// Every `/complete-setup/…` and `/reset-password/…` link in a text.
pub fn links_in(text: &str) -> Vec<String> {
    text.split_whitespace()
        .filter(|w| w.starts_with("http") && (w.contains("/complete-setup/") || w.contains("/reset-password/")))
        .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_').to_owned())
        .collect()
}

/// Keeps cookies like a browser (this site only) and sends the CSRF header it was given.
pub struct Browser {
    pub base: String,
    pub http: reqwest::Client,
    pub cookies: BTreeMap<String, String>,
    pub csrf: Option<String>,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    /// Where a redirect points.
    pub fn location(&self) -> Option<String> {
        self.headers.get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers.get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect()
    }
}

impl Browser {
    pub async fn send(&mut self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut req = self.with_cookies(self.http.request(method, format!("{}{}", self.base, path)));
        if let Some(t) = &self.csrf {
            req = req.header("x-csrf-token", t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.finish(req).await
    }

    pub async fn raw(&mut self, method: Method, path: &str, content_type: &str, body: Vec<u8>) -> Answer {
        let mut req = self.with_cookies(self.http.request(method, format!("{}{}", self.base, path)).header("content-type", content_type).body(body));
        if let Some(t) = &self.csrf {
            req = req.header("x-csrf-token", t);
        }
        self.finish(req).await
    }

    fn with_cookies(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if self.cookies.is_empty() {
            return req;
        }
        let header: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        req.header(COOKIE, header.join("; "))
    }

    async fn finish(&mut self, req: reqwest::RequestBuilder) -> Answer {
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        for c in headers.get_all(SET_COOKIE) {
            let c = c.to_str().unwrap();
            let (pair, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Answer { status, headers, body: resp.text().await.unwrap() }
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&mut self, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(body)).await
    }

    /// Signs in through the API and keeps the session's CSRF token for later calls.
    pub async fn sign_in(&mut self, login_name: &str, password: &str) -> Answer {
        let a = self.post("/api/v1/sign-in", serde_json::json!({"login_name": login_name, "password": password})).await;
        if a.status == StatusCode::OK {
            self.csrf = a.json()["csrf_token"].as_str().map(str::to_owned);
        }
        a
    }

    /// Posts an HTML form the way a browser does.
    pub async fn form(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let req = self.with_cookies(self.http.post(format!("{}{}", self.base, path)).form(fields));
        self.finish(req).await
    }
}

/// The CSRF token in a page's form.
pub fn csrf_in(html: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker).expect("a CSRF field") + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}
