//! The development outbox (C10): every email becomes one `.eml` file in a directory and one log
//! line, so a fresh checkout can activate accounts and reset passwords with no mail server.

use std::io;
use std::path::{Path, PathBuf};

use lettre::message::Mailbox;
use time::OffsetDateTime;

use super::{build_message, parse_from, MailError, Mailer, OutgoingEmail};

pub struct OutboxMailer {
    dir: PathBuf,
    from: Mailbox,
}

impl std::fmt::Debug for OutboxMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxMailer").field("dir", &self.dir).field("from", &self.from.to_string()).finish()
    }
}

impl OutboxMailer {
    /// Creates `dir` (and its parents) so that the first email does not fail on a fresh checkout.
    pub fn new(dir: PathBuf, from: String) -> io::Result<Self> {
        let from = parse_from(&from).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir, from })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait::async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, email: &OutgoingEmail, at: OffsetDateTime) -> Result<(), MailError> {
        let raw = build_message(&self.from, email, at)?.formatted();
        let path = crate::outbox_file::write(&self.dir, at, EXTENSION, raw).await.map_err(MailError::Outbox)?;

        // Logging the links is deliberate and ONLY for the development outbox: the issue asks
        // that a developer can click the Complete Setup / reset link straight from the log. The
        // SMTP mailer must never do this: in production these links are bearer credentials.
        let links = links_in(&email.text);
        tracing::info!(
            path = %path.display(),
            to = %email.to,
            subject = %email.subject,
            links = ?links,
            "email written to the development outbox"
        );
        Ok(())
    }
}

/// The URLs of a plain-text part, which the templates write out on their own or at the end of a
/// sentence.
fn links_in(text: &str) -> Vec<&str> {
    text.split_whitespace()
        .map(|word| word.trim_start_matches(['<', '(']))
        .filter(|word| word.starts_with("https://") || word.starts_with("http://"))
        .map(|word| word.trim_end_matches(['>', ')', '.', ',', ';', ':']))
        .collect()
}

const EXTENSION: &str = "eml";

#[cfg(test)]
mod tests {
    use mail_parser::{MessageParser, PartType};

    use super::*;
    use crate::mail::templates::{self, LinkEntry, LinkKind};
    use crate::outbox_file::testing::{capture_logs, files as eml_files};

    #[test]
    fn links_are_found_in_the_text_part() {
        let text = "Open https://x.test/setup#abc.\nOr (https://x.test/b) or <http://y.test/c>, not ftp://z";
        assert_eq!(links_in(text), vec!["https://x.test/setup#abc", "https://x.test/b", "http://y.test/c"]);
    }

    #[tokio::test]
    async fn writes_one_parseable_eml_per_message() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nested/outbox");
        let mailer = OutboxMailer::new(dir.clone(), "no-reply@latchkey.test".into()).unwrap();
        assert!(dir.is_dir(), "new() creates the directory");

        let welcome = templates::welcome(
            "ann@organization.com",
            "Organization Inc.",
            "101@organization.com",
            "https://portal.test/setup#w1",
        );
        let reset = templates::password_reset(
            "desk@organization.com",
            &[LinkEntry {
                login_name: "102@organization.com".into(),
                company_name: "Organization Inc.".into(),
                url: "https://portal.test/reset#r1".into(),
                kind: LinkKind::PasswordReset,
            }],
        );
        let at = time::macros::datetime!(2026-11-23 09:45:01.123 UTC);
        mailer.send(&welcome, at).await.unwrap();
        mailer.send(&reset, at).await.unwrap();

        let files = eml_files(&dir);
        assert_eq!(files.len(), 2, "one file per email and no temp files left: {files:?}");
        let mut seen = Vec::new();
        for file in &files {
            assert_eq!(file.extension().and_then(|e| e.to_str()), Some("eml"));
            assert!(file.file_name().unwrap().to_string_lossy().starts_with("20261123T094501.123Z-"), "the caller's time: {file:?}");
            let raw = std::fs::read(file).unwrap();
            let msg = MessageParser::default().parse(&raw[..]).expect("parseable RFC 5322");
            let to = msg.to().and_then(|a| a.first()).and_then(|a| a.address()).unwrap().to_string();
            let from = msg.from().and_then(|a| a.first()).unwrap();
            assert_eq!(from.address(), Some("no-reply@latchkey.test"));
            assert_eq!(from.name(), Some("Latchkey"));
            let subject = msg.subject().unwrap().to_string();
            // The parts themselves: `body_text`/`body_html` would convert one into the other and
            // hide a missing part.
            let text = match msg.text_part(0).map(|p| &p.body) {
                Some(PartType::Text(t)) => t.to_string(),
                other => panic!("no text/plain part: {other:?}"),
            };
            let html = match msg.html_part(0).map(|p| &p.body) {
                Some(PartType::Html(h)) => h.to_string(),
                other => panic!("no text/html part: {other:?}"),
            };
            seen.push((to, subject, text, html));
        }
        seen.sort_by(|a, b| a.0.cmp(&b.0));

        let (to, subject, text, html) = &seen[0];
        assert_eq!(to, "ann@organization.com");
        assert_eq!(subject, &welcome.subject);
        assert!(text.contains("https://portal.test/setup#w1") && text.contains("101@organization.com"));
        assert!(html.contains("href=\"https://portal.test/setup#w1\"") && html.contains("Complete Setup"));

        let (to, subject, text, html) = &seen[1];
        assert_eq!(to, "desk@organization.com");
        assert_eq!(subject, &reset.subject);
        assert!(text.contains("https://portal.test/reset#r1") && text.contains("102@organization.com"));
        assert!(html.contains("href=\"https://portal.test/reset#r1\""));
    }

    #[tokio::test]
    async fn logs_the_file_the_recipient_and_the_link() {
        let logs = capture_logs();

        let tmp = tempfile::tempdir().unwrap();
        let mailer = OutboxMailer::new(tmp.path().to_path_buf(), "no-reply@latchkey.test".into()).unwrap();
        let email = templates::welcome("ann@organization.com", "Org", "101@org.test", "https://portal.test/setup#tok");
        mailer.send(&email, OffsetDateTime::UNIX_EPOCH).await.unwrap();

        let log = logs.text();
        let file = eml_files(tmp.path()).remove(0);
        assert!(log.contains(&file.display().to_string()), "{log}");
        assert!(log.contains("ann@organization.com"), "{log}");
        assert!(log.contains("https://portal.test/setup#tok"), "{log}");
    }

    #[test]
    fn an_unusable_from_address_is_refused_at_start() {
        let tmp = tempfile::tempdir().unwrap();
        let err = OutboxMailer::new(tmp.path().to_path_buf(), "nope".into()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
