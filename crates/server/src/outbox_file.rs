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

/// Writes `tmp`, then renames it to `target` in the same directory.
pub(crate) fn write_atomically(tmp: &Path, target: &Path, bytes: &[u8]) -> io::Result<()> {
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

