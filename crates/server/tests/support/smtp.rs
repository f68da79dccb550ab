//! A real SMTP server on loopback for tests: Python's `aiosmtpd` stores every message it accepts in
//! a Maildir, which the test reads back and decodes with mail-parser.
//!
//! Self-contained so any test file can use it: `#[path = "support/smtp.rs"] mod smtp;`, then
//! `let sink = smtp::SmtpSink::start().await;` and point an `SmtpMailer` (security `None`) at
//! `127.0.0.1:sink.port`. The interpreter is `python3` unless `LATCHKEY_TEST_PYTHON` names another.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use latchkey_store::testing::free_port;
use mail_parser::{MessageParser, PartType};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One running `aiosmtpd`; the process is killed and its Maildir deleted on drop.
pub struct SmtpSink {
    pub port: u16,
    child: Child,
    maildir: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// A message as the SMTP server received it. `text` and `html` are the real `text/plain` and
/// `text/html` parts (empty when the message lacks one; never converted from the other part).
#[derive(Clone, Debug)]
pub struct ReceivedMail {
    /// Addresses of the `To` header.
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The `From` header as written, e.g. `"Latchkey" <no-reply@example.com>`.
    pub from: String,
    /// `RCPT TO` of the SMTP envelope, as recorded by aiosmtpd.
    pub envelope_to: Vec<String>,
    pub raw: Vec<u8>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let dir = tempfile::tempdir().expect("temp dir for the SMTP sink");
        let maildir = dir.path().join("maildir");
        let log = dir.path().join("aiosmtpd.log");
        let python = std::env::var("LATCHKEY_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        // The free port is only free until someone else takes it: if the server dies at start,
        // try again with another one.
        for _ in 0..5 {
            let port = free_port();
            let out = File::create(&log).expect("aiosmtpd log file");
            let err = out.try_clone().expect("aiosmtpd log file");
            let mut child = Command::new(&python)
                .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
                .arg(&maildir)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run `{python} -m aiosmtpd` (pip install aiosmtpd): {e}"));
            match wait_until_ready(&mut child, port).await {
                Start::Ready => return SmtpSink { port, child, maildir, log, _dir: dir },
                Start::Exited => continue,
                Start::TimedOut => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("aiosmtpd did not answer on port {port} within {START_TIMEOUT:?}:\n{}", read_log(&log));
                }
            }
        }
        panic!("aiosmtpd did not start:\n{}", read_log(&log));
    }

    /// Everything received so far, oldest first.
    pub async fn messages(&self) -> Vec<ReceivedMail> {
        let mut files = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.maildir.join(sub)) else { continue };
            for entry in entries.flatten() {
                files.push(entry.path());
            }
        }
        files.sort_by_key(|path| delivery_order(path));
        files
            .iter()
            .map(|path| {
                let raw = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
                decode(raw).unwrap_or_else(|| panic!("{} is not a parseable message", path.display()))
            })
            .collect()
    }

    /// Waits until at least `n` messages arrived or `timeout` passed, and returns what is there
    /// either way (the caller asserts the count, so "nothing arrives" can be tested too).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages().await;
            if messages.len() >= n || Instant::now() >= deadline {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Every message to `to` (any case) whose subject contains `subject` (lower-case), once at
    /// least `n` arrived or `timeout` passed (the caller asserts the count).
    pub async fn wait_for_mail_to(&self, to: &str, subject: &str, n: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = Instant::now() + timeout;
        loop {
            let found: Vec<ReceivedMail> = self
                .messages()
                .await
                .into_iter()
                .filter(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(to)) && m.subject.to_lowercase().contains(subject))
                .collect();
            if found.len() >= n || Instant::now() >= deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// What aiosmtpd printed, to explain a failure.
    pub fn log(&self) -> String {
        read_log(&self.log)
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum Start {
    Ready,
    Exited,
    TimedOut,
}

/// Ready means it greets with `220`: a bare TCP accept could be a stranger on a reused port.
async fn wait_until_ready(child: &mut Child, port: u16) -> Start {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return Start::Exited;
        }
        if greets(port).await {
            return Start::Ready;
        }
        if Instant::now() >= deadline {
            return Start::TimedOut;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn greets(port: u16) -> bool {
    let attempt = async {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).await.ok()?;
        let _ = reader.get_mut().write_all(b"QUIT\r\n").await;
        Some(line.starts_with("220"))
    };
    matches!(tokio::time::timeout(Duration::from_secs(2), attempt).await, Ok(Some(true)))
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Python's Maildir names files `<seconds>.M<micros>P<pid>Q<counter>.<host>`; the counter orders
/// messages within one second (the microseconds are not zero-padded, so names do not sort).
fn delivery_order(path: &Path) -> (u64, u64, String) {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
    let mut parts = name.split('.');
    let seconds = parts.next().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
    let counter =
        parts.next().and_then(|unique| unique.rsplit_once('Q')).and_then(|(_, q)| q.parse().ok()).unwrap_or(u64::MAX);
    (seconds, counter, name)
}

fn decode(raw: Vec<u8>) -> Option<ReceivedMail> {
    let message = MessageParser::default().parse(&raw[..])?;
    let to = message
        .to()
        .map(|address| address.iter().filter_map(|a| a.address()).map(str::to_owned).collect())
        .unwrap_or_default();
    let from = message.header_raw("From").unwrap_or_default().trim().to_owned();
    let envelope_to = message
        .header_raw("X-RcptTo")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    let subject = message.subject().unwrap_or_default().to_owned();
    let text = match message.text_part(0).map(|p| &p.body) {
        Some(PartType::Text(text)) => text.to_string(),
        _ => String::new(),
    };
    let html = match message.html_part(0).map(|p| &p.body) {
        Some(PartType::Html(html)) => html.to_string(),
        _ => String::new(),
    };
    Some(ReceivedMail { to, subject, text, html, from, envelope_to, raw: raw.clone() })
}
