//! The sign-in's second-factor step (C6): `SecondFactor ──(a right code)──▶ SignedIn`.
//!
//! ```text
//!   SecondFactor { methods, default }
//!     ├─ authenticator app code ──▶ authenticator_app ─┐
//!     ├─ texted code            ──▶ sent_code ─────────┤─ Ok(Spend) ──▶ the store spends it and
//!     ├─ emailed code           ──▶ sent_code ─────────┤   completes the flow in one transaction
//!     └─ recovery code          ──▶ recovery_code ─────┘   ──▶ SignedIn
//!                                          └─ Err(Refusal): Wrong counts against the lock;
//!                                             Malformed, Stale and Unavailable are only told
//! ```
//!
//! One handler per method: each takes what the store knows and what the person typed, and returns
//! what completing the step spends, or why not. The same handlers confirm the codes of
//! [`enrolment`](super::enrolment) and of the changes to an account's methods, so a code is judged
//! the same way wherever it is typed. Spending is the store's (one conditional statement inside the
//! completion's transaction): two requests racing with one code cannot both sign in.

use time::OffsetDateTime;

use super::UserFacing;
use crate::secret::TokenHash;
use crate::two_factor::one_time_code::{self, CodeError, CodePurpose};
use crate::two_factor::recovery;
use crate::two_factor::totp::{self, TotpError, TotpSecret};
use crate::two_factor::Method;

/// What the person answered at the second-factor step: the method they chose and what they typed.
#[derive(Clone, PartialEq, Eq)]
pub enum Answer {
    AuthenticatorApp(String),
    TextMessage(String),
    EmailCode(String),
    /// Stands in for any method; the way back when the phone is lost.
    RecoveryCode(String),
}

// What was typed is a secret: it never prints.
impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let method = self.method().map_or("recovery_code", Method::as_str);
        write!(f, "Answer({method}, <redacted>)")
    }
}

/// The API spelling of the recovery-code answer (`method: "recovery_code"`).
pub const RECOVERY_CODE: &str = "recovery_code";

impl Answer {
    /// The API's `method` and `code` fields as an answer; an unknown method is a malformed request.
    pub fn parse(method: &str, code: &str) -> Result<Self, Refusal> {
        let code = code.to_owned();
        match (method, Method::parse(method)) {
            (RECOVERY_CODE, _) => Ok(Answer::RecoveryCode(code)),
            (_, Some(Method::Totp)) => Ok(Answer::AuthenticatorApp(code)),
            (_, Some(Method::Sms)) => Ok(Answer::TextMessage(code)),
            (_, Some(Method::Email)) => Ok(Answer::EmailCode(code)),
            (_, None) => Err(Refusal::Malformed { field: "method", message: "The method is totp, sms, email or recovery_code.".into() }),
        }
    }

    /// The method answered with; `None` for a recovery code.
    pub fn method(&self) -> Option<Method> {
        match self {
            Answer::AuthenticatorApp(_) => Some(Method::Totp),
            Answer::TextMessage(_) => Some(Method::Sms),
            Answer::EmailCode(_) => Some(Method::Email),
            Answer::RecoveryCode(_) => None,
        }
    }

    /// The purpose of the sent code this answer is checked against, for texted and emailed codes.
    pub fn code_purpose(&self) -> Option<CodePurpose> {
        match self {
            Answer::TextMessage(_) => Some(CodePurpose::SignInSms),
            Answer::EmailCode(_) => Some(CodePurpose::SignInEmail),
            _ => None,
        }
    }

    /// What was typed.
    pub fn code(&self) -> &str {
        match self {
            Answer::AuthenticatorApp(c) | Answer::TextMessage(c) | Answer::EmailCode(c) | Answer::RecoveryCode(c) => c,
        }
    }
}

/// What a right answer spends when the step completes. Nothing is spent before the store does it,
/// in the same transaction as the change the answer confirms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spend {
    /// An authenticator app step: spent only if later than the last accepted one.
    TotpStep(i64),
    /// One of the user's unused recovery codes, by hash.
    RecoveryCode(TokenHash),
    /// The live, unused, unexpired sent code of `purpose` with that hash.
    Code { purpose: CodePurpose, hash: TokenHash },
}

impl Spend {
    /// The refusal for a right-looking answer the store found already spent (by a racing request,
    /// or a recovery code that never was one of the user's): a replayed app code or recovery code
    /// counts as a guess; a sent code is told to be used.
    pub fn refusal_when_spent(&self) -> Refusal {
        match self {
            Spend::RecoveryCode(_) => Refusal::Wrong("That recovery code is not right or was already used.".into()),
            Spend::TotpStep(_) => Refusal::Wrong("This code was already used. Wait for the next code.".into()),
            Spend::Code { .. } => Refusal::Stale(CodeError::Used),
        }
    }
}

/// Why an answer was refused. Only [`Refusal::Wrong`] counts against the account's wrong-code lock:
/// a typo or a code that ran out is not a guess.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A guess: counted against the lock, then told with this sentence.
    Wrong(String),
    /// A typo in `field` (or an unknown method): told, never counted.
    Malformed { field: &'static str, message: String },
    /// A sent code that is no longer good (expired, used, replaced): told, not counted.
    Stale(CodeError),
    /// The method is not one this account can use now.
    Unavailable(String),
}

impl Refusal {
    fn unavailable() -> Self {
        Refusal::Unavailable("This method is not enabled for your account.".into())
    }
}

/// Whether the flow accepts `answer`: a recovery code always (the user has some or the store finds
/// none), a method only if it is among `accepted` (the user's, as far as the company allows now).
pub fn accepts(accepted: &[Method], answer: &Answer) -> Result<(), Refusal> {
    match answer.method() {
        Some(m) if !accepted.contains(&m) => Err(Refusal::unavailable()),
        _ => Ok(()),
    }
}

/// The authenticator app's handler. `app` is the user's secret and the last step it accepted, or
/// `None` when the app is not set up. A right code spends its step.
pub fn authenticator_app(app: Option<(&TotpSecret, Option<i64>)>, code: &str, now: OffsetDateTime) -> Result<Spend, Refusal> {
    let Some((secret, last_step)) = app else {
        return Err(Refusal::Unavailable("The authenticator app is not set up for your account.".into()));
    };
    match totp::verify(secret, code, now, last_step) {
        Ok(step) => Ok(Spend::TotpStep(step)),
        Err(TotpError::Malformed) => Err(Refusal::Malformed { field: "code", message: TotpError::Malformed.message() }),
        Err(e) => Err(Refusal::Wrong(e.message())),
    }
}

/// A code Latchkey sent, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentCode {
    pub hash: TokenHash,
    pub expires_at: OffsetDateTime,
    pub used: bool,
}

/// The handler for a texted or emailed code of `purpose`. `sent` is the live code of that purpose,
/// or `None` when nothing was sent: still a guess to count, or a script could probe for free.
pub fn sent_code(purpose: CodePurpose, sent: Option<&SentCode>, code: &str, now: OffsetDateTime) -> Result<Spend, Refusal> {
    let Some(sent) = sent else {
        return Err(Refusal::Wrong("There is no code to check: send a code first.".into()));
    };
    match one_time_code::check(&sent.hash, sent.expires_at, sent.used, code, now) {
        Ok(()) => Ok(Spend::Code { purpose, hash: sent.hash.clone() }),
        Err(CodeError::Malformed) => Err(Refusal::Malformed { field: "code", message: CodeError::Malformed.message() }),
        Err(CodeError::Wrong) => Err(Refusal::Wrong(CodeError::Wrong.message())),
        Err(e) => Err(Refusal::Stale(e)),
    }
}

/// The recovery code's handler: the code's hash to spend. Whether it is one of the user's unused
/// codes only the store's spending can tell; anything not shaped like a code is a wrong guess (a
/// recovery code is long enough that typos are rare, and probing must cost).
pub fn recovery_code(code: &str) -> Result<Spend, Refusal> {
    match recovery::normalize(code) {
        Ok(code) => Ok(Spend::RecoveryCode(code.hash())),
        Err(_) => Err(Refusal::Wrong("That recovery code is not right.".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use time::Duration;

    const NOW: OffsetDateTime = datetime!(2026-11-23 10:00 UTC);

    #[test]
    fn answers_parse_from_the_apis_method_names() {
        assert_eq!(Answer::parse("totp", "1").unwrap(), Answer::AuthenticatorApp("1".into()));
        assert_eq!(Answer::parse("sms", "1").unwrap(), Answer::TextMessage("1".into()));
        assert_eq!(Answer::parse("email", "1").unwrap(), Answer::EmailCode("1".into()));
        assert_eq!(Answer::parse("recovery_code", "1").unwrap(), Answer::RecoveryCode("1".into()));
        for bad in ["", "TOTP", "passkey", "recovery"] {
            assert!(matches!(Answer::parse(bad, "1"), Err(Refusal::Malformed { field: "method", .. })), "{bad:?}");
        }
        assert_eq!(format!("{:?}", Answer::parse("sms", "123456").unwrap()), "Answer(sms, <redacted>)");
    }

    #[test]
    fn only_accepted_methods_pass_and_recovery_codes_always_do() {
        let accepted = [Method::Totp];
        assert_eq!(accepts(&accepted, &Answer::AuthenticatorApp(String::new())), Ok(()));
        assert_eq!(accepts(&accepted, &Answer::TextMessage(String::new())), Err(Refusal::unavailable()));
        assert_eq!(accepts(&[], &Answer::RecoveryCode(String::new())), Ok(()));
    }

    #[test]
    fn the_authenticator_app_spends_the_step_it_matched_and_counts_only_guesses() {
        let secret = TotpSecret::from_bytes(&[7u8; 20]).unwrap();
        let right = totp::code_at(secret.as_bytes(), totp::step_at(NOW), 6).unwrap();
        assert_eq!(authenticator_app(Some((&secret, None)), &right, NOW), Ok(Spend::TotpStep(totp::step_at(NOW))));
        // The same step again is a replay: a guess as far as the lock is concerned.
        assert!(matches!(authenticator_app(Some((&secret, Some(totp::step_at(NOW)))), &right, NOW), Err(Refusal::Wrong(_))));
        assert!(matches!(authenticator_app(Some((&secret, None)), "12345", NOW), Err(Refusal::Malformed { field: "code", .. })));
        assert!(matches!(authenticator_app(None, &right, NOW), Err(Refusal::Unavailable(_))));
    }

    #[test]
    fn a_sent_code_passes_while_live_and_says_why_not_otherwise() {
        let sent = SentCode { hash: TokenHash::of("123456"), expires_at: NOW + Duration::minutes(10), used: false };
        let purpose = CodePurpose::SignInSms;
        assert_eq!(sent_code(purpose, Some(&sent), "123 456", NOW), Ok(Spend::Code { purpose, hash: TokenHash::of("123456") }));
        assert!(matches!(sent_code(purpose, Some(&sent), "654321", NOW), Err(Refusal::Wrong(_))));
        assert!(matches!(sent_code(purpose, None, "123456", NOW), Err(Refusal::Wrong(_))), "no code sent still counts");
        assert!(matches!(sent_code(purpose, Some(&sent), "12", NOW), Err(Refusal::Malformed { .. })));
        assert_eq!(sent_code(purpose, Some(&sent), "123456", NOW + Duration::minutes(10)), Err(Refusal::Stale(CodeError::Expired)));
        let used = SentCode { used: true, ..sent };
        assert_eq!(sent_code(purpose, Some(&used), "123456", NOW), Err(Refusal::Stale(CodeError::Used)));
    }

    #[test]
    fn a_recovery_code_is_spent_by_its_hash_and_anything_else_is_a_guess() {
        let codes = recovery::RecoveryCodes::generate();
        let first = &codes.codes()[0];
        assert_eq!(recovery_code(&first.display().to_uppercase()), Ok(Spend::RecoveryCode(first.hash())));
        assert!(matches!(recovery_code("not a code"), Err(Refusal::Wrong(_))));
    }

    #[test]
    fn a_spent_answer_is_refused_as_the_seed_words_it() {
        assert!(matches!(Spend::TotpStep(1).refusal_when_spent(), Refusal::Wrong(m) if m.contains("already used")));
        assert!(matches!(Spend::RecoveryCode(TokenHash::of("x")).refusal_when_spent(), Refusal::Wrong(m) if m.contains("recovery code")));
        let code = Spend::Code { purpose: CodePurpose::SignInEmail, hash: TokenHash::of("x") };
        assert_eq!(code.refusal_when_spent(), Refusal::Stale(CodeError::Used));
    }
}
