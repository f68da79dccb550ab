//! Production delivery: an SMTP relay over STARTTLS or implicit TLS with optional authentication,
//! through lettre's pooled async transport.
//!
//! Cancellation: lettre 0.11 hands a pooled connection back as healthy even when the send using
//! it was dropped halfway (after MAIL, or after DATA), and the next message on it then reads the
//! last one's replies (refused, or stalled until its request timed out). So no request's future
//! owns an SMTP transaction: each send runs in a task of its own that a cut-off request does not
//! stop (the email, often a security notice, still goes out), under a time limit for the whole
//! send; a send that runs out of time throws the transport and its pool away, so no connection
//! cut mid-transaction is used again.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
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
    /// For opening a connection, and for a whole send; 10 seconds when absent.
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
    relay: Arc<Relay>,
    from: Mailbox,
}

/// The relay's transport (with its pool of connections), and how to make a fresh one.
struct Relay {
    transport: RwLock<Arc<AsyncSmtpTransport<Tokio1Executor>>>,
    builder: lettre::transport::smtp::AsyncSmtpTransportBuilder,
    /// The longest one send may take; lettre's own timeout bounds only the connection's opening.
    send_limit: Duration,
    host: String,
    port: u16,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("host", &self.relay.host)
            .field("port", &self.relay.port)
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
        let relay = Relay { transport: RwLock::new(Arc::new(builder.clone().build())), builder, send_limit: timeout, host: host.to_owned(), port: cfg.port };
        Ok(Self { relay: Arc::new(relay), from })
    }

    /// Opens a connection and says EHLO: for a readiness check or a start-up probe.
    pub async fn check_connection(&self) -> Result<(), MailError> {
        match self.relay.current().test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(MailError::Connection),
            Err(e) => Err(self.relay.failure(&e)),
        }
    }
}

impl Relay {
    fn current(&self) -> Arc<AsyncSmtpTransport<Tokio1Executor>> {
        self.transport.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// One whole send within [`Relay::send_limit`]. Run in a task of its own (see the module's
    /// comment): dropped only by its own time limit, after which `used` is replaced.
    async fn send(&self, message: lettre::Message) -> Result<(), MailError> {
        let used = self.current();
        match tokio::time::timeout(self.send_limit, used.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.failure(&e)),
            Err(_) => {
                self.replace(&used);
                tracing::warn!(host = %self.host, port = self.port, "SMTP delivery failed: the relay did not finish the send in time; its connections are closed");
                Err(MailError::Timeout)
            }
        }
    }

    /// A fresh transport instead of `used` (unless another send replaced it already): the
    /// connection cut by the time limit is never handed out again.
    fn replace(&self, used: &Arc<AsyncSmtpTransport<Tokio1Executor>>) {
        let mut current = self.transport.write().unwrap_or_else(|p| p.into_inner());
        if Arc::ptr_eq(&current, used) {
            *current = Arc::new(self.builder.clone().build());
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
    async fn send(&self, email: &OutgoingEmail, at: time::OffsetDateTime) -> Result<(), MailError> {
        let message = build_message(&self.from, email, at)?;
        let relay = self.relay.clone();
        // Never log the body or the links here (unlike the outbox): they are live credentials.
        let sent = tokio::spawn(async move { relay.send(message).await }).await.unwrap_or(Err(MailError::Connection));
        if sent.is_ok() {
            tracing::debug!(host = %self.relay.host, subject = %email.subject, "email handed to the SMTP relay");
        }
        sent
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
        let err = mailer.send(&email, time::OffsetDateTime::now_utc()).await.unwrap_err();
        assert!(matches!(err, MailError::Connection), "{err:?}");
        assert!(err.is_transient());
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("https://") && !shown.contains("tok"), "{shown}");
    }

    /// A relay on loopback that speaks just enough SMTP, and can be slow to accept a sender or
    /// stall its first connection at the message's DATA (never answering it).
    struct FakeRelay {
        port: u16,
        delivered: Arc<std::sync::Mutex<Vec<String>>>,
    }

    impl FakeRelay {
        async fn start(mail_delay: Duration, stall_first_connection: bool) -> FakeRelay {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let delivered = Arc::new(std::sync::Mutex::new(Vec::new()));
            let kept = delivered.clone();
            tokio::spawn(async move {
                for n in 0.. {
                    let Ok((stream, _)) = listener.accept().await else { return };
                    let stall = stall_first_connection && n == 0;
                    tokio::spawn(Self::serve(stream, mail_delay, stall, kept.clone()));
                }
            });
            FakeRelay { port, delivered }
        }

        async fn serve(stream: tokio::net::TcpStream, mail_delay: Duration, stall: bool, delivered: Arc<std::sync::Mutex<Vec<String>>>) {
            use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
            let (read, mut write) = stream.into_split();
            let mut lines = tokio::io::BufReader::new(read).lines();
            let _ = write.write_all(b"220 fake ESMTP\r\n").await;
            while let Ok(Some(line)) = lines.next_line().await {
                let verb = line.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
                let reply: &[u8] = match verb.as_str() {
                    "EHLO" | "HELO" => b"250 fake\r\n",
                    "MAIL" => {
                        tokio::time::sleep(mail_delay).await;
                        b"250 OK\r\n"
                    }
                    "DATA" if stall => return std::future::pending().await,
                    "DATA" => {
                        let _ = write.write_all(b"354 go ahead\r\n").await;
                        let mut message = String::new();
                        while let Ok(Some(data)) = lines.next_line().await {
                            if data == "." {
                                break;
                            }
                            message.push_str(&data);
                            message.push('\n');
                        }
                        delivered.lock().unwrap().push(message);
                        b"250 queued\r\n"
                    }
                    "QUIT" => {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        return;
                    }
                    _ => b"250 OK\r\n",
                };
                if write.write_all(reply).await.is_err() {
                    return;
                }
            }
        }

        fn mailer(&self, timeout_secs: u64) -> SmtpMailer {
            let mut cfg = config(SmtpSecurity::None);
            (cfg.host, cfg.port, cfg.username, cfg.password, cfg.timeout_secs) = ("127.0.0.1".into(), self.port, None, None, Some(timeout_secs));
            SmtpMailer::new(&cfg).unwrap()
        }

        /// Waits up to 5 s for `n` delivered messages.
        async fn wait_for(&self, n: usize) -> Vec<String> {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                let delivered = self.delivered.lock().unwrap().clone();
                if delivered.len() >= n || std::time::Instant::now() > deadline {
                    return delivered;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    fn email(to: &str) -> OutgoingEmail {
        crate::mail::templates::welcome(to, "Org", "101@org.test", "https://x.test/setup#tok")
    }

    /// A request cut off while its email is being sent (its client hung up) does not cut the
    /// SMTP transaction: the email still goes out, and the next one goes out on the same pool.
    /// Cut mid-transaction, the connection went back to lettre's pool as healthy, and the next
    /// email read the cut one's replies.
    #[tokio::test]
    async fn a_send_whose_request_is_cut_off_still_goes_out_and_the_next_one_too() {
        let relay = FakeRelay::start(Duration::from_millis(300), false).await;
        let mailer = Arc::new(relay.mailer(10));
        let cut = {
            let mailer = mailer.clone();
            tokio::spawn(async move { mailer.send(&email("first@b.test"), time::OffsetDateTime::now_utc()).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        cut.abort();
        assert_eq!(relay.wait_for(1).await.len(), 1, "the email of the cut-off request was delivered");
        mailer.send(&email("second@b.test"), time::OffsetDateTime::now_utc()).await.expect("the next email goes out");
        let delivered = relay.wait_for(2).await;
        assert!(delivered[1].contains("second@b.test"), "{delivered:?}");
    }

    /// A relay that stops answering in the middle of a send costs that send (a timeout), not
    /// the next one: the stalled connection is never used again.
    #[tokio::test]
    async fn a_relay_that_stalls_mid_send_times_out_that_send_only() {
        let relay = FakeRelay::start(Duration::ZERO, true).await;
        let mailer = relay.mailer(1);
        let stalled = tokio::time::timeout(Duration::from_secs(10), mailer.send(&email("first@b.test"), time::OffsetDateTime::now_utc())).await;
        assert!(matches!(stalled, Ok(Err(MailError::Timeout))), "{stalled:?}");
        let next = tokio::time::timeout(Duration::from_secs(10), mailer.send(&email("second@b.test"), time::OffsetDateTime::now_utc())).await;
        assert!(matches!(next, Ok(Ok(()))), "{next:?}");
        assert!(relay.wait_for(1).await[0].contains("second@b.test"));
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("localhost") && is_loopback("127.0.0.1") && is_loopback("[::1]"));
        assert!(!is_loopback("smtp.example.com") && !is_loopback("10.0.0.1"));
    }
}
