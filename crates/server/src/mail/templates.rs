//! The emails Latchkey sends, each rendered to a subject, an HTML part and a plain-text part that
//! says the same with every URL written out (askama templates in `templates/email/`).
//!
//! The wording follows the seed: the welcome email's Complete Setup link lasts 24 hours, reset links
//! 3 hours, both work once. The lifetimes come from `latchkey_core`, so the emails cannot drift from
//! what the links really do.

use askama::Template;
use latchkey_core::flows::email_link::LinkPurpose;
use time::OffsetDateTime;

use super::{OutgoingEmail, PRODUCT_NAME};

/// One account in a password reset email: an address can be the designated email of several
/// accounts, and each gets its own link.
#[derive(Clone, Debug)]
pub struct LinkEntry {
    pub login_name: String,
    pub company_name: String,
    pub url: String,
    pub kind: LinkKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkKind {
    PasswordReset,
    /// An invited account that asks for a reset has no password to reset: it gets a fresh
    /// Complete Setup link (the welcome link) instead.
    CompleteSetup,
}

impl LinkKind {
    pub fn purpose(self) -> LinkPurpose {
        match self {
            LinkKind::PasswordReset => LinkPurpose::PasswordReset,
            LinkKind::CompleteSetup => LinkPurpose::Welcome,
        }
    }

    pub fn button_label(self) -> &'static str {
        match self {
            LinkKind::PasswordReset => "Reset Password",
            LinkKind::CompleteSetup => "Complete Setup",
        }
    }

    pub fn hours(self) -> i64 {
        self.purpose().lifetime().whole_hours()
    }

    pub fn is_complete_setup(self) -> bool {
        self == LinkKind::CompleteSetup
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordChange {
    /// Through a password reset link: every session has been ended (C4).
    Reset,
    /// By the signed-in user from the account page.
    Changed,
}

// Each email is one model rendered by two templates; askama ties a struct to one template, hence
// the thin `…Html` / `…Text` wrappers around a shared model.

struct Welcome<'a> {
    subject: String,
    sender: String,
    heading: String,
    company_name: &'a str,
    login_name: &'a str,
    url: &'a str,
    hours: i64,
}

#[derive(Template)]
#[template(path = "email/welcome.html")]
struct WelcomeHtml<'a> {
    m: &'a Welcome<'a>,
}

#[derive(Template)]
#[template(path = "email/welcome.txt")]
struct WelcomeText<'a> {
    m: &'a Welcome<'a>,
}

pub fn welcome(to: &str, company_name: &str, login_name: &str, complete_setup_url: &str) -> OutgoingEmail {
    let m = Welcome {
        subject: format!("Welcome to {company_name}: complete your account setup"),
        sender: sender(company_name),
        heading: format!("Welcome to {company_name}"),
        company_name,
        login_name,
        url: complete_setup_url,
        hours: LinkPurpose::Welcome.lifetime().whole_hours(),
    };
    email(to, &m.subject, &WelcomeText { m: &m }, &WelcomeHtml { m: &m })
}

struct ConfirmEmail<'a> {
    subject: String,
    sender: String,
    company_name: &'a str,
    login_name: &'a str,
    url: &'a str,
    hours: i64,
}

#[derive(Template)]
#[template(path = "email/confirm_email.html")]
struct ConfirmEmailHtml<'a> {
    m: &'a ConfirmEmail<'a>,
}

#[derive(Template)]
#[template(path = "email/confirm_email.txt")]
struct ConfirmEmailText<'a> {
    m: &'a ConfirmEmail<'a>,
}

/// The confirmation link sent to an additional email: until it is used, the address cannot sign
/// in by SSO (C7).
pub fn email_confirmation(to: &str, company_name: &str, login_name: &str, confirm_url: &str) -> OutgoingEmail {
    let m = ConfirmEmail {
        subject: format!("{company_name}: confirm your email address"),
        sender: sender(company_name),
        company_name,
        login_name,
        url: confirm_url,
        hours: LinkPurpose::EmailConfirmation.lifetime().whole_hours(),
    };
    email(to, &m.subject, &ConfirmEmailText { m: &m }, &ConfirmEmailHtml { m: &m })
}

struct PasswordReset<'a> {
    subject: String,
    sender: String,
    heading: &'static str,
    intro: String,
    companies: String,
    entries: &'a [LinkEntry],
}

#[derive(Template)]
#[template(path = "email/password_reset.html")]
struct PasswordResetHtml<'a> {
    m: &'a PasswordReset<'a>,
}

#[derive(Template)]
#[template(path = "email/password_reset.txt")]
struct PasswordResetText<'a> {
    m: &'a PasswordReset<'a>,
}

pub fn password_reset(to: &str, entries: &[LinkEntry]) -> OutgoingEmail {
    let companies = distinct(entries.iter().map(|e| e.company_name.as_str()));
    let only_setup = !entries.is_empty() && entries.iter().all(|e| e.kind.is_complete_setup());
    let heading = if only_setup { "Complete your account setup" } else { "Reset your password" };
    let subject = match companies.as_slice() {
        [company] => format!("{company}: {}", heading.to_lowercase()),
        _ => heading.to_owned(),
    };
    let intro = if entries.len() > 1 {
        format!(
            "We received a request to reset the password for this email address. It is the designated \
             email of {} accounts, so each login name below has its own link.",
            entries.len()
        )
    } else {
        "We received a request to reset the password of the account linked to this email address.".to_owned()
    };
    let m = PasswordReset {
        subject,
        sender: sender_of(&companies),
        heading,
        intro,
        companies: join_names(&companies),
        entries,
    };
    email(to, &m.subject, &PasswordResetText { m: &m }, &PasswordResetHtml { m: &m })
}

struct ForgotLoginName<'a> {
    subject: String,
    sender: String,
    heading: &'static str,
    intro: &'static str,
    companies: String,
    accounts: &'a [(String, String)],
    sign_in_url: &'a str,
}

#[derive(Template)]
#[template(path = "email/forgot_login_name.html")]
struct ForgotLoginNameHtml<'a> {
    m: &'a ForgotLoginName<'a>,
}

#[derive(Template)]
#[template(path = "email/forgot_login_name.txt")]
struct ForgotLoginNameText<'a> {
    m: &'a ForgotLoginName<'a>,
}

/// `accounts` are `(login_name, company_name)` pairs.
pub fn forgot_login_name(to: &str, accounts: &[(String, String)], sign_in_url: &str) -> OutgoingEmail {
    let companies = distinct(accounts.iter().map(|(_, company)| company.as_str()));
    let (heading, intro) = match accounts.len() {
        0 => ("Your login name", "No account uses this email address as its designated email."),
        1 => ("Your login name", "You asked for the login name linked to this email address:"),
        _ => ("Your login names", "You asked for the login names linked to this email address:"),
    };
    let subject = match companies.as_slice() {
        [company] => format!("{company}: {}", heading.to_lowercase()),
        _ => heading.to_owned(),
    };
    let m = ForgotLoginName {
        subject,
        sender: sender_of(&companies),
        heading,
        intro,
        companies: join_names(&companies),
        accounts,
        sign_in_url,
    };
    email(to, &m.subject, &ForgotLoginNameText { m: &m }, &ForgotLoginNameHtml { m: &m })
}

struct PasswordChanged<'a> {
    subject: String,
    sender: String,
    heading: &'static str,
    what_happened: String,
    sessions_ended: bool,
    company_name: &'a str,
    login_name: &'a str,
    forgot_password_url: &'a str,
}

#[derive(Template)]
#[template(path = "email/password_changed.html")]
struct PasswordChangedHtml<'a> {
    m: &'a PasswordChanged<'a>,
}

#[derive(Template)]
#[template(path = "email/password_changed.txt")]
struct PasswordChangedText<'a> {
    m: &'a PasswordChanged<'a>,
}

/// The security notification after a password reset or change (C4, C9).
pub fn password_changed(
    to: &str,
    company_name: &str,
    login_name: &str,
    how: PasswordChange,
    forgot_password_url: &str,
    at: OffsetDateTime,
) -> OutgoingEmail {
    let (heading, verb) = match how {
        PasswordChange::Reset => ("Your password was reset", "reset with a password reset link"),
        PasswordChange::Changed => ("Your password was changed", "changed"),
    };
    let m = PasswordChanged {
        subject: format!("{company_name}: {}", heading.to_lowercase()),
        sender: sender(company_name),
        heading,
        what_happened: format!(
            "The password of your account {login_name} at {company_name} was {verb} on {}.",
            when(at)
        ),
        sessions_ended: how == PasswordChange::Reset,
        company_name,
        login_name,
        forgot_password_url,
    };
    email(to, &m.subject, &PasswordChangedText { m: &m }, &PasswordChangedHtml { m: &m })
}

struct PinChanged<'a> {
    subject: String,
    sender: String,
    what_happened: String,
    company_name: &'a str,
    login_name: &'a str,
}

#[derive(Template)]
#[template(path = "email/pin_changed.html")]
struct PinChangedHtml<'a> {
    m: &'a PinChanged<'a>,
}

#[derive(Template)]
#[template(path = "email/pin_changed.txt")]
struct PinChangedText<'a> {
    m: &'a PinChanged<'a>,
}

/// The security notification after a voicemail PIN change.
pub fn pin_changed(to: &str, company_name: &str, login_name: &str, at: OffsetDateTime) -> OutgoingEmail {
    let m = PinChanged {
        subject: format!("{company_name}: your voicemail PIN was changed"),
        sender: sender(company_name),
        what_happened: format!(
            "The voicemail PIN of your account {login_name} at {company_name} was changed on {}.",
            when(at)
        ),
        company_name,
        login_name,
    };
    email(to, &m.subject, &PinChangedText { m: &m }, &PinChangedHtml { m: &m })
}

/// Why a code is emailed: each gets its own wording so the reader knows what the code confirms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmailCodePurpose {
    /// The email second factor at sign-in.
    SignIn,
    /// Proves the designated email reaches its owner (C6: before it carries codes).
    VerifyEmail,
    /// Enrolling email as a second factor.
    EnrollEmail,
    /// Confirms a change to two-factor authentication: removing a method, new recovery codes.
    Verification,
}

struct OneTimeCodeMail<'a> {
    subject: String,
    sender: String,
    heading: &'static str,
    what: &'static str,
    purpose: &'static str,
    code: &'a str,
    minutes: i64,
    company_name: &'a str,
    login_name: &'a str,
}

#[derive(Template)]
#[template(path = "email/one_time_code.html")]
struct OneTimeCodeHtml<'a> {
    m: &'a OneTimeCodeMail<'a>,
}

#[derive(Template)]
#[template(path = "email/one_time_code.txt")]
struct OneTimeCodeText<'a> {
    m: &'a OneTimeCodeMail<'a>,
}

/// An emailed code (C6): the body says what it confirms and that it expires in 10 minutes.
pub fn one_time_code(to: &str, company_name: &str, login_name: &str, code: &str, purpose: EmailCodePurpose) -> OutgoingEmail {
    let (heading, what, purpose) = match purpose {
        EmailCodePurpose::SignIn => ("Your sign-in code", "sign-in code", "finish signing in"),
        EmailCodePurpose::VerifyEmail => ("Verify your email address", "code to verify your email", "verify this email address"),
        EmailCodePurpose::EnrollEmail => ("Turn on email codes", "code to turn on email codes", "turn on email codes for two-factor authentication"),
        EmailCodePurpose::Verification => ("Your verification code", "verification code", "confirm a change to two-factor authentication"),
    };
    let m = OneTimeCodeMail {
        // Not the code: subjects are logged when a send fails, and codes never go in a log.
        subject: format!("{company_name}: your {what}"),
        sender: sender(company_name),
        heading,
        what,
        purpose,
        code,
        minutes: latchkey_core::two_factor::one_time_code::LIFETIME.whole_minutes(),
        company_name,
        login_name,
    };
    email(to, &m.subject, &OneTimeCodeText { m: &m }, &OneTimeCodeHtml { m: &m })
}

fn email(to: &str, subject: &str, text: &impl Template, html: &impl Template) -> OutgoingEmail {
    let mut text = render(text);
    // askama drops the template file's final newline; a text part should end with one.
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    OutgoingEmail { to: to.to_owned(), subject: subject.to_owned(), text, html: render(html) }
}

/// Rendering only fails if a value's `Display` fails, which `&str` and integers never do. Should it
/// happen anyway, the part is left empty and the mailers refuse the email (`MailError::EmptyBody`)
/// rather than panic or send a blank message.
fn render(template: &impl Template) -> String {
    template.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "an email template failed to render");
        String::new()
    })
}

/// "Organization Inc. via Latchkey": who the email is from, as shown at the top of each email.
fn sender(company_name: &str) -> String {
    format!("{company_name} via {PRODUCT_NAME}")
}

fn sender_of(companies: &[&str]) -> String {
    match companies {
        [company] => sender(company),
        _ => PRODUCT_NAME.to_owned(),
    }
}

fn distinct<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for name in names {
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

fn join_names(names: &[&str]) -> String {
    match names {
        [] => "your company".to_owned(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// "23 November 2026 at 09:45 UTC": the notification says when, in a form nobody misreads.
fn when(t: OffsetDateTime) -> String {
    format!("{} {} {} at {:02}:{:02} UTC", t.day(), t.month(), t.year(), t.hour(), t.minute())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The time a notification is sent, from the caller's clock: "23 November 2026 at 09:45 UTC".
    const AT: OffsetDateTime = time::macros::datetime!(2026-11-23 09:45:12 UTC);
    const AT_TEXT: &str = "23 November 2026 at 09:45 UTC";

    fn reset_entry(login: &str, company: &str, url: &str, kind: LinkKind) -> LinkEntry {
        LinkEntry { login_name: login.into(), company_name: company.into(), url: url.into(), kind }
    }

    /// The bulletproof button: a table cell in the accent colour around a link to `url`.
    fn has_button(html: &str, url: &str, label: &str) -> bool {
        let link = format!("<a href=\"{url}\"");
        let Some(at) = html.find(&link) else { return false };
        let before = &html[..at];
        let after = &html[at..];
        let cell = before.rfind("<td").map(|i| &before[i..]).unwrap_or("");
        let label_end = after.find("</a>").unwrap_or(after.len());
        cell.contains("bgcolor=\"#1d4ed8\"")
            && before.contains("<table role=\"presentation\"")
            && after[..label_end].ends_with(label)
    }

    #[test]
    fn welcome_has_the_company_the_login_name_the_button_and_24_hours() {
        let e = welcome(
            "ann@organization.com",
            "Organization Inc.",
            "101@organization.com",
            "https://portal.test/setup#w1",
        );
        assert_eq!(e.to, "ann@organization.com");
        assert!(e.subject.contains("Organization Inc."), "{}", e.subject);
        for part in [&e.text, &e.html] {
            assert!(part.contains("Organization Inc. via Latchkey"), "{part}");
            assert!(part.contains("101@organization.com"));
            assert!(part.contains("24 hours"), "{part}");
            assert!(part.contains("only once"));
            assert!(part.contains("https://portal.test/setup#w1"));
            assert!(part.contains("voicemail PIN"));
        }
        assert!(has_button(&e.html, "https://portal.test/setup#w1", "Complete Setup"), "{}", e.html);
        assert!(e.html.contains("max-width:560px"));
        // The plain-text part writes the URL on a line of its own so it stays clickable.
        assert!(e.text.lines().any(|l| l == "https://portal.test/setup#w1"), "{}", e.text);
        assert!(!e.text.contains('<'), "no markup in the text part: {}", e.text);
    }

    #[test]
    fn reset_lists_every_login_name_with_its_own_link_and_3_hours() {
        let entries = [
            reset_entry(
                "101@organization.com",
                "Organization Inc.",
                "https://portal.test/reset#a",
                LinkKind::PasswordReset,
            ),
            reset_entry(
                "102@organization.com",
                "Organization Inc.",
                "https://portal.test/reset#b",
                LinkKind::PasswordReset,
            ),
        ];
        let e = password_reset("desk@organization.com", &entries);
        assert_eq!(e.subject, "Organization Inc.: reset your password");
        for part in [&e.text, &e.html] {
            assert!(part.contains("Organization Inc. via Latchkey"));
            assert!(part.contains("3 hours") && part.contains("only once"), "{part}");
            assert!(part.contains("ignore this email"));
            assert!(part.contains("2 accounts"));
        }
        for entry in &entries {
            assert!(e.text.contains(&entry.login_name) && e.html.contains(&entry.login_name));
            assert!(e.text.lines().any(|l| l == entry.url), "{}", e.text);
            assert!(has_button(&e.html, &entry.url, "Reset Password"), "{}", e.html);
        }
        // Each link follows its own login name, not the other one's.
        let pos = |s: &str| e.text.find(s).unwrap();
        assert!(pos("101@") < pos("reset#a") && pos("reset#a") < pos("102@") && pos("102@") < pos("reset#b"));
    }

    #[test]
    fn an_invited_account_in_a_reset_gets_complete_setup_for_24_hours() {
        let entries = [
            reset_entry("101@org.test", "Org A", "https://portal.test/reset#a", LinkKind::PasswordReset),
            reset_entry("7@other.test", "Other B", "https://portal.test/setup#b", LinkKind::CompleteSetup),
        ];
        let e = password_reset("shared@example.com", &entries);
        assert_eq!(e.subject, "Reset your password");
        assert!(has_button(&e.html, "https://portal.test/reset#a", "Reset Password"));
        assert!(has_button(&e.html, "https://portal.test/setup#b", "Complete Setup"));
        for part in [&e.text, &e.html] {
            assert!(part.contains("3 hours") && part.contains("24 hours"), "{part}");
            assert!(part.contains("Org A") && part.contains("Other B"));
            assert!(part.contains("not been set up yet"));
        }
        let only_setup = password_reset("a@b.test", &entries[1..]);
        assert_eq!(only_setup.subject, "Other B: complete your account setup");
    }

    #[test]
    fn forgot_login_name_lists_the_login_names_and_the_sign_in_link() {
        let accounts = vec![
            ("101@organization.com".to_owned(), "Organization Inc.".to_owned()),
            ("205@organization.com".to_owned(), "Organization Inc.".to_owned()),
        ];
        let e = forgot_login_name("desk@organization.com", &accounts, "https://portal.test/sign-in");
        assert_eq!(e.subject, "Organization Inc.: your login names");
        for part in [&e.text, &e.html] {
            assert!(part.contains("Organization Inc. via Latchkey"));
            assert!(part.contains("101@organization.com") && part.contains("205@organization.com"));
            assert!(part.contains("https://portal.test/sign-in"));
        }
        assert!(has_button(&e.html, "https://portal.test/sign-in", "Sign In"));
        assert!(e.text.lines().any(|l| l == "- 101@organization.com (Organization Inc.)"), "{}", e.text);
    }

    #[test]
    fn password_changed_is_a_security_notification_with_a_way_out() {
        let reset =
            password_changed("a@org.test", "Org", "101@org.test", PasswordChange::Reset, "https://portal.test/forgot", AT);
        let changed = password_changed(
            "a@org.test",
            "Org",
            "101@org.test",
            PasswordChange::Changed,
            "https://portal.test/forgot",
            AT,
        );
        assert_eq!(reset.subject, "Org: your password was reset");
        assert_eq!(changed.subject, "Org: your password was changed");
        for e in [&reset, &changed] {
            for part in [&e.text, &e.html] {
                assert!(part.contains("Org via Latchkey") && part.contains("101@org.test"));
                assert!(part.contains("If it was not you"));
                assert!(part.contains("https://portal.test/forgot"));
                assert!(part.contains(AT_TEXT), "the caller's time: {part}");
            }
        }
        assert!(reset.text.contains("Every session") && reset.html.contains("Every session"));
        assert!(!changed.text.contains("Every session") && !changed.html.contains("Every session"));
    }

    #[test]
    fn pin_changed_names_the_account_and_the_company() {
        let e = pin_changed("a@org.test", "Org", "101@org.test", AT);
        assert_eq!(e.subject, "Org: your voicemail PIN was changed");
        for part in [&e.text, &e.html] {
            assert!(part.contains("Org via Latchkey") && part.contains("101@org.test"));
            assert!(part.contains(AT_TEXT), "the caller's time: {part}");
            assert!(part.contains("voicemail PIN was changed"));
        }
    }

    #[test]
    fn html_escapes_what_people_typed_and_text_keeps_it_verbatim() {
        let company = "<script>alert(1)</script> & \"Co\"";
        let e = welcome("a@b.test", company, "101@b.test", "https://portal.test/setup?a=1&b=2");
        assert!(!e.html.contains("<script>"), "{}", e.html);
        assert!(e.html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;Co&quot;"));
        assert!(e.html.contains("href=\"https://portal.test/setup?a=1&amp;b=2\""));
        assert!(e.text.contains(company), "text is not HTML: {}", e.text);
        assert!(e.text.contains("https://portal.test/setup?a=1&b=2"));

        let entries = [reset_entry("1@b.test", company, "https://x.test/r", LinkKind::PasswordReset)];
        for html in [
            password_reset("a@b.test", &entries).html,
            forgot_login_name("a@b.test", &[("1@b.test".into(), company.into())], "https://x.test").html,
            password_changed("a@b.test", company, "1@b.test", PasswordChange::Changed, "https://x.test", AT).html,
            pin_changed("a@b.test", company, "1@b.test", AT).html,
        ] {
            assert!(!html.contains("<script>"), "{html}");
            assert!(html.contains("&lt;script&gt;"));
        }
    }

    #[test]
    fn code_emails_carry_the_code_its_purpose_and_lifetime() {
        let e = one_time_code("a@org.test", "Org", "101@org.test", "042917", EmailCodePurpose::Verification);
        assert_eq!(e.subject, "Org: your verification code");
        for part in [&e.text, &e.html] {
            assert!(part.contains("042917") && part.contains("101@org.test"), "{part}");
            assert!(part.contains("confirm a change to two-factor authentication") && part.contains("10 minutes"), "{part}");
        }
        let s = one_time_code("a@org.test", "Org", "101@org.test", "111111", EmailCodePurpose::SignIn);
        assert!(s.text.contains("finish signing in"));
    }

    #[test]
    fn email_confirmation_names_the_account_the_button_and_24_hours() {
        let e = email_confirmation("assistant@org.test", "Org", "101@org.test", "https://portal.test/confirm-email/c1");
        assert_eq!((e.to.as_str(), e.subject.as_str()), ("assistant@org.test", "Org: confirm your email address"));
        for part in [&e.text, &e.html] {
            assert!(part.contains("Org via Latchkey") && part.contains("101@org.test"), "{part}");
            assert!(part.contains("24 hours") && part.contains("only once") && part.contains("single sign-on"), "{part}");
        }
        assert!(has_button(&e.html, "https://portal.test/confirm-email/c1", "Confirm Email"), "{}", e.html);
        assert!(e.text.lines().any(|l| l == "https://portal.test/confirm-email/c1"), "{}", e.text);
    }

    #[test]
    fn lifetimes_match_the_core() {
        assert_eq!(LinkKind::PasswordReset.hours(), 3);
        assert_eq!(LinkKind::CompleteSetup.hours(), 24);
    }

    #[test]
    fn helpers() {
        assert_eq!(join_names(&["A", "B", "C"]), "A, B and C");
        assert_eq!(distinct(["A", "B", "A"].into_iter()), vec!["A", "B"]);
        let t = time::macros::datetime!(2026-11-23 09:05:01 UTC);
        assert_eq!(when(t), "23 November 2026 at 09:05 UTC");
    }
}

struct SecurityNotice<'a> {
    subject: String,
    sender: String,
    title: &'a str,
    what_happened: String,
    company_name: &'a str,
    login_name: &'a str,
}

#[derive(Template)]
#[template(path = "email/security_notice.html")]
struct SecurityNoticeHtml<'a> {
    m: &'a SecurityNotice<'a>,
}

#[derive(Template)]
#[template(path = "email/security_notice.txt")]
struct SecurityNoticeText<'a> {
    m: &'a SecurityNotice<'a>,
}

/// A security notification for a change to how the account signs in (two-factor methods,
/// recovery codes): `title` is the headline, `change` finishes "… of your account X at Y".
pub fn security_notice(
    to: &str,
    company_name: &str,
    login_name: &str,
    title: &str,
    change: &str,
    at: OffsetDateTime,
) -> OutgoingEmail {
    let m = SecurityNotice {
        subject: format!("{company_name}: {}", title.to_lowercase()),
        sender: sender(company_name),
        title,
        what_happened: format!("{change} for your account {login_name} at {company_name} on {}.", when(at)),
        company_name,
        login_name,
    };
    email(to, &m.subject, &SecurityNoticeText { m: &m }, &SecurityNoticeHtml { m: &m })
}
