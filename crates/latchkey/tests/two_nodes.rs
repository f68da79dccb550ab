//! Two `latchkey serve` processes on one PostgreSQL database, as production runs many nodes (the
//! same secret key and seal key, different ports). 20 concurrent uses of one welcome link, one
//! reset link, one recovery code and one TOTP code, spread over both nodes, succeed exactly once;
//! the wrong-code lock and the SMS send limits count across the nodes, not per node.
//!
//! Every request of a race is sent at one barrier, half to each node, over connections opened
//! beforehand. Without PostgreSQL the tests skip (with CI=true they fail).

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{call, client, oathtool, race, unix_now, Answer, Node, NodeConfig, Request, Session};

const DOMAIN: &str = "organization.com";
const PASSWORD: &str = "Welcome2Sonar";
const RACERS: usize = 20;

/// Two nodes on one fresh database, with a company whose two-factor pilot is on (made with the
/// CLI, as an operator does).
struct Cluster {
    nodes: [Node; 2],
}

impl Cluster {
    /// `None` where PostgreSQL is not reachable (the test skips).
    async fn start(test: &str, configure: impl FnOnce(NodeConfig) -> NodeConfig) -> Option<Cluster> {
        let config = configure(NodeConfig::postgres(test).await?);
        // Started together, the two nodes migrate the same empty database at once.
        let (a, b) = tokio::join!(Node::start(&config), Node::start(&config));
        a.cli(&["company", "create", "--name", "Organization Inc.", "--domain", DOMAIN]);
        a.cli(&["company", "enable", "--domain", DOMAIN, "--feature", "two-factor"]);
        Some(Cluster { nodes: [a, b] })
    }

    fn bases(&self) -> [&str; 2] {
        [self.nodes[0].base.as_str(), self.nodes[1].base.as_str()]
    }

    /// Node `i % 2`: callers number their steps and so spread them over both nodes.
    fn node(&self, i: usize) -> &Node {
        &self.nodes[i % 2]
    }

    async fn post(&self, node: usize, path: &str, body: Value) -> Answer {
        call(&client(), &self.node(node).base, Method::POST, path, Some(&body), None).await
    }

    async fn sign_in(&self, node: usize, login: &str, password: &str) -> Answer {
        self.post(node, "/api/v1/sign-in", json!({"login_name": login, "password": password})).await
    }

    /// Creates an invited user with the CLI; returns the Complete Setup link's token.
    fn invite(&self, ext: &str) -> String {
        let out = self.nodes[0].cli(&["user", "create", "--company", DOMAIN, "--extension", ext, "--email", &email_of(ext)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let link = stderr.split_whitespace().find(|w| w.contains("/complete-setup/")).expect("the CLI prints the Complete Setup link");
        support::token_of(link)
    }

    /// An active user whose password is `PASSWORD`, activated on the second node; its login name.
    async fn active_user(&self, ext: &str) -> String {
        let token = self.invite(ext);
        let body = json!({"password": PASSWORD, "password_confirmation": PASSWORD, "pin": "2580"});
        let done = self.post(1, &format!("/api/v1/activation/{token}"), body).await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.body);
        format!("{ext}@{DOMAIN}")
    }

    /// Signs in (the account has no second factor yet) and returns the session.
    async fn session(&self, node: usize, login: &str) -> Session {
        let signed = self.sign_in(node, login, PASSWORD).await;
        assert_eq!(signed.body["state"], "signed_in", "{}", signed.body);
        Session::of(&signed).expect("a session cookie")
    }

    /// A password sign-in waiting for its second factor; returns the flow's token.
    async fn second_factor_flow(&self, node: usize, login: &str) -> String {
        let a = self.sign_in(node, login, PASSWORD).await;
        assert_eq!(a.body["state"], "second_factor", "{}", a.body);
        a.body["flow"].as_str().expect("a flow token").to_owned()
    }

    /// `n` flows of `login`, begun on alternate nodes.
    async fn second_factor_flows(&self, login: &str, n: usize) -> Vec<String> {
        let mut flows = Vec::new();
        for i in 0..n {
            flows.push(self.second_factor_flow(i, login).await);
        }
        flows
    }

    /// Enrols the authenticator app with a code from `oathtool`; returns the secret, the recovery
    /// codes, and a code that is right and not yet spent (the next time step's: the server accepts
    /// one step of drift).
    async fn enrol_totp(&self, login: &str) -> (String, Vec<String>, String) {
        let session = self.session(0, login).await;
        let http = client();
        let setup = call(&http, &self.nodes[0].base, Method::POST, "/api/v1/me/2fa/totp", None, Some(&session)).await;
        assert_eq!(setup.status, StatusCode::OK, "{}", setup.body);
        let secret = setup.body["secret"].as_str().expect("the secret").to_owned();
        let body = json!({"code": oathtool(&secret, unix_now()), "current_password": PASSWORD});
        let confirmed = call(&http, &self.nodes[1].base, Method::POST, "/api/v1/me/2fa/totp/confirm", Some(&body), Some(&session)).await;
        assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
        let codes = confirmed.body["recovery_codes"].as_array().expect("recovery codes with the first method");
        let codes = codes.iter().map(|c| c.as_str().unwrap_or_default().to_owned()).collect();
        // The confirming code spent its step; the next step's code is one the server has not seen.
        let unspent = oathtool(&secret, unix_now() + 30);
        (secret, codes, unspent)
    }

    /// Enrols SMS with the number; the code is read from the first node's outbox.
    async fn enrol_sms(&self, login: &str, phone: &str) {
        let session = self.session(0, login).await;
        let (http, base) = (client(), &self.nodes[0].base);
        let sent = call(&http, base, Method::POST, "/api/v1/me/2fa/sms", Some(&json!({"phone": phone})), Some(&session)).await;
        assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.body);
        let text = self.nodes[0].texts().into_iter().rfind(|t| t.to == phone).expect("the enrolment text");
        let code = text.code().expect("a code in the text");
        let confirmed = call(&http, base, Method::POST, "/api/v1/me/2fa/sms/confirm", Some(&json!({"code": code})), Some(&session)).await;
        assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    }

    /// Texts to `phone` that either node wrote.
    fn texts_to(&self, phone: &str) -> usize {
        self.nodes.iter().flat_map(|n| n.texts()).filter(|t| t.to == phone).count()
    }

    /// How many wrong second-factor codes the company's audit log holds, read with an operator
    /// token.
    async fn failures_audited(&self, token: &str) -> usize {
        let url = format!("{}/api/v1/companies/{DOMAIN}/audit?kind=second_factor_failed&limit=200", self.nodes[0].base);
        let answer = client().get(url).bearer_auth(token).send().await.expect("the audit log");
        assert_eq!(answer.status(), StatusCode::OK);
        let body: Value = answer.json().await.expect("JSON");
        body["events"].as_array().map_or(0, Vec::len)
    }
}

fn email_of(ext: &str) -> String {
    format!("u{ext}@example.com")
}

/// Six-digit codes that no step from two before to two after now would accept.
fn wrong_codes(secret: &str, n: usize) -> Vec<String> {
    let now = unix_now();
    let near: Vec<String> = (0..5).map(|k| oathtool(secret, now + k * 30 - 60)).collect();
    (0..).map(|i: u32| format!("{:06}", (i * 137_519) % 1_000_000)).filter(|c| !near.contains(c)).take(n).collect()
}

/// A different valid password for each racer.
fn password_of(racer: usize) -> String {
    format!("Racer{racer:02}Sonar")
}

/// The index of the one 2xx answer; every other answer must be one of `losing` (status, error
/// code).
fn one_winner(answers: &[Answer], losing: &[(StatusCode, &str)]) -> usize {
    let winners: Vec<usize> = (0..answers.len()).filter(|&i| answers[i].status.is_success()).collect();
    let seen: Vec<(u16, &str)> = answers.iter().map(|a| (a.status.as_u16(), a.error())).collect();
    assert_eq!(winners.len(), 1, "exactly one success: {seen:?}");
    for (i, a) in answers.iter().enumerate().filter(|(i, _)| *i != winners[0]) {
        assert!(losing.contains(&(a.status, a.error())), "racer {i} lost with {} {}", a.status, a.body);
    }
    winners[0]
}

/// The account's password is the winner's: it signs in, every loser's is refused (each tried once,
/// on alternate nodes).
async fn only_the_winners_password_works(c: &Cluster, login: &str, winner: usize) {
    let signed = c.sign_in(winner, login, &password_of(winner)).await;
    assert_eq!(signed.body["state"], "signed_in", "the winner's password: {}", signed.body);
    for loser in (0..RACERS).filter(|&i| i != winner) {
        let refused = c.sign_in(loser, login, &password_of(loser)).await;
        assert_eq!((refused.status, refused.error()), (StatusCode::UNAUTHORIZED, "invalid_credentials"), "racer {loser}'s password");
    }
}

/// For the link races. Every racer hashes its password before it reaches the store: with
/// production's Argon2id cost the hashing pool lets them through one or two at a time, and the
/// store never sees them together. Cheap hashes keep them together. Every loser's password is
/// tried once after the race: the sign-in throttle must not end that check early.
fn link_race(config: NodeConfig) -> NodeConfig {
    config
        .with("LATCHKEY_ARGON2__MEMORY_KIB", 64)
        .with("LATCHKEY_ARGON2__ITERATIONS", 1)
        .with("LATCHKEY_ARGON2__POOL_SIZE", RACERS / 2)
        .with("LATCHKEY_THROTTLE__ACCOUNT_MAX_FAILURES", 50)
}

/// For the code races. A losing racer's code counts as a wrong one, and with the default five the
/// account's lock would turn most racers away before they reach the store: all should get there.
fn code_race(config: NodeConfig) -> NodeConfig {
    config.with("LATCHKEY_TWO_FACTOR__MAX_FAILURES", 50)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_racing_uses_of_one_welcome_link_over_two_nodes_activate_once() {
    let Some(c) = Cluster::start("two_nodes_welcome", link_race).await else { return };
    let token = c.invite("101");
    let requests = (0..RACERS)
        .map(|i| Request {
            path: format!("/api/v1/activation/{token}"),
            body: json!({"password": password_of(i), "password_confirmation": password_of(i), "pin": "2580"}),
        })
        .collect();
    let answers = race(&c.bases(), requests).await;
    let winner = one_winner(&answers, &[(StatusCode::GONE, "link_used"), (StatusCode::CONFLICT, "account_not_invited")]);
    assert_eq!(answers[winner].body["login_name"], "101@organization.com");
    only_the_winners_password_works(&c, "101@organization.com", winner).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_racing_uses_of_one_reset_link_over_two_nodes_reset_once() {
    let Some(c) = Cluster::start("two_nodes_reset", link_race).await else { return };
    let login = c.active_user("102").await;
    let asked = c.post(1, "/api/v1/password/forgot", json!({"login_name": login})).await;
    assert_eq!(asked.status, StatusCode::ACCEPTED);
    let mail = c.nodes[1].wait_for_email(&email_of("102"), "reset your password").await;
    let token = mail.link_token("reset-password").expect("a reset link in the email");
    let open = call(&client(), &c.nodes[0].base, Method::GET, &format!("/api/v1/password/reset/{token}"), None, None).await;
    assert_eq!(open.status, StatusCode::OK, "the other node opens the link: {}", open.body);

    let requests = (0..RACERS)
        .map(|i| Request { path: format!("/api/v1/password/reset/{token}"), body: json!({"password": password_of(i), "password_confirmation": password_of(i)}) })
        .collect();
    let answers = race(&c.bases(), requests).await;
    let winner = one_winner(&answers, &[(StatusCode::GONE, "link_used")]);
    only_the_winners_password_works(&c, &login, winner).await;
    let old = c.sign_in(0, &login, PASSWORD).await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED, "the old password is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_recovery_code_in_twenty_racing_sign_ins_over_two_nodes_signs_in_once() {
    let Some(c) = Cluster::start("two_nodes_recovery", code_race).await else { return };
    let login = c.active_user("103").await;
    let (_, codes, _) = c.enrol_totp(&login).await;
    let (winner, signed) = race_one_code(&c, &login, "recovery_code", &codes[3]).await;
    assert_eq!(signed.body["recovery_codes_left"], 9, "one code of ten spent");

    let session = Session::of(&signed).expect("the winner's session");
    let me = call(&client(), c.node(winner + 1).base.as_str(), Method::GET, "/api/v1/me", None, Some(&session)).await;
    assert_eq!(me.status, StatusCode::OK, "the session works on the other node: {}", me.body);
    assert_eq!(me.body["recovery_codes_left"], 9, "exactly one code used");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_totp_code_in_twenty_racing_sign_ins_over_two_nodes_signs_in_once() {
    let Some(c) = Cluster::start("two_nodes_totp", code_race).await else { return };
    let login = c.active_user("104").await;
    let (_, _, code) = c.enrol_totp(&login).await;
    race_one_code(&c, &login, "totp", &code).await;
}

/// One code in `RACERS` sign-ins at once, each flow used on the node it did not begin on: one is
/// signed in (its index and answer are returned), every other is refused as a wrong code.
async fn race_one_code(c: &Cluster, login: &str, method: &str, code: &str) -> (usize, Answer) {
    let flows = c.second_factor_flows(login, RACERS).await;
    let requests = (0..RACERS)
        .map(|i| Request { path: format!("/api/v1/sign-in/{}/verify", flows[(i + 1) % RACERS]), body: json!({"method": method, "code": code}) })
        .collect();
    let mut answers = race(&c.bases(), requests).await;
    let winner = one_winner(&answers, &[(StatusCode::UNAUTHORIZED, "invalid_code")]);
    let signed = answers.swap_remove(winner);
    assert_eq!(signed.body["state"], "signed_in", "{}", signed.body);
    (winner, signed)
}

/// Wrong codes before the lock; the sixth in total locks, wherever it lands.
const MAX_FAILURES: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_codes_over_both_nodes_lock_the_account_at_the_configured_total() {
    let Some(c) = Cluster::start("two_nodes_lock", |c| c.with("LATCHKEY_TWO_FACTOR__MAX_FAILURES", MAX_FAILURES)).await else { return };
    let login = c.active_user("105").await;
    let (secret, _, right) = c.enrol_totp(&login).await;
    let flows = c.second_factor_flows(&login, 2).await;
    let wrong = wrong_codes(&secret, RACERS);

    // Each node gets codes for both flows, so neither a node nor a flow holds the count alone.
    let requests = (0..RACERS)
        .map(|i| Request { path: format!("/api/v1/sign-in/{}/verify", flows[(i / 2) % 2]), body: json!({"method": "totp", "code": wrong[i]}) })
        .collect();
    let answers = race(&c.bases(), requests).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status.as_u16()).collect();
    let refused = statuses.iter().filter(|&&s| s == 401).count();
    let locked = statuses.iter().filter(|&&s| s == 429).count();
    // Per-node counting would have allowed 2 × (MAX_FAILURES - 1) refusals before any lock.
    assert_eq!((refused, locked), (MAX_FAILURES - 1, RACERS - MAX_FAILURES + 1), "{statuses:?}");

    // The right code is now refused on both nodes, on an old flow and on a new one, and refused
    // before it is checked: it is not counted as one more wrong code.
    let operator = c.nodes[0].operator_token("races");
    let counted = c.failures_audited(&operator).await;
    let new_flow = c.second_factor_flow(1, &login).await;
    for (node, flow) in [(0, &flows[0]), (1, &flows[1]), (1, &new_flow), (0, &new_flow)] {
        let a = c.post(node, &format!("/api/v1/sign-in/{flow}/verify"), json!({"method": "totp", "code": right})).await;
        assert_eq!((a.status, a.error()), (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"), "node {node}: {}", a.body);
        assert!(a.headers.contains_key("retry-after"));
    }
    assert_eq!(c.failures_audited(&operator).await, counted, "the right code was refused by the lock, not judged wrong");
}

/// Texts per user and per number in an hour, for the test: the number's limit is above one user's,
/// so only two users together reach it.
const SENDS_PER_USER: usize = 5;
const SENDS_PER_NUMBER: usize = 7;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sms_sends_over_both_nodes_stop_at_the_per_user_and_per_number_limits() {
    let Some(c) = Cluster::start("two_nodes_sms", |c| {
        c.with("LATCHKEY_TWO_FACTOR__SENDS_PER_USER_PER_HOUR", SENDS_PER_USER).with("LATCHKEY_TWO_FACTOR__SENDS_PER_NUMBER_PER_HOUR", SENDS_PER_NUMBER)
    })
    .await
    else {
        return;
    };
    clear_of_the_hour().await;
    let (alone, shared) = ("+15550104401", "+15550104402");
    let solo = c.active_user("106").await;
    c.enrol_sms(&solo, alone).await;
    let (first, second) = (c.active_user("107").await, c.active_user("108").await);
    c.enrol_sms(&first, shared).await;
    c.enrol_sms(&second, shared).await;

    // One user: the enrolment text and then sign-in codes up to the user's limit, whichever node.
    let flow = c.second_factor_flow(0, &solo).await;
    let requests = (0..RACERS).map(|_| Request { path: format!("/api/v1/sign-in/{flow}/send"), body: json!({"method": "sms"}) }).collect();
    let answers = race(&c.bases(), requests).await;
    assert_eq!(sent(&answers), SENDS_PER_USER - 1, "{:?}", statuses(&answers));
    assert_eq!(c.texts_to(alone), SENDS_PER_USER, "texts to the number from both nodes together");

    // Two users of one number: each could have 4 more texts, the number only 5 more.
    let flows = [c.second_factor_flow(0, &first).await, c.second_factor_flow(1, &second).await];
    let requests = (0..RACERS).map(|i| Request { path: format!("/api/v1/sign-in/{}/send", flows[(i / 2) % 2]), body: json!({"method": "sms"}) }).collect();
    let answers = race(&c.bases(), requests).await;
    assert_eq!(sent(&answers), SENDS_PER_NUMBER - 2, "{:?}", statuses(&answers));
    assert_eq!(c.texts_to(shared), SENDS_PER_NUMBER);
}

/// Sends answered 202; every other answer must be the send limit's 429 with Retry-After.
fn sent(answers: &[Answer]) -> usize {
    for a in answers.iter().filter(|a| a.status != StatusCode::ACCEPTED) {
        assert_eq!((a.status, a.error()), (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"), "{}", a.body);
        assert!(a.headers.contains_key("retry-after"));
    }
    answers.iter().filter(|a| a.status == StatusCode::ACCEPTED).count()
}

fn statuses(answers: &[Answer]) -> Vec<u16> {
    answers.iter().map(|a| a.status.as_u16()).collect()
}

/// Send limits count per clock hour: a test straddling an hour would count in two windows, so it
/// starts after the hour turns when less than two minutes are left.
async fn clear_of_the_hour() {
    let left = 3600 - unix_now() % 3600;
    if left < 120 {
        tokio::time::sleep(std::time::Duration::from_secs(left + 1)).await;
    }
}
