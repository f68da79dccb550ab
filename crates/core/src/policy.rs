//! The password and voicemail PIN rules of the welcome-email seed (C3). Each check returns every
//! broken rule at once, as the sentence shown next to the field.

use serde::{Deserialize, Serialize};

use crate::error::FieldErrors;

/// Password rules. The seed's minimum is 8 characters, 1 capital letter and 1 number; a company may
/// raise the minimum length, never lower it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordPolicy {
    pub min_length: usize,
}

impl PasswordPolicy {
    pub const SEED_MIN_LENGTH: usize = 8;
    /// Long enough for any passphrase; short enough that a hash of it is cheap to refuse.
    pub const MAX_LENGTH: usize = 256;
    /// The most an office manager may require: longer minimums only push people to write
    /// passwords down.
    pub const MAX_COMPANY_MIN_LENGTH: usize = 64;

    /// The company's policy: `min_length` below the seed's 8 is raised to 8.
    pub fn with_min_length(min_length: usize) -> Self {
        Self { min_length: min_length.clamp(Self::SEED_MIN_LENGTH, Self::MAX_LENGTH) }
    }

    /// Every rule `password` breaks, as sentences ("must have at least 1 capital letter").
    pub fn violations(&self, password: &str) -> Vec<String> {
        let mut out = Vec::new();
        let chars = password.chars().count();
        if chars < self.min_length {
            out.push(format!("Must be at least {} characters.", self.min_length));
        }
        if chars > Self::MAX_LENGTH {
            out.push(format!("Must be at most {} characters.", Self::MAX_LENGTH));
        }
        if !password.chars().any(char::is_uppercase) {
            out.push("Must have at least 1 capital letter.".to_owned());
        }
        if !password.chars().any(|c| c.is_ascii_digit()) {
            out.push("Must have at least 1 number.".to_owned());
        }
        if password.chars().any(char::is_control) {
            out.push("Must not contain control characters.".to_owned());
        }
        out
    }

    /// Checks a new password and its confirmation, filling `password` and `password_confirmation`.
    pub fn check_new(&self, password: &str, confirmation: &str, errors: &mut FieldErrors) {
        errors.extend("password", self.violations(password));
        if password != confirmation {
            errors.add("password_confirmation", "Does not match the password.");
        }
    }
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self::with_min_length(Self::SEED_MIN_LENGTH)
    }
}

/// Voicemail PIN rules: at least 4 digits, only numbers, a combination of different numbers, in a
/// non-sequential order (neither 1234 nor 9876).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinPolicy;

impl PinPolicy {
    pub const MIN_DIGITS: usize = 4;
    pub const MAX_DIGITS: usize = 16;

    pub fn violations(pin: &str) -> Vec<String> {
        let mut out = Vec::new();
        let chars: Vec<char> = pin.chars().collect();
        if chars.len() < Self::MIN_DIGITS {
            out.push(format!("Must be at least {} digits.", Self::MIN_DIGITS));
        }
        if chars.len() > Self::MAX_DIGITS {
            out.push(format!("Must be at most {} digits.", Self::MAX_DIGITS));
        }
        if !chars.iter().all(|c| c.is_ascii_digit()) {
            // Full-width or other script digits look right but a phone keypad cannot type them.
            out.push("Must be only numbers (0-9).".to_owned());
            return out;
        }
        if chars.len() >= 2 && chars.iter().all(|c| *c == chars[0]) {
            out.push("Must be a combination of different numbers.".to_owned());
        }
        if chars.len() >= 2 && is_sequential(pin.as_bytes()) {
            out.push("Must not be in sequential order (like 1234 or 9876).".to_owned());
        }
        out
    }

    pub fn check(pin: &str, errors: &mut FieldErrors) {
        errors.extend("pin", Self::violations(pin));
    }
}

/// Each digit one more than the last throughout, or one less throughout.
fn is_sequential(digits: &[u8]) -> bool {
    let steps: Vec<i16> = digits.windows(2).map(|w| i16::from(w[1]) - i16::from(w[0])).collect();
    steps.iter().all(|s| *s == 1) || steps.iter().all(|s| *s == -1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn seed_examples() {
        let p = PasswordPolicy::default();
        assert!(p.violations("Welcome2Sonar").is_empty());
        assert_eq!(p.violations("abc").len(), 3, "short, no capital, no number: all three at once");
        assert_eq!(p.violations("abcdefgh1"), vec!["Must have at least 1 capital letter.".to_owned()]);
        assert_eq!(p.violations("Abcdefgh"), vec!["Must have at least 1 number.".to_owned()]);
        assert_eq!(p.violations("Abcdef1"), vec!["Must be at least 8 characters.".to_owned()]);
        assert!(p.violations("Abcdefg1\0").iter().any(|m| m.contains("control")));

        assert!(PinPolicy::violations("2580").is_empty());
        assert!(PinPolicy::violations("1357").is_empty());
        assert_eq!(PinPolicy::violations("193"), vec!["Must be at least 4 digits.".to_owned()]);
        assert_eq!(PinPolicy::violations("123").len(), 2, "too short and sequential: both at once");
        assert_eq!(PinPolicy::violations("1111"), vec!["Must be a combination of different numbers.".to_owned()]);
        assert_eq!(PinPolicy::violations("1234").len(), 1);
        assert_eq!(PinPolicy::violations("9876").len(), 1);
        assert_eq!(PinPolicy::violations("12a4"), vec!["Must be only numbers (0-9).".to_owned()]);
        assert_eq!(PinPolicy::violations("１３５７"), vec!["Must be only numbers (0-9).".to_owned()]);
        assert_eq!(PinPolicy::violations("11").len(), 2, "too short and all the same digit");
    }

    #[test]
    fn a_company_may_raise_but_not_lower_the_minimum() {
        assert_eq!(PasswordPolicy::with_min_length(4).min_length, 8);
        let strict = PasswordPolicy::with_min_length(12);
        assert_eq!(strict.violations("Abcdefgh12"), vec!["Must be at least 12 characters.".to_owned()]);
    }

    #[test]
    fn confirmation_must_match() {
        let mut e = FieldErrors::new();
        PasswordPolicy::default().check_new("Welcome2Sonar", "Welcome2Sonar!", &mut e);
        assert_eq!(e.get("password_confirmation").len(), 1);
        assert!(e.get("password").is_empty());
    }

    proptest! {
        /// The policy accepts a password exactly when an independent reading of the seed does.
        #[test]
        fn password_policy_matches_the_seed(pw in "\\PC{0,40}", min in 0usize..20) {
            let policy = PasswordPolicy::with_min_length(min);
            let n = pw.chars().count();
            let seed_ok = n >= min.max(8) && n <= 256
                && pw.chars().any(|c| c.is_uppercase())
                && pw.chars().any(|c| c.is_ascii_digit())
                && !pw.chars().any(|c| c.is_control());
            prop_assert_eq!(policy.violations(&pw).is_empty(), seed_ok);
        }

        /// Each rule that breaks adds its own message: the count of messages is the count of broken rules.
        #[test]
        fn every_broken_password_rule_is_reported(lower in "[a-z]{0,12}", upper in proptest::bool::ANY, digit in proptest::bool::ANY) {
            let pw = format!("{}{}{}", lower, if upper { "Q" } else { "" }, if digit { "7" } else { "" });
            let expected = usize::from(pw.chars().count() < 8) + usize::from(!upper) + usize::from(!digit);
            prop_assert_eq!(PasswordPolicy::default().violations(&pw).len(), expected);
        }

        #[test]
        fn pin_policy_matches_the_seed(pin in "[0-9]{0,10}") {
            let d: Vec<i32> = pin.bytes().map(|b| i32::from(b - b'0')).collect();
            let all_same = d.len() >= 2 && d.iter().all(|x| *x == d[0]);
            let up = d.len() >= 2 && d.windows(2).all(|w| w[1] == w[0] + 1);
            let down = d.len() >= 2 && d.windows(2).all(|w| w[1] == w[0] - 1);
            let ok = d.len() >= 4 && !all_same && !up && !down;
            prop_assert_eq!(PinPolicy::violations(&pin).is_empty(), ok);
        }

        #[test]
        fn ascending_and_descending_runs_are_refused(start in 0u8..=5, len in 4usize..=5, descending in proptest::bool::ANY) {
            let mut digits: Vec<u8> = (0..len as u8).map(|i| b'0' + start + i).collect();
            if descending { digits.reverse(); }
            let pin = String::from_utf8(digits).unwrap();
            prop_assert!(PinPolicy::violations(&pin).iter().any(|m| m.contains("sequential")));
        }

        #[test]
        fn a_pin_with_anything_but_ascii_digits_is_refused(pin in "[0-9]{2,6}[^0-9][0-9]{0,3}") {
            prop_assert!(PinPolicy::violations(&pin).iter().any(|m| m.contains("only numbers")));
        }
    }
}
