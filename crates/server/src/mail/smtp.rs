//! Production delivery: an SMTP relay over STARTTLS or implicit TLS with optional authentication,
//! through lettre's pooled async transport.

use std::net::IpAddr;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Deserialize;

use super::{build_message, parse_from, MailError, Mailer, OutgoingEmail};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Deserialize)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<String>,
    /// `no-reply@example.com` or `Example Phones <no-reply@example.com>`.
    pub from: String,
    /// Per connection and per SMTP command; 10 seconds when absent.
    pub timeout_secs: Option<u64>,
}

// Hand-written so that logging the configuration (at start-up, in a panic) never shows the password.
impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which is required (no silent downgrade).
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
    /// No encryption at all: only sensible for a relay on loopback.
    None,
}

pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    host: String,
    port: u16,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// Checks the configuration without connecting: the transport connects lazily on the first
    /// email, so a relay that is down does not stop the server from starting.
    pub fn new(cfg: &SmtpConfig) -> Result<Self, MailError> {
        let host = cfg.host.trim();
        if host.is_empty() {
            return Err(MailError::Config("the SMTP host is empty".into()));
        }
        let from = parse_from(&cfg.from)?;
        let builder = match cfg.security {
            SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(|_| MailError::Config(format!("cannot use TLS with the host name {host:?}")))?,
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(|_| MailError::Config(format!("cannot use TLS with the host name {host:?}")))?,
            SmtpSecurity::None => {
                if !is_loopback(host) {
                    tracing::warn!(
                        host,
                        "SMTP security is \"none\" for a host that is not loopback: credentials and \
                         links would cross the network in clear text"
                    );
                }
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            }
        };
        let timeout = cfg.timeout_secs.map_or(DEFAULT_TIMEOUT, Duration::from_secs);
        let builder = builder.port(cfg.port).timeout(Some(timeout));
        let builder = match (&cfg.username, &cfg.password) {
            (Some(user), Some(password)) => builder.credentials(Credentials::new(user.clone(), password.clone())),
            (None, None) => builder,
            _ => return Err(MailError::Config("SMTP username and password must be given together".into())),
        };
        Ok(Self { transport: builder.build(), from, host: host.to_owned(), port: cfg.port })
    }

    /// Opens a connection and says EHLO: for a readiness check or a start-up probe.
    pub async fn check_connection(&self) -> Result<(), MailError> {
        match self.transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(MailError::Connection),
            Err(e) => Err(self.failure(&e)),
        }
    }

    /// Maps lettre's error to a category and reply code. The server's reply text is dropped on
    /// purpose: spam filters quote message content (links) in their rejections.
    fn failure(&self, e: &lettre::transport::smtp::Error) -> MailError {
        let code = e.status().map(|c| c.to_string()).unwrap_or_default();
        let error = if e.is_timeout() {
            MailError::Timeout
        } else if e.is_permanent() {
            MailError::Rejected { code }
        } else if e.is_transient() {
            MailError::Transient { code }
        } else if e.is_tls() {
            MailError::Tls
        } else if e.is_response() || e.is_client() {
            MailError::Protocol
        } else {
            MailError::Connection
        };
        tracing::warn!(host = %self.host, port = self.port, error = %error, "SMTP delivery failed");
        error
    }
}

#[async_trait::async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), MailError> {
        let message = build_message(&self.from, email)?;
        // Never log the body or the links here (unlike the outbox): they are live credentials.
        match self.transport.send(message).await {
            Ok(_) => {
                tracing::debug!(host = %self.host, subject = %email.subject, "email handed to the SMTP relay");
                Ok(())
            }
            Err(e) => Err(self.failure(&e)),
        }
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(security: SmtpSecurity) -> SmtpConfig {
        SmtpConfig {
            host: "smtp.example.com".into(),
            port: 587,
            security,
            username: Some("mailer".into()),
            password: Some("hunter2-secret".into()),
            from: "no-reply@example.com".into(),
            timeout_secs: None,
        }
    }

    #[test]
    fn debug_never_shows_the_password() {
        let shown = format!("{:?}", config(SmtpSecurity::Starttls));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>") && shown.contains("smtp.example.com"));
    }

    #[test]
    fn config_deserializes_with_lowercase_security_and_optional_fields() {
        let cfg: SmtpConfig =
            serde_json::from_str(r#"{"host":"mx","port":465,"security":"tls","from":"a@b.test"}"#).unwrap();
        assert_eq!(cfg.security, SmtpSecurity::Tls);
        assert!(cfg.username.is_none() && cfg.password.is_none() && cfg.timeout_secs.is_none());
        for (s, want) in [("starttls", SmtpSecurity::Starttls), ("none", SmtpSecurity::None)] {
            let v: SmtpSecurity = serde_json::from_str(&format!("\"{s}\"")).unwrap();
            assert_eq!(v, want);
        }
    }

    #[tokio::test]
    async fn builds_for_every_security_mode_and_checks_the_rest() {
        for security in [SmtpSecurity::Starttls, SmtpSecurity::Tls, SmtpSecurity::None] {
            SmtpMailer::new(&config(security)).unwrap();
        }
        let mut half = config(SmtpSecurity::Starttls);
        half.password = None;
        assert!(matches!(SmtpMailer::new(&half), Err(MailError::Config(_))));
        let mut bad_from = config(SmtpSecurity::Starttls);
        bad_from.from = "nobody".into();
        assert!(matches!(SmtpMailer::new(&bad_from), Err(MailError::InvalidAddress { field: "from" })));
    }

    #[tokio::test]
    async fn an_unreachable_relay_is_a_connection_error_without_content() {
        // Bind then drop to get a port on which nothing listens.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cfg = config(SmtpSecurity::None);
        cfg.host = "127.0.0.1".into();
        cfg.port = port;
        cfg.username = None;
        cfg.password = None;
        cfg.timeout_secs = Some(2);
        let mailer = SmtpMailer::new(&cfg).unwrap();
        let email = crate::mail::templates::welcome("a@b.test", "Org", "101@org.test", "https://x.test/setup#tok");
        let err = mailer.send(&email).await.unwrap_err();
        assert!(matches!(err, MailError::Connection), "{err:?}");
        assert!(err.is_transient());
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("https://") && !shown.contains("tok"), "{shown}");
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("localhost") && is_loopback("127.0.0.1") && is_loopback("[::1]"));
        assert!(!is_loopback("smtp.example.com") && !is_loopback("10.0.0.1"));
    }
}
