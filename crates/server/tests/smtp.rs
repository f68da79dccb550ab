//! The SMTP mailer against a real SMTP server on loopback (aiosmtpd): what a person's mail server
//! would receive for the welcome email and a password reset covering two accounts.

#[path = "support/smtp.rs"]
mod smtp;

use std::time::Duration;

use latchkey_server::mail::templates::{self, LinkEntry, LinkKind};
use latchkey_server::mail::{MailError, Mailer, SmtpConfig, SmtpMailer, SmtpSecurity};
use smtp::{ReceivedMail, SmtpSink};

fn mailer_for(sink: &SmtpSink) -> SmtpMailer {
    SmtpMailer::new(&SmtpConfig {
        host: "127.0.0.1".into(),
        port: sink.port,
        security: SmtpSecurity::None,
        username: None,
        password: None,
        from: "no-reply@latchkey.test".into(),
        timeout_secs: Some(5),
    })
    .expect("SMTP mailer")
}

fn assert_both_parts_contain(mail: &ReceivedMail, needle: &str) {
    assert!(mail.text.contains(needle), "text part lacks {needle:?}:\n{}", mail.text);
    assert!(mail.html.contains(needle), "HTML part lacks {needle:?}:\n{}", mail.html);
}

#[tokio::test]
async fn welcome_email_arrives_with_both_parts_and_the_complete_setup_link() {
    let sink = SmtpSink::start().await;
    let mailer = mailer_for(&sink);
    let url = "https://portal.test/setup#welcome-token-1";
    let email = templates::welcome("ann@organization.com", "Organization Inc.", "101@organization.com", url);

    mailer.send(&email, time::OffsetDateTime::now_utc()).await.expect("sent");

    let received = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 1, "aiosmtpd log:\n{}", sink.log());
    let mail = &received[0];
    assert_eq!(mail.to, vec!["ann@organization.com".to_owned()]);
    assert_eq!(mail.envelope_to, vec!["ann@organization.com".to_owned()]);
    assert!(mail.from.contains("Latchkey") && mail.from.contains("no-reply@latchkey.test"), "{}", mail.from);
    assert_eq!(mail.subject, email.subject);
    assert!(mail.subject.contains("Organization Inc."));
    for needle in ["Organization Inc. via Latchkey", "101@organization.com", url, "24 hours", "Complete Setup"] {
        assert_both_parts_contain(mail, needle);
    }
    assert!(mail.html.contains(&format!("<a href=\"{url}\"")), "a real link in the HTML part");
    assert!(mail.text.lines().any(|line| line.trim() == url), "the URL on a line of its own:\n{}", mail.text);
    // What arrived is exactly what was rendered (modulo line endings): no transfer-encoding damage.
    assert_eq!(mail.text.replace("\r\n", "\n").trim_end(), email.text.trim_end());
}

#[tokio::test]
async fn one_reset_email_lists_both_login_names_each_with_its_own_link() {
    let sink = SmtpSink::start().await;
    let mailer = mailer_for(&sink);
    let entries = [
        LinkEntry {
            login_name: "101@organization.com".into(),
            company_name: "Organization Inc.".into(),
            url: "https://portal.test/reset#token-for-101".into(),
            kind: LinkKind::PasswordReset,
        },
        LinkEntry {
            login_name: "102@organization.com".into(),
            company_name: "Organization Inc.".into(),
            url: "https://portal.test/reset#token-for-102".into(),
            kind: LinkKind::PasswordReset,
        },
    ];
    let email = templates::password_reset("frontdesk@organization.com", &entries);

    mailer.send(&email, time::OffsetDateTime::now_utc()).await.expect("sent");

    let received = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 1, "one email for both accounts; aiosmtpd log:\n{}", sink.log());
    let mail = &received[0];
    assert_eq!(mail.to, vec!["frontdesk@organization.com".to_owned()]);
    assert_eq!(mail.subject, email.subject);
    for needle in ["Organization Inc.", "3 hours", "ignore this email"] {
        assert_both_parts_contain(mail, needle);
    }
    for entry in &entries {
        assert_both_parts_contain(mail, &entry.login_name);
        assert_both_parts_contain(mail, &entry.url);
        assert!(mail.html.contains(&format!("<a href=\"{}\"", entry.url)));
    }
    let at = |s: &str| mail.text.find(s).unwrap_or(usize::MAX);
    assert!(
        at("101@organization.com") < at("token-for-101") && at("token-for-101") < at("102@organization.com"),
        "each link follows its own login name:\n{}",
        mail.text
    );
}

#[tokio::test]
async fn several_emails_arrive_in_order_through_one_mailer() {
    let sink = SmtpSink::start().await;
    let mailer = mailer_for(&sink);
    for n in 0..3 {
        let email = templates::pin_changed(
            &format!("user{n}@organization.com"),
            "Organization Inc.",
            &format!("10{n}@organization.com"),
            time::OffsetDateTime::now_utc(),
        );
        mailer.send(&email, time::OffsetDateTime::now_utc()).await.expect("sent");
    }
    let received = sink.wait_for(3, Duration::from_secs(10)).await;
    let to: Vec<_> = received.iter().map(|m| m.to.join(",")).collect();
    assert_eq!(to, ["user0@organization.com", "user1@organization.com", "user2@organization.com"]);
}

#[tokio::test]
async fn a_refused_connection_is_an_error_that_names_no_link() {
    let sink = SmtpSink::start().await;
    let port = sink.port;
    drop(sink); // nothing listens there any more
    let mailer = SmtpMailer::new(&SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        security: SmtpSecurity::None,
        username: None,
        password: None,
        from: "no-reply@latchkey.test".into(),
        timeout_secs: Some(2),
    })
    .expect("SMTP mailer");
    let email =
        templates::welcome("ann@organization.com", "Org", "101@org.test", "https://portal.test/setup#secret-token");
    let err = mailer.send(&email, time::OffsetDateTime::now_utc()).await.expect_err("nobody listens");
    assert!(matches!(err, MailError::Connection), "{err:?}");
    let shown = format!("{err} / {err:?}");
    assert!(!shown.contains("secret-token") && !shown.contains("https://"), "{shown}");
}
