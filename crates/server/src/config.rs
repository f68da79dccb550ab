//! Configuration: a TOML file, then `LATCHKEY_*` environment variables over it. Every key has an
//! override: `LATCHKEY_LISTEN` sets `listen`, `LATCHKEY_SMTP__HOST` sets `smtp.host`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use latchkey_core::throttle::{Limits, ThrottlePolicy};
use serde::Deserialize;

use crate::mail::SmtpConfig;
use crate::sms::SmsGatewayConfig;

#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `postgres://…` for many nodes; empty means the SQLite file in `data_dir`.
    pub database_url: String,
    pub database_max_connections: u32,
    /// Where people reach the server; links in emails start with it. Empty: `http://{listen}`.
    pub public_url: String,
    /// `Secure` session cookies with the `__Host-` prefix. Browsers accept them over plain HTTP on
    /// localhost; turn off only for non-browser clients on plain HTTP.
    pub cookie_secure: bool,
    /// Key for CSRF tokens; all nodes of one deployment must share it. Empty: generated once into
    /// `data_dir/secret.key`.
    pub secret_key: String,
    /// `text` or `json`.
    pub log_format: String,
    /// Header holding the client address when behind a reverse proxy (e.g. `x-forwarded-for`).
    pub client_ip_header: String,
    pub body_limit_bytes: usize,
    pub request_timeout_secs: u64,
    pub argon2: Argon2Config,
    pub session: SessionConfig,
    pub throttle: ThrottleConfig,
    pub two_factor: TwoFactorConfig,
    pub mail_from: String,
    /// Absent: emails go to the outbox folder in `data_dir`.
    pub smtp: Option<SmtpConfig>,
    /// The Twilio-style SMS gateway. Absent: texts go to the outbox folder in `data_dir`.
    pub sms: Option<SmsGatewayConfig>,
    /// Single sign-on: the OpenID providers Latchkey is registered with.
    pub sso: SsoConfig,
    pub audit: AuditConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Days an audit event is kept before housekeeping deletes it; 0 keeps every event forever.
    pub retention_days: u32,
}

impl Default for AuditConfig {
    /// A little over a year, so a yearly review still finds last year's events.
    fn default() -> Self {
        Self { retention_days: 400 }
    }
}

/// The operator's registrations with the OpenID providers; a provider without one is not offered.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SsoConfig {
    pub google: Option<OidcProviderConfig>,
    pub microsoft: Option<OidcProviderConfig>,
    /// How long a trip to the provider and back may take.
    pub attempt_minutes: i64,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderConfig {
    /// Where discovery starts: `https://accounts.google.com`, or Microsoft's multi-tenant
    /// `https://login.microsoftonline.com/organizations/v2.0` (its issuer is a `{tenantid}` template).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Microsoft tenant ids (`tid`) whose email claims the operator trusts although the domain is
    /// not marked verified (`xms_edov`); comma-separated.
    #[serde(default)]
    pub trusted_tenants: String,
}

impl Default for SsoConfig {
    fn default() -> Self {
        Self { google: None, microsoft: None, attempt_minutes: 10 }
    }
}

impl OidcProviderConfig {
    pub fn trusted_tenants(&self) -> Vec<String> {
        self.trusted_tenants.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect()
    }
}

// The client secret stays out of any print of the configuration.
impl std::fmt::Debug for OidcProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProviderConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("trusted_tenants", &self.trusted_tenants)
            .finish()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Argon2Config {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Hashes computed at once; 0 means one per core.
    pub pool_size: usize,
    /// Hashes allowed to wait for the pool; beyond it a sign-in gets 503 with Retry-After.
    pub queue: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    pub idle_minutes: i64,
    pub absolute_hours: i64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
/// The sign-in throttles' settings ([`Limits::sign_in_per_login`], [`Limits::sign_in_per_client`]).
pub struct ThrottleConfig {
    pub account_max_failures: u32,
    pub client_max_failures: u32,
    pub window_minutes: i64,
    pub lockout_minutes: i64,
}

#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TwoFactorConfig {
    /// `id:base64-32-byte-key` sealing TOTP seeds. Empty: generated once into `data_dir/seal.key`.
    /// Every node must share it.
    pub seal_key: String,
    /// Earlier keys, still able to open what they sealed (comma-separated `id:key`).
    pub old_seal_keys: String,
    /// The name authenticator apps show next to the code.
    pub issuer: String,
    /// Wrong codes per account within `window_minutes` before the second-factor step locks.
    pub max_failures: u32,
    pub window_minutes: i64,
    pub lockout_minutes: i64,
    /// How long a sign-in may wait at the second-factor step.
    pub flow_minutes: i64,
    /// Codes sent (SMS and email) per user per hour: stops a script from running up the bill
    /// or flooding an inbox.
    pub sends_per_user_per_hour: i64,
    /// Texts per mobile number per hour, whoever asks (SMS pumping).
    pub sends_per_number_per_hour: i64,
    /// Texts per company per hour: the ceiling on what one tenant can cost.
    pub sends_per_company_per_hour: i64,
}

impl Default for TwoFactorConfig {
    fn default() -> Self {
        Self {
            seal_key: String::new(),
            old_seal_keys: String::new(),
            issuer: "Latchkey".into(),
            max_failures: LIMITS.second_factor_per_user.policy.max_failures,
            window_minutes: LIMITS.second_factor_per_user.policy.window.whole_minutes(),
            lockout_minutes: LIMITS.second_factor_per_user.policy.lockout.whole_minutes(),
            flow_minutes: 10,
            sends_per_user_per_hour: LIMITS.sends_per_user.limit,
            sends_per_number_per_hour: LIMITS.sends_per_number.limit,
            sends_per_company_per_hour: LIMITS.sends_per_company.limit,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./latchkey-data"),
            database_url: String::new(),
            database_max_connections: 16,
            public_url: String::new(),
            cookie_secure: true,
            secret_key: String::new(),
            log_format: "text".into(),
            client_ip_header: String::new(),
            body_limit_bytes: 16 * 1024,
            request_timeout_secs: 15,
            argon2: Argon2Config::default(),
            session: SessionConfig::default(),
            throttle: ThrottleConfig::default(),
            two_factor: TwoFactorConfig::default(),
            mail_from: "Latchkey <no-reply@latchkey.localhost>".into(),
            smtp: None,
            sms: None,
            sso: SsoConfig::default(),
            audit: AuditConfig::default(),
        }
    }
}

impl Default for Argon2Config {
    /// OWASP's minimum for Argon2id: 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        Self { memory_kib: 19_456, iterations: 2, parallelism: 1, pool_size: 0, queue: 64 }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self { idle_minutes: 30, absolute_hours: 12 }
    }
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        let (login, client) = (LIMITS.sign_in_per_login.policy, LIMITS.sign_in_per_client.policy);
        Self {
            account_max_failures: login.max_failures,
            client_max_failures: client.max_failures,
            window_minutes: login.window.whole_minutes(),
            lockout_minutes: login.lockout.whole_minutes(),
        }
    }
}

/// The defaults the settings start from: the numbers live in core's throttle module only.
const LIMITS: Limits = Limits::DEFAULT;

impl Config {
    /// Core's limits with the operator's `[throttle]` and `[two_factor]` settings applied.
    pub fn limits(&self) -> Limits {
        let (t, tf) = (&self.throttle, &self.two_factor);
        let sign_in = |max_failures| ThrottlePolicy {
            max_failures,
            window: time::Duration::minutes(t.window_minutes),
            lockout: time::Duration::minutes(t.lockout_minutes),
        };
        let mut limits = LIMITS;
        limits.sign_in_per_login.policy = sign_in(t.account_max_failures);
        limits.sign_in_per_client.policy = sign_in(t.client_max_failures);
        limits.second_factor_per_user.policy = ThrottlePolicy {
            max_failures: tf.max_failures,
            window: time::Duration::minutes(tf.window_minutes),
            lockout: time::Duration::minutes(tf.lockout_minutes),
        };
        limits.sends_per_user.limit = tf.sends_per_user_per_hour;
        limits.sends_per_number.limit = tf.sends_per_number_per_hour;
        limits.sends_per_company.limit = tf.sends_per_company_per_hour;
        limits
    }
}

impl Config {
    /// Reads `file` (when given) and applies the environment over it.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                text.parse::<toml::Table>().with_context(|| format!("parsing {}", path.display()))?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut table, std::env::vars())?;
        let config: Config = toml::Value::Table(table).try_into().context("invalid configuration")?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.argon2.memory_kib < 8 || self.argon2.iterations < 1 || self.argon2.parallelism < 1 {
            bail!("argon2 parameters are too small to be valid");
        }
        if self.session.idle_minutes < 1 || self.session.absolute_hours < 1 {
            bail!("session timeouts must be at least a minute and an hour");
        }
        if self.sso.attempt_minutes < 1 {
            bail!("sso.attempt_minutes must be at least 1");
        }
        if self.request_timeout_secs < 1 {
            bail!("request_timeout_secs must be at least 1");
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            bail!("log_format is text or json");
        }
        Ok(())
    }

    pub fn database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("latchkey.db").display())
        } else {
            self.database_url.clone()
        }
    }

    /// The store's limits, from the request timeout: a store call waits for a connection a third
    /// of it (between 1 s and 5 s), so a database that does not answer gives a 503 that says so
    /// well before the request is cut off; and no PostgreSQL transaction outlives its request.
    pub fn pool_settings(&self) -> latchkey_store::PoolSettings {
        let request = Duration::from_secs(self.request_timeout_secs);
        latchkey_store::PoolSettings {
            max_connections: self.database_max_connections,
            acquire_timeout: (request / 3).clamp(Duration::from_secs(1), Duration::from_secs(5)),
            idle_transaction_timeout: request,
        }
    }

    pub fn public_url(&self) -> String {
        let url = if self.public_url.is_empty() { format!("http://{}", self.listen) } else { self.public_url.clone() };
        url.trim_end_matches('/').to_owned()
    }

    pub fn outbox_dir(&self) -> PathBuf {
        self.data_dir.join("outbox")
    }
}

// The secret key and SMTP password stay out of any debug print of the configuration.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database", &if self.database_url.is_empty() { "sqlite" } else { "postgres" })
            .field("public_url", &self.public_url())
            .field("argon2", &self.argon2)
            .field("smtp", &self.smtp)
            .field("sms", &self.sms)
            .field("sso", &self.sso)
            .field("audit", &self.audit)
            .finish_non_exhaustive()
    }
}

/// The top-level keys; other `LATCHKEY_*` variables (`LATCHKEY_CONFIG`, `LATCHKEY_LOG`, test
/// settings) are not configuration and are left alone.
const KEYS: &[&str] = &[
    "listen", "data_dir", "database_url", "database_max_connections", "public_url", "cookie_secure", "secret_key",
    "log_format", "client_ip_header", "body_limit_bytes", "request_timeout_secs", "argon2", "session", "throttle", "two_factor",
    "mail_from", "smtp", "sms", "sso", "audit",
];

/// `LATCHKEY_A__B=v` sets `a.b = v`; values that read as TOML integers or booleans become them.
fn apply_env(table: &mut toml::Table, vars: impl Iterator<Item = (String, String)>) -> anyhow::Result<()> {
    for (name, value) in vars {
        let Some(key) = name.strip_prefix("LATCHKEY_") else { continue };
        let path: Vec<String> = key.to_ascii_lowercase().split("__").map(str::to_owned).collect();
        if !KEYS.contains(&path[0].as_str()) {
            continue;
        }
        // Only a number written the canonical way is a number: `+15550104477` (a phone number) and
        // `007` stay strings.
        let value = if let Some(i) = value.parse::<i64>().ok().filter(|i| i.to_string() == value) {
            toml::Value::Integer(i)
        } else if let Ok(b) = value.parse::<bool>() {
            toml::Value::Boolean(b)
        } else {
            toml::Value::String(value)
        };
        let mut node = &mut *table;
        for part in &path[..path.len() - 1] {
            let entry = node.entry(part.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            node = match entry {
                toml::Value::Table(t) => t,
                _ => bail!("{name} sets a key inside {part}, which is not a table"),
            };
        }
        node.insert(path[path.len() - 1].clone(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_core_s_defaults_with_the_settings_applied() {
        assert_eq!(Config::default().limits(), Limits::DEFAULT, "no settings, core's defaults");
        let mut c = Config::default();
        c.throttle.client_max_failures = 3;
        c.throttle.lockout_minutes = 60;
        c.two_factor.max_failures = 4;
        c.two_factor.sends_per_number_per_hour = 2;
        let l = c.limits();
        assert_eq!(l.sign_in_per_client.policy.max_failures, 3);
        assert_eq!(l.sign_in_per_login.policy.lockout, time::Duration::hours(1));
        assert_eq!(l.sign_in_per_login.policy.max_failures, 5);
        assert_eq!(l.second_factor_per_user.policy.max_failures, 4);
        assert_eq!(l.sends_per_number.limit, 2);
        assert_eq!(l.sends_per_number.key("+15550104477"), "send:number:+15550104477", "keys stay core's");
    }

    #[test]
    fn sso_providers_come_from_the_file_or_the_environment_and_hide_their_secret() {
        let mut t: toml::Table = "[sso.google]\nissuer = \"https://accounts.google.com\"\nclient_id = \"g-id\"\nclient_secret = \"g-secret\"\n".parse().unwrap();
        let env = [
            ("LATCHKEY_SSO__MICROSOFT__ISSUER".to_owned(), "https://login.microsoftonline.com/organizations/v2.0".to_owned()),
            ("LATCHKEY_SSO__MICROSOFT__CLIENT_ID".to_owned(), "m-id".to_owned()),
            ("LATCHKEY_SSO__MICROSOFT__CLIENT_SECRET".to_owned(), "m-secret".to_owned()),
            ("LATCHKEY_SSO__MICROSOFT__TRUSTED_TENANTS".to_owned(), "t1, t2".to_owned()),
        ];
        apply_env(&mut t, env.into_iter()).unwrap();
        let c: Config = toml::Value::Table(t).try_into().unwrap();
        c.validate().unwrap();
        assert_eq!(c.sso.attempt_minutes, 10);
        assert_eq!(c.sso.google.as_ref().unwrap().client_id, "g-id");
        assert_eq!(c.sso.microsoft.as_ref().unwrap().trusted_tenants(), vec!["t1", "t2"]);
        let shown = format!("{c:?}");
        assert!(!shown.contains("g-secret") && !shown.contains("m-secret"), "{shown}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut t: toml::Table = "listen = \"0.0.0.0:9000\"\n[argon2]\nmemory_kib = 65536\n".parse().unwrap();
        let env = [
            ("LATCHKEY_LISTEN".to_owned(), "127.0.0.1:7000".to_owned()),
            ("LATCHKEY_ARGON2__ITERATIONS".to_owned(), "3".to_owned()),
            ("LATCHKEY_COOKIE_SECURE".to_owned(), "false".to_owned()),
            ("LATCHKEY_SMTP__HOST".to_owned(), "mail.example.com".to_owned()),
            ("LATCHKEY_SMTP__PORT".to_owned(), "587".to_owned()),
            ("LATCHKEY_SMTP__SECURITY".to_owned(), "starttls".to_owned()),
            ("LATCHKEY_SMTP__FROM".to_owned(), "a@example.com".to_owned()),
            ("OTHER".to_owned(), "x".to_owned()),
            ("LATCHKEY_LOG".to_owned(), "debug".to_owned()),
            ("LATCHKEY_TWO_FACTOR__ISSUER".to_owned(), "+15550104477".to_owned()),
            ("LATCHKEY_CONFIG".to_owned(), "/etc/latchkey.toml".to_owned()),
        ];
        apply_env(&mut t, env.into_iter()).unwrap();
        let c: Config = toml::Value::Table(t).try_into().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:7000");
        assert_eq!((c.argon2.memory_kib, c.argon2.iterations), (65536, 3));
        assert!(!c.cookie_secure);
        assert_eq!(c.smtp.as_ref().map(|s| s.port), Some(587));
        assert_eq!(c.public_url(), "http://127.0.0.1:7000");
        assert_eq!(c.two_factor.issuer, "+15550104477", "a leading + keeps a value a string");
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert!(c.database_url().starts_with("sqlite://./latchkey-data/latchkey.db"));
        assert_eq!((c.argon2.memory_kib, c.argon2.iterations, c.argon2.parallelism), (19_456, 2, 1));
    }

    #[test]
    fn audit_retention_defaults_to_400_days_and_is_set_by_file_or_environment() {
        assert_eq!(Config::default().audit.retention_days, 400);
        let mut t: toml::Table = "[audit]\nretention_days = 90\n".parse().unwrap();
        let c: Config = toml::Value::Table(t.clone()).try_into().unwrap();
        assert_eq!(c.audit.retention_days, 90);
        apply_env(&mut t, [("LATCHKEY_AUDIT__RETENTION_DAYS".to_owned(), "0".to_owned())].into_iter()).unwrap();
        let c: Config = toml::Value::Table(t).try_into().unwrap();
        assert_eq!(c.audit.retention_days, 0, "0 keeps events forever");
        let negative: toml::Table = "[audit]\nretention_days = -1\n".parse().unwrap();
        assert!(toml::Value::Table(negative).try_into::<Config>().is_err());
    }

    #[test]
    fn the_store_waits_for_a_connection_less_than_a_request_may_take() {
        let with = |secs| Config { request_timeout_secs: secs, ..Config::default() }.pool_settings();
        let default = with(15);
        assert_eq!(default.acquire_timeout, Duration::from_secs(5), "the default request timeout keeps sqlx's usual 5 s");
        assert_eq!(default.idle_transaction_timeout, Duration::from_secs(15));
        assert_eq!(default.max_connections, 16);
        assert_eq!(with(6).acquire_timeout, Duration::from_secs(2));
        assert_eq!(with(2).acquire_timeout, Duration::from_secs(1), "never under a second");
        assert_eq!(with(600).acquire_timeout, Duration::from_secs(5), "never over 5 s");
        let zero = Config { request_timeout_secs: 0, ..Config::default() };
        assert!(zero.validate().is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let t: toml::Table = "lisen = \"x\"".parse().unwrap();
        assert!(toml::Value::Table(t).try_into::<Config>().is_err());
    }
}
