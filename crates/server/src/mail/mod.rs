//! Email delivery: the rendered emails (welcome, password reset, forgot login name, security
//! notifications) and the two ways out, a development outbox directory and an SMTP relay.
//!
//! Callers render an [`OutgoingEmail`] with [`templates`] and hand it to a [`Mailer`]; which
//! mailer runs is a deployment choice (C10: outbox by default, SMTP in production).

mod outbox;
mod smtp;
pub mod templates;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::Message;
use time::OffsetDateTime;

pub use outbox::OutboxMailer;
pub use smtp::{SmtpConfig, SmtpMailer, SmtpSecurity};

/// The sender name used when the configured `from` address has none.
pub const PRODUCT_NAME: &str = "Latchkey";

/// One rendered email: the two parts say the same thing, the plain-text one with URLs written out.
#[derive(Clone, Debug)]
pub struct OutgoingEmail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Why an email was not delivered. The variants carry categories and SMTP reply codes only, never
/// server replies or message content, so that logging one can never leak a link, token or password.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("the {field} address is not a valid email address")]
    InvalidAddress { field: &'static str },
    #[error("the email has an empty text or HTML part")]
    EmptyBody,
    #[error("the email could not be assembled")]
    Build,
    #[error("invalid SMTP configuration: {0}")]
    Config(String),
    #[error("could not write the email to the outbox: {0}")]
    Outbox(#[source] std::io::Error),
    #[error("could not connect to the SMTP server")]
    Connection,
    #[error("the SMTP server did not answer in time")]
    Timeout,
    #[error("the TLS handshake with the SMTP server failed")]
    Tls,
    #[error("the SMTP server refused the email for now (reply {code}); try again later")]
    Transient { code: String },
    #[error("the SMTP server rejected the email (reply {code})")]
    Rejected { code: String },
    #[error("the SMTP conversation failed")]
    Protocol,
}

impl MailError {
    /// Whether sending the same email again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, MailError::Connection | MailError::Timeout | MailError::Transient { .. } | MailError::Outbox(_))
    }
}

#[async_trait::async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// `at` is the caller's clock reading: the `Date` header and the outbox file name use it, so
    /// a test's clock is the email's clock.
    async fn send(&self, email: &OutgoingEmail, at: OffsetDateTime) -> Result<(), MailError>;
}

/// RFC 3834: tells auto-responders (out-of-office replies) not to answer a transactional email.
/// A constant so that the name's validity is checked at compile time.
const AUTO_SUBMITTED: HeaderName = HeaderName::new_from_ascii_str("Auto-Submitted");

/// Parses the operator's `from` setting; a bare address gets the product name as sender name so
/// the inbox shows "Latchkey" rather than "no-reply".
pub(crate) fn parse_from(from: &str) -> Result<Mailbox, MailError> {
    let mut mailbox: Mailbox = from.trim().parse().map_err(|_| MailError::InvalidAddress { field: "from" })?;
    let has_name = matches!(mailbox.name.as_deref(), Some(n) if !n.trim().is_empty());
    if !has_name {
        mailbox.name = Some(PRODUCT_NAME.to_owned());
    }
    Ok(mailbox)
}

/// Builds the RFC 5322 message both mailers send, so the outbox shows exactly what SMTP would.
pub(crate) fn build_message(from: &Mailbox, email: &OutgoingEmail, at: OffsetDateTime) -> Result<Message, MailError> {
    // A template that failed to render yields an empty part; refusing it beats sending a blank
    // email whose recipient then cannot activate or reset.
    if email.text.trim().is_empty() || email.html.trim().is_empty() {
        return Err(MailError::EmptyBody);
    }
    let to: Mailbox = email.to.trim().parse().map_err(|_| MailError::InvalidAddress { field: "recipient" })?;
    // Our own Message-ID on the sender's domain: lettre's default uses the machine's hostname,
    // which leaks container names and hurts deliverability.
    let message_id = format!("<{}@{}>", random_hex(16), from.email.domain());
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(single_line(&email.subject))
        .date(at.into())
        .message_id(Some(message_id))
        .raw_header(HeaderValue::new(AUTO_SUBMITTED, "auto-generated".to_owned()))
        // Our boundary rather than lettre's, so that every draw comes from the one random source.
        .multipart(
            MultiPart::alternative()
                .boundary(random_hex(20))
                .singlepart(SinglePart::plain(email.text.clone()))
                .singlepart(SinglePart::html(email.html.clone())),
        )
        .map_err(|_| MailError::Build)
}

/// Company names end up in subjects; a stray line break there must not become a header break.
fn single_line(s: &str) -> String {
    s.split(|c: char| c.is_control()).filter(|part| !part.is_empty()).collect::<Vec<_>>().join(" ")
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    latchkey_core::random::fill(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: OffsetDateTime = time::macros::datetime!(1994-11-15 08:12:31 UTC);

    fn email() -> OutgoingEmail {
        OutgoingEmail {
            to: "ann@example.com".into(),
            subject: "Hello\r\nBcc: evil@example.com".into(),
            text: "text".into(),
            html: "<p>html</p>".into(),
        }
    }

    #[test]
    fn bare_from_address_gets_the_product_name() {
        assert_eq!(parse_from("no-reply@example.com").unwrap().to_string(), "Latchkey <no-reply@example.com>");
        assert_eq!(parse_from("Acme <no-reply@example.com>").unwrap().to_string(), "Acme <no-reply@example.com>");
        assert!(matches!(parse_from("not an address"), Err(MailError::InvalidAddress { field: "from" })));
    }

    #[test]
    fn subject_line_breaks_cannot_inject_headers() {
        let from = parse_from("no-reply@example.com").unwrap();
        let raw = String::from_utf8(build_message(&from, &email(), AT).unwrap().formatted()).unwrap();
        assert!(!raw.contains("\r\nBcc:"), "{raw}");
        assert!(raw.contains("Auto-Submitted: auto-generated"));
        assert!(raw.contains("@example.com>"), "Message-ID on the sender's domain: {raw}");
    }

    #[test]
    fn empty_parts_and_bad_recipients_are_refused() {
        let from = parse_from("no-reply@example.com").unwrap();
        let mut e = email();
        e.text = "  ".into();
        assert!(matches!(build_message(&from, &e, AT), Err(MailError::EmptyBody)));
        let mut e = email();
        e.to = "nobody".into();
        assert!(matches!(build_message(&from, &e, AT), Err(MailError::InvalidAddress { field: "recipient" })));
    }

    #[test]
    fn the_caller_s_time_and_the_one_random_source_make_the_message() {
        let from = parse_from("no-reply@example.com").unwrap();
        let seeded = || {
            let _seeded = latchkey_core::random::seed_this_thread(7);
            String::from_utf8(build_message(&from, &email(), AT).unwrap().formatted()).unwrap()
        };
        let first = seeded();
        assert!(first.contains("Date: Tue, 15 Nov 1994 08:12:31 +0000\r\n"), "{first}");
        assert_eq!(first, seeded(), "the same seed, the same message id and boundary");
        let unseeded = String::from_utf8(build_message(&from, &email(), AT).unwrap().formatted()).unwrap();
        assert_ne!(first, unseeded, "unseeded draws come from the OS");
    }
}
