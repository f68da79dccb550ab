//! Two-factor authentication (C6): the methods (authenticator app, SMS code, email code), the
//! company's rule, and the pure pieces each method is built from. The store and server do the rest.
//!
//! Every check here returns a typed error the server turns into a response; what must happen
//! atomically (advancing the last used TOTP step, consuming a code) is left to one store statement,
//! and each function says which.

pub mod one_time_code;
pub mod qr;
pub mod recovery;
pub mod totp;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::account::InvalidName;

/// A second factor a user can enrol. Recovery codes are not one: they stand in for a method at the
/// second-factor step and come with the first one enrolled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// "TOTP Authenticator App": the seeds' recommended method.
    Totp,
    /// "SMS Authentication": a code texted to a verified mobile number.
    Sms,
    /// "Email Authentication": a code sent to the verified designated email.
    Email,
}

impl Method {
    /// In the order the seeds list them, which is also the order they are offered.
    pub const ALL: [Method; 3] = [Method::Totp, Method::Sms, Method::Email];

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Totp => "totp",
            Method::Sms => "sms",
            Method::Email => "email",
        }
    }

    /// The API spelling back; exact, since it comes from a client, not a person.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "totp" => Some(Method::Totp),
            "sms" => Some(Method::Sms),
            "email" => Some(Method::Email),
            _ => None,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The company's rule (set by the office manager once the operator has turned the pilot on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TwoFactorMode {
    /// Nobody is asked for a second factor, and the settings are not shown.
    #[default]
    Off,
    /// Users may enrol; those who did are asked at sign-in.
    Optional,
    /// Everyone is asked; a user without a method must enrol before the session starts.
    Required,
}

impl TwoFactorMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TwoFactorMode::Off => "off",
            TwoFactorMode::Optional => "optional",
            TwoFactorMode::Required => "required",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "off" => Some(TwoFactorMode::Off),
            "optional" => Some(TwoFactorMode::Optional),
            "required" => Some(TwoFactorMode::Required),
            _ => None,
        }
    }
}

impl fmt::Display for TwoFactorMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mobile number in E.164: `+`, then 8 to 15 digits, the first not 0 (no country code starts
/// with 0). Stored and sent to the SMS gateway in exactly this form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct E164(String);

impl E164 {
    pub const MIN_DIGITS: usize = 8;
    pub const MAX_DIGITS: usize = 15;

    /// Spaces, dashes, dots and parentheses that people type between digit groups
    /// ("+1 (555) 010-4477") are dropped; anything else that is not an ASCII digit after the leading
    /// `+` is refused: a national number without its country code cannot be texted reliably, and
    /// full-width or other scripts' digits are not what the gateway dials.
    pub fn parse(input: &str) -> Result<Self, InvalidName> {
        let hint = "Enter the mobile number with its country code, starting with +, e.g. +1 555 010 4477.";
        let refuse = || InvalidName(hint.to_owned());
        let digits_part = input.trim().strip_prefix('+').ok_or_else(refuse)?;
        let mut digits = String::with_capacity(Self::MAX_DIGITS);
        for c in digits_part.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(refuse()),
            }
        }
        if !(Self::MIN_DIGITS..=Self::MAX_DIGITS).contains(&digits.len()) || digits.starts_with('0') {
            return Err(refuse());
        }
        Ok(Self(format!("+{digits}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last few digits only, for pages, notifications and logs ("•••• 4477"): enough for the
    /// person to recognise their phone, not enough to give the number away.
    pub fn masked(&self) -> String {
        let tail: String = self.0.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
        format!("•••• {tail}")
    }

    /// [`Self::masked`] for a number as stored or typed; anything that is not a number shows as
    /// "••••", never as itself.
    pub fn mask(number: &str) -> String {
        Self::parse(number).map(|n| n.masked()).unwrap_or_else(|_| "••••".to_owned())
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The path of an independent tool a test checks against (`oathtool`, `zbarimg`). Where it is not
/// installed the test says so and is skipped, except under CI, which must have it.
#[cfg(test)]
pub(crate) fn test_tool(program: &str, debian_package: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(program)).find(|p| p.is_file()));
    if found.is_none() {
        let why = format!("`{program}` is not on PATH: install the Debian package `{debian_package}`");
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{why} (required under CI)");
        }
        eprintln!("skipped: {why}");
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn methods_and_modes_use_the_api_spellings() {
        for m in Method::ALL {
            assert_eq!(Method::parse(m.as_str()), Some(m));
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{m}\""));
        }
        assert_eq!(Method::parse("TOTP"), None);
        assert_eq!(Method::parse("recovery_code"), None);
        for m in [TwoFactorMode::Off, TwoFactorMode::Optional, TwoFactorMode::Required] {
            assert_eq!(TwoFactorMode::parse(m.as_str()), Some(m));
            assert_eq!(serde_json::from_str::<TwoFactorMode>(&format!("\"{m}\"")).unwrap(), m);
        }
        assert_eq!(TwoFactorMode::parse("on"), None);
        assert_eq!(TwoFactorMode::default(), TwoFactorMode::Off);
    }

    #[test]
    fn e164_numbers() {
        assert_eq!(E164::parse("+15550104477").unwrap().as_str(), "+15550104477");
        assert_eq!(E164::parse(" +1 (555) 010-4477 ").unwrap().as_str(), "+15550104477");
        assert_eq!(E164::parse("+44.20.7946.0958").unwrap().as_str(), "+442079460958");
        assert_eq!(E164::parse("+12345678").unwrap().as_str(), "+12345678");
        assert_eq!(E164::parse("+123456789012345").unwrap().as_str(), "+123456789012345");
        for bad in [
            "",
            "+",
            "15550104477",       // no country code marker
            "0015550104477",     // international prefix instead of +
            "+05550104477",      // no country code starts with 0
            "+1234567",          // 7 digits
            "+1234567890123456", // 16 digits
            "+1555010447x",
            "+1 555 010 4477 ext 2",
            "+１５５５０１０４４７７", // full-width digits
            "++15550104477",
            "+1555\u{0660}104477", // Arabic-Indic zero
            "+1\t5550104477",
        ] {
            assert!(E164::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(E164::parse("+15550104477").unwrap().masked(), "•••• 4477");
    }

    proptest! {
        #[test]
        fn e164_accepts_exactly_plus_and_8_to_15_digits(digits in "[0-9]{0,18}") {
            let ok = (8..=15).contains(&digits.len()) && !digits.starts_with('0');
            let parsed = E164::parse(&format!("+{digits}"));
            prop_assert_eq!(parsed.is_ok(), ok);
            if let Ok(n) = parsed {
                prop_assert_eq!(n.as_str(), format!("+{digits}"));
            }
        }

        #[test]
        fn e164_never_panics_and_keeps_only_ascii_digits(input in "\\PC{0,24}") {
            if let Ok(n) = E164::parse(&input) {
                prop_assert!(n.as_str().starts_with('+'));
                prop_assert!(n.as_str()[1..].bytes().all(|b| b.is_ascii_digit()));
            }
        }
    }
}
