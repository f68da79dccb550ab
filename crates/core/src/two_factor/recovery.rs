//! Recovery codes (C6): a set of ten single-use codes to download (.txt), copy or print, each
//! accepted once in place of a method at the second-factor step; "Get new recovery codes" replaces the set.
//!
//! A code is 12 characters of Crockford's base32 (60 bits), shown as `xxxx-xxxx-xxxx` in lower
//! case. The alphabet has no i, l, o or u, so what a person misreads is mapped back when typed.

use std::collections::HashSet;

use time::Date;

use crate::account::LoginName;
use crate::flows::UserFacing;
use crate::secret::TokenHash;

/// Codes in a set: enough to last through lost phones, few enough to keep on one printed page.
pub const COUNT: usize = 10;
/// Characters in a code: 12 × 5 bits = 60 bits, beyond guessing within any throttle.
pub const CODE_LEN: usize = 12;
/// Crockford's base32 in lower case: digits and letters without i, l, o (mistaken for 1 and 0) and
/// u (so no code spells a rude word by accident).
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// One recovery code, in its normalized form (12 lower-case characters, no dashes). Only its
/// [`TokenHash`] is stored.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RecoveryCode(String);

impl RecoveryCode {
    /// Each random byte picks one of 32 characters by its low 5 bits: 256 is a multiple of 32, so
    /// every character is equally likely.
    fn from_random(bytes: [u8; CODE_LEN]) -> Self {
        Self(bytes.iter().map(|b| char::from(ALPHABET[usize::from(b & 0x1f)])).collect())
    }

    fn generate() -> Self {
        let mut bytes = [0u8; CODE_LEN];
        crate::random::fill(&mut bytes);
        Self::from_random(bytes)
    }

    /// The normalized form: what is hashed and compared.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form a person reads: `xxxx-xxxx-xxxx`.
    pub fn display(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        chars.chunks(4).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join("-")
    }

    /// SHA-256 of the normalized form, as for link tokens: 60 random bits leave nothing a
    /// dictionary could find, and the hash stays an index lookup for the atomic consume.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }
}

// Codes never print themselves, so a stray `{:?}` cannot leak one into a log.
impl std::fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryCode(<redacted>)")
    }
}

/// Why a typed recovery code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryCodeError {
    /// Not 12 characters of the alphabet: a typo, told apart so it is not counted as a guess.
    #[error("not a recovery code")]
    Malformed,
    /// Not one of the account's unused codes. Unknown and already used look alike on purpose.
    #[error("wrong or used recovery code")]
    Wrong,
}

impl UserFacing for RecoveryCodeError {
    fn code(&self) -> &'static str {
        match self {
            RecoveryCodeError::Malformed => "malformed_code",
            RecoveryCodeError::Wrong => "invalid_code",
        }
    }
    fn message(&self) -> String {
        match self {
            RecoveryCodeError::Malformed => {
                "A recovery code has 12 letters and digits, like abcd-efgh-2345. Type it as it appears in your saved codes.".into()
            }
            RecoveryCodeError::Wrong => {
                "That recovery code is not right or was already used. Each code works once: try another of your saved codes.".into()
            }
        }
    }
}

/// What a person typed, as the code it stands for: any case, spaces and dashes anywhere, and the
/// letters Crockford maps back (i and l to 1, o to 0). Anything else is [`RecoveryCodeError::Malformed`].
pub fn normalize(input: &str) -> Result<RecoveryCode, RecoveryCodeError> {
    let mut code = String::with_capacity(CODE_LEN);
    for c in input.chars() {
        let c = match c.to_ascii_lowercase() {
            ' ' | '-' => continue,
            'i' | 'l' => '1',
            'o' => '0',
            c if c.is_ascii() && ALPHABET.contains(&(c as u8)) => c,
            _ => return Err(RecoveryCodeError::Malformed),
        };
        if code.len() == CODE_LEN {
            return Err(RecoveryCodeError::Malformed);
        }
        code.push(c);
    }
    if code.len() == CODE_LEN {
        Ok(RecoveryCode(code))
    } else {
        Err(RecoveryCodeError::Malformed)
    }
}

/// A set of recovery codes, shown once. The store keeps one row per code hash and consumes a code
/// with one atomic statement (`UPDATE … SET used_at = $now WHERE user_id = $id AND code_hash = $hash
/// AND used_at IS NULL`); a new set deletes the old one in the same transaction.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCodes(Vec<RecoveryCode>);

impl RecoveryCodes {
    /// [`COUNT`] distinct codes from the operating system's generator.
    pub fn generate() -> Self {
        let mut seen = HashSet::with_capacity(COUNT);
        let mut codes = Vec::with_capacity(COUNT);
        // A repeat has odds of about 2^-54 per set; drawing again keeps "ten codes" exact anyway.
        while codes.len() < COUNT {
            let code = RecoveryCode::generate();
            if seen.insert(code.clone()) {
                codes.push(code);
            }
        }
        Self(codes)
    }

    pub fn codes(&self) -> &[RecoveryCode] {
        &self.0
    }

    /// What the store keeps.
    pub fn hashes(&self) -> Vec<TokenHash> {
        self.0.iter().map(RecoveryCode::hash).collect()
    }

    /// The codes as a person reads them, for the page, the API answer and Copy.
    pub fn displayed(&self) -> Vec<String> {
        self.0.iter().map(RecoveryCode::display).collect()
    }

    /// The Download file: a title, whose codes these are and when they were made, the codes one per
    /// line, and how to use them.
    pub fn to_txt(&self, company_name: &str, login_name: &LoginName, created_on: Date) -> String {
        let mut out = String::new();
        out.push_str("Recovery codes for two-factor authentication\n\n");
        out.push_str(&format!("Company: {}\n", one_line(company_name)));
        out.push_str(&format!("Login name: {login_name}\n"));
        out.push_str(&format!("Created: {created_on}\n\n"));
        for code in &self.0 {
            out.push_str(&code.display());
            out.push('\n');
        }
        out.push_str(
            "\nIf you cannot use your authenticator app, phone or email, sign in with your password, \
             choose \"Use a recovery code\" and enter one of these codes. Each code works once. \
             Keep them somewhere safe, like your password. Getting new recovery codes makes these stop working.\n",
        );
        out
    }

    /// A name for the downloaded file, e.g. `recovery-codes-101-organization.com.txt`.
    pub fn txt_file_name(login_name: &LoginName) -> String {
        format!("recovery-codes-{}-{}.txt", login_name.extension(), login_name.domain())
    }
}

// Codes never print themselves, so a stray `{:?}` cannot leak them into a log.
impl std::fmt::Debug for RecoveryCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecoveryCodes(<{} redacted>)", self.0.len())
    }
}

/// A company name on one line: a stray line break or control character cannot reshape the file.
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::date;

    fn code(bytes: [u8; CODE_LEN]) -> RecoveryCode {
        RecoveryCode::from_random(bytes)
    }

    #[test]
    fn a_set_is_ten_distinct_readable_codes() {
        for _ in 0..50 {
            let set = RecoveryCodes::generate();
            assert_eq!(set.codes().len(), COUNT);
            let distinct: HashSet<&str> = set.codes().iter().map(RecoveryCode::as_str).collect();
            assert_eq!(distinct.len(), COUNT);
            let hashes: HashSet<TokenHash> = set.hashes().into_iter().collect();
            assert_eq!(hashes.len(), COUNT);
            for shown in set.displayed() {
                assert_eq!(shown.len(), 14);
                assert_eq!(shown.matches('-').count(), 2);
                assert!(!shown.contains(['i', 'l', 'o', 'u']));
                assert_eq!(shown, shown.to_lowercase());
            }
        }
        assert_ne!(RecoveryCodes::generate(), RecoveryCodes::generate());
        assert_eq!(format!("{:?}", RecoveryCodes::generate()), "RecoveryCodes(<10 redacted>)");
    }

    #[test]
    fn every_character_of_the_alphabet_is_reachable() {
        let all: [u8; CODE_LEN] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
        assert_eq!(code(all).as_str(), "0123456789ab");
        assert_eq!(code([31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20]).as_str(), "zyxwvtsrqpnm");
        assert_eq!(code([255, 224, 63, 32, 0, 0, 0, 0, 0, 0, 0, 0]).as_str(), "z0z000000000");
    }

    #[test]
    fn typing_is_forgiving_where_it_is_unambiguous() {
        let c = code([1, 0, 1, 2, 31, 16, 17, 18, 19, 20, 21, 22]);
        assert_eq!(c.display(), "1012-zghj-kmnp");
        for typed in ["1012-zghj-kmnp", "1012zghjkmnp", "1O12 ZGHJ KMNP", "i0l2-zghj-kmnp", " 10 12-ZgHj-kM nP "] {
            assert_eq!(normalize(typed), Ok(c.clone()), "{typed:?}");
        }
        for bad in ["", "1012-zghj-kmn", "1012-zghj-kmnpq", "1012-zghj-kmnu", "1012_zghj_kmnp", "1012-zghj-kmñp", "１０１２zghjkmnp"] {
            assert_eq!(normalize(bad), Err(RecoveryCodeError::Malformed), "{bad:?}");
        }
        assert_eq!(c.hash(), normalize("1O12 ZGHJ KMNP").unwrap().hash());
        assert_eq!(c.hash(), TokenHash::of("1012zghjkmnp"));
        assert_eq!(format!("{c:?}"), "RecoveryCode(<redacted>)");
    }

    #[test]
    fn the_download_file() {
        let set = RecoveryCodes::generate();
        let login = LoginName::parse("101@organization.com").unwrap();
        let txt = set.to_txt("Organization\nInc.", &login, date!(2026 - 11 - 23));
        let lines: Vec<&str> = txt.lines().collect();
        assert_eq!(lines[0], "Recovery codes for two-factor authentication");
        assert!(txt.contains("Company: Organization Inc.\n"), "{txt}");
        assert!(txt.contains("Login name: 101@organization.com\n"));
        assert!(txt.contains("Created: 2026-11-23\n"));
        for shown in set.displayed() {
            assert!(lines.contains(&shown.as_str()), "{shown} on its own line");
        }
        assert!(txt.contains("Each code works once."));
        assert_eq!(RecoveryCodes::txt_file_name(&login), "recovery-codes-101-organization.com.txt");
    }

    #[test]
    fn errors_speak_to_a_person() {
        assert_eq!(RecoveryCodeError::Wrong.code(), "invalid_code");
        assert!(RecoveryCodeError::Malformed.message().contains("12"));
    }

    proptest! {
        #[test]
        fn normalize_of_display_is_the_code(bytes in any::<[u8; CODE_LEN]>()) {
            let c = code(bytes);
            prop_assert_eq!(normalize(&c.display()), Ok(c.clone()));
            prop_assert_eq!(normalize(&c.display().to_uppercase().replace('-', " ")), Ok(c.clone()));
            let misread = c.display().replace('1', "l").replace('0', "O");
            prop_assert_eq!(normalize(&misread), Ok(c));
        }

        #[test]
        fn normalize_accepts_only_twelve_alphabet_characters(input in "\\PC{0,20}") {
            if let Ok(c) = normalize(&input) {
                prop_assert_eq!(c.as_str().len(), CODE_LEN);
                prop_assert!(c.as_str().bytes().all(|b| ALPHABET.contains(&b)));
            }
        }

        #[test]
        fn generated_sets_never_repeat_a_code(_round in 0u8..=255) {
            let set = RecoveryCodes::generate();
            let distinct: HashSet<&RecoveryCode> = set.codes().iter().collect();
            prop_assert_eq!(distinct.len(), COUNT);
            for c in set.codes() {
                prop_assert_eq!(normalize(&c.display()), Ok(c.clone()));
            }
        }
    }
}
