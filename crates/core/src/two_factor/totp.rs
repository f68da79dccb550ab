//! The authenticator app's codes (C6): RFC 6238 TOTP with SHA-1, 6 digits and 30-second steps, the
//! secret the app is given, its `otpauth://` URI, and the check that never accepts a step twice.
//!
//! The HOTP arithmetic (HMAC-SHA-1 and RFC 4226's dynamic truncation) comes from `totp-rs`, asked
//! for one step at a time; the window, the replay rule, the input rules and the constant-time
//! comparison are ours, because that crate's own `check` keeps no used step (RFC 6238 §5.2 leaves
//! that to the caller) and compares only within its own fixed window.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use totp_rs::{Algorithm, TOTP};
use zeroize::Zeroize;

use crate::account::LoginName;
use crate::flows::UserFacing;

/// 160 bits: RFC 4226 §4 asks for at least 128 and recommends 160, the length of SHA-1's output.
pub const SECRET_LEN: usize = 20;
/// The seeds' "6-digit code from your authenticator app".
pub const DIGITS: usize = 6;
/// RFC 6238's recommended step, the one every authenticator app assumes.
pub const STEP_SECONDS: i64 = 30;
/// Steps accepted either side of the current one: RFC 6238 §5.2 allows one for clock drift and the
/// time it takes to type; more would only widen what a guess can hit.
pub const WINDOW: i64 = 1;

/// The secret shared with the authenticator app. Encrypted at rest (see [`crate::seal`]); only the
/// QR code and the manual-entry text show it, once, at enrolment.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret([u8; SECRET_LEN]);

/// A stored secret that is not [`SECRET_LEN`] bytes: the store or the seal gave back something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a TOTP secret is {SECRET_LEN} bytes, not {0}")]
pub struct WrongSecretLength(pub usize);

impl TotpSecret {
    /// A new secret from the operating system's generator.
    pub fn generate() -> Self {
        let mut bytes = [0u8; SECRET_LEN];
        crate::random::fill(&mut bytes);
        Self(bytes)
    }

    /// The secret as it comes back from the seal.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WrongSecretLength> {
        let array: [u8; SECRET_LEN] = bytes.try_into().map_err(|_| WrongSecretLength(bytes.len()))?;
        Ok(Self(array))
    }

    pub fn as_bytes(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }

    /// RFC 4648 base32, upper-case, no padding: what authenticator apps take in the URI and by hand.
    /// 20 bytes make exactly 32 characters, so there would be no padding anyway.
    pub fn base32(&self) -> String {
        base32::encode(base32::Alphabet::Rfc4648 { padding: false }, &self.0)
    }

    /// [`Self::base32`] in groups of four for a person to copy ("ABCD EFGH …"); apps ignore the spaces.
    pub fn base32_for_display(&self) -> String {
        group_in_fours(&self.base32())
    }
}

// The secret never prints itself, so a stray `{:?}` cannot leak it into a log.
impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

// Copies of the secret should not outlive their use in freed memory.
impl Drop for TotpSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Splits `text` into groups of four characters separated by spaces.
pub fn group_in_fours(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(4).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join(" ")
}

/// What may appear unescaped in the URI's label and parameters: RFC 3986's unreserved characters.
/// Everything else, `@` and space included, is percent-encoded (space as `%20`, never `+`, which
/// some apps would show literally).
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The Key URI the QR code carries: `otpauth://totp/{issuer}:{login name}?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30`.
///
/// The issuer appears both as the label's prefix (older apps read only that) and as the `issuer`
/// parameter (newer apps prefer it). A colon separates the two parts of the label, so a colon in
/// the issuer is replaced by a space; a login name never contains one. An empty issuer is left out
/// rather than shown as a label that starts with a colon.
pub fn otpauth_uri(secret: &TotpSecret, issuer: &str, login_name: &LoginName) -> String {
    let issuer = issuer.replace(':', " ");
    let issuer = utf8_percent_encode(issuer.trim(), URI_COMPONENT).to_string();
    let label = utf8_percent_encode(login_name.as_str(), URI_COMPONENT);
    let secret = secret.base32();
    let parameters = format!("algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}");
    if issuer.is_empty() {
        format!("otpauth://totp/{label}?secret={secret}&{parameters}")
    } else {
        format!("otpauth://totp/{issuer}:{label}?secret={secret}&issuer={issuer}&{parameters}")
    }
}

/// The time step `now` falls in: whole 30-second periods since the Unix epoch (RFC 6238's T0 = 0).
pub fn step_at(now: OffsetDateTime) -> i64 {
    now.unix_timestamp().div_euclid(STEP_SECONDS)
}

/// Why a code from the authenticator app was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    /// Not 6 digits once spaces are removed: a typo, told apart so it is not counted as a guess.
    #[error("not a 6-digit code")]
    Malformed,
    /// Right for a step that was already used (RFC 6238 §5.2): a replayed or re-submitted code.
    #[error("code already used")]
    Replayed,
    /// Matches no step in the window.
    #[error("wrong code")]
    Wrong,
}

impl UserFacing for TotpError {
    fn code(&self) -> &'static str {
        match self {
            TotpError::Malformed => "malformed_code",
            TotpError::Replayed => "code_used",
            TotpError::Wrong => "invalid_code",
        }
    }
    fn message(&self) -> String {
        match self {
            TotpError::Malformed => "Enter the 6-digit code from your authenticator app.".into(),
            TotpError::Replayed => {
                "That code was already used. Wait for your authenticator app to show a new one, then enter it.".into()
            }
            TotpError::Wrong => {
                "That code is not right. Enter the code your authenticator app shows now; if it keeps failing, check that your phone's clock is set automatically.".into()
            }
        }
    }
}

/// Checks a code from the authenticator app and returns the step it matched.
///
/// Accepts the current step and [`WINDOW`] step either side, but never a step at or before
/// `last_used_step`: a code works once, and after a newer code an older one no longer works
/// (RFC 6238 §5.2). The code may contain spaces ("123 456"); anything else that is not exactly six
/// ASCII digits is [`TotpError::Malformed`]. Each candidate is compared in constant time.
///
/// This check alone cannot stop two requests racing with the same code on two nodes. The caller
/// must store the returned step with one atomic statement that only moves it forward and treat "no
/// row changed" as [`TotpError::Replayed`], e.g.
/// `UPDATE totp SET last_used_step = $step WHERE user_id = $id AND (last_used_step IS NULL OR last_used_step < $step)`.
pub fn verify(secret: &TotpSecret, code: &str, now: OffsetDateTime, last_used_step: Option<i64>) -> Result<i64, TotpError> {
    let code = normalize_code(code).ok_or(TotpError::Malformed)?;
    let current = step_at(now);
    let mut accepted: Option<i64> = None;
    let mut replayed = false;
    // Every candidate is computed and compared, so the time taken does not say which step matched.
    for step in (current - WINDOW)..=(current + WINDOW) {
        let Some(expected) = code_at(secret.as_bytes(), step, DIGITS) else { continue };
        let matches: bool = expected.as_bytes().ct_eq(code.as_bytes()).into();
        if !matches {
            continue;
        }
        if last_used_step.is_some_and(|used| step <= used) {
            replayed = true;
        } else if accepted.is_none() {
            // The earliest fresh step: storing it blocks as few later codes as possible.
            accepted = Some(step);
        }
    }
    match (accepted, replayed) {
        (Some(step), _) => Ok(step),
        (None, true) => Err(TotpError::Replayed),
        (None, false) => Err(TotpError::Wrong),
    }
}

/// The code the app shows at `now`: for tests and tools that stand in for the authenticator app.
pub fn code_now(secret: &TotpSecret, now: OffsetDateTime) -> Option<String> {
    code_at(secret.as_bytes(), step_at(now), DIGITS)
}

/// Six ASCII digits once spaces are removed; full-width and other scripts' digits are refused.
fn normalize_code(input: &str) -> Option<String> {
    let code: String = input.chars().filter(|c| *c != ' ').collect();
    (code.len() == DIGITS && code.bytes().all(|b| b.is_ascii_digit())).then_some(code)
}

/// The HOTP value (RFC 4226) for counter `step`, `digits` long with leading zeros. `None` for a
/// step before the epoch or a digit count HOTP does not define (6 to 8), so nothing here can panic.
pub(crate) fn code_at(secret: &[u8], step: i64, digits: usize) -> Option<String> {
    if !(6..=8).contains(&digits) {
        return None;
    }
    let time = u64::try_from(step).ok()?.checked_mul(STEP_SECONDS as u64)?;
    let totp = TOTP::new(Algorithm::SHA1, digits, 1, STEP_SECONDS as u64, secret.to_vec()).ok()?;
    Some(totp.generate(time))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use time::Duration;

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    fn login() -> LoginName {
        LoginName::parse("101@organization.com").unwrap()
    }

    /// RFC 6238 Appendix B, SHA-1 column: seed "12345678901234567890", 8 digits.
    #[test]
    fn rfc_6238_appendix_b_test_vectors() {
        let seed = b"12345678901234567890";
        for (unix, expected) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(code_at(seed, step_at(at(unix)), 8).as_deref(), Some(expected), "T = {unix}");
        }
        // The six-digit code is the last six digits of the same truncated value.
        assert_eq!(code_at(seed, step_at(at(59)), 6).as_deref(), Some("287082"));
    }

    #[test]
    fn steps_are_whole_thirty_second_periods() {
        assert_eq!(step_at(at(0)), 0);
        assert_eq!(step_at(at(29)), 0);
        assert_eq!(step_at(at(30)), 1);
        assert_eq!(step_at(at(59)), 1);
        assert_eq!(step_at(at(1_111_111_109)), 0x023523EC);
        // Before the epoch the step is negative and matches no code, rather than wrapping.
        assert_eq!(step_at(at(-1)), -1);
        assert_eq!(code_at(b"12345678901234567890", -1, 6), None);
        assert_eq!(code_at(b"12345678901234567890", 1, 9), None);
    }

    #[test]
    fn one_step_either_side_is_accepted_two_are_not() {
        // The RFC seed, whose codes around this time all differ, makes the outcome certain; a random
        // secret's neighbouring codes collide once in a million.
        let seed = TotpSecret::from_bytes(b"12345678901234567890").unwrap();
        let now = at(1_234_567_890);
        let step = step_at(now);
        for offset in [-1, 0, 1] {
            let code = code_at(seed.as_bytes(), step + offset, 6).unwrap();
            assert_eq!(verify(&seed, &code, now, None), Ok(step + offset), "offset {offset}");
        }
        for offset in [-2, 2, 3, -30] {
            let code = code_at(seed.as_bytes(), step + offset, 6).unwrap();
            assert_eq!(verify(&seed, &code, now, None), Err(TotpError::Wrong), "offset {offset}");
        }
        // The same holds for a random secret at any moment within the step.
        let secret = TotpSecret::generate();
        let now = datetime!(2026-11-23 10:00:29 UTC);
        let code = code_at(secret.as_bytes(), step_at(now) + 1, 6).unwrap();
        assert!(verify(&secret, &code, now, None).is_ok());
    }

    #[test]
    fn a_step_is_never_accepted_twice() {
        let seed = TotpSecret::from_bytes(b"12345678901234567890").unwrap();
        let now = at(1_234_567_890);
        let step = step_at(now);
        let code = code_now(&seed, now).unwrap();
        let used = verify(&seed, &code, now, None).unwrap();
        assert_eq!(used, step);
        assert_eq!(verify(&seed, &code, now, Some(used)), Err(TotpError::Replayed));
        // Still refused while it would be inside the window of the next step.
        assert_eq!(verify(&seed, &code, now + Duration::seconds(30), Some(used)), Err(TotpError::Replayed));
        // The next step's code works once.
        let next = code_at(seed.as_bytes(), step + 1, 6).unwrap();
        assert_eq!(verify(&seed, &next, now + Duration::seconds(30), Some(used)), Ok(step + 1));
    }

    #[test]
    fn an_older_step_after_a_newer_one_is_refused() {
        let seed = TotpSecret::from_bytes(b"12345678901234567890").unwrap();
        let now = at(1_234_567_890);
        let step = step_at(now);
        let newer = code_at(seed.as_bytes(), step + 1, 6).unwrap();
        let older = code_at(seed.as_bytes(), step - 1, 6).unwrap();
        let current = code_at(seed.as_bytes(), step, 6).unwrap();
        let used = verify(&seed, &newer, now, None).unwrap();
        assert_eq!(used, step + 1);
        assert_eq!(verify(&seed, &older, now, Some(used)), Err(TotpError::Replayed));
        assert_eq!(verify(&seed, &current, now, Some(used)), Err(TotpError::Replayed));
    }

    #[test]
    fn only_six_ascii_digits_are_a_code() {
        let seed = TotpSecret::from_bytes(b"12345678901234567890").unwrap();
        let now = at(59);
        assert_eq!(verify(&seed, "287082", now, None), Ok(1));
        assert_eq!(verify(&seed, "287 082", now, None), Ok(1));
        assert_eq!(verify(&seed, " 287082 ", now, None), Ok(1));
        for bad in ["", "28708", "2870820", "28708a", "２８７０８２", "287-082", "287\t082", "+28708", "94287082"] {
            assert_eq!(verify(&seed, bad, now, None), Err(TotpError::Malformed), "{bad:?}");
        }
        assert_eq!(verify(&seed, "287083", now, None), Err(TotpError::Wrong));
    }

    #[test]
    fn secret_encodings() {
        let seed = TotpSecret::from_bytes(b"12345678901234567890").unwrap();
        assert_eq!(seed.base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(seed.base32_for_display(), "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ");
        assert_eq!(format!("{seed:?}"), "TotpSecret(<redacted>)");
        assert_eq!(TotpSecret::from_bytes(&[0u8; 16]), Err(WrongSecretLength(16)));
        let a = TotpSecret::generate();
        assert_ne!(a, TotpSecret::generate());
        assert_eq!(TotpSecret::from_bytes(a.as_bytes()).unwrap(), a);
        assert_eq!(a.base32().len(), 32);
    }

    #[test]
    fn otpauth_uri_is_percent_encoded() {
        let seed = TotpSecret::from_bytes(b"12345678901234567890").unwrap();
        assert_eq!(
            otpauth_uri(&seed, "Acme Phones", &login()),
            "otpauth://totp/Acme%20Phones:101%40organization.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Acme%20Phones&algorithm=SHA1&digits=6&period=30"
        );
        let uri = otpauth_uri(&seed, "R&D: Fax/Phones?", &login());
        assert!(uri.starts_with("otpauth://totp/R%26D%20%20Fax%2FPhones%3F:101%40organization.com?"), "{uri}");
        assert!(uri.contains("&issuer=R%26D%20%20Fax%2FPhones%3F&"), "{uri}");
        assert_eq!(
            otpauth_uri(&seed, " : ", &login()),
            "otpauth://totp/101%40organization.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&algorithm=SHA1&digits=6&period=30"
        );
        let uri = otpauth_uri(&seed, "Téléphonie", &login());
        assert!(uri.starts_with("otpauth://totp/T%C3%A9l%C3%A9phonie:"), "{uri}");
    }

    /// `oathtool` is an independent implementation: its codes and ours must agree.
    #[test]
    fn codes_agree_with_oathtool() {
        let Some(oathtool) = crate::two_factor::test_tool("oathtool", "oathtool") else { return };
        let secret = TotpSecret::generate();
        for unix in [59i64, 1_111_111_109, 1_700_000_000, 1_800_000_015, OffsetDateTime::now_utc().unix_timestamp()] {
            let output = std::process::Command::new(&oathtool)
                .args(["--totp", "--base32", "--digits=6", "--time-step-size=30s", &format!("--now=@{unix}"), "-"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut child| {
                    use std::io::Write;
                    if let Some(mut stdin) = child.stdin.take() {
                        stdin.write_all(secret.base32().as_bytes())?;
                    }
                    child.wait_with_output()
                })
                .expect("run oathtool");
            assert!(output.status.success(), "oathtool failed: {output:?}");
            let theirs = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            assert_eq!(code_now(&secret, at(unix)).as_deref(), Some(theirs.as_str()), "T = {unix}");
            assert_eq!(verify(&secret, &theirs, at(unix), None), Ok(step_at(at(unix))));
        }
    }
}
