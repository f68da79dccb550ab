//! The development outboxes' files (emails and texts): named so a listing is in sending order,
//! written so a reader never sees half a file.

use std::io;
use std::path::Path;

use time::OffsetDateTime;

/// `20261123T094501.123Z-1a2b3c4d.<extension>`: UTC to the millisecond so a directory listing is
/// in sending order, plus random hex so two messages in the same millisecond do not collide.
pub(crate) fn file_name(now: OffsetDateTime, extension: &str) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z-{}.{extension}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond(),
        crate::mail::random_hex(4)
    )
}

/// Writes one message into the outbox `dir` as `{time}-{random}.{extension}` (see [`file_name`])
/// and returns its path. The bytes go to a temporary name first, which does not end in
/// `.{extension}`, so a watcher of the outbox never picks up a half-written file.
pub(crate) async fn write(dir: &Path, now: OffsetDateTime, extension: &str, bytes: Vec<u8>) -> io::Result<std::path::PathBuf> {
    let name = file_name(now, extension);
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let target = path.clone();
    tokio::task::spawn_blocking(move || write_atomically(&tmp, &target, &bytes)).await.map_err(|e| io::Error::other(e.to_string()))??;
    Ok(path)
}

/// Writes `tmp`, then renames it to `target` in the same directory.
fn write_atomically(tmp: &Path, target: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .and_then(|mut file| file.write_all(bytes))
        .and_then(|()| std::fs::rename(tmp, target));
    if result.is_err() {
        // Best effort: a leftover temp file is harmless, the write error is what matters.
        let _ = std::fs::remove_file(tmp);
    }
    result
}


#[cfg(test)]
mod tests {
    use super::file_name;

    /// For both outboxes' endings: the email one (`eml`) and the text one (`sms.json`).
    #[test]
    fn file_names_sort_by_time_and_differ_within_a_millisecond() {
        for extension in ["eml", "sms.json"] {
            let name = |t| file_name(t, extension);
            let t = time::macros::datetime!(2026-11-23 09:45:01.123 UTC);
            let a = name(t);
            assert!(a.starts_with("20261123T094501.123Z-"), "{a}");
            assert!(a.ends_with(&format!(".{extension}")), "{a}");
            assert_eq!(a.len(), format!("20261123T094501.123Z-1a2b3c4d.{extension}").len());
            assert_ne!(a, name(t));
            assert!(name(t + time::Duration::milliseconds(1)) > name(t));
            assert!(name(t + time::Duration::seconds(1)) > name(t + time::Duration::milliseconds(999)));
        }
    }
}

/// What the outboxes' tests share: the files an outbox holds, and the log lines a send wrote.
#[cfg(test)]
pub(crate) mod testing {
    use std::io;
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex};

    /// Every file in `dir`, sorted: by time, since the names start with it.
    pub fn files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        files
    }

    /// This thread's log lines, from [`capture_logs`] until it is dropped.
    pub struct Logs {
        captured: Captured,
        _guard: tracing::subscriber::DefaultGuard,
    }

    impl Logs {
        pub fn text(&self) -> String {
            String::from_utf8(self.captured.0.lock().unwrap().clone()).unwrap()
        }
    }

    pub fn capture_logs() -> Logs {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
        let guard = tracing::subscriber::set_default(subscriber);
        // Another test thread may have hit the log line first, with no subscriber: without this
        // its cached "nobody listens" would hide the line from ours.
        tracing::callsite::rebuild_interest_cache();
        Logs { captured, _guard: guard }
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
}
