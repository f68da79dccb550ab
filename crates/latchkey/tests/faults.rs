//! Faults of the real binary (issue 7, items 4 and 5): a node SIGKILLed in the middle of a burst
//! of activations and password resets leaves every account whole, on SQLite and PostgreSQL; and a
//! node whose PostgreSQL goes away answers 503 with a message, never hangs or panics, and recovers
//! by itself when the database is back.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latchkey_core::flows::activation::CompleteSetupForm;
use latchkey_core::flows::email_link::{EmailLink, LinkPurpose};
use latchkey_core::secret::Token;
use latchkey_core::{Role, SystemClock, UserState};
use latchkey_server::app::{Actor, RequestContext, SignInOutcome};
use latchkey_server::Latchkey;
use latchkey_store::{AuditEntry, AuditQuery, NewLink, Store};
use reqwest::StatusCode;
use support::{token_of, Node, NodeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Every node here: plain-HTTP session cookies (`latchkey_session`, which the checks send), and an
/// info log to look for panics in.
fn node_config(config: NodeConfig) -> NodeConfig {
    config.with("LATCHKEY_COOKIE_SECURE", "false").with("LATCHKEY_LOG", "info")
}

// ---------------------------------------------------------------------------------------------
// Crash safety (item 4).

const DOMAIN: &str = "crash.example";
const PIN: &str = "2580";

/// An invited user and the password the burst sets with the Complete Setup link.
struct Invitee {
    id: i64,
    login_name: String,
    token: String,
    password: String,
}

/// An active user with a pending reset link, the session it had before, and its password hash
/// before the burst.
struct Resetter {
    id: i64,
    login_name: String,
    token: String,
    old_password: String,
    new_password: String,
    session: String,
    old_hash: String,
}

/// Opens the node's store in the test (as the CLI does) to prepare accounts and, later, to read
/// what the crash left.
async fn open_app(node: &Node) -> Arc<Latchkey> {
    latchkey_server::open(node.config(), Arc::new(SystemClock)).await.unwrap()
}

/// A company with `invited` invited users, and `resetting` active users each signed in once and
/// holding a pending reset link.
async fn seed(app: &Latchkey, invited: usize, resetting: usize) -> (Vec<Invitee>, Vec<Resetter>) {
    let ctx = RequestContext::default();
    let company = app.create_company("Crash Test Inc.", DOMAIN).await.unwrap();
    let mut invitees = Vec::new();
    for i in 0..invited {
        let created = app.create_user(DOMAIN, &(200 + i).to_string(), &format!("u{i}@crash.example"), Role::User, Actor::Operator, &ctx).await.unwrap();
        let (id, login_name) = (created.user.id, created.user.login_name);
        invitees.push(Invitee { id, login_name, token: token_of(&created.complete_setup_url), password: format!("Welcome-{i}-Passw0rd") });
    }
    let mut resetters = Vec::new();
    for i in 0..resetting {
        let created = app.create_user(DOMAIN, &(500 + i).to_string(), &format!("r{i}@crash.example"), Role::User, Actor::Operator, &ctx).await.unwrap();
        let old_password = format!("Before-{i}-Passw0rd");
        let form = CompleteSetupForm { password: old_password.clone(), password_confirmation: old_password.clone(), pin: PIN.into() };
        let user = app.complete_setup(&token_of(&created.complete_setup_url), &form, &ctx).await.unwrap();
        let Ok(SignInOutcome::SignedIn(signed)) = app.sign_in(&user.login_name, &old_password, &ctx).await else { panic!("sign-in of {}", user.login_name) };
        let token = issue_reset_link(app, company.id, user.id).await;
        let old_hash = user.password_hash.clone().unwrap();
        let (id, login_name, session) = (user.id, user.login_name, signed.token.expose().to_owned());
        resetters.push(Resetter { id, login_name, token, old_password, new_password: format!("After-{i}-Passw0rd"), session, old_hash });
    }
    (invitees, resetters)
}

/// What "Forgot password" stores for an active account, without the email: the link's token is
/// the test's to use.
async fn issue_reset_link(app: &Latchkey, company_id: i64, user_id: i64) -> String {
    let token = Token::generate();
    let link = NewLink { token_hash: token.hash(), link: EmailLink::issue(LinkPurpose::PasswordReset, app.now()) };
    let audit = AuditEntry {
        company_id: Some(company_id),
        actor_user_id: Some(user_id),
        actor_token_id: None,
        target_user_id: Some(user_id),
        kind: "password_reset_requested",
        detail: String::new(),
        client_ip: None,
        user_agent: None,
        at: app.now(),
    };
    app.store.issue_link(user_id, &link, &audit).await.unwrap();
    token.expose().to_owned()
}

/// One request of the burst: the path, its JSON body, and whether it is an activation.
struct BurstRequest {
    path: String,
    body: serde_json::Value,
    activation: bool,
}

/// Every activation and reset, interleaved (two activations, one reset), so the kill lands among
/// both kinds.
fn burst_requests(invitees: &[Invitee], resetters: &[Resetter]) -> Vec<BurstRequest> {
    let mut activations = invitees.iter().map(|u| BurstRequest {
        path: format!("/api/v1/activation/{}", u.token),
        body: serde_json::json!({"password": u.password, "password_confirmation": u.password, "pin": PIN}),
        activation: true,
    });
    let mut resets = resetters.iter().map(|u| BurstRequest {
        path: format!("/api/v1/password/reset/{}", u.token),
        body: serde_json::json!({"password": u.new_password, "password_confirmation": u.new_password}),
        activation: false,
    });
    let mut all = Vec::new();
    loop {
        let next: Vec<BurstRequest> = activations.by_ref().take(2).chain(resets.next()).collect();
        if next.is_empty() {
            return all;
        }
        all.extend(next);
    }
}

/// Requests of the burst in flight at once. All 60 at once, the hashing pool's queue (first in,
/// first out) would finish every reset (one hash) before any activation (two hashes), and the kill
/// would find one kind only; a window keeps both kinds in flight in their interleaved order, on a
/// fast machine or a slow one.
const BURST_WINDOW: usize = 12;

/// Sends the requests, `BURST_WINDOW` in flight at a time, and SIGKILLs the node as soon as
/// `kill_after` of each kind answered. Returns the paths that answered 200 before the kill.
async fn burst_and_kill(node: &mut Node, requests: Vec<BurstRequest>, kill_after: usize) -> Vec<String> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    // Answers so far: activations, resets.
    let answered = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let enough = Arc::new(tokio::sync::Notify::new());
    let (base, notify) = (node.base.clone(), enough.clone());
    let sender = tokio::spawn(async move {
        let window = Arc::new(tokio::sync::Semaphore::new(BURST_WINDOW));
        let mut tasks = Vec::new();
        for r in requests {
            let permit = window.clone().acquire_owned().await.unwrap();
            let (client, base, answered, enough) = (client.clone(), base.clone(), answered.clone(), notify.clone());
            tasks.push(tokio::spawn(async move {
                let status = client.post(format!("{base}{}", r.path)).json(&r.body).send().await.map(|r| r.status().as_u16());
                drop(permit);
                if status.is_ok() {
                    answered[usize::from(!r.activation)].fetch_add(1, Ordering::SeqCst);
                    if answered.iter().all(|n| n.load(Ordering::SeqCst) >= kill_after) {
                        enough.notify_one();
                    }
                }
                (r.path, status)
            }));
        }
        tasks
    });
    tokio::time::timeout(Duration::from_secs(120), enough.notified()).await.expect("the first answers of the burst");
    node.kill();
    // What was not sent yet goes to a dead node and fails at once.
    let mut done = Vec::new();
    for task in sender.await.unwrap() {
        let (path, status) = task.await.unwrap();
        match status {
            Ok(200) => done.push(path),
            Ok(other) => panic!("{path} answered {other} during the burst"),
            Err(_) => {} // cut off by the kill: either outcome is allowed, the store decides
        }
    }
    done
}

/// The crash scenario on one store: prepare, burst, SIGKILL, restart, and check every account.
async fn crash_in_the_middle_of_a_burst(config: NodeConfig) {
    let mut node = Node::prepare(&node_config(config));
    let app = open_app(&node).await;
    let (invitees, resetters) = seed(&app, 40, 20).await;
    node.run().await;
    let answered_before_kill = burst_and_kill(&mut node, burst_requests(&invitees, &resetters), 3).await;

    // Started again on the same data dir and store.
    node.run().await;
    let store = app.store.as_ref();
    let company_id = app.store.company_by_domain(DOMAIN).await.unwrap().unwrap().id;
    // A 200 before the kill was committed: that account must be done.
    let answered = |token: &str| answered_before_kill.iter().any(|p| p.ends_with(token));
    let mut activated = 0;
    for u in &invitees {
        let done = check_activation_whole(store, company_id, u).await;
        assert!(done || !answered(&u.token), "{}: answered 200, then lost", u.login_name);
        activated += usize::from(done);
        check_activation_over_http(&node, u, done).await;
    }
    let mut reset = 0;
    for u in &resetters {
        let done = check_reset_whole(store, company_id, u).await;
        assert!(done || !answered(&u.token), "{}: answered 200, then lost", u.login_name);
        reset += usize::from(done);
        check_reset_over_http(&node, u, done).await;
    }
    // The kill came in the middle of both kinds: some of each done, some of each not.
    assert!((3..invitees.len()).contains(&activated), "{activated} of {} activations done", invitees.len());
    assert!((3..resetters.len()).contains(&reset), "{reset} of {} resets done", resetters.len());
    // The log of both runs, the killed one's included.
    assert!(!node.log().contains("panicked"), "{}", node.log());
    eprintln!("crash test ({}): {activated}/{} activated, {reset}/{} reset before the kill", store.backend(), invitees.len(), resetters.len());
}

async fn audit_count(store: &dyn Store, company_id: i64, kind: &str, user_id: i64) -> usize {
    let query = AuditQuery { kinds: vec![kind.to_owned()], user_id: Some(user_id), ..AuditQuery::of_company(company_id, 100) };
    store.query_audit(&query).await.unwrap().len()
}

/// Reads the account as the crash left it: fully active with everything activation writes, or
/// still invited with nothing of it. Returns whether it was activated.
async fn check_activation_whole(store: &dyn Store, company_id: i64, u: &Invitee) -> bool {
    let user = store.user_by_id(u.id).await.unwrap().unwrap();
    let link = store.link_by_token(&Token::from_client(&u.token).hash()).await.unwrap().unwrap().link;
    let events = audit_count(store, company_id, "account_activated", u.id).await;
    let name = &u.login_name;
    match user.state {
        UserState::Active => {
            assert!(user.password_hash.is_some() && user.pin_hash.is_some(), "{name}: active without its hashes");
            assert!(user.activated_at.is_some() && user.designated_email_verified_at.is_some(), "{name}: active, half-marked");
            assert!(link.used_at.is_some(), "{name}: active with its Complete Setup link unused");
            assert_eq!(events, 1, "{name}: one account_activated event");
            true
        }
        UserState::Invited => {
            assert!(user.password_hash.is_none() && user.pin_hash.is_none(), "{name}: invited with a password or PIN");
            assert!(user.activated_at.is_none() && user.designated_email_verified_at.is_none(), "{name}: invited, half-marked");
            assert!(link.used_at.is_none(), "{name}: still invited with a used link");
            assert_eq!(events, 0, "{name}: an account_activated event for an activation that did not happen");
            false
        }
        other => panic!("{name}: {other:?}"),
    }
}

/// Reads the reset as the crash left it: new password, link used, sessions ended, one event; or
/// none of these. Returns whether the reset happened.
async fn check_reset_whole(store: &dyn Store, company_id: i64, u: &Resetter) -> bool {
    let user = store.user_by_id(u.id).await.unwrap().unwrap();
    let link = store.link_by_token(&Token::from_client(&u.token).hash()).await.unwrap().unwrap().link;
    let events = audit_count(store, company_id, "password_reset", u.id).await;
    let sessions = store.sessions_of_user(u.id).await.unwrap().len();
    let name = &u.login_name;
    assert_eq!(user.state, UserState::Active, "{name}");
    let changed = user.password_hash.as_deref() != Some(u.old_hash.as_str());
    if link.used_at.is_some() {
        assert!(changed, "{name}: reset link used, password unchanged");
        assert_eq!(sessions, 0, "{name}: reset done, old session still there");
        assert_eq!(events, 1, "{name}: one password_reset event");
    } else {
        assert!(!changed, "{name}: password changed, reset link unused");
        assert_eq!(sessions, 1, "{name}: no reset, yet the session is gone");
        assert_eq!(events, 0, "{name}: a password_reset event for a reset that did not happen");
    }
    link.used_at.is_some()
}

async fn sign_in_status(base: &str, login_name: &str, password: &str) -> u16 {
    let body = serde_json::json!({"login_name": login_name, "password": password});
    reqwest::Client::new().post(format!("{base}/api/v1/sign-in")).json(&body).send().await.unwrap().status().as_u16()
}

async fn get_status(url: &str) -> u16 {
    reqwest::get(url).await.unwrap().status().as_u16()
}

/// The restarted node agrees with the store: a done activation's link is dead and its password
/// works; an undone one's link still works, and completing it now works.
async fn check_activation_over_http(node: &Node, u: &Invitee, done: bool) {
    let link = format!("{}/api/v1/activation/{}", node.base, u.token);
    if done {
        assert_eq!(get_status(&link).await, 410, "{}: the used link is dead", u.login_name);
    } else {
        assert_eq!(get_status(&link).await, 200, "{}: the link still works", u.login_name);
        let body = serde_json::json!({"password": u.password, "password_confirmation": u.password, "pin": PIN});
        let completed = reqwest::Client::new().post(&link).json(&body).send().await.unwrap();
        assert_eq!(completed.status(), 200, "{}: Complete Setup after the restart", u.login_name);
    }
    assert_eq!(sign_in_status(&node.base, &u.login_name, &u.password).await, 200, "{}: signs in", u.login_name);
}

/// A done reset: the link is dead, the new password works and the old one does not, the old
/// session is over. An undone one: the other way round, and the link still resets the password.
async fn check_reset_over_http(node: &Node, u: &Resetter, done: bool) {
    let link = format!("{}/api/v1/password/reset/{}", node.base, u.token);
    let (works, fails) = if done { (&u.new_password, &u.old_password) } else { (&u.old_password, &u.new_password) };
    assert_eq!(sign_in_status(&node.base, &u.login_name, works).await, 200, "{}", u.login_name);
    assert_eq!(sign_in_status(&node.base, &u.login_name, fails).await, 401, "{}", u.login_name);
    let me = reqwest::Client::new().get(format!("{}/api/v1/me", node.base)).header("cookie", format!("latchkey_session={}", u.session));
    assert_eq!(me.send().await.unwrap().status(), if done { 401 } else { 200 }, "{}: the session before the reset", u.login_name);
    if done {
        assert_eq!(get_status(&link).await, 410, "{}: the used reset link is dead", u.login_name);
    } else {
        assert_eq!(get_status(&link).await, 200, "{}: the reset link still works", u.login_name);
        let body = serde_json::json!({"password": u.new_password, "password_confirmation": u.new_password});
        assert_eq!(reqwest::Client::new().post(&link).json(&body).send().await.unwrap().status(), 200, "{}", u.login_name);
        assert_eq!(sign_in_status(&node.base, &u.login_name, &u.new_password).await, 200, "{}", u.login_name);
    }
}

/// Settings for a burst: every hash may queue (a 503 "busy" would be a fine answer, but it would
/// not test the crash), and the sign-ins that check the result are not throttled by address.
fn for_a_burst(config: NodeConfig) -> NodeConfig {
    config.with("LATCHKEY_ARGON2__QUEUE", 1000).with("LATCHKEY_THROTTLE__CLIENT_MAX_FAILURES", 1000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_a_burst_of_activations_and_resets_leaves_every_account_whole_on_sqlite() {
    crash_in_the_middle_of_a_burst(for_a_burst(NodeConfig::sqlite())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_a_burst_of_activations_and_resets_leaves_every_account_whole_on_postgres() {
    let Some(config) = NodeConfig::postgres("sigkill_burst").await else { return };
    crash_in_the_middle_of_a_burst(for_a_burst(config)).await;
}

// ---------------------------------------------------------------------------------------------
// Store outage (item 5): a TCP proxy between the node and PostgreSQL that the test controls.

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Open,
    /// Live connections are closed and new ones refused: the database went down.
    Cut,
    /// Nothing is forwarded and nothing is closed: packets go nowhere (a partition, a dead host).
    /// Connections, live and new, hang; when the link opens again they carry on.
    Blackhole,
}

/// A TCP proxy to `upstream` on a port of its own, which the test can cut, blackhole and restore.
struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    link: watch::Sender<Link>,
    trap: Arc<Trap>,
    accepting: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Which bytes sent by a client strand its connection.
type Picks = fn(&[u8]) -> bool;

/// What the proxy lies in wait for: the first connection whose client sends it is stranded
/// right there, those bytes never arriving and nothing ever coming back (a packet lost at the
/// worst moment, then the connection's path gone for good: a NAT or firewall that forgot it, a
/// database that failed over).
#[derive(Default)]
struct Trap {
    armed: Mutex<Option<Picks>>,
    /// Connections stranded so far.
    sprung: AtomicUsize,
}

impl Trap {
    /// Whether `bytes` spring the trap; it then waits for the next `strand_on`.
    fn springs_on(&self, bytes: &[u8]) -> bool {
        let mut armed = self.armed.lock().unwrap();
        let hit = armed.is_some_and(|wanted| wanted(bytes));
        if hit {
            *armed = None;
            self.sprung.fetch_add(1, Ordering::SeqCst);
        }
        hit
    }
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (link, _) = watch::channel(Link::Open);
        let proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            upstream,
            link,
            trap: Arc::new(Trap::default()),
            accepting: Mutex::new(None),
        };
        proxy.accept_on(listener);
        proxy
    }

    fn accept_on(&self, listener: TcpListener) {
        let (upstream, link, trap) = (self.upstream, self.link.clone(), self.trap.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream, link.subscribe(), trap.clone()));
            }
        });
        *self.accepting.lock().unwrap() = Some(task);
    }

    /// Closes every live connection and stops listening, so new ones are refused.
    fn cut(&self) {
        self.link.send_replace(Link::Cut);
        if let Some(task) = self.accepting.lock().unwrap().take() {
            task.abort();
        }
    }

    fn blackhole(&self) {
        self.link.send_replace(Link::Blackhole);
    }

    /// Forwards again, listening again on the same port after a cut.
    async fn restore(&self) {
        if self.accepting.lock().unwrap().is_none() {
            let listener = loop {
                // The aborted accept task drops its listener on the runtime's next turn.
                match TcpListener::bind(self.addr).await {
                    Ok(l) => break l,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            };
            self.accept_on(listener);
        }
        self.link.send_replace(Link::Open);
    }

    /// Strands the first connection whose client sends what `wanted` picks, before it arrives.
    fn strand_on(&self, wanted: Picks) {
        *self.trap.armed.lock().unwrap() = Some(wanted);
    }
}

/// One proxied connection: it reaches upstream only once the link is open, then forwards both
/// ways until either side closes or the link is cut.
async fn relay(client: TcpStream, upstream: SocketAddr, mut link: watch::Receiver<Link>, trap: Arc<Trap>) {
    if !wait_open(&mut link).await {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else { return };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let stranded = Arc::new(AtomicBool::new(false));
    let up = forward(client_read, server_write, link.clone(), Some(trap), stranded.clone());
    let down = forward(server_read, client_write, link, None, stranded);
    // Either direction ending ends the connection: dropping all halves closes both sockets.
    tokio::select! { _ = up => {}, _ = down => {} }
}

/// Waits while the link is a blackhole; false once it is cut.
async fn wait_open(link: &mut watch::Receiver<Link>) -> bool {
    loop {
        match *link.borrow_and_update() {
            Link::Open => return true,
            Link::Cut => return false,
            Link::Blackhole => {}
        }
        if link.changed().await.is_err() {
            return false;
        }
    }
}

/// One direction of a connection; `trap` on the client's side. Once the connection is
/// `stranded` nothing more crosses it either way, not even the database closing its end, until
/// the link is cut.
async fn forward(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut link: watch::Receiver<Link>,
    trap: Option<Arc<Trap>>,
    stranded: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !wait_open(&mut link).await {
            return;
        }
        let read = tokio::select! {
            read = from.read(&mut buf) => read,
            // The link changed while waiting for bytes: look at it again before reading on.
            _ = link.changed() => continue,
        };
        let n = read.unwrap_or(0);
        if n > 0 && trap.as_ref().is_some_and(|t| t.springs_on(&buf[..n])) {
            stranded.store(true, Ordering::SeqCst);
        }
        if stranded.load(Ordering::SeqCst) {
            let _ = link.wait_for(|l| *l == Link::Cut).await;
            return;
        }
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// What one request of the load got.
struct Sample {
    what: &'static str,
    started: Instant,
    elapsed: Duration,
    /// Status, content type and body; `Err` for a transport failure (reset, closed, timed out).
    answer: Result<(u16, String, String), String>,
}

/// Requests of the load: the signed-in user's JSON, a sign-in, and the account page (HTML).
#[derive(Clone)]
struct Load {
    base: String,
    login_name: String,
    password: String,
    cookie: String,
}

impl Load {
    async fn one(&self, client: &reqwest::Client, what: &'static str) -> Sample {
        let request = match what {
            "me" => client.get(format!("{}/api/v1/me", self.base)).header("cookie", &self.cookie),
            "account page" => client.get(format!("{}/account", self.base)).header("cookie", &self.cookie),
            _ => client.post(format!("{}/api/v1/sign-in", self.base)).json(&serde_json::json!({"login_name": self.login_name, "password": self.password})),
        };
        let started = Instant::now();
        let answer = match request.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let content_type = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                r.text().await.map(|body| (status, content_type, body)).map_err(|e| format!("{e:?}"))
            }
            Err(e) => Err(format!("{e:?}")),
        };
        Sample { what, started, elapsed: started.elapsed(), answer }
    }

    /// `workers` loops of the three requests, until stopped.
    fn start(&self, workers: usize) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..workers)
            .map(|w| {
                let (load, stop) = (self.clone(), stop.clone());
                tokio::spawn(async move {
                    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
                    let mut samples = Vec::new();
                    for what in ["me", "sign-in", "account page"].into_iter().cycle().skip(w) {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        samples.push(load.one(&client, what).await);
                    }
                    samples
                })
            })
            .collect();
        Running { stop, workers }
    }
}

/// A load running.
struct Running {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<Vec<Sample>>>,
}

impl Running {
    /// Stops the load once each worker's request in flight is answered; every answer it got.
    async fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        let mut samples = Vec::new();
        for w in self.workers {
            samples.extend(w.await.unwrap());
        }
        samples
    }
}

/// The request timeout of the nodes in the outage tests: short, so a hung request shows quickly.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);
/// How much later than the request timeout an answer may come (scheduling on a busy machine).
const MARGIN: Duration = Duration::from_secs(3);

/// Every answer during an outage is one a client can act on: 503 with a message, in JSON for the
/// API and a page for the browser, within the request timeout; never a 500, never a reset.
fn assert_answered_well(s: &Sample) {
    let (status, content_type, body) = match &s.answer {
        Ok(a) => a,
        Err(e) => panic!("{}: no answer ({e}) after {:?}", s.what, s.elapsed),
    };
    assert!(s.elapsed <= REQUEST_TIMEOUT + MARGIN, "{}: answered after {:?}", s.what, s.elapsed);
    match (*status, s.what) {
        (200, _) => {}
        (503, "account page") => {
            assert!(content_type.starts_with("text/html"), "{}: {content_type}", s.what);
            assert!(body.contains("Temporarily unavailable"), "{}: {body}", s.what);
        }
        (503, _) => {
            assert!(content_type.starts_with("application/json"), "{}: 503 {content_type:?} {body:?}", s.what);
            let json: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{}: not JSON: {body}", s.what));
            assert!(json["error"].is_string() && json["message"].as_str().is_some_and(|m| !m.is_empty()), "{}: {body}", s.what);
        }
        (other, _) => panic!("{}: {other} {body}", s.what),
    }
}

/// A node whose store is behind `proxy`, and a load for it as one signed-in user.
async fn outage_node(proxy: &Proxy, config: NodeConfig) -> (Node, Load) {
    let url = config.database_url.clone();
    let proxied = url.replacen("127.0.0.1:5432", &proxy.addr.to_string(), 1);
    assert_ne!(proxied, url, "the test database is at 127.0.0.1:5432");
    let config = NodeConfig { database_url: proxied, ..node_config(config) }
        .with("LATCHKEY_REQUEST_TIMEOUT_SECS", REQUEST_TIMEOUT.as_secs())
        .with("LATCHKEY_DATABASE_MAX_CONNECTIONS", OUTAGE_POOL);
    let mut node = Node::prepare(&config);
    // An active user, signed in (its reset link goes unused).
    let (_, users) = seed(&*open_app(&node).await, 0, 1).await;
    let u = &users[0];
    node.run().await;
    let cookie = format!("latchkey_session={}", u.session);
    let load = Load { base: node.base.clone(), login_name: u.login_name.clone(), password: u.old_password.clone(), cookie };
    (node, load)
}

/// How the store goes away and comes back.
#[derive(Debug, Clone, Copy)]
enum Outage {
    /// Down: connections closed, new ones refused; then up again.
    Cut,
    /// Packets go nowhere; then the network heals and the connections carry on.
    Blackhole,
}

/// Requests in flight at once in the outage tests, more than the node's pool has connections, so
/// the failure finds every connection busy.
const OUTAGE_WORKERS: usize = 8;
const OUTAGE_POOL: usize = 4;

/// The outage scenario: load, then the outage, held past the request timeout, then the store is
/// back. The node answers well throughout and recovers by itself.
async fn outage(kind: Outage) {
    let Some(config) = NodeConfig::postgres("store_outage").await else { return };
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let (mut node, load) = outage_node(&proxy, config).await;
    let running = load.start(OUTAGE_WORKERS);
    tokio::time::sleep(Duration::from_secs(1)).await;

    match kind {
        Outage::Cut => proxy.cut(),
        Outage::Blackhole => proxy.blackhole(),
    }
    let failed_at = Instant::now();
    node.wait_for_readyz(StatusCode::SERVICE_UNAVAILABLE, REQUEST_TIMEOUT).await;
    // Long enough for requests hung at the moment of failure to reach the request timeout.
    tokio::time::sleep(REQUEST_TIMEOUT + MARGIN).await;
    let restored_at = Instant::now();
    proxy.restore().await;
    node.wait_for_readyz(StatusCode::OK, Duration::from_secs(30)).await;
    let samples = running.stop().await;

    for s in &samples {
        assert_answered_well(s);
    }
    let during: Vec<&Sample> = samples.iter().filter(|s| s.started >= failed_at && s.started + s.elapsed < restored_at).collect();
    assert!(during.len() >= OUTAGE_WORKERS, "only {} requests ran during the outage", during.len());
    for s in &during {
        let (status, _, body) = s.answer.as_ref().unwrap();
        assert_eq!(*status, 503, "{} during the outage", s.what);
        // A database that refuses connections is told apart from a slow one, in less than the
        // request timeout: the pool gives up waiting first.
        if matches!(kind, Outage::Cut) && s.what != "account page" {
            assert!(body.contains("store_unavailable"), "{} during the cut: {body}", s.what);
        }
    }
    recovered(&load).await;
    let log = node.log();
    assert!(!log.contains("panicked"), "{log}");
    eprintln!("{kind:?}: {} requests, {} during the outage; answers: {:?}", samples.len(), during.len(), tally(&samples));
}

/// How many requests got which answer (status and error code), for the test's output.
fn tally(samples: &[Sample]) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for s in samples {
        let key = match &s.answer {
            Ok((status, _, body)) => {
                let code = serde_json::from_str::<serde_json::Value>(body).ok().and_then(|j| j["error"].as_str().map(str::to_owned));
                format!("{} {status} {}", s.what, code.unwrap_or_default())
            }
            Err(_) => format!("{} no answer", s.what),
        };
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

/// After the store is back every request succeeds again, the node untouched: a round of each
/// kind at once, all 200, within a generous bound.
async fn recovered(load: &Load) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let started = Instant::now();
    loop {
        let round: Vec<_> = ["me", "sign-in", "account page"]
            .into_iter()
            .cycle()
            .take(12)
            .map(|what| {
                let (load, client) = (load.clone(), client.clone());
                tokio::spawn(async move { load.one(&client, what).await })
            })
            .collect();
        let mut failed = Vec::new();
        for task in round {
            let s = task.await.unwrap();
            if !matches!(s.answer, Ok((200, _, _))) {
                failed.push(format!("{}: {:?}", s.what, s.answer));
            }
        }
        if failed.is_empty() {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "not recovered within 30 s: {failed:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_cut_under_load_gives_503_with_a_message_and_the_node_recovers_by_itself() {
    outage(Outage::Cut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_blackholed_under_load_gives_503_within_the_timeout_and_the_node_recovers_by_itself() {
    outage(Outage::Blackhole).await;
}

/// A statement in PostgreSQL's protocol: Parse, Bind (a prepared statement again) or a simple
/// Query — not the lone Sync of sqlx's ping, nor Terminate.
fn is_query(bytes: &[u8]) -> bool {
    matches!(bytes.first(), Some(b'P' | b'B' | b'Q'))
}

/// sqlx commits with the simple query `COMMIT`.
fn is_commit(bytes: &[u8]) -> bool {
    bytes.windows(6).any(|w| w == b"COMMIT")
}

/// Under load, strands the next `times` connections that send what `wanted` picks, one by one,
/// then expects every request to succeed again within a generous bound, every answer meanwhile
/// to be one a client can act on, and no panic. Returns the tally of answers.
async fn lose_on_the_way(wanted: Picks, times: usize) -> Option<std::collections::BTreeMap<String, usize>> {
    let config = NodeConfig::postgres("lost_on_the_way").await?;
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let (node, load) = outage_node(&proxy, config).await;
    let running = load.start(OUTAGE_WORKERS);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let started = Instant::now();
    for n in 1..=times {
        proxy.strand_on(wanted);
        while proxy.trap.sprung.load(Ordering::SeqCst) < n {
            assert!(started.elapsed() < Duration::from_secs(20), "only {} connections stranded", n - 1);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Long enough for the requests on stranded connections to reach the request timeout.
    tokio::time::sleep(REQUEST_TIMEOUT + MARGIN).await;
    recovered(&load).await;
    let samples = running.stop().await;
    for s in &samples {
        assert_answered_well(s);
    }
    let log = node.log();
    assert!(!log.contains("panicked"), "{log}");
    Some(tally(&samples))
}

/// Every connection of the pool stranded in the middle of a query: each request waits for an
/// answer that never comes (the request timeout ends it, with a message), and the connection,
/// handed back, never answers sqlx's check either. The pool must not keep them: the node works
/// again with new connections, untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queries_lost_on_the_way_to_postgres_do_not_take_the_pool_for_good() {
    let Some(answers) = lose_on_the_way(is_query, OUTAGE_POOL).await else { return };
    eprintln!("lost queries: {answers:?}");
}

/// A COMMIT lost on its way leaves its transaction open in PostgreSQL, holding the account's row
/// (sign-in writes `last_sign_in_at`), and PostgreSQL sees nothing wrong with the connection. The
/// account's sign-ins wait on that row no longer than a request may take: 503 meanwhile, then
/// they succeed again, with no one touching the node or the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_lost_on_the_way_to_postgres_does_not_lock_the_account_for_good() {
    let Some(answers) = lose_on_the_way(is_commit, 1).await else { return };
    // The sign-in whose COMMIT was lost waits for an answer that never comes: the request timeout
    // ends it, with a message.
    assert!(answers.get("sign-in 503 timeout").is_some_and(|n| *n >= 1), "{answers:?}");
    eprintln!("lost COMMIT: {answers:?}");
}
