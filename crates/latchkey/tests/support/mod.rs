//! Latchkey as an operator runs it, for the binary's integration tests: `latchkey serve` nodes
//! (child processes, each with its own data dir and port) on a store they share, the CLI beside
//! them, and what their development outbox wrote. A node is killed when it is dropped.
//!
//! `mod support;` in a test file, then `Node::start(&NodeConfig::postgres("name").await?)`. A test
//! that prepares the store first takes `Node::prepare`, opens [`Node::config`] itself, then `run`s.
#![allow(dead_code)]

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, COOKIE, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// The CSRF key every node of one deployment shares (test value; at least 32 characters).
pub const SECRET_KEY: &str = "latchkey-test-secret-key-shared-by-every-node";
/// The key sealing TOTP seeds, shared by every node (test value: `id:` and 32 bytes in base64).
pub const SEAL_KEY: &str = "t1:bGF0Y2hrZXktdGVzdC1zZWFsLWtleS0zMi1ieXRlcyE=";

/// How long a node may take to answer `/readyz` after it was started (migrations included).
const READY_WITHIN: Duration = Duration::from_secs(30);

/// What every node of one deployment shares: the store, the keys, and any further settings.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// `postgres://…`; empty: SQLite in the node's own data dir.
    pub database_url: String,
    /// Further `LATCHKEY_*` settings, in the operator's spelling (`LATCHKEY_TWO_FACTOR__MAX_FAILURES`).
    pub env: Vec<(String, String)>,
}

impl NodeConfig {
    pub fn sqlite() -> Self {
        NodeConfig { database_url: String::new(), env: Vec::new() }
    }

    /// A fresh PostgreSQL database of its own (`lk_test_…`); `None` where PostgreSQL cannot be
    /// reached (the test skips; with CI=true that is a failure instead).
    pub async fn postgres(test: &str) -> Option<Self> {
        let url = latchkey_store::testing::fresh_postgres_url(test).await?;
        Some(NodeConfig { database_url: url, env: Vec::new() })
    }

    /// Adds a `LATCHKEY_*` setting.
    pub fn with(mut self, name: &str, value: impl ToString) -> Self {
        self.env.push((name.to_owned(), value.to_string()));
        self
    }
}

/// One `latchkey serve` process.
pub struct Node {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub port: u16,
    config: NodeConfig,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Node {
    /// Starts a node on a free port and a fresh data dir and waits until it is ready.
    pub async fn start(config: &NodeConfig) -> Node {
        let mut node = Node::prepare(config);
        node.run().await;
        node
    }

    /// A node's free port and fresh data dir, the process not started: the test may prepare the
    /// store first, or run only the CLI.
    pub fn prepare(config: &NodeConfig) -> Node {
        let dir = tempfile::tempdir().expect("a data dir");
        let port = free_port();
        Node { base: format!("http://127.0.0.1:{port}"), port, config: config.clone(), dir, child: None }
    }

    /// Starts the process (again, after a kill) on the same port, data dir and store, and waits
    /// until it is ready.
    pub async fn run(&mut self) {
        self.spawn();
        self.wait_ready().await;
    }

    /// Kills the process at once (SIGKILL on Unix: no shutdown, no flushing) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the process if it runs, then starts it again on the same port, data dir and store,
    /// and waits until it is ready.
    pub async fn restart(&mut self) {
        self.kill();
        self.run().await;
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn spawn(&mut self) {
        let log = OpenOptions::new().create(true).append(true).open(self.log_path()).expect("the node's log file");
        let child = self
            .command(&["serve"])
            .stdout(Stdio::from(log.try_clone().expect("the log file again")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start latchkey serve");
        self.child = Some(child);
    }

    async fn wait_ready(&mut self) {
        self.wait_for_readyz(StatusCode::OK, READY_WITHIN).await;
    }

    /// Waits until `/readyz` answers `want` (200: ready; 503: its store is gone); panics with the
    /// node's log when `within` passes first or the process exits.
    pub async fn wait_for_readyz(&mut self, want: StatusCode, within: Duration) {
        let base = self.base.clone();
        if let Err(e) = wait_for_readyz(&base, want, within, || self.is_running()).await {
            panic!("latchkey serve: {e}:\n{}", self.log());
        }
    }

    /// The binary with this node's configuration and nothing inherited from the test's own
    /// `LATCHKEY_*` environment.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_latchkey"));
        c.args(args);
        for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("LATCHKEY_")) {
            c.env_remove(name);
        }
        c.env("LATCHKEY_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("LATCHKEY_DATA_DIR", self.dir.path())
            .env("LATCHKEY_SECRET_KEY", SECRET_KEY)
            .env("LATCHKEY_TWO_FACTOR__SEAL_KEY", SEAL_KEY)
            // Several nodes and tests share one PostgreSQL server (100 connections by default).
            .env("LATCHKEY_DATABASE_MAX_CONNECTIONS", "8");
        if !self.config.database_url.is_empty() {
            c.env("LATCHKEY_DATABASE_URL", &self.config.database_url);
        }
        c.envs(self.config.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Runs a CLI command beside the node, on its store and data dir; panics unless it succeeds.
    pub fn cli(&self, args: &[&str]) -> Output {
        let out = self.cli_output(args);
        assert!(out.status.success(), "latchkey {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    /// Runs a CLI command beside the node, however it ends.
    pub fn cli_output(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run the latchkey CLI")
    }

    /// The configuration the node reads, for a test that opens the same store in-process (the
    /// way the CLI runs beside a server). Only the store, the keys and the address: settings in
    /// [`NodeConfig::env`] are the process's.
    pub fn config(&self) -> latchkey_server::Config {
        let mut config = latchkey_server::Config {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], self.port)),
            data_dir: self.dir.path().to_owned(),
            database_url: self.config.database_url.clone(),
            secret_key: SECRET_KEY.to_owned(),
            ..latchkey_server::Config::default()
        };
        config.two_factor.seal_key = SEAL_KEY.to_owned();
        config
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The URL of the node's store, for a test that reads it directly: the PostgreSQL database, or
    /// the SQLite file in the data dir (where `Config::database_url` puts it).
    pub fn store_url(&self) -> String {
        if self.config.database_url.is_empty() {
            format!("sqlite://{}", self.dir.path().join("latchkey.db").display())
        } else {
            self.config.database_url.clone()
        }
    }

    /// A new operator API token (for every company), made with the CLI; its secret.
    pub fn operator_token(&self, name: &str) -> String {
        String::from_utf8_lossy(&self.cli(&["token", "create", "--name", name]).stdout).trim().to_owned()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("node.log")
    }

    /// What the process wrote to stdout and stderr, every run of it.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The emails in the node's development outbox, oldest first.
    pub fn emails(&self) -> Vec<OutboxEmail> {
        self.outbox_files(".eml").iter().filter_map(|p| OutboxEmail::read(p)).collect()
    }

    /// The text messages in the node's development outbox, oldest first.
    pub fn texts(&self) -> Vec<OutboxText> {
        self.outbox_files(".sms.json").iter().filter_map(|p| OutboxText::read(p)).collect()
    }

    /// Waits up to 10 s for an email to `to` whose subject contains `subject` (any case).
    pub async fn wait_for_email(&self, to: &str, subject: &str) -> OutboxEmail {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self.emails().into_iter().find(|m| m.to.eq_ignore_ascii_case(to) && m.subject.to_lowercase().contains(&subject.to_lowercase()));
            if let Some(mail) = found {
                return mail;
            }
            assert!(Instant::now() < deadline, "no email to {to} about {subject:?} in {}", self.data_dir().display());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits up to 10 s until each address of `to` has an email whose subject contains `subject`
    /// (any case); the newest for each, in the order of `to`. Reads the outbox once a round, so
    /// it suits a test that sends many emails at once. `Err` names the addresses still waiting.
    pub async fn wait_for_emails(&self, to: &[String], subject: &str) -> Result<Vec<OutboxEmail>, String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let subject = subject.to_lowercase();
        loop {
            let mails: Vec<OutboxEmail> = self.emails().into_iter().filter(|m| m.subject.to_lowercase().contains(&subject)).collect();
            let newest: Vec<Option<&OutboxEmail>> = to.iter().map(|t| mails.iter().rfind(|m| m.to.eq_ignore_ascii_case(t))).collect();
            if newest.iter().all(Option::is_some) {
                return Ok(newest.into_iter().flatten().cloned().collect());
            }
            if Instant::now() > deadline {
                let missing: Vec<&String> = to.iter().zip(&newest).filter(|(_, m)| m.is_none()).map(|(t, _)| t).collect();
                return Err(format!("no email about {subject:?} within 10 s to {missing:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// File names start with the time, so sorting them sorts by time.
    fn outbox_files(&self, ending: &str) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("outbox")) else { return Vec::new() };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.to_string_lossy().ends_with(ending)).collect();
        files.sort();
        files
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

pub use latchkey_store::testing::free_port;

/// Polls `{base}/readyz` every 100 ms until it answers `want`. `Err` says why not: `within`
/// passed first, or `running` answered false (the process is gone).
pub async fn wait_for_readyz(base: &str, want: StatusCode, within: Duration, mut running: impl FnMut() -> bool) -> Result<(), String> {
    let started = Instant::now();
    // A short timeout: a node whose store hangs may hang /readyz too, and the poll goes on.
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("an HTTP client");
    loop {
        if !running() {
            return Err(format!("exited before /readyz answered {want}"));
        }
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status() == want {
                return Ok(());
            }
        }
        if started.elapsed() >= within {
            return Err(format!("/readyz did not answer {want} within {within:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One email of the outbox, its text part decoded.
#[derive(Clone, Debug)]
pub struct OutboxEmail {
    pub to: String,
    pub subject: String,
    pub text: String,
}

impl OutboxEmail {
    fn read(path: &Path) -> Option<Self> {
        let raw = std::fs::read(path).ok()?;
        let message = mail_parser::MessageParser::default().parse(&raw)?;
        Some(OutboxEmail {
            to: message.to()?.first()?.address()?.to_owned(),
            subject: message.subject().unwrap_or_default().to_owned(),
            text: message.body_text(0)?.into_owned(),
        })
    }

    /// The token of the first link with `/{path}/` in it (`complete-setup`, `reset-password`).
    pub fn link_token(&self, path: &str) -> Option<String> {
        let marker = format!("/{path}/");
        let word = self.text.split_whitespace().find(|w| w.starts_with("http") && w.contains(&marker))?;
        Some(token_of(word))
    }
}

/// One text message of the outbox.
#[derive(Clone, Debug)]
pub struct OutboxText {
    /// The number in E.164.
    pub to: String,
    pub body: String,
}

impl OutboxText {
    fn read(path: &Path) -> Option<Self> {
        let json: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        Some(OutboxText { to: json["to"].as_str()?.to_owned(), body: json["body"].as_str()?.to_owned() })
    }

    /// The first run of exactly six digits: the code Latchkey texted.
    pub fn code(&self) -> Option<String> {
        self.body.split(|c: char| !c.is_ascii_digit()).find(|run| run.len() == 6).map(str::to_owned)
    }
}

/// The token at the end of a link (`…/complete-setup/TOKEN`), without trailing punctuation.
pub fn token_of(link: &str) -> String {
    let link = link.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_');
    link.rsplit('/').next().unwrap_or_default().to_owned()
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The authenticator app's code at `unix` seconds, from `oathtool` (an independent RFC 6238
/// implementation; scripts/setup.sh installs it).
pub fn oathtool(secret: &str, unix: u64) -> String {
    let out = Command::new("oathtool")
        .args(["--totp", "-b", secret, "-N", &format!("@{unix}")])
        .output()
        .expect("oathtool is installed (scripts/setup.sh)");
    assert!(out.status.success(), "oathtool: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A client for one node: no redirects followed, connections kept for reuse.
pub fn client() -> reqwest::Client {
    // The timeout only bounds a hang; nothing is timed with it.
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(Duration::from_secs(60)).build().expect("an HTTP client")
}

/// A signed-in session as a client holds it: the session cookie and its CSRF token. Sessions
/// live in the store, so one works on every node.
#[derive(Clone, Debug)]
pub struct Session {
    cookie: String,
    csrf: String,
}

impl Session {
    /// The session a successful sign-in (or second-factor step) answer started.
    pub fn of(answer: &Answer) -> Option<Session> {
        let cookie = answer.headers.get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).find(|c| c.starts_with("__Host-latchkey_session="))?;
        let cookie = cookie.split(';').next()?.to_owned();
        let csrf = answer.body["csrf_token"].as_str().unwrap_or_default().to_owned();
        Some(Session { cookie, csrf })
    }

    /// The headers a request of this session carries: the cookie, and the CSRF token that any
    /// change needs.
    pub fn headers(&self) -> [(&'static str, &str); 2] {
        [("cookie", &self.cookie), ("x-csrf-token", &self.csrf)]
    }
}

/// An answer: status, headers, and the body as JSON (`Null` when it is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The API's error code (`link_used`, `too_many_attempts`, …), empty when there is none.
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or_default()
    }
}

/// One API call; `session` adds the cookie and the CSRF header.
pub async fn call(http: &reqwest::Client, base: &str, method: Method, path: &str, body: Option<&Value>, session: Option<&Session>) -> Answer {
    let mut req = http.request(method, format!("{base}{path}"));
    if let Some(s) = session {
        req = req.header(COOKIE, &s.cookie).header("x-csrf-token", &s.csrf);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    Answer { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::Null) }
}

/// A request for [`race`]: JSON bodies, no session (the single-use steps are all reached by a
/// token in the path).
#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub body: Value,
}

/// Sends every request at the same moment: request `i` goes to node `i % n`, each node through
/// its own client whose connections were opened beforehand, and every request waits at one
/// barrier until all are ready. Answers come back in request order.
pub async fn race(bases: &[&str], requests: Vec<Request>) -> Vec<Answer> {
    let per_node = requests.len().div_ceil(bases.len());
    let mut clients = Vec::new();
    for base in bases {
        let http = client();
        warm_up(&http, base, per_node).await;
        clients.push(http);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(requests.len()));
    let tasks: Vec<_> = requests
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let (http, base) = (clients[i % bases.len()].clone(), bases[i % bases.len()].to_owned());
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                call(&http, &base, Method::POST, &r.path, Some(&r.body), None).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.expect("a racing request"));
    }
    answers
}

/// Opens `n` connections to the node (requests held at a barrier so none reuses another's), so
/// that a race is not decided by who connected first.
async fn warm_up(http: &reqwest::Client, base: &str, n: usize) {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (http, url, barrier) = (http.clone(), format!("{base}/healthz"), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                http.get(url).send().await.map(|r| r.status())
            })
        })
        .collect();
    for t in tasks {
        let status = t.await.expect("a warm-up request").expect("the node answers");
        assert_eq!(status, StatusCode::OK);
    }
}
