//! Every limit Latchkey enforces, named in one place: the sign-in throttles, the second-factor
//! wrong-code lock and the code send limits, each with its key shape, window and limit.
//!
//! The counting happens atomically in the store (so it holds across nodes); this is the rule it
//! counts by and the answer it leads to. The defaults are [`Limits::DEFAULT`]; the server applies
//! the operator's `[throttle]` and `[two_factor]` settings into them. Keys are stored: their shapes
//! (`sign_in:login:…`) must never change, or a lock in force would be forgotten.

use std::fmt::Display;

use time::{Duration, OffsetDateTime};

/// `max_failures` failures within `window` lock the key for `lockout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    pub max_failures: u32,
    pub window: Duration,
    pub lockout: Duration,
}

/// Failures counted against a key (`key_prefix` and a subject); too many lock it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimit {
    pub key_prefix: &'static str,
    pub policy: ThrottlePolicy,
}

impl FailureLimit {
    /// The store's key for `subject` (a login name, a client address, a user id).
    pub fn key(&self, subject: impl Display) -> String {
        format!("{}{subject}", self.key_prefix)
    }
}

/// Sends counted against a key within fixed windows (whole clock hours); one over `limit` is
/// refused until the window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimit {
    pub key_prefix: &'static str,
    pub window: Duration,
    pub limit: i64,
}

impl SendLimit {
    pub fn key(&self, subject: impl Display) -> String {
        format!("{}{subject}", self.key_prefix)
    }

    /// The start of the window `now` falls in. Windows are aligned to the Unix epoch, so every
    /// node counts into the same one.
    pub fn window_start(&self, now: OffsetDateTime) -> OffsetDateTime {
        let secs = self.window.whole_seconds().max(1);
        let start = now.unix_timestamp() - now.unix_timestamp().rem_euclid(secs);
        // A whole number of seconds at or before `now`: always representable.
        OffsetDateTime::from_unix_timestamp(start).unwrap_or(now)
    }

    /// Seconds until the window `now` falls in ends, at least one: the refusal's `Retry-After`.
    /// Counted in whole seconds of `now`, as the window is.
    pub fn retry_after(&self, now: OffsetDateTime) -> u64 {
        let end = self.window_start(now).unix_timestamp() + self.window.whole_seconds().max(1);
        (end - now.unix_timestamp()).max(1) as u64
    }
}

/// The limits, each named for what it protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wrong passwords per login name, at sign-in and at "my account"'s password checks. Per login
    /// name, not per account id: unknown names are throttled alike, so the throttle cannot tell
    /// which names exist. A handful of guesses, then a pause long enough to make guessing useless.
    pub sign_in_per_login: FailureLimit,
    /// Wrong passwords per client address: room for an office behind one NAT, not for credential
    /// stuffing.
    pub sign_in_per_client: FailureLimit,
    /// Wrong second-factor codes (TOTP, SMS, email, recovery, verification) per account; the lock
    /// holds every flow of the account, right codes included.
    pub second_factor_per_user: FailureLimit,
    /// Codes sent (SMS and email) per user: stops a script from running up the bill or flooding
    /// an inbox.
    pub sends_per_user: SendLimit,
    /// Texts per mobile number (E.164), whoever asks: SMS pumping.
    pub sends_per_number: SendLimit,
    /// Texts per company: the ceiling on what one tenant can cost.
    pub sends_per_company: SendLimit,
}

impl Limits {
    pub const DEFAULT: Self = Self {
        sign_in_per_login: FailureLimit {
            key_prefix: "sign_in:login:",
            policy: ThrottlePolicy { max_failures: 5, window: Duration::minutes(15), lockout: Duration::minutes(15) },
        },
        sign_in_per_client: FailureLimit {
            key_prefix: "sign_in:client:",
            policy: ThrottlePolicy { max_failures: 50, window: Duration::minutes(15), lockout: Duration::minutes(15) },
        },
        second_factor_per_user: FailureLimit {
            key_prefix: "second_factor:user:",
            policy: ThrottlePolicy { max_failures: 5, window: Duration::minutes(15), lockout: Duration::minutes(15) },
        },
        sends_per_user: SendLimit { key_prefix: "send:user:", window: Duration::hours(1), limit: 10 },
        sends_per_number: SendLimit { key_prefix: "send:number:", window: Duration::hours(1), limit: 10 },
        sends_per_company: SendLimit { key_prefix: "send:company:", window: Duration::hours(1), limit: 500 },
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Seconds a client must wait, when `locked_until` is still ahead of `now`. Rounded up so a client
/// that waits exactly `Retry-After` seconds is let in.
pub fn retry_after(locked_until: Option<OffsetDateTime>, now: OffsetDateTime) -> Option<u64> {
    let until = locked_until?;
    if until <= now {
        return None;
    }
    let secs = (until - now).whole_seconds().max(1);
    Some(secs as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn retry_after_counts_down_to_nothing() {
        let now = datetime!(2026-11-23 10:00 UTC);
        assert_eq!(retry_after(None, now), None);
        assert_eq!(retry_after(Some(now), now), None);
        assert_eq!(retry_after(Some(now + Duration::minutes(15)), now), Some(900));
        assert_eq!(retry_after(Some(now + Duration::milliseconds(10)), now), Some(1));
    }

    /// The keys are stored: a changed shape would forget every lock and count in force.
    #[test]
    fn keys_keep_their_stored_shapes() {
        let l = Limits::DEFAULT;
        assert_eq!(l.sign_in_per_login.key("101@organization.com"), "sign_in:login:101@organization.com");
        assert_eq!(l.sign_in_per_client.key("10.0.0.1"), "sign_in:client:10.0.0.1");
        assert_eq!(l.second_factor_per_user.key(42), "second_factor:user:42");
        assert_eq!(l.sends_per_user.key(42), "send:user:42");
        assert_eq!(l.sends_per_number.key("+15550104477"), "send:number:+15550104477");
        assert_eq!(l.sends_per_company.key(7), "send:company:7");
    }

    #[test]
    fn send_windows_are_whole_hours_and_retry_after_runs_to_their_end() {
        let hour = Limits::DEFAULT.sends_per_user;
        let now = datetime!(2026-11-23 10:59:30 UTC);
        assert_eq!(hour.window_start(now), datetime!(2026-11-23 10:00 UTC));
        assert_eq!(hour.retry_after(now), 30);
        assert_eq!(hour.window_start(datetime!(2026-11-23 11:00 UTC)), datetime!(2026-11-23 11:00 UTC));
        assert_eq!(hour.retry_after(datetime!(2026-11-23 11:00 UTC)), 3600);
        assert_eq!(hour.retry_after(datetime!(2026-11-23 10:59:59.5 UTC)), 1, "never zero");
        assert_eq!(hour.retry_after(datetime!(2026-11-23 10:59:30.5 UTC)), 30, "whole seconds of now");
    }
}
