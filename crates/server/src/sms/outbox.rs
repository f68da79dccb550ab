//! The development outbox for text messages (C10): every SMS becomes one `.sms.json` file in a
//! directory and one log line, so a fresh checkout can enrol and use the SMS second factor with no
//! gateway.

use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{check, masked, OutgoingSms, SmsError, SmsGateway};

/// What one outbox file holds.
#[derive(Serialize)]
struct OutboxFile<'a> {
    to: &'a str,
    body: &'a str,
    /// When it was written, RFC 3339 in UTC.
    time: String,
}

#[derive(Debug)]
pub struct OutboxSms {
    dir: PathBuf,
}

impl OutboxSms {
    /// Creates `dir` (and its parents) so that the first text does not fail on a fresh checkout.
    /// It may be the email outbox's directory: the file names end differently (`.sms.json`).
    pub fn new(dir: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait::async_trait]
impl SmsGateway for OutboxSms {
    async fn send(&self, sms: &OutgoingSms, now: OffsetDateTime) -> Result<(), SmsError> {
        let to = check(sms)?;
        let time = now.format(&Rfc3339).map_err(|e| SmsError::Outbox(io::Error::other(e.to_string())))?;
        // The body, and with it the code, goes into the file: reading the code there is what the
        // development outbox is for. It goes nowhere else: not into the log line below, not into
        // an error.
        let json = serde_json::to_vec_pretty(&OutboxFile { to: to.as_str(), body: &sms.body, time })
            .map_err(|e| SmsError::Outbox(io::Error::other(e.to_string())))?;
        let path = crate::outbox_file::write(&self.dir, now, EXTENSION, json).await.map_err(SmsError::Outbox)?;

        tracing::info!(path = %path.display(), to = %masked(to.as_str()), "text message written to the development outbox");
        Ok(())
    }
}

const EXTENSION: &str = "sms.json";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox_file::testing::{capture_logs, files};
    use crate::sms::{message_for_code, SmsPurpose};

    #[tokio::test]
    async fn writes_one_parseable_json_file_per_message() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nested/outbox");
        let outbox = OutboxSms::new(dir.clone()).unwrap();
        assert!(dir.is_dir(), "new() creates the directory");

        let at = time::macros::datetime!(2026-11-23 09:45:01.123 UTC);
        let first = OutgoingSms {
            to: "+15550104477".into(),
            body: message_for_code("Organization Inc.", "123456", SmsPurpose::SignIn),
        };
        // Typed with spaces: the file holds the canonical E.164 form the gateway would dial.
        let second = OutgoingSms {
            to: "+44 20 7946 0958".into(),
            body: message_for_code("Organization Inc.", "654321", SmsPurpose::VerifyNumber),
        };
        outbox.send(&first, at).await.unwrap();
        outbox.send(&second, at).await.unwrap();

        let files = files(&dir);
        assert_eq!(files.len(), 2, "one file per text and no temp files left: {files:?}");
        let mut seen = Vec::new();
        for file in &files {
            assert!(file.to_string_lossy().ends_with(".sms.json"), "{file:?}");
            assert!(file.file_name().unwrap().to_string_lossy().starts_with("20261123T094501.123Z-"), "the caller's time: {file:?}");
            let json: serde_json::Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
            let time = OffsetDateTime::parse(json["time"].as_str().unwrap(), &Rfc3339).unwrap();
            assert_eq!(time, at, "the caller's time");
            seen.push((json["to"].as_str().unwrap().to_owned(), json["body"].as_str().unwrap().to_owned()));
        }
        seen.sort();
        assert_eq!(seen[0], ("+15550104477".to_owned(), first.body.clone()));
        assert_eq!(seen[1], ("+442079460958".to_owned(), second.body.clone()));
    }

    #[tokio::test]
    async fn invalid_texts_write_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let outbox = OutboxSms::new(tmp.path().to_path_buf()).unwrap();
        let bad_number = OutgoingSms { to: "0170 1234567".into(), body: "123456".into() };
        assert!(matches!(outbox.send(&bad_number, OffsetDateTime::UNIX_EPOCH).await, Err(SmsError::InvalidNumber)));
        let empty = OutgoingSms { to: "+15550104477".into(), body: " ".into() };
        assert!(matches!(outbox.send(&empty, OffsetDateTime::UNIX_EPOCH).await, Err(SmsError::EmptyBody)));
        assert!(files(tmp.path()).is_empty());
    }

    #[tokio::test]
    async fn logs_the_file_and_the_masked_number_but_not_the_code() {
        let logs = capture_logs();

        let tmp = tempfile::tempdir().unwrap();
        let outbox = OutboxSms::new(tmp.path().to_path_buf()).unwrap();
        let sms = OutgoingSms { to: "+15550104477".into(), body: message_for_code("Org", "918273", SmsPurpose::SignIn) };
        outbox.send(&sms, OffsetDateTime::UNIX_EPOCH).await.unwrap();

        let log = logs.text();
        let file = files(tmp.path()).remove(0);
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(log.contains(&file.display().to_string()), "{log}");
        assert!(log.contains("•••• 4477"), "{log}");
        assert!(!log.contains("918273") && !log.contains("+15550104477"), "{log}");
    }
}
