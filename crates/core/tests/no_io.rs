//! Core holds the rules and the flows' states, and does no I/O: it reads no file, opens no socket,
//! starts no process and reads no environment, so every rule can be tested without a machine
//! around it (issue 17, item 8). Checked on the crate's manifest and source, so CI stops a change
//! that gives core a way to reach the outside world.

use std::path::{Path, PathBuf};

/// Every dependency core may have, and why it is pure computation. A new one fails this test
/// until it is read and added here.
const ALLOWED_DEPENDENCIES: [(&str, &str); 14] = [
    ("thiserror", "error types"),
    ("serde", "(de)serialising values, no format of its own"),
    ("rand", "the random source (the OS's CSPRNG is a system call, not I/O to the outside world)"),
    ("sha2", "hashes"),
    ("hmac", "MACs"),
    ("subtle", "constant-time comparisons"),
    ("base64", "encoding"),
    ("time", "dates and durations (the `Clock` trait reads the system clock only in its production implementation)"),
    ("totp-rs", "RFC 6238 codes, default features off"),
    ("base32", "encoding"),
    ("percent-encoding", "the otpauth URI"),
    ("qrcode", "the QR code as SVG, default features (image) off"),
    ("chacha20poly1305", "sealing TOTP seeds"),
    ("zeroize", "wiping secrets"),
];

/// Paths of the standard library and of crates that reach outside the process.
const FORBIDDEN_IN_SOURCE: [&str; 9] =
    ["std::fs", "std::net", "std::process", "std::env", "std::thread", "std::io", "tokio", "reqwest", "sqlx"];

fn core_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// The names under `[dependencies]` of a Cargo manifest (not dev-dependencies).
fn dependencies(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut inside = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == "[dependencies]";
            continue;
        }
        if inside && !line.is_empty() && !line.starts_with('#') {
            if let Some((name, _)) = line.split_once('=') {
                names.push(name.trim().split('.').next().unwrap_or_default().to_owned());
            }
        }
    }
    names
}

/// The production part of a source file: what comes before its first `#[cfg(test)]` (by this
/// crate's habit, test helpers and the `tests` module close a file), without comments.
fn production_code(source: &str) -> String {
    let code = source.split("#[cfg(test)]").next().unwrap_or_default();
    code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// `path: what` for each forbidden path in `source`'s production code.
fn io_in(path: &str, source: &str) -> Vec<String> {
    let code = production_code(source);
    FORBIDDEN_IN_SOURCE.iter().filter(|f| code.contains(*f)).map(|f| format!("{path}: {f}")).collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source folder").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn core_depends_on_no_crate_that_does_io() {
    let manifest = std::fs::read_to_string(core_dir().join("Cargo.toml")).expect("core's manifest");
    let unknown: Vec<String> =
        dependencies(&manifest).into_iter().filter(|d| !ALLOWED_DEPENDENCIES.iter().any(|(name, _)| name == d)).collect();
    assert!(unknown.is_empty(), "core gained dependencies not known to be free of I/O: {unknown:?} (read them, then list them in ALLOWED_DEPENDENCIES with why)");
}

#[test]
fn core_source_reaches_for_no_file_socket_process_or_environment() {
    let mut files = Vec::new();
    rust_files(&core_dir().join("src"), &mut files);
    assert!(files.len() > 10, "core's source files were found");
    let found: Vec<String> = files
        .iter()
        .flat_map(|f| io_in(&f.display().to_string(), &std::fs::read_to_string(f).expect("a source file")))
        .collect();
    assert!(found.is_empty(), "I/O in core's production code:\n{}", found.join("\n"));
}

/// The checks see what they are for, and not what they must let through.
#[test]
fn the_checks_catch_io_and_pass_tests_and_comments() {
    assert_eq!(io_in("a.rs", "fn f() { std::fs::read(\"x\"); }"), vec!["a.rs: std::fs"]);
    assert_eq!(io_in("a.rs", "use tokio::net::TcpStream;"), vec!["a.rs: tokio"]);
    assert!(io_in("a.rs", "// std::fs is not used here\nfn f() {}").is_empty());
    assert!(io_in("a.rs", "fn f() {}\n#[cfg(test)]\nmod tests { fn g() { std::process::Command::new(\"x\"); } }").is_empty());
    let manifest = "[package]\nname = \"x\"\n[dependencies]\nserde.workspace = true\ntokio = \"1\"\n[dev-dependencies]\nproptest = \"1\"\n";
    assert_eq!(dependencies(manifest), vec!["serde", "tokio"]);
}
