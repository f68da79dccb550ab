//! The text messages Latchkey sends: one short sentence per purpose, the code first so that the
//! phone's notification shows it and offers to fill it in, and one SMS segment long.

use latchkey_core::two_factor::one_time_code;

use crate::mail::PRODUCT_NAME;

/// Why a code is texted; each gets its own wording so the person knows what they are confirming.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmsPurpose {
    /// The second-factor step of a sign-in.
    SignIn,
    /// Enrolling SMS: proves the mobile number before it is used as a second factor.
    VerifyNumber,
    /// Any other confirmation: disabling a method or 2FA, new recovery codes.
    Verification,
}

/// One segment of GSM 03.38 text holds 160 septets; a text with any other character goes as UCS-2,
/// 70 UTF-16 units a segment. Gateways split longer texts into several (billed) segments.
const GSM_SEGMENT: usize = 160;

/// The body for a texted code: `123456 is your Acme sign-in code. It expires in 10 minutes. Never
/// share it.` The company name is cleaned of line breaks and shortened (at a word where it can) so
/// the whole text stays within 160 characters: one segment when the name is in the GSM alphabet,
/// at most three UCS-2 segments when it is not.
pub fn message_for_code(company_name: &str, code: &str, purpose: SmsPurpose) -> String {
    let minutes = one_time_code::LIFETIME.whole_minutes();
    let render = |company: &str| match purpose {
        SmsPurpose::SignIn => {
            format!("{code} is your {company} sign-in code. It expires in {minutes} minutes. Never share it.")
        }
        SmsPurpose::VerifyNumber => format!(
            "{code} is your {company} code to verify this phone number. It expires in {minutes} minutes. Never share it."
        ),
        SmsPurpose::Verification => {
            format!("{code} is your {company} verification code. It expires in {minutes} minutes. Never share it.")
        }
    };
    let company = clean(company_name);
    // The wording and code are plain ASCII, the same size in septets and UTF-16 units, so the
    // whole text measures the wording plus the name in whichever unit the name needs.
    let budget = GSM_SEGMENT.saturating_sub(length(&render("")));
    render(&shorten(&company, budget))
}

/// One line, single spaces, and the product's name where the company has none.
fn clean(name: &str) -> String {
    let words: Vec<&str> = name.split(|c: char| c.is_whitespace() || c.is_control()).filter(|w| !w.is_empty()).collect();
    if words.is_empty() {
        PRODUCT_NAME.to_owned()
    } else {
        words.join(" ")
    }
}

/// The longest start of `name` within `budget`, cut after a whole word when that keeps at least
/// half of it ("Acme Telecommunications International" rather than "Acme Telecommunications Intern").
fn shorten(name: &str, budget: usize) -> String {
    if length(name) <= budget {
        return name.to_owned();
    }
    let mut cut = String::new();
    for c in name.chars() {
        cut.push(c);
        if length(&cut) > budget {
            cut.pop();
            break;
        }
    }
    if let Some(space) = cut.rfind(' ') {
        if space * 2 >= cut.len() {
            cut.truncate(space);
        }
    }
    let trimmed = cut.trim_end_matches(|c: char| c.is_whitespace() || ",;:-&(/".contains(c));
    if trimmed.is_empty() {
        // Nothing fits (cannot happen with the wordings above): the product's name is short.
        PRODUCT_NAME.to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// GSM 03.38 basic character set (less the escape), one septet each.
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡\
                         ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// The extension table: an escape septet plus one, so two septets each.
const GSM_EXTENSION: &str = "\u{c}^{}\\[~]|€";

/// The size of `text` in the units its encoding counts: septets when all of it is in the GSM
/// alphabet, UTF-16 units otherwise (where even 160 units make three UCS-2 segments).
fn length(text: &str) -> usize {
    let mut septets = 0;
    for c in text.chars() {
        if GSM_BASIC.contains(c) {
            septets += 1;
        } else if GSM_EXTENSION.contains(c) {
            septets += 2;
        } else {
            return text.encode_utf16().count();
        }
    }
    septets
}

#[cfg(test)]
mod tests {
    use super::*;

    const PURPOSES: [SmsPurpose; 3] = [SmsPurpose::SignIn, SmsPurpose::VerifyNumber, SmsPurpose::Verification];

    #[test]
    fn the_alphabet_tables_are_complete() {
        assert_eq!(GSM_BASIC.chars().count(), 127, "128 less the escape");
        assert_eq!(GSM_EXTENSION.chars().count(), 10);
        assert_eq!(length("abc"), 3);
        assert_eq!(length("a€[b"), 6);
        assert_eq!(length("Łódź"), 4, "not GSM: UTF-16 units");
    }

    #[test]
    fn each_purpose_has_its_wording_with_the_code_first() {
        let sign_in = message_for_code("Organization Inc.", "123456", SmsPurpose::SignIn);
        assert_eq!(
            sign_in,
            "123456 is your Organization Inc. sign-in code. It expires in 10 minutes. Never share it."
        );
        let verify = message_for_code("Organization Inc.", "123456", SmsPurpose::VerifyNumber);
        assert!(verify.starts_with("123456 is your Organization Inc. code to verify this phone number."), "{verify}");
        let other = message_for_code("Organization Inc.", "123456", SmsPurpose::Verification);
        assert!(other.starts_with("123456 is your Organization Inc. verification code."), "{other}");
    }

    #[test]
    fn a_100_character_company_name_is_shortened_to_fit_one_segment() {
        let long = "Acme Telecommunications International Holdings and Regional Business Phone Services Limited Partners";
        assert_eq!(long.chars().count(), 100);
        for purpose in PURPOSES {
            let body = message_for_code(long, "987654", purpose);
            assert!(length(&body) <= 160 && body.chars().count() <= 160, "{} {body}", length(&body));
            assert!(body.starts_with("987654 is your Acme Telecommunications"), "{body}");
            assert!(body.contains("expires in 10 minutes"), "{body}");
            assert!(!body.contains("Partners"), "{body}");
            // Cut after a whole word: what stands before the fixed wording ends a word of the name.
            let shown = body.trim_start_matches("987654 is your ");
            let words: Vec<&str> = long.split(' ').collect();
            assert!(words.iter().any(|w| shown.contains(&format!("{w} sign-in"))
                || shown.contains(&format!("{w} code"))
                || shown.contains(&format!("{w} verification"))), "{body}");
        }
        // One word with no space to cut at is cut within it.
        let word = "A".repeat(100);
        let body = message_for_code(&word, "111222", SmsPurpose::SignIn);
        assert_eq!(length(&body), 160, "{body}");
        assert!(body.contains("111222"));
    }

    #[test]
    fn extension_characters_count_twice_and_other_scripts_stay_within_160() {
        let brackets = "[Acme] {Phones} €".repeat(10);
        let body = message_for_code(&brackets, "123456", SmsPurpose::SignIn);
        assert!(length(&body) <= 160, "{} {body}", length(&body));
        let cyrillic = "Телефонная компания ".repeat(5);
        let body = message_for_code(&cyrillic, "123456", SmsPurpose::Verification);
        assert!(body.encode_utf16().count() <= 160, "{body}");
        assert!(body.starts_with("123456 is your Телефонная компания"), "{body}");
    }

    #[test]
    fn line_breaks_are_removed_and_a_blank_name_becomes_the_product() {
        let body = message_for_code(" Acme\r\n  Phones\t", "123456", SmsPurpose::SignIn);
        assert!(body.starts_with("123456 is your Acme Phones sign-in code."), "{body}");
        let body = message_for_code(" \n ", "123456", SmsPurpose::SignIn);
        assert!(body.starts_with("123456 is your Latchkey sign-in code."), "{body}");
    }
}
