//! Companies and accounts (C1): the names a person types, parsed once into types that can only
//! hold valid values. Login names are `extension@company-domain` and compare case-insensitively.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a typed name was refused, as a sentence for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidName(pub String);

fn invalid(msg: &str) -> InvalidName {
    InvalidName(msg.to_owned())
}

/// A company's domain name, used in login names (`organization.com`). Stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct CompanyDomain(String);

impl CompanyDomain {
    pub fn parse(input: &str) -> Result<Self, InvalidName> {
        let d = input.trim().to_ascii_lowercase();
        if d.is_empty() {
            return Err(invalid("Enter the company's domain name, e.g. organization.com."));
        }
        if d.len() > 253 || !d.is_ascii() {
            return Err(invalid(
                "A domain name has at most 253 plain letters, digits, hyphens and dots (write international names in their xn-- form).",
            ));
        }
        let labels: Vec<&str> = d.split('.').collect();
        if labels.len() < 2 {
            return Err(invalid("A domain name has at least one dot, e.g. organization.com."));
        }
        for label in labels {
            let ok_chars = label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if label.is_empty() || label.len() > 63 || !ok_chars || label.starts_with('-') || label.ends_with('-') {
                return Err(invalid(
                    "A domain name is made of letters, digits and hyphens separated by dots, e.g. organization.com.",
                ));
            }
        }
        Ok(Self(d))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CompanyDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A phone extension: 1 to 10 digits (ASCII only: a full-width digit is not an extension).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Extension(String);

impl Extension {
    pub const MAX_DIGITS: usize = 10;

    pub fn parse(input: &str) -> Result<Self, InvalidName> {
        let e = input.trim();
        if e.is_empty() || e.len() > Self::MAX_DIGITS || !e.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("An extension is 1 to 10 digits, e.g. 101."));
        }
        Ok(Self(e.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Extension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `extension@company-domain`, e.g. `101@organization.com`; unique and case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct LoginName(String);

impl LoginName {
    pub fn new(extension: &Extension, domain: &CompanyDomain) -> Self {
        Self(format!("{}@{}", extension, domain))
    }

    pub fn parse(input: &str) -> Result<Self, InvalidName> {
        let format_hint = "Enter your login name as extension@company-domain, e.g. 101@organization.com.";
        let (ext, domain) = input.trim().split_once('@').ok_or_else(|| invalid(format_hint))?;
        let ext = Extension::parse(ext).map_err(|_| invalid(format_hint))?;
        let domain = CompanyDomain::parse(domain).map_err(|_| invalid(format_hint))?;
        Ok(Self::new(&ext, &domain))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn extension(&self) -> &str {
        self.0.split_once('@').map(|(e, _)| e).unwrap_or_default()
    }

    pub fn domain(&self) -> &str {
        self.0.split_once('@').map(|(_, d)| d).unwrap_or_default()
    }
}

impl fmt::Display for LoginName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An email address as entered (trimmed), with the lower-case key used to find accounts by it.
/// Deliberately permissive on the local part (real companies have odd ones) but strict on what
/// could break a mail header or fool a reader: no whitespace, no control characters, no invisible
/// direction or zero-width marks, one `@`, a dotted domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(input: &str) -> Result<Self, InvalidName> {
        let hint = "Enter an email address like name@example.com.";
        let e = input.trim();
        if e.is_empty() || e.chars().count() > Self::MAX_LEN {
            return Err(invalid(hint));
        }
        if e.chars().any(|c| c.is_whitespace() || c.is_control() || is_invisible_mark(c) || matches!(c, '<' | '>' | ',' | ';' | '"' | '\\')) {
            return Err(invalid(hint));
        }
        let (local, domain) = e.rsplit_once('@').ok_or_else(|| invalid(hint))?;
        if local.is_empty() || local.len() > 64 || local.contains('@') {
            return Err(invalid(hint));
        }
        CompanyDomain::parse(domain).map_err(|_| invalid(hint))?;
        Ok(Self(e.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form addresses are compared in: one address, whatever its case.
    pub fn key(&self) -> String {
        Self::key_of(&self.0)
    }

    /// [`Self::key`] of an address as stored (it was parsed when it was written).
    pub fn key_of(address: &str) -> String {
        address.to_lowercase()
    }

    /// "n***@example.com": the owner recognises the address; someone reading another mailbox (the
    /// old one, after a change) does not learn it.
    pub fn masked(&self) -> String {
        let (local, domain) = self.0.rsplit_once('@').unwrap_or_default();
        let first: String = local.chars().take(1).collect();
        format!("{first}***@{domain}")
    }
}

/// Zero-width and text-direction marks: an address shown with one reads differently from where
/// mail goes (`\u{202e}` turns the rest around).
fn is_invisible_mark(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Supervisor,
    OfficeManager,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Supervisor => "supervisor",
            Role::OfficeManager => "office_manager",
        }
    }
}

impl FromStr for Role {
    type Err = InvalidName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "user" => Ok(Role::User),
            "supervisor" => Ok(Role::Supervisor),
            "office_manager" => Ok(Role::OfficeManager),
            _ => Err(invalid("A role is user, supervisor or office-manager.")),
        }
    }
}

/// Invited: the welcome email is out, the account is not activated. Active: it can sign in.
/// Disabled: an office manager turned it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserState {
    Invited,
    Active,
    Disabled,
}

impl UserState {
    pub fn as_str(self) -> &'static str {
        match self {
            UserState::Invited => "invited",
            UserState::Active => "active",
            UserState::Disabled => "disabled",
        }
    }
}

impl FromStr for UserState {
    type Err = InvalidName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "invited" => Ok(UserState::Invited),
            "active" => Ok(UserState::Active),
            "disabled" => Ok(UserState::Disabled),
            _ => Err(invalid("A status is invited, active or disabled.")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn login_names_are_case_insensitive_and_trimmed() {
        let a = LoginName::parse(" 101@Organization.COM ").unwrap();
        assert_eq!(a.as_str(), "101@organization.com");
        assert_eq!(a.extension(), "101");
        assert_eq!(a.domain(), "organization.com");
    }

    #[test]
    fn odd_login_names_are_refused() {
        for bad in ["", "101", "@organization.com", "abc@organization.com", "101@localhost", "１０１@organization.com",
            "101\u{200f}@organization.com", "101@org\0.com", "101@-bad.com", "101@exa mple.com", "101@a..com"] {
            assert!(LoginName::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(LoginName::parse(&format!("101@{}.com", "a".repeat(100_000))).is_err());
    }

    #[test]
    fn emails_with_invisible_marks_are_refused() {
        for bad in ["\u{200f}new@example.com", "new\u{202e}lmth.@example.com", "ne\u{200d}w@example.com", "new@exa\u{feff}mple.com"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn emails_keep_their_case_but_compare_without_it() {
        let e = Email::parse(" Front.Desk@Example.com ").unwrap();
        assert_eq!(e.as_str(), "Front.Desk@Example.com");
        assert_eq!(e.key(), "front.desk@example.com");
        for bad in ["", "nobody", "a@b", "a b@example.com", "a@example.com\r\nBcc: x@y.com", "<a@example.com>", "a@@example.com"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn a_masked_email_keeps_the_first_letter_and_the_domain() {
        assert_eq!(Email::parse("Nora.Smith@Example.com").unwrap().masked(), "N***@Example.com");
        assert_eq!(Email::parse("é@example.com").unwrap().masked(), "é***@example.com");
    }

    #[test]
    fn roles_parse_from_the_cli_and_api_spellings() {
        assert_eq!("office-manager".parse::<Role>().unwrap(), Role::OfficeManager);
        assert_eq!("office_manager".parse::<Role>().unwrap(), Role::OfficeManager);
        assert!("admin".parse::<Role>().is_err());
    }

    proptest! {
        #[test]
        fn any_valid_login_name_round_trips(ext in "[0-9]{1,10}", label in "[a-z][a-z0-9]{0,20}", tld in "[a-z]{2,6}") {
            let name = LoginName::parse(&format!("{ext}@{label}.{tld}")).unwrap();
            prop_assert_eq!(LoginName::parse(&name.as_str().to_uppercase()).unwrap(), name);
        }

        #[test]
        fn parsing_never_panics(s in "\\PC*") {
            let _ = LoginName::parse(&s);
            let _ = Email::parse(&s);
            let _ = CompanyDomain::parse(&s);
        }
    }
}
