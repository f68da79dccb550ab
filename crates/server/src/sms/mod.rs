//! SMS delivery for the SMS second factor (C6): the texts Latchkey sends (a sign-in code, a code
//! to verify a mobile number, a verification code) and the two ways out, a development outbox
//! directory and an HTTP gateway speaking the Twilio-style Messages REST API.
//!
//! Callers write the body with [`message_for_code`], put it in an [`OutgoingSms`] and hand it to
//! an [`SmsGateway`]; which gateway runs is a deployment choice (C10: outbox by default, the HTTP
//! gateway in production).
//!
//! Every body carries a live code, so nothing here logs a body, and [`SmsError`] never holds one
//! (nor the gateway's auth token): only categories, HTTP statuses and the gateway's numeric error
//! code.

mod http;
mod message;
mod outbox;

use latchkey_core::two_factor::E164;

pub use http::{HttpSmsGateway, SmsGatewayConfig};
pub use message::{message_for_code, SmsPurpose};
pub use outbox::OutboxSms;

/// The longest body a gateway takes: Twilio refuses more than 1,600 characters (error 21617).
pub const MAX_BODY_CHARS: usize = 1600;

/// One text message. `to` is the mobile number in E.164 (`+15550104477`), as stored.
#[derive(Clone, Debug)]
pub struct OutgoingSms {
    pub to: String,
    pub body: String,
}

/// Why a text was not delivered. The variants carry categories, HTTP statuses and the gateway's
/// numeric error code only, never the body (it holds a code), the gateway's message text (which may
/// quote the body) or the auth token, so that logging one can never leak a code or a credential.
#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    #[error("the recipient is not a mobile number in E.164 form")]
    InvalidNumber,
    #[error("the text message is empty")]
    EmptyBody,
    #[error("the text message is longer than {max} characters", max = MAX_BODY_CHARS)]
    BodyTooLong,
    #[error("invalid SMS gateway configuration: {0}")]
    Config(String),
    #[error("could not write the text message to the outbox: {0}")]
    Outbox(#[source] std::io::Error),
    #[error("could not connect to the SMS gateway")]
    Connection,
    #[error("the SMS gateway did not answer in time")]
    Timeout,
    #[error("the SMS gateway refused the text message for now (HTTP {status}); try again later")]
    Transient { status: u16 },
    #[error("the SMS gateway rejected the text message (HTTP {status}{})", gateway_code_suffix(*code))]
    Rejected {
        status: u16,
        /// The gateway's own error code where it sent one (Twilio: 21211 invalid `To`, 21610
        /// unsubscribed recipient, 20003 authentication failed).
        code: Option<u32>,
    },
}

fn gateway_code_suffix(code: Option<u32>) -> String {
    code.map(|c| format!(", gateway error {c}")).unwrap_or_default()
}

impl SmsError {
    /// Whether sending the same text again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, SmsError::Connection | SmsError::Timeout | SmsError::Transient { .. } | SmsError::Outbox(_))
    }
}

#[async_trait::async_trait]
pub trait SmsGateway: Send + Sync + 'static {
    /// `at` is the caller's clock reading (the outbox names its file by it).
    async fn send(&self, sms: &OutgoingSms, at: time::OffsetDateTime) -> Result<(), SmsError>;
}

/// The checks both gateways make before sending, so the outbox refuses what the HTTP gateway
/// would. Returns the number in canonical E.164.
pub(crate) fn check(sms: &OutgoingSms) -> Result<E164, SmsError> {
    let to = E164::parse(&sms.to).map_err(|_| SmsError::InvalidNumber)?;
    if sms.body.trim().is_empty() {
        return Err(SmsError::EmptyBody);
    }
    if sms.body.chars().count() > MAX_BODY_CHARS {
        return Err(SmsError::BodyTooLong);
    }
    Ok(to)
}

/// The number as logs may show it ("•••• 4477"): enough to tell phones apart, not to text one.
pub(crate) fn masked(to: &str) -> String {
    E164::mask(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sms(to: &str, body: &str) -> OutgoingSms {
        OutgoingSms { to: to.into(), body: body.into() }
    }

    #[test]
    fn numbers_and_bodies_are_checked() {
        assert_eq!(check(&sms("+1 555 010 4477", "hi")).unwrap().as_str(), "+15550104477");
        assert!(matches!(check(&sms("5550104477", "hi")), Err(SmsError::InvalidNumber)));
        assert!(matches!(check(&sms("+15550104477", " \n")), Err(SmsError::EmptyBody)));
        let long = "x".repeat(MAX_BODY_CHARS + 1);
        assert!(matches!(check(&sms("+15550104477", &long)), Err(SmsError::BodyTooLong)));
        assert!(check(&sms("+15550104477", &long[1..])).is_ok());
    }

    #[test]
    fn masking_keeps_the_last_four_digits_only() {
        assert_eq!(masked("+15550104477"), "•••• 4477");
        assert_eq!(masked("not a number 123456"), "••••");
    }

    #[test]
    fn errors_say_status_and_code_and_which_are_transient() {
        let rejected = SmsError::Rejected { status: 400, code: Some(21211) };
        assert_eq!(rejected.to_string(), "the SMS gateway rejected the text message (HTTP 400, gateway error 21211)");
        assert_eq!(
            SmsError::Rejected { status: 401, code: None }.to_string(),
            "the SMS gateway rejected the text message (HTTP 401)"
        );
        assert!(!rejected.is_transient());
        assert!(SmsError::Transient { status: 503 }.is_transient());
        assert!(SmsError::Timeout.is_transient() && SmsError::Connection.is_transient());
        assert!(!SmsError::InvalidNumber.is_transient() && !SmsError::Config("x".into()).is_transient());
    }
}
