//! How facts read on a page: times, method and role names, a device, the password rule's hint,
//! where a code went.

use latchkey_core::two_factor::Method;
use latchkey_core::Role;

/// "24 Nov 2026, 09:00 UTC": what a person reads; the machine form stays in `datetime`.
pub fn human_time(t: time::OffsetDateTime) -> String {
    t.format(&time::macros::format_description!("[day padding:none] [month repr:short] [year], [hour]:[minute] UTC")).unwrap_or_default()
}

pub fn password_hint(min_length: usize) -> String {
    format!("At least {min_length} characters, with at least 1 capital letter and 1 number.")
}

pub fn method_label(m: Method) -> &'static str {
    match m {
        Method::Totp => "Authenticator app",
        Method::Sms => "Text message (SMS)",
        Method::Email => "Email",
    }
}

pub fn role_label(role: Role) -> &'static str {
    match role {
        Role::User => "User",
        Role::Supervisor => "Call Center Supervisor",
        Role::OfficeManager => "Office Manager",
    }
}

/// "Chrome on Linux · 10.0.0.7": enough to recognise a device, nothing more.
pub fn describe_client(ua: Option<&str>, ip: Option<&str>) -> String {
    let ua = ua.unwrap_or("");
    let browser = ["Edg", "Firefox", "Chrome", "Safari"].into_iter().find(|b| ua.contains(b)).map(|b| if b == "Edg" { "Edge" } else { b });
    let os = ["Windows", "Android", "iPhone", "Mac OS", "Linux"].into_iter().find(|o| ua.contains(o)).map(|o| if o == "Mac OS" { "macOS" } else { o });
    let device = match (browser, os) {
        (Some(b), Some(o)) => format!("{b} on {o}"),
        (Some(b), None) => b.to_owned(),
        _ if ua.is_empty() => "Unknown device".to_owned(),
        _ => ua.chars().take(40).collect(),
    };
    match ip {
        Some(ip) => format!("{device} · {ip}"),
        None => device,
    }
}

/// The notice after a code was sent.
pub fn sent_to(destination: &str) -> Option<String> {
    Some(format!("We sent a code to {destination}. It works for 10 minutes."))
}
