//! The codes sent by SMS and by email (C6): 6 digits, 10 minutes, single use. Also the code that
//! verifies the designated email and the one that confirms disabling 2FA: same rules, same check.
//!
//! A six-digit code's hash can be reversed by trying all million values, so hashing only keeps
//! codes out of plain sight in the store; what protects them is the short lifetime, single use, a
//! new code replacing the old, and the per-account throttle on wrong codes.

use time::{Duration, OffsetDateTime};

use crate::flows::UserFacing;
use crate::secret::{constant_time_eq, TokenHash};
use crate::two_factor::E164;

/// The seeds' "verification code": six digits, easy to read off a text message and type.
pub const DIGITS: usize = 6;
/// C6: SMS and email codes expire within 10 minutes.
pub const LIFETIME: Duration = Duration::minutes(10);

/// A code to send. Only its [`TokenHash`] is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct OneTimeCode(String);

impl OneTimeCode {
    /// Six digits from the operating system's generator, every value equally likely: `gen_range`
    /// samples by rejection, so there is no modulo bias towards low codes.
    pub fn generate() -> Self {
        let n: u32 = crate::random::below(1_000_000);
        Self(format!("{n:06}"))
    }

    /// The code for the SMS or email body, and nowhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }

    /// When a code issued at `now` stops working.
    pub fn expires_at(now: OffsetDateTime) -> OffsetDateTime {
        now + LIFETIME
    }
}

// Codes never print themselves, so a stray `{:?}` cannot leak one into a log.
impl std::fmt::Debug for OneTimeCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OneTimeCode(<redacted>)")
    }
}

/// What a code is for. Each purpose keeps one live code per user; they never stand in for each
/// other (a sign-in code cannot confirm removing a method).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CodePurpose {
    SignInSms,
    SignInEmail,
    EnrollSms,
    EnrollEmail,
    VerifyEmail,
    /// Confirms a change to 2FA (removing a method, new recovery codes).
    Verification,
}

impl CodePurpose {
    pub const ALL: [CodePurpose; 6] = [
        CodePurpose::SignInSms,
        CodePurpose::SignInEmail,
        CodePurpose::EnrollSms,
        CodePurpose::EnrollEmail,
        CodePurpose::VerifyEmail,
        CodePurpose::Verification,
    ];

    /// The spelling the store keeps.
    pub fn as_str(self) -> &'static str {
        match self {
            CodePurpose::SignInSms => "sign_in_sms",
            CodePurpose::SignInEmail => "sign_in_email",
            CodePurpose::EnrollSms => "enroll_sms",
            CodePurpose::EnrollEmail => "enroll_email",
            CodePurpose::VerifyEmail => "verify_email",
            CodePurpose::Verification => "verification",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// Where a code goes. Stored with the code as `sms:+15550104477` or `email:a@b.test`, so that a
/// check can tell which channel proved possession.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Channel {
    Sms(E164),
    Email(String),
}

impl Channel {
    /// The spelling the store keeps.
    pub fn target(&self) -> String {
        match self {
            Channel::Sms(n) => format!("sms:{}", n.as_str()),
            Channel::Email(e) => format!("email:{e}"),
        }
    }

    pub fn from_target(target: &str) -> Option<Channel> {
        match target.split_once(':')? {
            ("sms", n) => E164::parse(n).ok().map(Channel::Sms),
            ("email", e) => Some(Channel::Email(e.to_owned())),
            _ => None,
        }
    }

    /// What the audit log and the answers show: never a whole number.
    pub fn shown(&self) -> String {
        match self {
            Channel::Sms(n) => n.masked(),
            Channel::Email(e) => e.clone(),
        }
    }
}

/// Why a presented SMS or email code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("code expired")]
    Expired,
    /// Used already, or replaced by a newer code (the store reports both as used).
    #[error("code already used")]
    Used,
    #[error("wrong code")]
    Wrong,
    /// Not six digits: a typo, not a guess, so it need not count against the throttle.
    #[error("not a 6-digit code")]
    Malformed,
}

impl UserFacing for CodeError {
    fn code(&self) -> &'static str {
        match self {
            CodeError::Expired => "code_expired",
            CodeError::Used => "code_used",
            CodeError::Wrong => "invalid_code",
            CodeError::Malformed => "malformed_code",
        }
    }
    fn message(&self) -> String {
        match self {
            CodeError::Expired => "This code has expired: codes work for 10 minutes. Send a new code and enter it.".into(),
            CodeError::Used => "This code was already used or a newer one was sent. Enter the latest code, or send a new one.".into(),
            CodeError::Wrong => "That code is not right. Check the latest message and try again.".into(),
            CodeError::Malformed => "Enter the 6-digit verification code.".into(),
        }
    }
}

/// The six digits of a typed code, spaces dropped ("123 456"); anything else is a typo.
pub fn normalize(presented: &str) -> Result<String, CodeError> {
    let digits: String = presented.chars().filter(|c| *c != ' ').collect();
    if digits.len() == DIGITS && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(digits)
    } else {
        Err(CodeError::Malformed)
    }
}

/// Checks `presented` against a stored code. Spaces are ignored ("123 456").
///
/// Malformed input is told first (it says nothing about the stored code); then used, then expired,
/// as either means "send a new one" whatever was typed; only a live code is compared, in constant
/// time. `Ok` does not consume the code: the caller marks it used with one atomic statement
/// (`UPDATE … SET used_at = $now WHERE id = $id AND used_at IS NULL`) and treats "no row changed"
/// as [`CodeError::Used`], so two nodes racing cannot both accept it.
pub fn check(
    stored_hash: &TokenHash,
    expires_at: OffsetDateTime,
    used: bool,
    presented: &str,
    now: OffsetDateTime,
) -> Result<(), CodeError> {
    let presented = normalize(presented)?;
    if used {
        return Err(CodeError::Used);
    }
    if now >= expires_at {
        return Err(CodeError::Expired);
    }
    if constant_time_eq(TokenHash::of(&presented).as_str().as_bytes(), stored_hash.as_str().as_bytes()) {
        Ok(())
    } else {
        Err(CodeError::Wrong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-23 10:00 UTC);

    #[test]
    fn a_live_code_passes_once_the_rest_says_why_not() {
        let code = OneTimeCode::generate();
        let hash = code.hash();
        let expires = OneTimeCode::expires_at(NOW);
        assert_eq!(expires - NOW, Duration::minutes(10));
        assert_eq!(check(&hash, expires, false, code.expose(), NOW), Ok(()));
        let spaced = format!("{} {}", &code.expose()[..3], &code.expose()[3..]);
        assert_eq!(check(&hash, expires, false, &spaced, NOW), Ok(()));
        assert_eq!(check(&hash, expires, true, code.expose(), NOW), Err(CodeError::Used));
        assert_eq!(check(&hash, expires, false, code.expose(), expires - Duration::seconds(1)), Ok(()));
        assert_eq!(check(&hash, expires, false, code.expose(), expires), Err(CodeError::Expired));
        let wrong = if code.expose() == "000000" { "000001" } else { "000000" };
        assert_eq!(check(&hash, expires, false, wrong, NOW), Err(CodeError::Wrong));
        for bad in ["", "12345", "1234567", "12345a", "１２３４５６", "123-456"] {
            assert_eq!(check(&hash, expires, false, bad, NOW), Err(CodeError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn codes_are_six_digits_and_vary() {
        let codes: Vec<OneTimeCode> = (0..200).map(|_| OneTimeCode::generate()).collect();
        for c in &codes {
            assert_eq!(c.expose().len(), 6);
            assert!(c.expose().bytes().all(|b| b.is_ascii_digit()));
            assert_eq!(format!("{c:?}"), "OneTimeCode(<redacted>)");
        }
        let distinct: std::collections::HashSet<&str> = codes.iter().map(|c| c.expose()).collect();
        assert!(distinct.len() > 190, "200 draws from a million should barely collide");
        // Leading zeros are kept: a tenth of codes start with 0 (none in 200 has odds below 1e-9).
        assert!(codes.iter().any(|c| c.expose().starts_with('0')));
    }

    #[test]
    fn purposes_and_channels_read_back_as_stored() {
        for p in CodePurpose::ALL {
            assert_eq!(CodePurpose::parse(p.as_str()), Some(p));
        }
        assert_eq!(CodePurpose::parse("sign_in"), None);
        let sms = Channel::Sms(E164::parse("+15550104477").unwrap());
        assert_eq!(sms.target(), "sms:+15550104477");
        assert_eq!(Channel::from_target(&sms.target()), Some(sms.clone()));
        assert_eq!(sms.shown(), "•••• 4477");
        assert_eq!(Channel::from_target("email:a@b.test"), Some(Channel::Email("a@b.test".into())));
        assert_eq!(Channel::from_target("fax:123"), None);
        assert_eq!(Channel::from_target("sms:12"), None);
    }

    #[test]
    fn every_error_speaks_to_a_person() {
        for e in [CodeError::Expired, CodeError::Used, CodeError::Wrong, CodeError::Malformed] {
            assert!(!e.code().is_empty());
            assert!(e.message().ends_with('.'));
        }
        assert_eq!(CodeError::Wrong.code(), "invalid_code", "the API's 401 code for a wrong code");
    }

    proptest! {
        /// Only the exact code passes, whatever else is typed.
        #[test]
        fn only_the_code_itself_passes(n in 0u32..1_000_000, typed in "\\PC{0,8}") {
            let code = format!("{n:06}");
            let hash = TokenHash::of(&code);
            let expires = OneTimeCode::expires_at(NOW);
            let result = check(&hash, expires, false, &typed, NOW);
            prop_assert_eq!(result.is_ok(), typed.replace(' ', "") == code);
        }
    }
}
