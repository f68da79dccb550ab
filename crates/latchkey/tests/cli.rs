//! The binary as an operator uses it: `serve` on SQLite, and the CLI beside the running server on
//! the same file, all configured through `LATCHKEY_*` variables and a TOML file.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use support::{free_port, wait_for_readyz, Node, NodeConfig};

/// `serve --demo` with a configuration file: the one server here that `support::Node` does not
/// start (it reads its own settings). Killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn link_in(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    text.split_whitespace().find(|w| w.contains("/complete-setup/")).expect("the Complete Setup link").to_owned()
}

/// `latchkey serve` on SQLite in a fresh data dir, ready; the CLI runs beside it on that dir.
async fn serving() -> (Node, String) {
    let node = Node::start(&NodeConfig::sqlite()).await;
    let base = node.base.clone();
    (node, base)
}

#[tokio::test]
async fn the_cli_works_beside_a_running_server_on_the_same_sqlite_file() {
    let (node, base) = serving().await;

    node.cli(&["company", "create", "--name", "Organization Inc.", "--domain", "Organization.com"]);
    let created = node.cli(&["user", "create", "--company", "organization.com", "--extension", "101", "--email", "alice@example.com", "--role", "office-manager"]);
    assert_eq!(String::from_utf8_lossy(&created.stdout).trim(), "101@organization.com", "prints the login name");
    let first = link_in(&created.stderr);
    let again = node.cli(&["user", "resend-welcome", "--company", "organization.com", "--extension", "101"]);
    let second = link_in(&again.stderr);
    assert!(second.starts_with(&base), "links start with the public URL: {second}");

    // The running server sees what the CLI wrote: the new link works, the old one was replaced.
    let token = |l: &str| l.rsplit('/').next().unwrap().to_owned();
    let old = reqwest::get(format!("{base}/api/v1/activation/{}", token(&first))).await.unwrap();
    assert_eq!(old.status(), 410);
    let new = reqwest::get(format!("{base}/api/v1/activation/{}", token(&second))).await.unwrap();
    assert_eq!(new.status(), 200);
    assert_eq!(node.emails().len(), 2, "two welcome emails in the outbox");

    let dup = node.cli_output(&["user", "create", "--company", "organization.com", "--extension", "101", "--email", "b@example.com"]);
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already taken"));
    let bad = node.cli_output(&["company", "create", "--name", "X", "--domain", "not a domain"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("domain"));
    let listed = node.cli(&["company", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("organization.com\tOrganization Inc."));
}

#[tokio::test]
async fn serve_demo_prints_a_working_complete_setup_link_and_a_config_file_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("latchkey.toml");
    // The file sets the listen address; the environment sets the data dir.
    std::fs::write(&config, format!("listen = \"127.0.0.1:{port}\"\n[session]\nidle_minutes = 10\n")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    cmd.args(["--config", config.to_str().unwrap(), "serve", "--demo"])
        .env("LATCHKEY_DATA_DIR", dir.path().join("data"))
        .env_remove("LATCHKEY_LISTEN")
        .env_remove("LATCHKEY_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let _server = Server(child);
    let base = format!("http://127.0.0.1:{port}");
    wait_for_readyz(&base, StatusCode::OK, Duration::from_secs(20), || true).await.expect("the demo server is ready");
    let link = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout).lines().map_while(Result::ok).find(|l| l.contains("/complete-setup/")).unwrap()
    })
    .await
    .unwrap();
    let page = reqwest::get(link.trim()).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("100@demo.example"));
    assert!(dir.path().join("data/latchkey.db").exists());
}

#[test]
fn a_bad_configuration_is_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "lisen = \"127.0.0.1:1\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_latchkey")).args(["--config", config.to_str().unwrap(), "migrate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `lisen`"));
}

#[test]
fn the_operator_switches_sso_per_company_and_provider() {
    // Only the CLI, on a node's data dir; no server runs.
    let node = Node::prepare(&NodeConfig::sqlite());
    let cli = |args: &[&str]| String::from_utf8(node.cli(args).stdout).unwrap();
    cli(&["company", "create", "--name", "Organization Inc.", "--domain", "organization.com"]);
    let on = cli(&["company", "enable", "--domain", "organization.com", "--feature", "sso", "--provider", "google"]);
    assert!(on.contains("sso enabled for organization.com; providers: google"), "{on}");
    let both = cli(&["company", "enable", "--domain", "organization.com", "--feature", "sso"]);
    assert!(both.contains("providers: google, microsoft"), "{both}");
    let one_off = cli(&["company", "disable", "--domain", "organization.com", "--feature", "sso", "--provider", "google"]);
    assert!(one_off.contains("sso enabled for organization.com; providers: microsoft"), "{one_off}");
    let off = cli(&["company", "disable", "--domain", "organization.com", "--feature", "sso"]);
    assert!(off.contains("sso disabled"), "{off}");
    let wrong = node.cli_output(&["company", "enable", "--domain", "organization.com", "--feature", "two-factor", "--provider", "google"]);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("--provider goes with --feature sso"));
    let unknown = node.cli_output(&["company", "enable", "--domain", "organization.com", "--feature", "sso", "--provider", "okta"]);
    assert_eq!(unknown.status.code(), Some(2), "clap refuses an unknown provider");
}

#[tokio::test]
async fn an_api_token_from_the_cli_is_shown_once_works_until_revoked_and_is_listed_without_its_secret() {
    let (node, base) = serving().await;
    node.cli(&["company", "create", "--name", "Organization Inc.", "--domain", "organization.com"]);

    let created = node.cli(&["token", "create", "--name", "provisioning"]);
    let secret = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    assert!(secret.starts_with("lk_") && secret.len() > 40, "the secret alone on stdout: {secret}");
    let note = String::from_utf8_lossy(&created.stderr).into_owned();
    assert!(note.contains("shown only once") && note.contains("operator (every company)"), "{note}");
    let company = node.cli(&["token", "create", "--name", "org bot", "--company", "Organization.com"]);
    let company_secret = String::from_utf8(company.stdout).unwrap().trim().to_owned();
    assert_ne!(company_secret, secret, "every token is fresh");
    assert!(String::from_utf8_lossy(&company.stderr).contains("company organization.com"));

    let http = reqwest::Client::new();
    let companies = |s: String| http.get(format!("{base}/api/v1/companies")).bearer_auth(s).send();
    assert_eq!(companies(secret.clone()).await.unwrap().status(), 200, "the running server takes the CLI's token");
    assert_eq!(companies(company_secret.clone()).await.unwrap().status(), 403, "a company token is no operator");

    let listed = String::from_utf8(node.cli(&["token", "list"]).stdout).unwrap();
    let rows: Vec<Vec<&str>> = listed.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows[0], ["id", "name", "scope", "created", "last used", "revoked"]);
    assert_eq!(rows[1][..3], ["1", "provisioning", "operator (every company)"]);
    assert!(rows[1][4] != "-" && rows[1][5] == "-", "used, not revoked: {:?}", rows[1]);
    assert_eq!(rows[2][..3], ["2", "org bot", "company organization.com"]);
    assert!(!listed.contains(&secret[3..]) && !listed.contains(&company_secret[3..]), "no secret in the listing");

    let revoked = node.cli(&["token", "revoke", "1"]);
    assert!(String::from_utf8_lossy(&revoked.stdout).contains("API token 1 \"provisioning\" revoked at "));
    let refused = companies(secret).await.unwrap();
    assert_eq!(refused.status(), 401, "revoked at once, on the running server");
    assert_eq!(refused.json::<serde_json::Value>().await.unwrap()["error"], "invalid_token");
    let listed = String::from_utf8(node.cli(&["token", "list"]).stdout).unwrap();
    assert_ne!(listed.lines().nth(1).unwrap().rsplit('\t').next(), Some("-"), "the listing shows the revocation: {listed}");

    let fails = |args: &[&str]| {
        let out = node.cli_output(args);
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(fails(&["token", "revoke", "99"]).contains("no API token with the id 99"));
    assert!(fails(&["token", "create", "--name", "x", "--company", "unknown.example"]).contains("No company has the domain"));
    assert!(fails(&["token", "create", "--name", &"n".repeat(65)]).contains("1 to 64 printable characters"));
    assert!(fails(&["token", "create", "--name", "two\nlines"]).contains("1 to 64 printable characters"));
    let after = String::from_utf8(node.cli(&["token", "list"]).stdout).unwrap();
    assert_eq!(after.lines().count(), 3, "refused tokens were not made: {after}");
}
